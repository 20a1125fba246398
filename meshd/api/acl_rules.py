"""Which ACL permission every HTTP endpoint needs: the rules and checks.

Each row of the route table (meshd/api/routes.py ``ROUTES``) carries a
``Rule`` built from these; routes of modules not yet converted to rows find
theirs in ``RULES`` by (route name, method). A rule holds checks that must pass
before the handler runs (a ``PermissionDenied`` becomes Consul's 403), and
for list endpoints how results are filtered to what the token may read
(``X-Consul-Results-Filtered-By-ACLs: true`` when something was removed).
Registry reads are filtered by read name (meshd.acl.read_filters), agent-local
answers by the route's ``response_filter``. A route without a rule makes
``build_router`` fail, so no endpoint can ship without one. The
permissions follow Consul's endpoint code and its API docs' "ACL Required"
tables (https://developer.hashicorp.com/consul/api-docs).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..acl import ACLAuthorizer, Permission
from ..acl.permissions import config_entry_write, config_permission, kv_txn_permission
from ..acl.read_filters import ItemFilter
from ..acl.read_filters import filter_service_names as filter_service_names  # bench/acl_bench.py
from ..wire import ReadOptions
from . import ports
from .agent import registration_targets
from .agent_checks import check_targets


class Ports(ports.Registry, ports.LocalAgent, ports.Connect, Protocol):
    """What this module needs from the agent."""


if TYPE_CHECKING:
    from ..http import Request

P = Permission
Check = Callable[[Ports, "Request", ACLAuthorizer], Awaitable[None]]


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


def need(permission: Permission, resource: Callable[[Ports, Request], str] | None = None) -> Rule:
    """A rule requiring ``permission`` on the resource ``resource`` names."""

    async def check(agent: Ports, req: Request, authz: ACLAuthorizer) -> None:
        authz.require(permission, resource(agent, req) if resource else "")

    return Rule(check=check)


def param(name: str) -> Callable[[Ports, Request], str]:
    return lambda agent, req: req.path_params.get(name, "")


def own_node(agent: Ports, req: Request) -> str:
    return agent.node_name


def query(name: str) -> Callable[[Ports, Request], str]:
    return lambda agent, req: req.query_value(name, "")


# ------------------------------------------------------------- checks


def _service_of_id(agent: Ports, service_id: str) -> str:
    defn = agent.local.services.get(service_id)
    return defn.service.service if defn is not None else service_id


async def kv_get(agent: Ports, req: Request, authz: ACLAuthorizer) -> None:
    if "recurse" in req.query or "keys" in req.query:
        return  # answers are filtered to readable keys
    authz.require(P.KEY_READ, req.path_params.get("key", ""))


async def kv_delete(agent: Ports, req: Request, authz: ACLAuthorizer) -> None:
    key = req.path_params.get("key", "")
    if "recurse" in req.query:
        authz.require(P.KEY_WRITE_PREFIX, key)
    else:
        authz.require(P.KEY_WRITE, key)


async def agent_service_register(agent: Ports, req: Request, authz: ACLAuthorizer) -> None:
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


async def agent_service_by_id(agent: Ports, req: Request, authz: ACLAuthorizer) -> None:
    authz.require(P.SERVICE_WRITE, _service_of_id(agent, req.path_params.get("service_id", "")))


def _proxy_destination_of_id(agent: Ports, service_id: str) -> str:
    defn = agent.local.services.get(service_id)
    if defn is None:
        return service_id
    return defn.service.destination or defn.service.service


async def proxy_ejections_read(agent: Ports, req: Request, authz: ACLAuthorizer) -> None:
    sid = req.path_params.get("service_id", "")
    authz.require(P.SERVICE_READ, _proxy_destination_of_id(agent, sid))


async def proxy_ejections_write(agent: Ports, req: Request, authz: ACLAuthorizer) -> None:
    sid = req.path_params.get("service_id", "")
    authz.require(P.SERVICE_WRITE, _proxy_destination_of_id(agent, sid))


async def explain_check(agent: Ports, req: Request, authz: ACLAuthorizer) -> None:
    """service:read on Source and Destination (body or query); a missing one
    is left to the handler's 400."""
    body = _body(req) if req.method == "POST" else {}
    for key in ("Source", "Destination"):
        name = _field(body, key) or req.query_value(key.lower(), "")
        if name:
            authz.require(P.SERVICE_READ, name)


async def agent_service_read(agent: Ports, req: Request, authz: ACLAuthorizer) -> None:
    authz.require(P.SERVICE_READ, _service_of_id(agent, req.path_params.get("service_id", "")))


def _check_target(authz: ACLAuthorizer, agent: Ports, service_name: str) -> None:
    if service_name:
        authz.require(P.SERVICE_WRITE, service_name)
    else:
        authz.require(P.NODE_WRITE, agent.node_name)


async def agent_check_register(agent: Ports, req: Request, authz: ACLAuthorizer) -> None:
    sid = _field(_body(req), "ServiceID", "ServiceId", "service_id")
    _check_target(authz, agent, _service_of_id(agent, sid) if sid else "")
    _require_targets(authz, check_targets(agent, _body(req)))


async def agent_check_by_id(agent: Ports, req: Request, authz: ACLAuthorizer) -> None:
    defn = agent.local.checks.get(req.path_params.get("check_id", ""))
    _check_target(authz, agent, defn.check.service_name if defn is not None else "")


async def _catalog_service_name(agent: Ports, node: str, service_id: str) -> str:
    """The name of the service registered as ``service_id`` on ``node`` in
    the catalog ("" if none)."""
    if not node or not service_id:
        return ""
    found = await agent.read("catalog.node", {"name": node}, ReadOptions())
    services = found.value.get("Services") if isinstance(found.value, Mapping) else None
    existing = services.get(service_id) if isinstance(services, Mapping) else None
    return _field(existing, "Service")


async def catalog_register(agent: Ports, req: Request, authz: ACLAuthorizer) -> None:
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


async def catalog_deregister(agent: Ports, req: Request, authz: ACLAuthorizer) -> None:
    authz.require(P.NODE_WRITE, _field(_body(req), "Node"))


async def intention_by_id(agent: Ports, req: Request, authz: ACLAuthorizer) -> None:
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


async def intention_exact(agent: Ports, req: Request, authz: ACLAuthorizer) -> None:
    perm = P.INTENTION_READ if req.method == "GET" else P.INTENTION_WRITE
    authz.require(perm, req.query_value("destination", ""))


async def session_write_by_id(agent: Ports, req: Request, authz: ACLAuthorizer) -> None:
    found = await agent.read("session.info", {"id": req.path_params.get("uuid", "")}, ReadOptions())
    node = _field((found.value or [{}])[0], "Node") if found.value else agent.node_name
    authz.require(P.SESSION_WRITE, node)


async def session_create(agent: Ports, req: Request, authz: ACLAuthorizer) -> None:
    authz.require(P.SESSION_WRITE, _field(_body(req), "Node") or agent.node_name)


async def txn_check(agent: Ports, req: Request, authz: ACLAuthorizer) -> None:
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
async def config_entry(agent: Ports, req: Request, authz: ACLAuthorizer) -> None:
    if req.method == "PUT":
        body = _body(req)
        kind, name = _field(body, "Kind", "kind").lower(), _field(body, "Name", "name")
    else:
        kind, name = req.path_params.get("kind", "").lower(), req.path_params.get("name", "")
    permission = config_permission(kind, req.method != "GET")
    authz.require(permission, name if permission not in (P.MESH_READ, P.MESH_WRITE) else "")


async def config_batch(agent: Ports, req: Request, authz: ACLAuthorizer) -> None:
    """meshd's atomic multi-entry write: each entry as its single PUT."""
    body = _body(req)
    for entry in body if isinstance(body, list) else []:
        kind, name = _field(entry, "Kind", "kind").lower(), _field(entry, "Name", "name")
        config_entry_write(authz, kind, name)


async def agent_health_by_id(agent: Ports, req: Request, authz: ACLAuthorizer) -> None:
    authz.require(P.SERVICE_READ, _service_of_id(agent, req.path_params.get("service_id", "")))


PUBLIC = Rule(public=True)
FILTERED = Rule()


def body_field(name: str) -> Callable[[Ports, Request], str]:
    """The resource a JSON body's string field ``name`` names ("" if none)."""
    return lambda agent, req: _field(_body(req), name)


# The rules of the routes not in meshd/api/routes.py's ROUTES rows (their
# modules still add routes with ``register``: ``Legacy`` rows), by (route
# name, method). A module added the old way puts its routes' rules here.
RULES: dict[tuple[str, str], Rule] = {}


# /v1/acl/* decide inside their handlers, as Consul's ACL endpoints do: the
# resource is the token itself (token/self), or needs the stored object.
HANDLER_CHECKS = Rule(handler_checks=True)
# Consul's /v1/acl/login does not parse X-Consul-Token: a stale token left in
# a client's environment must not make a fresh login fail with "ACL not found".
LOGIN = Rule(handler_checks=True, ignores_token=True)


def rule_for(name: str, method: str) -> Rule:
    """The rule of route ``name`` for ``method`` (HEAD follows GET). Raises
    ``KeyError`` when the table lacks it."""
    return RULES[(name, "GET" if method == "HEAD" else method)]
