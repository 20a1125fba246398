"""From a compiled discovery chain (its API JSON) to ``decide.Table``.

The proxy follows ``/v1/discovery-chain/<upstream>`` and gets Consul's JSON
shape; this module turns it, with the endpoints of each target, into the
table the decision core reads. It re-reads route and split definitions
with the config-entry parsers, so a chain carries exactly what the entries
said (durations, header matches, modifiers).

Mapping:

- a router node becomes ``match.Router`` with one ``RoutePolicy`` per route
  (RequestTimeout, the retry fields, the meshd mirror target);
- a splitter node keeps its key; a resolver node is replaced by its target
  id wherever it is referenced, so ``decide`` sees targets directly;
- every chain target is a ``decide.Target`` (endpoints from ``endpoints``),
  with the resolver's failover targets, RequestTimeout and LoadBalancer,
  and the chain's ``builtin/fault-injection`` extension (Consul applies it
  to the service's listener; meshd applies it where the request enters L7,
  the caller's outbound);
- ``upstream_limits`` reads a source service-defaults' UpstreamConfig
  (Limits -> breaker, PassiveHealthCheck -> outlier detection).

Pure: no I/O, no clock. Raises ``TableError`` (a ValueError) with the
chain field that does not convert.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connect.l7 import entries_defaults as ed
from connect.l7.balance import HashPolicy, LoadBalancerConfig
from connect.l7.breaker import Limits
from connect.l7.decide import RoutePolicy, Table, Target
from connect.l7.decode import Fields, ValidationError
from connect.l7.entries import parse_entry
from connect.l7.entries_defaults import FAULT_INJECTION, parse_envoy_extensions
from connect.l7.entries_resolver import LoadBalancer, _parse_load_balancer
from connect.l7.entries_routing import (
    HTTPMatch as EntryMatch,
)
from connect.l7.entries_routing import (
    RouteDestination,
    _parse_route,
    _parse_split,
)
from connect.l7.fault import AbortFault, BandwidthFault, DelayFault, FaultConfig
from connect.l7.match import HeaderModifiers, HTTPMatch, Route, Router
from connect.l7.mirror import MirrorPolicy
from connect.l7.outlier import OutlierConfig
from connect.l7.retry import RetryPolicy
from connect.l7.split import Split, Splitter

JSON = Any
NS_PER_S = 1_000_000_000


class TableError(ValueError):
    """The chain JSON does not convert (a field the compiler never emits)."""


@dataclass(frozen=True)
class UpstreamLimits:
    """A source's UpstreamConfig for one upstream, as the driver's cores take it."""

    limits: Limits | None = None
    outlier: OutlierConfig | None = None


def _modifiers(m: HeaderModifiers) -> HeaderModifiers:
    return HeaderModifiers(add=dict(m.add), set=dict(m.set), remove=tuple(m.remove))


def _match(m: EntryMatch | None) -> HTTPMatch:
    if m is None:
        return HTTPMatch(path_prefix="/")
    return HTTPMatch(
        path_exact=m.path_exact,
        path_prefix=m.path_prefix,
        path_regex=m.path_regex,
        headers=tuple(m.header),
        query_params=tuple(m.query_param),
        methods=tuple(m.methods),
    )


def _policy(d: RouteDestination | None, mirror_target: str) -> RoutePolicy:
    if d is None:
        return RoutePolicy()
    retry = RetryPolicy(
        num_retries=d.num_retries or None,
        retry_on=tuple(d.retry_on),
        retry_on_connect_failure=d.retry_on_connect_failure,
        retry_on_status_codes=tuple(d.retry_on_status_codes),
    )
    mirror = None
    if mirror_target and d.mirror is not None:
        mirror = MirrorPolicy(mirror_target, d.mirror.percent)
    timeout = d.request_timeout_ns / NS_PER_S if d.request_timeout_ns else None
    return RoutePolicy(request_timeout_s=timeout, retry=retry, mirror=mirror)


class _Builder:
    def __init__(self, chain: Mapping[str, JSON]) -> None:
        self.chain = chain
        self.nodes: Mapping[str, JSON] = chain.get("Nodes") or {}

    def ref(self, key: str) -> str:
        """A node key as ``decide`` addresses it: a resolver by its target id."""
        node = self.nodes.get(key)
        if node is None:
            raise TableError(f"Nodes: {key!r} is referenced but not defined")
        if node.get("Type") == "resolver":
            return str(node["Resolver"]["Target"])
        return key

    def router(self, node: Mapping[str, JSON]) -> tuple[Router, tuple[RoutePolicy, ...]]:
        routes: list[Route] = []
        policies: list[RoutePolicy] = []
        for i, rn in enumerate(node.get("Routes") or []):
            sr = _parse_route(rn.get("Definition") or {}, i)
            d = sr.destination
            mirror = str(rn.get("MirrorTarget") or "")
            routes.append(
                Route(
                    match=_match(sr.match),
                    next_node=self.ref(str(rn["NextNode"])),
                    prefix_rewrite=d.prefix_rewrite if d else "",
                    request_headers=_modifiers(d.request_headers) if d else HeaderModifiers(),
                    response_headers=_modifiers(d.response_headers) if d else HeaderModifiers(),
                )
            )
            policies.append(_policy(d, self.ref(mirror) if mirror in self.nodes else mirror))
        return Router(routes), tuple(policies)

    def splitter(self, node: Mapping[str, JSON]) -> Splitter:
        splits = []
        for i, sn in enumerate(node.get("Splits") or []):
            definition = dict(sn.get("Definition") or {})
            definition.pop("Weight", None)
            d = _parse_split(definition, i)
            splits.append(
                Split(
                    weight=float(sn["Weight"]),
                    next_node=self.ref(str(sn["NextNode"])),
                    request_headers=_modifiers(d.request_headers),
                    response_headers=_modifiers(d.response_headers),
                )
            )
        return Splitter(splits)


def _load_balancer(node: Mapping[str, JSON]) -> LoadBalancerConfig:
    raw = node.get("LoadBalancer")
    if not raw:
        return LoadBalancerConfig()
    lb: LoadBalancer | None = _parse_load_balancer(Fields({"LoadBalancer": raw}, ""))
    if lb is None:
        return LoadBalancerConfig()
    kw: dict[str, Any] = {"policy": lb.policy}
    if lb.least_request_choice_count is not None:
        kw["choice_count"] = lb.least_request_choice_count
    if lb.ring_hash_minimum:
        kw["minimum_ring_size"] = lb.ring_hash_minimum
    if lb.ring_hash_maximum:
        kw["maximum_ring_size"] = lb.ring_hash_maximum
    kw["hash_policies"] = tuple(
        HashPolicy(
            field=h.field,
            field_value=h.field_value,
            source_ip=h.source_ip,
            terminal=h.terminal,
            cookie_session=bool(h.cookie_config and h.cookie_config.session),
            cookie_ttl_s=(h.cookie_config.ttl_ns / NS_PER_S) if h.cookie_config else 0.0,
            cookie_path=h.cookie_config.path if h.cookie_config else "",
        )
        for h in lb.hash_policies
    )
    return LoadBalancerConfig(**kw)


def fault_from_extensions(extensions: Sequence[JSON]) -> FaultConfig | None:
    """The ``builtin/fault-injection`` extension of a chain, as ``FaultConfig``."""
    for ext in parse_envoy_extensions(Fields({"EnvoyExtensions": list(extensions)}, "")):
        fi = ext.fault_injection
        if ext.name != FAULT_INJECTION or fi is None:
            continue
        return FaultConfig(
            delay=None
            if fi.delay_ms is None
            else DelayFault(fi.delay_ms, fi.delay_percentage or 100.0),
            abort=None
            if fi.abort_http_status is None and fi.abort_grpc_status is None
            else AbortFault(
                fi.abort_http_status or 0, fi.abort_grpc_status, fi.abort_percentage or 100.0
            ),
            bandwidth=None
            if fi.bandwidth_kib_s is None
            else BandwidthFault(fi.bandwidth_kib_s, fi.bandwidth_percentage or 100.0),
        )
    return None


def table_from_chain(
    chain: Mapping[str, JSON], endpoints: Mapping[str, Sequence[str]] | None = None
) -> Table:
    """``decide.Table`` for the ``Chain`` object of /v1/discovery-chain.

    ``endpoints`` maps a target id to its healthy endpoints (any opaque
    strings; the proxy uses ``host:port``). Raises TableError.
    """
    try:
        return _table(chain, endpoints or {})
    except (KeyError, TypeError, ValidationError) as exc:
        raise TableError(f"chain does not convert: {exc}") from None


def _table(chain: Mapping[str, JSON], endpoints: Mapping[str, Sequence[str]]) -> Table:
    b = _Builder(chain)
    fault = fault_from_extensions(chain.get("EnvoyExtensions") or [])
    router = None
    policies: tuple[RoutePolicy, ...] = ()
    splitters: dict[str, Splitter] = {}
    resolvers: dict[str, Mapping[str, JSON]] = {}
    for key, node in b.nodes.items():
        kind = node.get("Type")
        if kind == "router":
            router, policies = b.router(node)
        elif kind == "splitter":
            splitters[key] = b.splitter(node)
        elif kind == "resolver":
            resolvers[str(node["Resolver"]["Target"])] = node
    targets: dict[str, Target] = {}
    for tid in chain.get("Targets") or {}:
        node = resolvers.get(tid, {})
        info = node.get("Resolver") or {}
        timeout_ns = Fields(info, "Resolver").duration("RequestTimeout") if info else 0
        targets[tid] = Target(
            id=tid,
            endpoints=tuple(endpoints.get(tid, ())),
            load_balancer=_load_balancer(node),
            failover=tuple((info.get("Failover") or {}).get("Targets") or ()),
            request_timeout_s=timeout_ns / NS_PER_S if timeout_ns else None,
            fault=fault,
        )
    start = b.ref(str(chain["StartNode"]))
    return Table(
        start=start,
        router=router,
        route_policies=policies,
        splitters=splitters,
        targets=targets,
    )


def upstream_limits(service_defaults: JSON | None, upstream: str) -> UpstreamLimits:
    """Limits and PassiveHealthCheck a source's service-defaults sets for ``upstream``
    (its UpstreamConfig override for that name, else its Defaults)."""
    if not service_defaults:
        return UpstreamLimits()
    body = {**service_defaults, "Kind": "service-defaults"}
    for key in ("CreateIndex", "ModifyIndex", "Hash"):
        body.pop(key, None)
    entry = parse_entry(body)
    if not isinstance(entry, ed.ServiceDefaultsEntry):
        raise TableError("service-defaults: not a service-defaults entry")
    cfg = entry.upstream_config_for(upstream)
    if cfg is None:
        return UpstreamLimits()
    limits = None
    if cfg.limits is not None:
        lim = cfg.limits
        limits = Limits(lim.max_connections, lim.max_pending_requests, lim.max_concurrent_requests)
    outlier = None
    phc = cfg.passive_health_check
    if phc is not None:
        kw: dict[str, Any] = {}
        if phc.interval_ns:
            kw["interval_s"] = phc.interval_ns / NS_PER_S
        if phc.max_failures:
            kw["max_failures"] = phc.max_failures
        if phc.enforcing_consecutive_5xx is not None:
            kw["enforcing_consecutive_5xx"] = phc.enforcing_consecutive_5xx
        if phc.max_ejection_percent is not None:
            kw["max_ejection_percent"] = phc.max_ejection_percent
        if phc.base_ejection_time_ns is not None:
            kw["base_ejection_time_s"] = phc.base_ejection_time_ns / NS_PER_S
        outlier = OutlierConfig(**kw)
    return UpstreamLimits(limits, outlier)
