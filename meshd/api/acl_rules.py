"""Which ACL permission every HTTP endpoint needs: the one table.

Each route (name and method) maps to a ``Rule``: checks that must pass
before the handler runs (a ``PermissionDenied`` becomes Consul's 403), and
for list endpoints how results are filtered to what the token may read
(``X-Consul-Results-Filtered-By-ACLs: true`` when something was removed).
Registry reads are filtered by read name (``READ_FILTERS``), agent-local
answers by the route's ``response_filter``. A route missing here makes
``build_router`` fail, so no endpoint can ship without a rule. The
permissions follow Consul's endpoint code and its API docs' "ACL Required"
tables (https://developer.hashicorp.com/consul/api-docs).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..acl import ACLAuthorizer, Permission
from ..agent.acl_commands import config_entry_write, config_permission, kv_txn_permission
from ..agent.wire import ReadOptions
from .agent import registration_targets
from .agent_checks import check_targets

if TYPE_CHECKING:
    from ..agent.agent import Agent
    from ..http import Request

P = Permission
Check = Callable[["Agent", "Request", ACLAuthorizer], Awaitable[None]]
ItemFilter = Callable[[ACLAuthorizer, Any], tuple[Any, bool]]


@dataclass(frozen=True)
class Rule:
    """``check`` runs before the handler; ``response_filter`` trims a JSON
    answer the handler built; ``public`` marks endpoints Consul serves
    without any permission."""

    check: Check | None = None
    response_filter: ItemFilter | None = None
    public: bool = False
    handler_checks: bool = False  # the handler enforces (it alone knows the resource)
    ignores_token: bool = False  # the request's token is not resolved (Consul's login)


def _body(req: Request) -> Any:
    try:
        return json.loads(req.body) if req.body else {}
    except ValueError:
        return {}  # the handler answers 400; nothing is granted from a bad body


def _field(obj: Any, *names: str) -> str:
    for name in names:
        if isinstance(obj, Mapping) and isinstance(obj.get(name), str):
            return str(obj[name])
    return ""


def need(permission: Permission, resource: Callable[[Agent, Request], str] | None = None) -> Rule:
    """A rule requiring ``permission`` on the resource ``resource`` names."""

    async def check(agent: Agent, req: Request, authz: ACLAuthorizer) -> None:
        authz.require(permission, resource(agent, req) if resource else "")

    return Rule(check=check)


def param(name: str) -> Callable[[Agent, Request], str]:
    return lambda agent, req: req.path_params.get(name, "")


def own_node(agent: Agent, req: Request) -> str:
    return agent.node_name


def query(name: str) -> Callable[[Agent, Request], str]:
    return lambda agent, req: req.query_value(name, "")


# ------------------------------------------------------------------ filters


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


# ------------------------------------------------------------- checks


def _service_of_id(agent: Agent, service_id: str) -> str:
    defn = agent.local.services.get(service_id)
    return defn.service.service if defn is not None else service_id


async def _kv_get(agent: Agent, req: Request, authz: ACLAuthorizer) -> None:
    if "recurse" in req.query or "keys" in req.query:
        return  # answers are filtered to readable keys
    authz.require(P.KEY_READ, req.path_params.get("key", ""))


async def _kv_delete(agent: Agent, req: Request, authz: ACLAuthorizer) -> None:
    key = req.path_params.get("key", "")
    if "recurse" in req.query:
        authz.require(P.KEY_WRITE_PREFIX, key)
    else:
        authz.require(P.KEY_WRITE, key)


async def _agent_service_register(agent: Agent, req: Request, authz: ACLAuthorizer) -> None:
    body = _body(req)
    targets = registration_targets(agent, body)
    if targets:  # the body parses: the real names (sidecar, replaced IDs)
        _require_targets(authz, targets)
        return
    name = _field(body, "Name", "name")
    authz.require(P.SERVICE_WRITE, name)
    connect = body.get("Connect") or body.get("connect") if isinstance(body, Mapping) else None
    if isinstance(connect, Mapping) and (
        connect.get("SidecarService") is not None or connect.get("sidecar_service") is not None
    ):
        authz.require(P.SERVICE_WRITE, f"{name}-sidecar-proxy")


def _require_targets(authz: ACLAuthorizer, targets: list[tuple[str, str]]) -> None:
    for kind, target in targets:
        authz.require(P.SERVICE_WRITE if kind == "service" else P.NODE_WRITE, target)


async def _agent_service_by_id(agent: Agent, req: Request, authz: ACLAuthorizer) -> None:
    authz.require(P.SERVICE_WRITE, _service_of_id(agent, req.path_params.get("service_id", "")))


def _proxy_destination_of_id(agent: Agent, service_id: str) -> str:
    defn = agent.local.services.get(service_id)
    if defn is None:
        return service_id
    return defn.service.destination or defn.service.service


async def _proxy_ejections_read(agent: Agent, req: Request, authz: ACLAuthorizer) -> None:
    sid = req.path_params.get("service_id", "")
    authz.require(P.SERVICE_READ, _proxy_destination_of_id(agent, sid))


async def _proxy_ejections_write(agent: Agent, req: Request, authz: ACLAuthorizer) -> None:
    sid = req.path_params.get("service_id", "")
    authz.require(P.SERVICE_WRITE, _proxy_destination_of_id(agent, sid))


async def _explain(agent: Agent, req: Request, authz: ACLAuthorizer) -> None:
    """service:read on Source and Destination (body or query); a missing one
    is left to the handler's 400."""
    body = _body(req) if req.method == "POST" else {}
    for key in ("Source", "Destination"):
        name = _field(body, key) or req.query_value(key.lower(), "")
        if name:
            authz.require(P.SERVICE_READ, name)


def filter_proxy_reports(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    return _keep(value or [], lambda r: authz.service_read(str(r.get("Service") or "")))


async def _agent_service_read(agent: Agent, req: Request, authz: ACLAuthorizer) -> None:
    authz.require(P.SERVICE_READ, _service_of_id(agent, req.path_params.get("service_id", "")))


def _check_target(authz: ACLAuthorizer, agent: Agent, service_name: str) -> None:
    if service_name:
        authz.require(P.SERVICE_WRITE, service_name)
    else:
        authz.require(P.NODE_WRITE, agent.node_name)


async def _agent_check_register(agent: Agent, req: Request, authz: ACLAuthorizer) -> None:
    sid = _field(_body(req), "ServiceID", "ServiceId", "service_id")
    _check_target(authz, agent, _service_of_id(agent, sid) if sid else "")
    _require_targets(authz, check_targets(agent, _body(req)))


async def _agent_check_by_id(agent: Agent, req: Request, authz: ACLAuthorizer) -> None:
    defn = agent.local.checks.get(req.path_params.get("check_id", ""))
    _check_target(authz, agent, defn.check.service_name if defn is not None else "")


async def _catalog_service_name(agent: Agent, node: str, service_id: str) -> str:
    """The name of the service registered as ``service_id`` on ``node`` in
    the catalog ("" if none)."""
    if not node or not service_id:
        return ""
    found = await agent.read("catalog.node", {"name": node}, ReadOptions())
    services = found.value.get("Services") if isinstance(found.value, Mapping) else None
    existing = services.get(service_id) if isinstance(services, Mapping) else None
    return _field(existing, "Service")


async def _catalog_register(agent: Agent, req: Request, authz: ACLAuthorizer) -> None:
    """Consul's vetRegisterWithACL: node:write, service:write on the service,
    and on the service an existing ID belongs to (re-registering an ID
    replaces that service: issue 13 item 4), and on the service of a check."""
    body = _body(req)
    node = _field(body, "Node")
    authz.require(P.NODE_WRITE, node)
    service = body.get("Service") if isinstance(body, Mapping) else None
    service_id = ""
    if isinstance(service, Mapping):
        authz.require(P.SERVICE_WRITE, _field(service, "Service"))
        service_id = _field(service, "ID") or _field(service, "Service")
        if existing := await _catalog_service_name(agent, node, service_id):
            authz.require(P.SERVICE_WRITE, existing)
    checks: list[Any] = []
    if isinstance(body, Mapping):
        checks = [body.get("Check"), *(body.get("Checks") or [])]
    for check in checks:
        if isinstance(check, Mapping) and _field(check, "ServiceName"):
            authz.require(P.SERVICE_WRITE, _field(check, "ServiceName"))
        sid = _field(check, "ServiceID")
        if sid and sid != service_id:
            existing = await _catalog_service_name(agent, node, sid)
            authz.require(P.SERVICE_WRITE, existing or sid)


async def _catalog_deregister(agent: Agent, req: Request, authz: ACLAuthorizer) -> None:
    authz.require(P.NODE_WRITE, _field(_body(req), "Node"))


async def _intention_by_id(agent: Agent, req: Request, authz: ACLAuthorizer) -> None:
    found = await agent.read(
        "intentions.get", {"id": req.path_params.get("uuid", "")}, ReadOptions()
    )
    existing = _field(found.value, "DestinationName")
    write = req.method != "GET"
    perm = P.INTENTION_WRITE if write else P.INTENTION_READ
    if existing:
        authz.require(perm, existing)
    if req.method == "PUT":
        authz.require(P.INTENTION_WRITE, _field(_body(req), "DestinationName"))


async def _intention_exact(agent: Agent, req: Request, authz: ACLAuthorizer) -> None:
    perm = P.INTENTION_READ if req.method == "GET" else P.INTENTION_WRITE
    authz.require(perm, req.query_value("destination", ""))


async def _session_write_by_id(agent: Agent, req: Request, authz: ACLAuthorizer) -> None:
    found = await agent.read("session.info", {"id": req.path_params.get("uuid", "")}, ReadOptions())
    node = _field((found.value or [{}])[0], "Node") if found.value else agent.node_name
    authz.require(P.SESSION_WRITE, node)


async def _session_create(agent: Agent, req: Request, authz: ACLAuthorizer) -> None:
    authz.require(P.SESSION_WRITE, _field(_body(req), "Node") or agent.node_name)


async def _txn(agent: Agent, req: Request, authz: ACLAuthorizer) -> None:
    ops = _body(req)
    for op in ops if isinstance(ops, list) else []:
        if not isinstance(op, Mapping):
            continue
        if isinstance(op.get("KV"), Mapping):
            kv = op["KV"]
            authz.require(kv_txn_permission(_field(kv, "Verb")), _field(kv, "Key"))
        for kind, perm_read, perm_write, key in (
            ("Node", P.NODE_READ, P.NODE_WRITE, "Node"),
            ("Service", P.SERVICE_READ, P.SERVICE_WRITE, "Service"),
            ("Check", P.NODE_READ, P.NODE_WRITE, "Check"),
        ):
            sub = op.get(kind)
            if not isinstance(sub, Mapping):
                continue
            read_only = _field(sub, "Verb") == "get"
            target = sub.get(key) if isinstance(sub.get(key), Mapping) else sub
            name = _field(target, "Node", "Service", "Name")
            if kind == "Service" and not read_only:  # a set or delete replaces that ID
                sid = _field(target, "ID") or name
                if existing := await _catalog_service_name(agent, _field(sub, "Node"), sid):
                    authz.require(P.SERVICE_WRITE, existing)
            if kind == "Check" and _field(target, "ServiceName"):
                perm_read, perm_write, name = (
                    P.SERVICE_READ,
                    P.SERVICE_WRITE,
                    _field(target, "ServiceName"),
                )
            authz.require(perm_read if read_only else perm_write, name)


# Config entries: service-scoped kinds need service (or intention) rights on
# the entry's name, the mesh-wide kinds mesh (operator) rights, as Consul's
# ConfigEntry.CanRead/CanWrite.
async def _config_entry(agent: Agent, req: Request, authz: ACLAuthorizer) -> None:
    if req.method == "PUT":
        body = _body(req)
        kind, name = _field(body, "Kind", "kind").lower(), _field(body, "Name", "name")
    else:
        kind, name = req.path_params.get("kind", "").lower(), req.path_params.get("name", "")
    permission = config_permission(kind, req.method != "GET")
    authz.require(permission, name if permission not in (P.MESH_READ, P.MESH_WRITE) else "")


async def _config_batch(agent: Agent, req: Request, authz: ACLAuthorizer) -> None:
    """meshd's atomic multi-entry write: each entry as its single PUT."""
    body = _body(req)
    for entry in body if isinstance(body, list) else []:
        kind, name = _field(entry, "Kind", "kind").lower(), _field(entry, "Name", "name")
        config_entry_write(authz, kind, name)


def filter_config_entries(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    def ok(e: Any) -> bool:
        permission = config_permission(str(e.get("Kind") or ""), False)
        if permission == P.MESH_READ:
            return authz.allowed(permission, "")
        return authz.allowed(permission, str(e.get("Name") or ""))

    return _keep(value or [], ok)


READ_FILTERS["config.list"] = filter_config_entries
READ_FILTERS["health.ingress"] = filter_health_rows


async def _agent_health_by_id(agent: Agent, req: Request, authz: ACLAuthorizer) -> None:
    authz.require(P.SERVICE_READ, _service_of_id(agent, req.path_params.get("service_id", "")))


def filter_canaries(authz: ACLAuthorizer, value: Any) -> tuple[Any, bool]:
    return _keep(value or [], lambda c: authz.service_read(str(c.get("Service") or "")))


PUBLIC = Rule(public=True)
FILTERED = Rule()

RULES: dict[tuple[str, str], Rule] = {
    # agent
    ("agent.self", "GET"): need(P.AGENT_READ, own_node),
    ("agent.members", "GET"): Rule(response_filter=filter_members),
    ("agent.host", "GET"): need(P.OPERATOR_READ),
    ("agent.metrics", "GET"): need(P.AGENT_READ, own_node),
    ("agent.join", "PUT"): need(P.AGENT_WRITE, own_node),
    ("agent.leave", "PUT"): need(P.AGENT_WRITE, own_node),
    ("agent.force_leave", "PUT"): need(P.OPERATOR_WRITE),
    ("agent.reload", "PUT"): need(P.AGENT_WRITE, own_node),
    ("agent.token", "PUT"): need(P.ACL_WRITE),
    ("agent.maintenance", "PUT"): need(P.NODE_WRITE, own_node),
    ("agent.services", "GET"): Rule(response_filter=filter_agent_services),
    ("agent.service", "GET"): Rule(check=_agent_service_read),
    ("agent.service.register", "PUT"): Rule(check=_agent_service_register),
    ("agent.service.deregister", "PUT"): Rule(check=_agent_service_by_id),
    ("agent.service.maintenance", "PUT"): Rule(check=_agent_service_by_id),
    ("agent.checks", "GET"): Rule(response_filter=filter_agent_checks),
    ("agent.check.register", "PUT"): Rule(check=_agent_check_register),
    ("agent.check.deregister", "PUT"): Rule(check=_agent_check_by_id),
    ("agent.check.pass", "PUT"): Rule(check=_agent_check_by_id),
    ("agent.check.warn", "PUT"): Rule(check=_agent_check_by_id),
    ("agent.check.fail", "PUT"): Rule(check=_agent_check_by_id),
    ("agent.check.update", "PUT"): Rule(check=_agent_check_by_id),
    ("agent.connect.authorize", "POST"): need(
        P.SERVICE_WRITE, lambda agent, req: _field(_body(req), "Target")
    ),
    ("agent.connect.ca.leaf", "GET"): need(P.SERVICE_WRITE, param("service")),
    ("agent.connect.ca.roots", "GET"): PUBLIC,
    # meshd's proxy ejections: read by the proxy's service, written by its proxy
    ("agent.connect.proxy_ejections", "GET"): Rule(response_filter=filter_proxy_reports),
    ("agent.connect.proxy_ejections.one", "GET"): Rule(check=_proxy_ejections_read),
    ("agent.connect.proxy_ejections.one", "PUT"): Rule(check=_proxy_ejections_write),
    # catalog and health: answers filtered to what the token may read
    ("catalog.register", "PUT"): Rule(check=_catalog_register),
    ("catalog.deregister", "PUT"): Rule(check=_catalog_deregister),
    ("catalog.datacenters", "GET"): PUBLIC,
    ("catalog.nodes", "GET"): FILTERED,
    ("catalog.services", "GET"): FILTERED,
    ("catalog.service", "GET"): FILTERED,
    ("catalog.connect", "GET"): FILTERED,
    ("catalog.node", "GET"): FILTERED,
    ("catalog.node_services", "GET"): FILTERED,
    ("health.node", "GET"): FILTERED,
    ("health.checks", "GET"): FILTERED,
    ("health.service", "GET"): FILTERED,
    ("health.connect", "GET"): FILTERED,
    # Consul: service:read on the chain's service
    ("discovery_chain", "GET"): need(P.SERVICE_READ, param("service")),
    ("discovery_chain", "POST"): need(P.SERVICE_READ, param("service")),
    ("health.state", "GET"): FILTERED,
    # connect
    ("connect.ca.roots", "GET"): PUBLIC,
    ("connect.ca.config", "GET"): need(P.OPERATOR_READ),
    ("connect.ca.config.set", "PUT"): need(P.OPERATOR_WRITE),
    ("intentions.list", "GET"): FILTERED,
    ("intentions.match", "GET"): FILTERED,
    ("intentions.check", "GET"): need(P.SERVICE_READ, query("destination")),
    ("intentions.create", "POST"): need(
        P.INTENTION_WRITE, lambda agent, req: _field(_body(req), "DestinationName")
    ),
    ("intentions.exact", "GET"): Rule(check=_intention_exact),
    ("intentions.exact", "PUT"): Rule(check=_intention_exact),
    ("intentions.exact", "DELETE"): Rule(check=_intention_exact),
    ("intentions.id", "GET"): Rule(check=_intention_by_id),
    ("intentions.id", "PUT"): Rule(check=_intention_by_id),
    ("intentions.id", "DELETE"): Rule(check=_intention_by_id),
    # coordinates and events
    ("coordinate.datacenters", "GET"): PUBLIC,
    ("coordinate.nodes", "GET"): Rule(response_filter=filter_coordinates),
    ("coordinate.node", "GET"): need(P.NODE_READ, param("node")),
    ("event.fire", "PUT"): need(P.EVENT_WRITE, param("name")),
    ("event.list", "GET"): Rule(response_filter=filter_events),
    # kv, sessions, transactions
    ("kv.get", "GET"): Rule(check=_kv_get),
    ("kv.put", "PUT"): need(P.KEY_WRITE, param("key")),
    ("kv.delete", "DELETE"): Rule(check=_kv_delete),
    ("session.create", "PUT"): Rule(check=_session_create),
    ("session.destroy", "PUT"): Rule(check=_session_write_by_id),
    ("session.renew", "PUT"): Rule(check=_session_write_by_id),
    ("session.info", "GET"): FILTERED,
    ("session.node", "GET"): FILTERED,
    ("session.list", "GET"): FILTERED,
    ("txn", "PUT"): Rule(check=_txn),
    # operator, snapshot, status
    ("operator.autopilot.configuration", "GET"): need(P.OPERATOR_READ),
    ("operator.autopilot.health", "GET"): need(P.OPERATOR_READ),
    ("operator.raft.configuration", "GET"): need(P.OPERATOR_READ),
    ("operator.raft.peer", "DELETE"): need(P.OPERATOR_WRITE),
    ("operator.raft.transfer_leader", "POST"): need(P.OPERATOR_WRITE),
    ("snapshot.save", "GET"): need(P.SNAPSHOT),
    ("snapshot.restore", "PUT"): need(P.SNAPSHOT),
    ("status.leader", "GET"): PUBLIC,
    ("status.peers", "GET"): PUBLIC,
    # config entries (consul-compat2)
    ("config.apply", "PUT"): Rule(check=_config_entry),
    ("config.get", "GET"): Rule(check=_config_entry),
    ("config.delete", "DELETE"): Rule(check=_config_entry),
    ("config.batch", "PUT"): Rule(check=_config_batch),
    ("config.list", "GET"): FILTERED,
    # gateways, usage, keyring, coordinates, local health (consul-compat2)
    ("catalog.gateway_services", "GET"): need(P.SERVICE_READ, param("gateway")),
    ("health.ingress", "GET"): FILTERED,
    ("operator.usage", "GET"): need(P.OPERATOR_READ),
    ("operator.keyring", "GET"): need(P.KEYRING_READ),
    ("operator.keyring", "POST"): need(P.KEYRING_WRITE),
    ("operator.keyring", "PUT"): need(P.KEYRING_WRITE),
    ("operator.keyring", "DELETE"): need(P.KEYRING_WRITE),
    ("coordinate.update", "PUT"): need(P.NODE_WRITE, lambda agent, req: _field(_body(req), "Node")),
    ("agent.health.id", "GET"): Rule(check=_agent_health_by_id),
    ("agent.health.name", "GET"): need(P.SERVICE_READ, param("service_name")),
    # the web UI's static files (meshd/api/ui.py): the pages' API calls carry the token
    ("ui.index", "GET"): Rule(public=True, ignores_token=True),
    ("ui.redirect", "GET"): Rule(public=True, ignores_token=True),
    ("ui.static", "GET"): Rule(public=True, ignores_token=True),
    # streaming and operator additions (cli-commands)
    ("agent.monitor", "GET"): need(P.AGENT_READ, own_node),
    ("operator.autopilot.configuration", "PUT"): need(P.OPERATOR_WRITE),
    ("operator.autopilot.state", "GET"): need(P.OPERATOR_READ),
    # observability (prom-sd): answers hold only what the token may read
    ("prometheus.sd", "GET"): FILTERED,
    ("internal.ui.service_topology", "GET"): need(P.SERVICE_READ, param("service")),
    # tracing (obs-tracing): the handlers check every span's service (meshd/api/traces.py)
    ("internal.traces.spans", "PUT"): Rule(handler_checks=True),
    ("internal.traces", "GET"): Rule(handler_checks=True),
    ("internal.traces.lint", "GET"): Rule(handler_checks=True),
    ("internal.traces.trace", "GET"): Rule(handler_checks=True),
    # the mesh graph (meshd/api/mesh_graph.py): the handlers check each edge's services
    ("internal.telemetry.proxy_stats", "PUT"): Rule(handler_checks=True),
    ("internal.telemetry.proxy_stats", "GET"): Rule(handler_checks=True),
    ("internal.ui.mesh_graph", "GET"): Rule(handler_checks=True),
    # meshd explain: service:read on both ends of the described request
    ("internal.explain", "GET"): Rule(check=_explain),
    ("internal.explain", "POST"): Rule(check=_explain),
    # canaries (issue 19): service rights on the canary's service
    ("internal.canary.list", "GET"): Rule(response_filter=filter_canaries),
    ("internal.canary.get", "GET"): need(P.SERVICE_READ, param("service")),
    ("internal.canary.start", "POST"): need(P.SERVICE_WRITE, param("service")),
    ("internal.canary.pause", "PUT"): need(P.SERVICE_WRITE, param("service")),
    ("internal.canary.resume", "PUT"): need(P.SERVICE_WRITE, param("service")),
    ("internal.canary.abort", "PUT"): need(P.SERVICE_WRITE, param("service")),
    # config write --dry-run (meshd/api/dry_run.py): it reveals traffic, so the
    # rights the write needs; samples are checked per service in the handlers
    ("internal.config.dry_run", "POST"): Rule(check=_config_batch),
    ("internal.config.samples", "PUT"): Rule(handler_checks=True),
    ("internal.config.samples", "GET"): Rule(handler_checks=True),
}


# /v1/acl/* decide inside their handlers, as Consul's ACL endpoints do: the
# resource is the token itself (token/self), or needs the stored object.
HANDLER_CHECKS = Rule(handler_checks=True)
# Consul's /v1/acl/login does not parse X-Consul-Token: a stale token left in
# a client's environment must not make a fresh login fail with "ACL not found".
LOGIN = Rule(handler_checks=True, ignores_token=True)


def rule_for(name: str, method: str) -> Rule:
    """The rule of route ``name`` for ``method`` (HEAD follows GET). Raises
    ``KeyError`` when the table lacks it."""
    if name == "acl.login":
        return LOGIN
    if name.startswith("acl."):
        return HANDLER_CHECKS
    return RULES[(name, "GET" if method == "HEAD" else method)]
