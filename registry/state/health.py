"""Health reads: checks by node, service and state; service instances with health.

Follows Consul's /v1/health docs. An instance's checks are its node's
node-level checks followed by its own, each sorted by CheckID; its
aggregated status is the worst of them (maintenance counts as critical).
``passing`` keeps only instances whose every check passes (warning is
excluded too, as in Consul). Several tags must all be present
(case-insensitively); node meta filters must all match.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from ..records import (
    CRITICAL,
    MAINTENANCE,
    PASSING,
    WARNING,
    CheckServiceNode,
    HealthCheck,
    ServiceInstance,
)
from .catalog import connect_key, node_meta_matches, service_index, service_key, tags_match
from .watch import WatchSet

if TYPE_CHECKING:
    from .store import StateStore

_SEVERITY = {PASSING: 0, WARNING: 1, CRITICAL: 2, MAINTENANCE: 2}


def aggregated_status(checks: Iterable[HealthCheck]) -> str:
    """The worst status among ``checks`` ("passing" when there are none)."""
    worst = PASSING
    rank = 0
    for check in checks:
        r = _SEVERITY.get(check.status, 2)
        if r > rank:
            rank, worst = r, (CRITICAL if check.status == MAINTENANCE else check.status)
            if rank == 2:
                break
    return worst


def _sorted_checks(bucket: Mapping[tuple[str, str], HealthCheck]) -> list[HealthCheck]:
    if len(bucket) < 2:
        return list(bucket.values())
    return [bucket[k] for k in sorted(bucket)]


def instance_checks(store: StateStore, svc: ServiceInstance) -> tuple[HealthCheck, ...]:
    """Node-level checks of the instance's node, then the instance's own checks."""
    by = store.catalog.checks.by
    node_checks = by("service", (svc.node, ""))
    own = by("service", (svc.node, svc.id))
    if not node_checks:
        return tuple(_sorted_checks(own))
    return (*_sorted_checks(node_checks), *_sorted_checks(own))


def _check_service_nodes(
    store: StateStore,
    instances: Iterable[ServiceInstance],
    passing: bool,
    tags: Sequence[str],
    node_meta: Mapping[str, str] | None,
) -> list[CheckServiceNode]:
    # The hot loop of /v1/health/service: locals only, no per-instance helper calls
    # beyond sorting buckets that hold more than one check.
    get_node = store.catalog.nodes.get
    by_service = store.catalog.checks.index_map("service")
    empty: Mapping[tuple[str, str], HealthCheck] = {}
    out = []
    for svc in instances:
        if tags and not tags_match(svc.tags, tags):
            continue
        node = get_node(svc.node)
        if node is None or (node_meta and not node_meta_matches(node, node_meta)):
            continue
        node_checks = by_service.get((svc.node, ""), empty)
        own = by_service.get((svc.node, svc.id), empty)
        if len(node_checks) + len(own) > 1:
            checks = (*_sorted_checks(node_checks), *_sorted_checks(own))
        else:
            checks = (*node_checks.values(), *own.values())
        if passing and any(c.status != PASSING for c in checks):
            continue
        out.append(CheckServiceNode(node, svc, checks))
    return out


def _bucket(store: StateStore, index: str, name: str) -> list[ServiceInstance]:
    bucket = store.catalog.services.by(index, name.lower())
    if len(bucket) < 2:
        return list(bucket.values())
    return [bucket[k] for k in sorted(bucket)]


def health_service_nodes(
    store: StateStore,
    ws: WatchSet | None,
    name: str,
    passing: bool = False,
    tags: Iterable[str] = (),
    node_meta: Mapping[str, str] | None = None,
) -> tuple[int, list[CheckServiceNode]]:
    """/v1/health/service/:name with ``?passing``, ``?tag=`` (all), ``?node-meta=``."""
    store.watch(ws, service_key(name))
    rows = _check_service_nodes(
        store, _bucket(store, "name", name), passing, tuple(tags), node_meta
    )
    return service_index(store, name), rows


def health_connect_service_nodes(
    store: StateStore,
    ws: WatchSet | None,
    name: str,
    passing: bool = False,
    tags: Iterable[str] = (),
    node_meta: Mapping[str, str] | None = None,
) -> tuple[int, list[CheckServiceNode]]:
    """/v1/health/connect/:name: connect-proxies whose destination is ``name`` plus
    Connect-native instances of ``name``, with health."""
    store.watch(ws, connect_key(name))
    instances = _bucket(store, "connect", name)
    rows = _check_service_nodes(store, instances, passing, tuple(tags), node_meta)
    idx = store.fine_index(connect_key(name), "nodes", "services", "checks")
    return max(1, idx), rows


def health_node_checks(
    store: StateStore, ws: WatchSet | None, node: str
) -> tuple[int, list[HealthCheck]]:
    """/v1/health/node/:node: every check on the node (node and service level)."""
    store.watch(ws, "node:" + node)
    bucket = store.catalog.checks.by("node", node)
    return max(1, store.fine_index("node:" + node, "checks")), _sorted_checks(bucket)


def health_service_checks(
    store: StateStore,
    ws: WatchSet | None,
    service: str,
    node_meta: Mapping[str, str] | None = None,
) -> tuple[int, list[HealthCheck]]:
    """/v1/health/checks/:service: the service-level checks of every instance."""
    store.watch(ws, service_key(service))
    bucket = store.catalog.checks.by("service_name", service.lower())
    checks = _sorted_checks(bucket)
    if node_meta:
        nodes = store.catalog.nodes
        checks = [
            c
            for c in checks
            if (n := nodes.get(c.node)) is not None and node_meta_matches(n, node_meta)
        ]
    return service_index(store, service), checks


def health_checks_in_state(
    store: StateStore,
    ws: WatchSet | None,
    state: str,
    node_meta: Mapping[str, str] | None = None,
) -> tuple[int, list[HealthCheck]]:
    """/v1/health/state/:state: checks in ``state`` ("any" for all), sorted by node and ID."""
    store.watch(ws, "checks")
    table = store.catalog.checks
    checks = table.sorted_records() if state == "any" else _sorted_checks(table.by("status", state))
    if node_meta:
        nodes = store.catalog.nodes
        checks = [
            c
            for c in checks
            if (n := nodes.get(c.node)) is not None and node_meta_matches(n, node_meta)
        ]
    return max(1, store.index_of("checks")), checks
