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

from connect.l7.balance import Balancer, LoadBalancerConfig, make_balancer
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


@dataclass(frozen=True)
class Decision:
    """Everything decided for one request; ``outcome`` "ok" or why not."""

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

    @property
    def status_if_local(self) -> int | None:
        """The status the proxy answers itself, or None when it forwards."""
        return {
            "bad_path": 400,
            "no_route": 404,
            "unknown_node": 503,
            "no_healthy_upstream": 503,
        }.get(self.outcome)


Excluded = Callable[[str], Collection[str]]


def _no_exclusions(target_id: str) -> Collection[str]:
    return ()


class Decider:
    """Holds per-target balancer state for one ``Table``."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._balancers: dict[str, Balancer] = {}

    def balancer(self, target: Target) -> Balancer:
        lb = self._balancers.get(target.id)
        if lb is None:
            lb = self._balancers[target.id] = make_balancer(target.load_balancer)
        return lb

    def decide(
        self,
        request: Request,
        *,
        rng: random.Random,
        excluded: Excluded = _no_exclusions,
        active: Mapping[str, int] | None = None,
    ) -> Decision:
        table = self.table
        node = table.start
        policy = RoutePolicy()
        headers = request.headers
        response_mods: list[HeaderModifiers] = []
        route_index = None
        path = forward = None
        if table.router is not None:
            path = table.router.normalize(request)
            if path is None:
                return Decision("bad_path")
            result = table.router.match(request, path)
            if result is None:
                return Decision("no_route", path=path)
            route_index, forward = result.index, result.forward_path
            node = result.route.next_node
            if route_index < len(table.route_policies):
                policy = table.route_policies[route_index]
            headers = apply_header_modifiers(headers, result.route.request_headers)
            response_mods.append(result.route.response_headers)
        splits: list[SplitStep] = []
        while node in table.splitters and len(splits) < MAX_SPLIT_DEPTH:
            splitter = table.splitters[node]
            picked = splitter.pick(rng)
            split = splitter.splits[picked]
            splits.append(SplitStep(node, splitter.buckets, picked))
            headers = apply_header_modifiers(headers, split.request_headers)
            response_mods.insert(0, split.response_headers)
            node = split.next_node
        base = Decision(
            "ok",
            path=path,
            forward_path=forward,
            route_index=route_index,
            splits=tuple(splits),
            request_headers=headers,
            response_modifiers=tuple(response_mods),
            retry=policy.retry,
        )
        return self._resolve(base, node, policy, request, rng, excluded, active)

    def _resolve(
        self,
        base: Decision,
        node: str,
        policy: RoutePolicy,
        request: Request,
        rng: random.Random,
        excluded: Excluded,
        active: Mapping[str, int] | None,
    ) -> Decision:
        first = self.table.targets.get(node)
        if first is None:
            return replace(base, outcome="unknown_node", target=node)
        tried: list[str] = []
        for target_id in (first.id, *first.failover):
            target = self.table.targets.get(target_id)
            if target is None:
                continue
            tried.append(target_id)
            out = set(excluded(target_id)) & set(target.endpoints)
            endpoint = self.balancer(target).pick(
                target.endpoints, rng=rng, request=request, excluded=out, active=active
            )
            if endpoint is None:
                continue
            timeout = policy.request_timeout_s
            if timeout is None:
                timeout = target.request_timeout_s
            if timeout is None:
                timeout = ENVOY_DEFAULT_TIMEOUT_S
            mirror = should_mirror(policy.mirror, rng)
            return replace(
                base,
                target=target_id,
                tried_targets=tuple(tried),
                endpoint=endpoint,
                eligible=tuple(e for e in target.endpoints if e not in out),
                ejected=tuple(e for e in target.endpoints if e in out),
                timeout_s=timeout or None,
                mirror=mirror,
                mirror_target=policy.mirror.target if policy.mirror else None,
                fault=decide_fault(target.fault, rng),
            )
        return replace(
            base, outcome="no_healthy_upstream", target=first.id, tried_targets=tuple(tried)
        )
