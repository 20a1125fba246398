"""One request's routing decision: match -> split -> target -> endpoint.

The same function serves the proxy driver and ``meshd explain``: it returns
a ``Decision`` record holding every step (route index, split buckets and
pick, target and failover, eligible and ejected endpoints, the timeout,
retry policy, mirror and fault that apply) and never performs I/O.

Rules:

- With a router, the first matching route decides (``connect.l7.match``);
  no match -> ``no_route`` (Envoy 404). Without a router every request
  goes to ``Table.start``. A path Envoy rejects -> ``bad_path`` (400).
- A node name is a splitter (``Table.splitters``) or a target
  (``Table.targets``); splitters may nest (bounded depth).
- A target with no endpoint left after exclusion (outlier ejection, unhealthy)
  fails over to its ``failover`` targets in order; none left ->
  ``no_healthy_upstream`` (503 ``no healthy upstream``).
- Request header modifiers: the route's, then each split's (the split is
  more specific, so its Set wins); response modifiers in the reverse order.
- Timeout: the route's RequestTimeout, else the target's (resolver
  RequestTimeout), else Envoy's 15 s; 0 disables it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace

from connect.l7.balance import (
    Balancer,
    LoadBalancerConfig,
    cookie_to_generate,
    make_balancer,
    set_cookie_value,
)
from connect.l7.fault import FaultConfig, FaultDecision, decide_fault
from connect.l7.match import HeaderModifiers, Router, apply_header_modifiers
from connect.l7.mirror import MirrorPolicy, should_mirror
from connect.l7.request import Headers, Request
from connect.l7.retry import RetryPolicy
from connect.l7.split import Splitter

ENVOY_DEFAULT_TIMEOUT_S = 15.0
MAX_SPLIT_DEPTH = 8
NO_HEALTHY_UPSTREAM_BODY = "no healthy upstream"


@dataclass(frozen=True)
class RoutePolicy:
    """What a router destination asks beyond matching (timeouts, retries, mirror)."""

    request_timeout_s: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    mirror: MirrorPolicy | None = None


@dataclass(frozen=True)
class Target:
    """A resolved target: its endpoints, balancer and failover targets."""

    id: str
    endpoints: tuple[str, ...] = ()
    load_balancer: LoadBalancerConfig = field(default_factory=LoadBalancerConfig)
    failover: tuple[str, ...] = ()
    request_timeout_s: float | None = None
    fault: FaultConfig | None = None


@dataclass(frozen=True)
class Table:
    """The compiled routing of one upstream, as the decision needs it."""

    start: str
    router: Router | None = None
    route_policies: tuple[RoutePolicy, ...] = ()
    splitters: Mapping[str, Splitter] = field(default_factory=dict)
    targets: Mapping[str, Target] = field(default_factory=dict)


@dataclass(frozen=True)
class SplitStep:
    node: str
    buckets: tuple[tuple[str, float], ...]  # (next node, weight %)
    picked: int


@dataclass(slots=True)
class Decision:
    """Everything decided for one request; ``outcome`` "ok" or why not.

    Read-only by convention: not frozen, as a frozen dataclass pays an
    ``object.__setattr__`` per field on every request.
    """

    outcome: str  # ok | bad_path | no_route | unknown_node | no_healthy_upstream
    path: str | None = None
    forward_path: str | None = None
    route_index: int | None = None
    splits: tuple[SplitStep, ...] = ()
    target: str | None = None
    tried_targets: tuple[str, ...] = ()
    endpoint: str | None = None
    eligible: tuple[str, ...] = ()
    ejected: tuple[str, ...] = ()
    request_headers: Headers = field(default_factory=Headers)
    response_modifiers: tuple[HeaderModifiers, ...] = ()
    timeout_s: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    mirror: bool = False
    mirror_target: str | None = None
    fault: FaultDecision = field(default_factory=FaultDecision)
    set_cookie: str | None = None  # Set-Cookie value for a generated hash cookie

    def explain(self) -> dict[str, object]:
        """A JSON-ready account of the decision (``meshd explain`` and its API)."""
        retry = self.retry
        return {
            "Outcome": self.outcome,
            "Path": self.path,
            "ForwardPath": self.forward_path,
            "RouteIndex": self.route_index,
            "Splits": [
                {
                    "Node": step.node,
                    "Buckets": [{"NextNode": n, "Weight": w} for n, w in step.buckets],
                    "Picked": step.picked,
                }
                for step in self.splits
            ],
            "Target": self.target,
            "TriedTargets": list(self.tried_targets),
            "Endpoint": self.endpoint,
            "Eligible": list(self.eligible),
            "Ejected": list(self.ejected),
            "TimeoutSeconds": self.timeout_s,
            "Retry": {
                "NumRetries": retry.max_retries(),
                "RetryOn": sorted(retry.conditions()),
                "RetryOnStatusCodes": list(retry.retry_on_status_codes),
                "RetryNonIdempotent": retry.retry_non_idempotent,
            },
            "Mirror": self.mirror_target if self.mirror else None,
            "Fault": {
                "DelaySeconds": self.fault.delay_s,
                "AbortStatus": self.fault.abort_status,
                "AbortGrpcStatus": self.fault.abort_grpc_status,
                "BandwidthKiBps": self.fault.bandwidth_kib_per_s,
            },
        }

    @property
    def status_if_local(self) -> int | None:
        """The status the proxy answers itself, or None when it forwards."""
        return _LOCAL_STATUS.get(self.outcome)


_LOCAL_STATUS = {"bad_path": 400, "no_route": 404, "unknown_node": 503, "no_healthy_upstream": 503}


Excluded = Callable[[str], Collection[str]]
_NO_FAULT = FaultDecision()
_DEFAULT_POLICY = RoutePolicy()


def _eligible(endpoints: tuple[str, ...], out: frozenset[str]) -> tuple[str, ...]:
    """``endpoints`` less those in ``out`` (the tuple itself when none is out)."""
    return tuple(e for e in endpoints if e not in out) if out else tuple(endpoints)


def _no_exclusions(target_id: str) -> Collection[str]:
    return ()


@dataclass(frozen=True, slots=True)
class _Leg:
    """One bucket of a start splitter whose splits all name targets: what
    the full path builds for it per request, built once per table."""

    target: Target
    splits: tuple[SplitStep, ...]
    request_mods: HeaderModifiers | None  # None: nothing to apply
    response_mods: tuple[HeaderModifiers, ...]
    timeout_s: float | None  # as Decision.timeout_s


def _target_timeout_s(target: Target) -> float | None:
    """``Decision.timeout_s`` for ``target`` reached with no route timeout
    (the shortcuts): its resolver's RequestTimeout, else Envoy's default;
    0 disables it."""
    timeout = target.request_timeout_s
    return (ENVOY_DEFAULT_TIMEOUT_S if timeout is None else timeout) or None


def _split_legs(table: Table) -> tuple[Splitter, tuple[_Leg, ...]] | None:
    """The start splitter and a leg per split when the table is a plain
    split (no router; the start splitter's splits all name targets without
    hash cookie or fault), else None."""
    splitter = table.splitters.get(table.start) if table.router is None else None
    if splitter is None:
        return None
    legs: list[_Leg] = []
    for i, split in enumerate(splitter.splits):
        target = table.targets.get(split.next_node)
        if (
            target is None
            or split.next_node in table.splitters
            or target.fault is not None
            or target.load_balancer.hash_policies
        ):
            return None
        req = split.request_headers
        legs.append(
            _Leg(
                target,
                (SplitStep(table.start, splitter.buckets, i),),
                None if req.is_empty() else req,
                (split.response_headers,),
                _target_timeout_s(target),
            )
        )
    return splitter, tuple(legs)


@dataclass(slots=True)
class _Routed:
    node: str
    policy: RoutePolicy
    headers: Headers
    path: str | None = None
    forward: str | None = None
    route_index: int | None = None
    splits: list[SplitStep] = field(default_factory=list)
    response_mods: list[HeaderModifiers] = field(default_factory=list)


class Decider:
    """Holds per-target balancer state for one ``Table``."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._balancers: dict[str, Balancer] = {}
        # No router, no splitter, one target without hash cookie or fault
        # (a plain upstream): its decisions differ only by the endpoint.
        start = table.targets.get(table.start)
        self._direct: Target | None = None
        if (
            table.router is None
            and table.start not in table.splitters
            and start is not None
            and start.fault is None
            and not start.load_balancer.hash_policies
        ):
            self._direct = start
        # A plain split (no router; one splitter over targets): per request
        # only the pick and the endpoint differ, the rest is built here.
        self._split = _split_legs(table)

    def balancer(self, target: Target) -> Balancer:
        lb = self._balancers.get(target.id)
        if lb is None:
            lb = self._balancers[target.id] = make_balancer(target.load_balancer)
        return lb

    def _route(self, request: Request, rng: random.Random) -> _Routed | Decision:
        """Router match and split picks: the node to resolve, or an early Decision."""
        table = self.table
        r = _Routed(table.start, _DEFAULT_POLICY, request.headers)
        if table.router is not None:
            r.path = table.router.normalize(request)
            if r.path is None:
                return Decision("bad_path")
            result = table.router.match(request, r.path)
            if result is None:
                return Decision("no_route", path=r.path)
            r.route_index, r.forward = result.index, result.forward_path
            r.node = result.route.next_node
            if r.route_index < len(table.route_policies):
                r.policy = table.route_policies[r.route_index]
            r.headers = apply_header_modifiers(r.headers, result.route.request_headers)
            r.response_mods.append(result.route.response_headers)
        while r.node in table.splitters and len(r.splits) < MAX_SPLIT_DEPTH:
            splitter = table.splitters[r.node]
            picked = splitter.pick(rng)
            split = splitter.splits[picked]
            r.splits.append(SplitStep(r.node, splitter.buckets, picked))
            r.headers = apply_header_modifiers(r.headers, split.request_headers)
            r.response_mods.insert(0, split.response_headers)
            r.node = split.next_node
        return r

    def decide(
        self,
        request: Request,
        *,
        rng: random.Random,
        excluded: Excluded = _no_exclusions,
        active: Mapping[str, int] | None = None,
    ) -> Decision:
        """The whole decision for ``request`` (see the module rules)."""
        direct = self._direct
        if direct is not None and not excluded(direct.id):
            endpoint = self.balancer(direct).pick(
                direct.endpoints, rng=rng, request=request, active=active
            )
            if endpoint is not None:  # else: failover, as the full path does
                return Decision(
                    "ok",
                    target=direct.id,
                    tried_targets=(direct.id,),
                    endpoint=endpoint,
                    eligible=direct.endpoints,
                    request_headers=request.headers,
                    timeout_s=_target_timeout_s(direct),
                    retry=_DEFAULT_POLICY.retry,
                    fault=_NO_FAULT,  # (the default factory builds a new one)
                )
        if self._split is not None:
            return self._decide_split(self._split, request, rng, excluded, active)
        return self._decide(request, rng, excluded, active)

    def _decide_split(
        self,
        split: tuple[Splitter, tuple[_Leg, ...]],
        request: Request,
        rng: random.Random,
        excluded: Excluded,
        active: Mapping[str, int] | None,
    ) -> Decision:
        """``decide`` for a plain split: the same draws from ``rng`` in the
        same order as the full path (the split pick, then the balancer's),
        which it continues from the pick when the target has exclusions or
        no endpoint."""
        leg = split[1][split[0].pick(rng)]
        target = leg.target
        headers = request.headers
        if leg.request_mods is not None:
            headers = apply_header_modifiers(headers, leg.request_mods)
        if target.endpoints and not excluded(target.id):
            endpoint = self.balancer(target).pick(
                target.endpoints, rng=rng, request=request, active=active
            )
            if endpoint is not None:  # always, with endpoints and none excluded
                return Decision(
                    "ok",
                    splits=leg.splits,
                    target=target.id,
                    tried_targets=(target.id,),
                    endpoint=endpoint,
                    eligible=target.endpoints,
                    request_headers=headers,
                    response_modifiers=leg.response_mods,
                    timeout_s=leg.timeout_s,
                    retry=_DEFAULT_POLICY.retry,
                    fault=_NO_FAULT,
                )
        r = _Routed(target.id, _DEFAULT_POLICY, headers)
        r.splits.extend(leg.splits)
        r.response_mods.extend(leg.response_mods)
        return self._finish(r, request, rng, excluded, active)

    def _decide(
        self,
        request: Request,
        rng: random.Random,
        excluded: Excluded,
        active: Mapping[str, int] | None,
    ) -> Decision:
        """``decide`` through every step (the shortcuts' reference)."""
        r = self._route(request, rng)
        if isinstance(r, Decision):
            return r
        return self._finish(r, request, rng, excluded, active)

    def _finish(
        self,
        r: _Routed,
        request: Request,
        rng: random.Random,
        excluded: Excluded,
        active: Mapping[str, int] | None,
    ) -> Decision:
        """The decision once routed to ``r.node``: hash cookie, target and
        endpoint (failover), timeout, mirror and fault."""
        policy = r.policy
        request, set_cookie = self._hash_cookie(r.node, request, rng)
        target, tried, endpoint, out = self._resolve(r.node, request, rng, excluded, active)
        outcome = "ok"
        if target is None:
            outcome = "unknown_node"
        elif endpoint is None:
            outcome = "no_healthy_upstream"
        timeout = mirror_target = None
        mirror = False
        fault = _NO_FAULT
        if endpoint is not None and target is not None:
            timeout = policy.request_timeout_s
            if timeout is None:
                timeout = target.request_timeout_s
            if timeout is None:
                timeout = ENVOY_DEFAULT_TIMEOUT_S
            if policy.mirror is not None:
                mirror = should_mirror(policy.mirror, rng)
                mirror_target = policy.mirror.target
            if target.fault is not None:
                fault = decide_fault(target.fault, rng)
        return Decision(
            outcome,
            path=r.path,
            forward_path=r.forward,
            route_index=r.route_index,
            splits=tuple(r.splits),
            target=target.id if target is not None else r.node,
            tried_targets=tried,
            endpoint=endpoint,
            eligible=_eligible(target.endpoints, out) if target else (),
            ejected=tuple(e for e in target.endpoints if e in out) if target and out else (),
            request_headers=r.headers,
            response_modifiers=tuple(r.response_mods),
            timeout_s=timeout or None,
            retry=policy.retry,
            mirror=mirror,
            mirror_target=mirror_target,
            fault=fault,
            set_cookie=set_cookie if endpoint is not None else None,
        )

    def _hash_cookie(
        self, node: str, request: Request, rng: random.Random
    ) -> tuple[Request, str | None]:
        """``request`` with a generated hash cookie, and its Set-Cookie, if needed."""
        target = self.table.targets.get(node)
        if target is None or not target.load_balancer.hash_policies:
            return request, None
        policy = cookie_to_generate(target.load_balancer.hash_policies, request)
        if policy is None:
            return request, None
        value = f"{rng.getrandbits(64):016x}"
        headers = request.headers.copy()
        headers.add("cookie", f"{policy.field_value}={value}")
        return replace(request, headers=headers), set_cookie_value(policy, value)

    def _resolve(
        self,
        node: str,
        request: Request,
        rng: random.Random,
        excluded: Excluded,
        active: Mapping[str, int] | None,
    ) -> tuple[Target | None, tuple[str, ...], str | None, frozenset[str]]:
        """(target, tried target ids, endpoint, excluded endpoints) for ``node``.

        The target is the one that gave the endpoint, else the first one.
        """
        first = self.table.targets.get(node)
        if first is None:
            return None, (), None, frozenset()
        tried: list[str] = []
        for target_id in (first.id, *first.failover):
            target = self.table.targets.get(target_id)
            if target is None:
                continue
            tried.append(target_id)
            ex = excluded(target_id)
            out = frozenset(e for e in target.endpoints if e in ex) if ex else frozenset()
            endpoint = self.balancer(target).pick(
                target.endpoints, rng=rng, request=request, excluded=out, active=active
            )
            if endpoint is not None:
                return target, tuple(tried), endpoint, out
        return first, tuple(tried), None, frozenset()
