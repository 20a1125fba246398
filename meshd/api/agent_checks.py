"""/v1/agent/check* (https://developer.hashicorp.com/consul/api-docs/agent/check):
the agent's local checks, their registration and TTL updates."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from registry import shapes
from registry.errors import NotFoundError, ValidationError

from ..defs import registration
from ..defs.definitions import CheckDefinition, parse_check
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

if TYPE_CHECKING:
    from .ports import LocalAgent

UPDATE_FIELDS = ("Status", "Output")
SCRIPTS_DISABLED = (
    "Scripts are disabled on this agent from remote calls; to enable, "
    "configure 'enable_script_checks' to true"
)


def _ttl_check(agent: LocalAgent, check_id: str) -> None:
    """TTL updates need a TTL check; 404 otherwise (meshd.checks' NotATTLCheck texts)."""
    defn = agent.local.checks.get(check_id)
    if defn is None:
        raise NotFound(f"Unknown check ID {json.dumps(check_id)}")
    if defn.kind != "ttl":
        raise NotFound(f"CheckID {json.dumps(check_id)} does not have associated TTL")


def check_scripts(
    agent: LocalAgent, checks: tuple[CheckDefinition, ...], *, in_service: bool = False
) -> None:
    """Script checks from the API need ``enable_script_checks`` (Consul's
    rule); raises ``BadRequest`` naming the check's ``Args``."""
    if agent.config.enable_script_checks:
        return
    for i, c in enumerate(checks):
        if c.kind == "script":
            raise BadRequest(SCRIPTS_DISABLED, f"Checks[{i}].Args" if in_service else "Args")


def check_targets(agent: LocalAgent, body: Any) -> list[tuple[str, str]]:
    """What replacing an existing check with ``body``'s ID needs (Consul's
    ``vetCheckRegister``): ``(kind, name)`` pairs, empty for a new check or
    a body that does not parse."""
    try:
        defn = parse_check(body, node=agent.node_name)
    except ValidationError:
        return []
    existing = agent.local.checks.get(defn.check.check_id)
    return registration.check_owner(existing, defn.check.service_id)


def _ttl_update(agent: LocalAgent, req: Request, status: str) -> Response:
    """``/v1/agent/check/pass|warn|fail/*check_id?note=``."""
    check_id = req.path_params["check_id"]
    _ttl_check(agent, check_id)
    agent.ttl_update(check_id, status, req.query_value("note"))
    return Response(200)


# ----------------------------------------------------------------------- handlers
# Module-level: each takes its ports and the request (rows of meshd/api/routes.py ROUTES).


async def checks(p: LocalAgent, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    items = [(cid, shapes.check_json(d.check)) for cid, d in sorted(p.local.checks.items())]
    schema = schema_for("agent.checks")
    kept = apply_filter(items, opts.filter, schema, getter=lambda item: item[1])
    return Response.json(dict(kept), pretty=opts.pretty)


async def register_check(p: LocalAgent, req: Request) -> Response:
    body = decode_json_body(req)
    defn = parse_check(body, node=p.node_name)
    if not defn.spec.get("Name"):
        raise BadRequest("Missing check name", "Name")
    check_scripts(p, (defn,))
    try:
        p.local.add_check(defn)
    except NotFoundError as exc:  # an unknown ServiceID is the caller's mistake
        raise BadRequest(str(exc), "ServiceID") from None
    await p.wait_synced()
    return Response(200)


async def deregister_check(p: LocalAgent, req: Request) -> Response:
    p.local.remove_check(req.path_params["check_id"])  # NotFoundError: 404
    await p.wait_synced()
    return Response(200)


async def update(p: LocalAgent, req: Request) -> Response:
    check_id = req.path_params["check_id"]
    body = decode_json_body(req, fields=UPDATE_FIELDS)
    status, output = body.get("Status", ""), body.get("Output", "")
    if not isinstance(output, str):
        raise BadRequest("Request decode failed: Output must be a string", "Output")
    if status not in ("passing", "warning", "critical"):
        raise BadRequest(f"Invalid check status: {json.dumps(status)}", "Status")
    _ttl_check(p, check_id)
    p.ttl_update(check_id, status, output)
    return Response(200)


async def ttl_pass(p: LocalAgent, req: Request) -> Response:
    return _ttl_update(p, req, "passing")


async def ttl_warn(p: LocalAgent, req: Request) -> Response:
    return _ttl_update(p, req, "warning")


async def ttl_fail(p: LocalAgent, req: Request) -> Response:
    return _ttl_update(p, req, "critical")
