"""Catalog tables (nodes, services, checks): schema, writes and catalog reads.

Write semantics follow Consul's state store (agent/consul/state/catalog.go):
re-registering an identical node, service or check is a no-op (no index
bump); a service's checks follow it out; deleting a node removes its
services, checks and sessions; a check going critical, or being deleted,
invalidates the sessions bound to it.

Watch/index keys: ``"nodes"``, ``"services"``, ``"checks"`` per table,
``"node:<name>"`` for anything on a node, ``"service:<name>"`` for anything a
query on that service returns (instances, their checks, their nodes' checks
and addresses), ``"connect:<name>"`` for the connect-capable instances of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from ..commands import DeregisterRequest, RegisterRequest
from ..errors import ErrorCode
from ..records import (
    CRITICAL,
    DEFAULT_WEIGHTS,
    HealthCheck,
    Node,
    NodeServices,
    ServiceInstance,
    ServiceNode,
)
from ..results import OK, Result, failed
from .coordinates import delete_node_coordinates
from .sessions import invalidate_check_sessions, invalidate_node_sessions
from .table import Table
from .watch import WatchSet

if TYPE_CHECKING:
    from .store import StateStore, WriteTx

ServiceKey = tuple[str, str]


def _connect_names(s: ServiceInstance) -> tuple[str, ...]:
    """The (lower-cased) names a connect query finds ``s`` under."""
    dest = s.destination
    if dest:
        return (dest.lower(),)
    if s.native:
        return (s.service.lower(),)
    return ()


def service_key(name: str) -> str:
    """The watch/index key of a service name. Consul's catalog indexes service
    names lower-cased (memdb ``Lowercase: true``), so "Web" and "web" are one
    service to queries, and their watches are one key."""
    return "service:" + name.lower()


def connect_key(name: str) -> str:
    """The watch/index key of the connect-capable instances of a service."""
    return "connect:" + name.lower()


class CatalogTables:
    """The nodes, services and checks tables with the indexes queries need."""

    def __init__(self) -> None:
        self.nodes: Table[Node] = Table(
            "nodes", Node, lambda n: n.node, {"id": lambda n: (n.id,) if n.id else ()}, ordered=True
        )
        self.services: Table[ServiceInstance] = Table(
            "services",
            ServiceInstance,
            lambda s: (s.node, s.id),
            {
                "node": lambda s: (s.node,),
                "name": lambda s: (s.service.lower(),),
                "kind": lambda s: (s.kind,),
                "connect": _connect_names,
            },
        )
        self.checks: Table[HealthCheck] = Table(
            "checks",
            HealthCheck,
            lambda c: (c.node, c.check_id),
            {
                "node": lambda c: (c.node,),
                "service": lambda c: ((c.node, c.service_id),),
                "service_name": lambda c: (c.service_name.lower(),) if c.service_name else (),
                "status": lambda c: (c.status,),
            },
        )

    def tables(self) -> list[Table[Node] | Table[ServiceInstance] | Table[HealthCheck]]:
        """Tables in snapshot order."""
        return [self.nodes, self.services, self.checks]


def service_keys(s: ServiceInstance) -> list[str]:
    """Index/watch names a change to instance ``s`` must touch."""
    keys = [service_key(s.service)]
    for name in _connect_names(s):
        keys.append(connect_key(name))
    return keys


def touch_node_services(store: StateStore, tx: WriteTx, node: str) -> None:
    """A node-wide change (address, node check) changes every service query on it."""
    for svc in store.catalog.services.by("node", node).values():
        tx.touch(*service_keys(svc))


def _drop_empty_service_keys(store: StateStore, tx: WriteTx, s: ServiceInstance) -> None:
    services = store.catalog.services
    if not services.by("name", s.service.lower()):
        tx.drop(service_key(s.service))
    for name in _connect_names(s):
        if not services.by("connect", name):
            tx.drop(connect_key(name))


def ensure_node(store: StateStore, tx: WriteTx, node: Node) -> Result:
    """Create or update a node; identical re-registration changes nothing."""
    nodes = store.catalog.nodes
    existing = nodes.get(node.node)
    if node.id:
        for other in nodes.by("id", node.id).values():
            if other.node != node.node:
                return failed(
                    ErrorCode.CONFLICT,
                    f"node ID {node.id!r} for node {node.node!r} is already in use"
                    f" by {other.node!r}",
                )
    elif existing is not None and existing.id:
        node = replace(node, id=existing.id)
    if existing is None:
        new = replace(node, create_index=tx.index, modify_index=tx.index)
    else:
        new = replace(node, create_index=existing.create_index, modify_index=existing.modify_index)
        if new == existing:
            return OK
        new = replace(new, modify_index=tx.index)
    nodes.put(tx, new)
    tx.touch("nodes", "node:" + node.node)
    if existing is not None:
        touch_node_services(store, tx, node.node)
    return OK


def ensure_service(store: StateStore, tx: WriteTx, node: str, svc: ServiceInstance) -> Result:
    """Create or update a service instance on an existing node."""
    cat = store.catalog
    if cat.nodes.get(node) is None:
        return failed(ErrorCode.NOT_FOUND, f"Missing node registration for {node!r}")
    sid = svc.id or svc.service
    existing = cat.services.get((node, sid))
    new = replace(
        svc,
        id=sid,
        node=node,
        weights=DEFAULT_WEIGHTS if svc.weights == DEFAULT_WEIGHTS else svc.weights,
        create_index=existing.create_index if existing else tx.index,
        modify_index=existing.modify_index if existing else tx.index,
    )
    if existing is not None:
        if new == existing:
            return OK
        new = replace(new, modify_index=tx.index)
    cat.services.put(tx, new)
    tx.touch("services", "node:" + node, *service_keys(new))
    if existing is not None:
        tx.touch(*service_keys(existing))
        _drop_empty_service_keys(store, tx, existing)
        if existing.service != new.service or existing.tags != new.tags:
            _retag_checks(store, tx, new)
    return OK


def _retag_checks(store: StateStore, tx: WriteTx, svc: ServiceInstance) -> None:
    """Keep a service's checks' ServiceName/ServiceTags in step with the service."""
    checks = store.catalog.checks
    for check in list(checks.by("service", (svc.node, svc.id)).values()):
        checks.put(
            tx,
            replace(check, service_name=svc.service, service_tags=svc.tags, modify_index=tx.index),
        )
    tx.touch("checks")


def ensure_check(
    store: StateStore, tx: WriteTx, check: HealthCheck, node: str | None = None
) -> Result:
    """Create or update a check on ``node`` (default ``check.node``); going critical
    invalidates the sessions bound to it."""
    cat = store.catalog
    node = check.node if node is None else node
    if cat.nodes.get(node) is None:
        return failed(ErrorCode.NOT_FOUND, f"Missing node registration for {node!r}")
    svc = None
    if check.service_id:
        svc = cat.services.get((node, check.service_id))
        if svc is None:
            return failed(
                ErrorCode.NOT_FOUND,
                f"Missing service registration {check.service_id!r} on node {node!r}",
            )
    cid = check.check_id or check.name
    existing = cat.checks.get((node, cid))
    new = replace(
        check,
        node=node,
        check_id=cid,
        status=check.status or CRITICAL,
        service_name=svc.service if svc else "",
        service_tags=svc.tags if svc else (),
        create_index=existing.create_index if existing else tx.index,
        modify_index=existing.modify_index if existing else tx.index,
    )
    if existing is not None:
        if new == existing:
            return OK
        new = replace(new, modify_index=tx.index)
    cat.checks.put(tx, new)
    _touch_check(store, tx, new)
    if existing is not None and existing.service_id != new.service_id:
        _touch_check(store, tx, existing)
    if new.status == CRITICAL:
        invalidate_check_sessions(store, tx, node, cid)
    return OK


def _touch_check(store: StateStore, tx: WriteTx, check: HealthCheck) -> None:
    tx.touch("checks", "node:" + check.node)
    if check.service_id:
        svc = store.catalog.services.get((check.node, check.service_id))
        if svc is not None:
            tx.touch(*service_keys(svc))
    else:
        touch_node_services(store, tx, check.node)


def delete_check(store: StateStore, tx: WriteTx, node: str, check_id: str) -> Result:
    """Delete one check (no-op if absent); its sessions are invalidated."""
    existing = store.catalog.checks.delete(tx, (node, check_id))
    if existing is None:
        return OK
    _touch_check(store, tx, existing)
    invalidate_check_sessions(store, tx, node, check_id)
    return OK


def delete_service(store: StateStore, tx: WriteTx, node: str, service_id: str) -> Result:
    """Delete a service instance and its checks (no-op if absent)."""
    cat = store.catalog
    svc = cat.services.get((node, service_id))
    if svc is None:
        return OK
    for check in list(cat.checks.by("service", (node, service_id)).values()):
        delete_check(store, tx, node, check.check_id)
    cat.services.delete(tx, (node, service_id))
    tx.touch("services", "node:" + node, *service_keys(svc))
    _drop_empty_service_keys(store, tx, svc)
    return OK


def delete_node(store: StateStore, tx: WriteTx, name: str) -> Result:
    """Delete a node with its services, checks and sessions (no-op if absent)."""
    cat = store.catalog
    if cat.nodes.get(name) is None:
        return OK
    for svc in list(cat.services.by("node", name).values()):
        delete_service(store, tx, name, svc.id)
    for check in list(cat.checks.by("node", name).values()):
        delete_check(store, tx, name, check.check_id)
    invalidate_node_sessions(store, tx, name)
    delete_node_coordinates(store, tx, name)
    cat.nodes.delete(tx, name)
    tx.touch("nodes", "node:" + name)
    tx.drop("node:" + name)
    return OK


def ensure_registration(store: StateStore, tx: WriteTx, req: RegisterRequest) -> Result:
    """/v1/catalog/register: node, then service, then checks; the caller aborts on failure."""
    if not req.skip_node_update or store.catalog.nodes.get(req.node) is None:
        node = Node(
            req.node, req.id, req.address, req.datacenter, req.tagged_addresses, req.node_meta
        )
        result = ensure_node(store, tx, node)
        if not result:
            return result
    if req.service is not None:
        result = ensure_service(store, tx, req.node, req.service)
        if not result:
            return result
    for check in req.checks:
        result = ensure_check(store, tx, check, req.node)
        if not result:
            return result
    return OK


def apply_deregister(store: StateStore, tx: WriteTx, req: DeregisterRequest) -> Result:
    """/v1/catalog/deregister: ServiceID if set, else CheckID if set, else the node."""
    if req.service_id:
        return delete_service(store, tx, req.node, req.service_id)
    if req.check_id:
        return delete_check(store, tx, req.node, req.check_id)
    return delete_node(store, tx, req.node)


# -- reads -------------------------------------------------------------------------------------


def node_meta_matches(node: Node, filters: Mapping[str, str] | None) -> bool:
    """True if the node has every ``key: value`` pair of ``filters``."""
    if not filters:
        return True
    meta = node.meta
    return all(meta.get(k) == v for k, v in filters.items())


def tags_match(tags: tuple[str, ...], wanted: Iterable[str]) -> bool:
    """True if every wanted tag is present, case-insensitively (Consul's tag filter)."""
    have = {t.lower() for t in tags}
    return all(w.lower() in have for w in wanted)


def service_index(store: StateStore, name: str) -> int:
    """X-Consul-Index of a query on service ``name`` (Consul's maxIndexForService)."""
    return max(1, store.fine_index(service_key(name), "nodes", "services", "checks"))


def catalog_nodes(
    store: StateStore, ws: WatchSet | None, node_meta: Mapping[str, str] | None = None
) -> tuple[int, list[Node]]:
    """/v1/catalog/nodes: every node (sorted by name), optionally filtered by node meta."""
    store.watch(ws, "nodes")
    nodes = [n for n in store.catalog.nodes.values() if node_meta_matches(n, node_meta)]
    return max(1, store.index_of("nodes")), nodes


def catalog_services(
    store: StateStore, ws: WatchSet | None, node_meta: Mapping[str, str] | None = None
) -> tuple[int, dict[str, list[str]]]:
    """/v1/catalog/services: service name -> sorted union of its tags."""
    store.watch(ws, "services", "nodes")
    cat = store.catalog
    out: dict[str, list[str]] = {}
    found: dict[str, set[str]] = {}
    for key in cat.services.index_values("name"):
        # One index key holds every spelling ("Web", "web"): list each as registered.
        for svc in cat.services.by("name", key).values():
            node = cat.nodes.get(svc.node)
            if node is not None and node_meta_matches(node, node_meta):
                found.setdefault(svc.service, set()).update(svc.tags)
    for name in sorted(found):
        out[name] = sorted(found[name])
    return max(1, store.index_of("services", "nodes")), out


def _instances(store: StateStore, index: str, name: str) -> list[ServiceInstance]:
    """Instances under ``name`` in ``index`` (service names match without case)."""
    bucket = store.catalog.services.by(index, name if index == "node" else name.lower())
    return [bucket[k] for k in sorted(bucket)]


def catalog_service_nodes(
    store: StateStore,
    ws: WatchSet | None,
    name: str,
    tags: Iterable[str] = (),
    node_meta: Mapping[str, str] | None = None,
) -> tuple[int, list[ServiceNode]]:
    """/v1/catalog/service/:name (``?tag=`` repeated means all tags, ``?node-meta=``)."""
    store.watch(ws, service_key(name))
    wanted = tuple(tags)
    nodes = store.catalog.nodes
    out = []
    for svc in _instances(store, "name", name):
        node = nodes.get(svc.node)
        if node is None or not node_meta_matches(node, node_meta):
            continue
        if wanted and not tags_match(svc.tags, wanted):
            continue
        out.append(ServiceNode(node, svc))
    return service_index(store, name), out


def catalog_connect_service_nodes(
    store: StateStore, ws: WatchSet | None, name: str
) -> tuple[int, list[ServiceNode]]:
    """/v1/catalog/connect/:name: proxies for ``name`` and its Connect-native instances."""
    store.watch(ws, connect_key(name))
    nodes = store.catalog.nodes
    out = []
    for svc in _instances(store, "connect", name):
        node = nodes.get(svc.node)
        if node is not None:
            out.append(ServiceNode(node, svc))
    idx = store.fine_index(connect_key(name), "nodes", "services", "checks")
    return max(1, idx), out


def catalog_node(
    store: StateStore, ws: WatchSet | None, name: str
) -> tuple[int, NodeServices | None]:
    """/v1/catalog/node/:name and /v1/catalog/node-services/:name (None if unknown)."""
    store.watch(ws, "node:" + name)
    idx = max(1, store.fine_index("node:" + name, "nodes", "services"))
    node = store.catalog.nodes.get(name)
    if node is None:
        return idx, None
    return idx, NodeServices(node, tuple(_instances(store, "node", name)))
