"""/v1/agent/* (https://developer.hashicorp.com/consul/api-docs/agent and
.../agent/service): the agent itself, members, local services, maintenance,
join/leave, reload and tokens. Checks are in ``agent_checks``, metrics and
host information in ``agent_host``.

Local services and checks are the agent's own (``LocalState``); anti-entropy
copies them to the catalog. Bad input answers 400 naming the field and
changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

import trio

from registry import shapes
from registry.commands import RegisterRequest
from registry.errors import ValidationError
from registry.records import CRITICAL, HealthCheck, ServiceInstance

from ..acl.token_kinds import KINDS
from ..defs import registration
from ..defs.definitions import CheckDefinition, ServiceDefinition, parse_service
from ..errors import ConfigError, Internal
from ..filter import apply_filter
from ..filter_schemas import schema_for
from ..http import (
    BadRequest,
    NotFound,
    QueryOptions,
    Request,
    Response,
    decode_json_body,
)
from . import agent_host, ports
from .agent_checks import check_scripts
from .common import check_dc


class Ports(
    ports.Registry,
    ports.Servers,
    ports.LocalAgent,
    ports.Cluster,
    ports.ACL,
    ports.Telemetry,
    Protocol,
):
    """What this module needs from the agent."""


SERVICE_MAINTENANCE_PREFIX = "_service_maintenance:"
NODE_MAINTENANCE = "_node_maintenance"
_DEFAULT_SERVICE_REASON = (
    "Maintenance mode is enabled for this service, but no reason was provided. "
    "This is a default message."
)
_DEFAULT_NODE_REASON = (
    "Maintenance mode is enabled for this node, but no reason was provided. "
    "This is a default message."
)
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def flag(req: Request, name: str) -> bool:
    """A presence flag such as ``?prune`` (``=false``/``=0`` turn it off)."""
    values = req.query.get(name)
    return values is not None and values[0].lower() not in ("false", "0")


def parse_bool(req: Request, name: str) -> bool:
    """A required Go ``strconv.ParseBool`` query value; 400 with Consul's texts."""
    if name not in req.query:
        raise BadRequest(f"Missing value for {name}", name)
    value = req.query_value(name)
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(f"Invalid value for {name}: {json.dumps(value)}", name)


def agent_service_json(svc: ServiceInstance, datacenter: str) -> dict[str, Any]:
    """Consul's ``AgentService``: the instance without Raft indexes, plus
    ``Datacenter`` and a ``ContentHash`` of the rest."""
    out = {
        k: v for k, v in shapes.service_json(svc).items() if k not in ("CreateIndex", "ModifyIndex")
    }
    out["Datacenter"] = datacenter
    digest = hashlib.sha256(json.dumps(out, sort_keys=True, default=str).encode()).hexdigest()
    out["ContentHash"] = digest[:16]
    return out


def validate_for_catalog(agent: Ports, defn: ServiceDefinition, prefix: str = "") -> None:
    """Refuse here what the catalog would refuse later, so anti-entropy never
    retries a registration that can never succeed."""
    try:
        RegisterRequest(
            node=agent.node_name,
            address=agent.config.advertise_addr or "127.0.0.1",
            service=defn.service,
            checks=tuple(c.check for c in defn.checks),
        ).validate()
    except ValidationError as exc:
        if not prefix:
            raise
        raise ValidationError(prefix + exc.field, exc.message) from None


def registration_targets(agent: ports.LocalAgent, body: Any) -> list[tuple[str, str]]:
    """What a token must be allowed to write to register ``body`` on this
    agent (``(kind, name)``, kind ``service`` or ``node``): the service, the
    sidecar it asks for under its real name, the service a proxy fronts, and
    whatever it replaces by reusing an ID. Empty for a body that does not
    parse (the handler answers 400 for it)."""
    try:
        defn = parse_service(body, node=agent.node_name)
        parts = registration.expand(defn, agent.local.services, agent.node_name)
    except ValidationError:
        return []
    return registration.service_targets(
        (d for d, _ in parts), agent.local.services, agent.local.checks
    )


def _keep_old_checks(agent: ports.LocalAgent, defn: ServiceDefinition) -> ServiceDefinition:
    """Without ``?replace-existing-checks`` a re-registered service keeps the
    checks it had that the new definition does not name (Consul does)."""
    old = agent.local.services.get(defn.service.id)
    if old is None:
        return defn
    named = {c.check.check_id for c in defn.checks}
    kept = tuple(c for c in old.checks if c.check.check_id not in named)
    return replace(defn, checks=defn.checks + kept)


def _maintenance_check(
    agent: Ports, check_id: str, name: str, notes: str, svc: ServiceInstance | None
) -> CheckDefinition:
    check = HealthCheck(
        check_id=check_id,
        node=agent.node_name,
        name=name,
        status=CRITICAL,
        notes=notes,
        service_id=svc.id if svc else "",
        service_name=svc.service if svc else "",
        service_tags=svc.tags if svc else (),
        type="maintenance",
    )
    return CheckDefinition(check, "maintenance", {})


async def self_(p: Ports, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    public = p.config.to_public_dict()
    config = {
        **public["Config"],
        "NodeName": p.node_name,
        "NodeID": p.node_id,
        "Revision": "",
        "Version": p.version,
        "BuildDate": "",
    }
    body = {
        "Config": config,
        "DebugConfig": public["DebugConfig"],
        "Coord": None,
        "Member": p.self_member(),
        "Stats": agent_host.stats(p),
        "Meta": p.node_meta(),
        "xDS": None,
    }
    return Response.json(body, pretty=opts.pretty)


async def members(p: Ports, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    segment = req.query_value("segment")
    if segment not in ("", "_all"):
        raise BadRequest(f"Invalid segment {segment!r}: meshd has only the default one")
    result: list[dict[str, Any]] = list(await p.members())
    if flag(req, "wan"):
        result = [
            {**m, "Name": f"{m['Name']}.{m['Tags']['dc']}"}
            for m in result
            if m["Tags"].get("role") == "consul"
        ]
    return Response.json(apply_filter(result, opts.filter), pretty=opts.pretty)


def _content_hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


async def _hash_blocking(
    req: Request,
    agent: Ports,
    build: Callable[[], Any],
    hasher: Callable[[Any], str] = _content_hash,
) -> Response:
    """Consul's hash-based blocking for agent-local endpoints: with
    ``?hash=H``, wait (up to ``?wait``) until the answer's content hash is
    no longer H; the hash is sent in ``X-Consul-ContentHash``."""
    opts = QueryOptions.from_request(req)
    seen = req.query_value("hash", "")
    body = build()
    digest = hasher(body)
    if seen and seen == digest:
        with trio.move_on_after(opts.wait):
            while digest == seen:
                await agent.local.wait_changed()
                body = build()
                digest = hasher(body)
    resp = Response.json(body, pretty=opts.pretty)
    resp.set_header("X-Consul-ContentHash", digest)
    return resp


async def services(p: Ports, req: Request) -> Response:
    opts = QueryOptions.from_request(req)

    def build() -> Any:
        items = [
            (sid, agent_service_json(d.service, p.datacenter))
            for sid, d in sorted(p.local.services.items())
        ]
        schema = schema_for("agent.services")
        return dict(apply_filter(items, opts.filter, schema, getter=lambda item: item[1]))

    return await _hash_blocking(req, p, build)


async def service(p: Ports, req: Request) -> Response:
    sid = req.path_params["service_id"]

    def build() -> Any:
        defn = p.local.services.get(sid)
        if defn is None:
            raise NotFound(f"unknown service ID: {sid}")
        return agent_service_json(defn.service, p.datacenter)

    return await _hash_blocking(req, p, build, lambda body: str(body["ContentHash"]))


async def register_service(p: Ports, req: Request) -> Response:
    check_dc(p, QueryOptions.from_request(req))
    body = decode_json_body(req)
    defn = parse_service(body, node=p.node_name)
    if p.acl.enabled and not defn.token and req.token:
        # Anti-entropy writes this service with the token that registered it.
        defn = replace(defn, token=req.token)
    check_scripts(p, defn.checks, in_service=True)
    parts = registration.expand(defn, p.local.services, p.node_name)
    for part, prefix in parts:
        validate_for_catalog(p, part, prefix)
    registration.check_listeners(parts, p.local.services)
    if not flag(req, "replace-existing-checks"):
        defn = _keep_old_checks(p, defn)
    p.local.add_service(defn)
    await p.wait_synced()
    return Response(200)


async def deregister_service(p: Ports, req: Request) -> Response:
    p.local.remove_service(req.path_params["service_id"])  # NotFoundError: 404
    await p.wait_synced()
    return Response(200)


async def service_maintenance(p: Ports, req: Request) -> Response:
    sid = req.path_params["service_id"]
    if not sid:
        raise BadRequest("Missing service ID", "service_id")
    enable = parse_bool(req, "enable")
    defn = p.local.services.get(sid)
    if defn is None:
        raise NotFound(f"No service registered with ID {json.dumps(sid)}")
    check_id = SERVICE_MAINTENANCE_PREFIX + sid
    if enable and check_id not in p.local.checks:  # Consul keeps the first reason
        reason = req.query_value("reason") or _DEFAULT_SERVICE_REASON
        name = "Service Maintenance Mode"
        p.local.add_check(_maintenance_check(p, check_id, name, reason, defn.service))
    elif check_id in p.local.checks:
        p.local.remove_check(check_id)
    return Response(200)


async def node_maintenance(p: Ports, req: Request) -> Response:
    enable = parse_bool(req, "enable")
    if enable and NODE_MAINTENANCE not in p.local.checks:
        reason = req.query_value("reason") or _DEFAULT_NODE_REASON
        name = "Node Maintenance Mode"
        p.local.add_check(_maintenance_check(p, NODE_MAINTENANCE, name, reason, None))
    elif NODE_MAINTENANCE in p.local.checks:
        p.local.remove_check(NODE_MAINTENANCE)
    return Response(200)


async def do_join(p: Ports, req: Request) -> Response:
    if flag(req, "wan"):
        raise BadRequest("WAN join is not supported: meshd runs one datacenter", "wan")
    await p.join(req.path_params["address"])
    return Response(200)


async def do_leave(p: Ports, req: Request) -> Response:
    await p.leave(delay=0.2)  # let this answer go out before the p stops
    return Response(200)


async def force_leave(p: Ports, req: Request) -> Response:
    node = req.path_params["node"]
    if not node:
        raise BadRequest("Missing node name", "node")
    await p.server_call("Operator.ForceLeave", {"node": node, "prune": flag(req, "prune")})
    return Response(200)


async def reload(p: Ports, req: Request) -> Response:
    try:
        await p.reload()
    except ConfigError as exc:
        raise Internal(f"Failed to reload configs: {exc}") from None
    return Response(200)


async def token(p: Ports, req: Request) -> Response:
    kind = req.path_params["kind"]
    if kind not in KINDS:
        raise NotFound(f"Token {json.dumps(kind)} is unknown")
    body: Mapping[str, Any] = decode_json_body(req, fields=("Token",))
    value = body.get("Token") or ""
    if not isinstance(value, str):
        raise BadRequest("Request decode failed: Token must be a string", "Token")
    p.tokens.set(kind, value)
    return Response(200)
