"""Which parts of a read's answer a token may see: the read filters.

Registry reads are filtered by read name (``READ_FILTERS``, ``filter_read``),
agent-local answers (members, agent services and checks, events, proxy
reports, canaries) by the filter their route names. Each filter takes the
caller's authorizer and the answer, and returns what is left and whether
anything was removed (``X-Consul-Results-Filtered-By-ACLs``). Not HTTP
specific: the API's routes and the servers' RPC reads (meshd.agent.rpc_rules)
use the same filters, so they live below both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .authorizer import ACLAuthorizer, Permission
from .permissions import config_permission

P = Permission
ItemFilter = Callable[[ACLAuthorizer, Any], tuple[Any, bool]]


def _keep(items: list[Any], ok: Callable[[Any], bool]) -> tuple[list[Any], bool]:
    kept = [i for i in items if ok(i)]
    return kept, len(kept) != len(items)


def _svc_node_ok(authz: ACLAuthorizer, row: Any, svc: str, node: str) -> bool:
    return authz.service_read(str(row.get(svc) or "")) and authz.node_read(str(row.get(node) or ""))


def filter_nodes(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    return _keep(value or [], lambda n: authz.node_read(str(n.get("Node") or "")))


def filter_service_names(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    items = list((value or {}).items())
    allowed = authz.allowed_names(P.SERVICE_READ, (k for k, _ in items))
    kept = {k: v for (k, v), ok in zip(items, allowed, strict=True) if ok}
    return kept, len(kept) != len(items)


def filter_service_nodes(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    return _keep(value or [], lambda r: _svc_node_ok(authz, r, "ServiceName", "Node"))


def filter_health_rows(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    def ok(row: Any) -> bool:
        return authz.node_read(str((row.get("Node") or {}).get("Node") or "")) and (
            authz.service_read(str((row.get("Service") or {}).get("Service") or ""))
        )

    return _keep(value or [], ok)


def filter_checks(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    def ok(c: Any) -> bool:
        svc = str(c.get("ServiceName") or "")
        return authz.node_read(str(c.get("Node") or "")) and (not svc or authz.service_read(svc))

    return _keep(value or [], ok)


def filter_node_services(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    if not value:
        return value, False
    node = value.get("Node") or {}
    if not authz.node_read(str(node.get("Node") or "")):
        return None, True
    services = value.get("Services")
    if isinstance(services, Mapping):
        kept_map = {k: v for k, v in services.items() if authz.service_read(v.get("Service", ""))}
        return {**value, "Services": kept_map}, len(kept_map) != len(services)
    if isinstance(services, list):
        kept, filtered = _keep(services, lambda s: authz.service_read(s.get("Service", "")))
        return {**value, "Services": kept}, filtered
    return value, False


def filter_kv(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    return _keep(value or [], lambda e: authz.key_read(str(e.get("Key") or "")))


def filter_keys(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    return _keep(value or [], lambda k: authz.key_read(str(k)))


def filter_sessions(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    return _keep(value or [], lambda s: authz.session_read(str(s.get("Node") or "")))


def filter_intentions(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    return _keep(value or [], lambda i: authz.intention_read(str(i.get("DestinationName") or "")))


def filter_intention_match(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    out, filtered = {}, False
    for name, items in (value or {}).items():
        out[name], dropped = filter_intentions(authz, items)
        filtered = filtered or dropped
    return out, filtered


def filter_agent_services(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    kept = {k: v for k, v in (value or {}).items() if authz.service_read(v.get("Service", ""))}
    return kept, len(kept) != len(value or {})


def filter_agent_checks(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    kept = {k: v for k, v in (value or {}).items() if filter_checks(authz, [v])[0]}
    return kept, len(kept) != len(value or {})


def filter_members(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    return _keep(value or [], lambda m: authz.node_read(str(m.get("Name") or "")))


def filter_events(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    return _keep(value or [], lambda e: authz.event_read(str(e.get("Name") or "")))


def filter_coordinates(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    return _keep(value or [], lambda c: authz.node_read(str(c.get("Node") or "")))


def filter_proxy_reports(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    return _keep(value or [], lambda r: authz.service_read(str(r.get("Service") or "")))


def filter_canaries(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    return _keep(value or [], lambda c: authz.service_read(str(c.get("Service") or "")))


def filter_config_entries(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    def ok(e: Any) -> bool:
        permission = config_permission(str(e.get("Kind") or ""), False)
        if permission == P.MESH_READ:
            return authz.allowed(permission, "")
        return authz.allowed(permission, str(e.get("Name") or ""))

    return _keep(value or [], ok)


READ_FILTERS: dict[str, ItemFilter] = {
    "coordinate.nodes": filter_coordinates,
    "catalog.nodes": filter_nodes,
    "catalog.services": filter_service_names,
    "catalog.service": filter_service_nodes,
    "catalog.connect": filter_service_nodes,
    "catalog.node": filter_node_services,
    "catalog.node_services": filter_node_services,
    "health.node": filter_checks,
    "health.checks": filter_checks,
    "health.service": filter_health_rows,
    "health.state": filter_checks,
    "kv.get": filter_kv,
    "kv.list": filter_kv,
    "kv.keys": filter_keys,
    "session.info": filter_sessions,
    "session.node": filter_sessions,
    "session.list": filter_sessions,
    "intentions.list": filter_intentions,
    "intentions.match": filter_intention_match,
    "config.list": filter_config_entries,
    "health.ingress": filter_health_rows,
    "canary.list": filter_canaries,
}


# Reads whose answers hold only services and nodes: a token that may read
# every service and node (Consul's ServiceReadAll/NodeReadAll) keeps them whole.
_CATALOG_READS = frozenset(
    name for name in READ_FILTERS if name.startswith(("catalog.", "health."))
)


def filter_read(name: str, authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    """``value`` of read ``name`` with what ``authz`` may not read removed."""
    fn = READ_FILTERS.get(name)
    if fn is None or value is None:
        return value, False
    if name in _CATALOG_READS and authz.service_read_all() and authz.node_read_all():
        return value, False
    return fn(authz, value)
