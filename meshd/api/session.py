"""/v1/session/* (https://developer.hashicorp.com/consul/api-docs/session).

Follows Consul's agent/session_endpoint.go. A created session defaults to
this agent's node, ``NodeChecks: ["serfHealth"]``, a 15s lock-delay and
``Behavior: release``; an explicit ``NodeChecks`` (or the deprecated
``Checks``) replaces the default, so ``[]`` binds the session to no check.
The session's UUID is chosen here, at the API edge, so the replicated
command is deterministic. TTL expiry is the leader's job
(meshd.agent.session_ttl): renew restarts the session's timer on the leader
and returns the session.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from registry.commands import DEFAULT_LOCK_DELAY, SessionCreate, SessionDestroy
from registry.records import SERF_HEALTH

from ..agent.wire import ReadOptions, WriteResult
from ..durations import parse_duration_ns
from ..errors import Internal, RequestError
from ..http import (
    BadRequest,
    JSONFields,
    NotFound,
    QueryOptions,
    Request,
    Response,
    Router,
    decode_json_body,
)
from .common import check_dc, read_json

if TYPE_CHECKING:
    from ..agent.agent import Agent

# Consul's structs.Session as JSON (ID and the indexes are accepted and ignored).
SESSION_FIELDS = JSONFields(
    (
        "ID",
        "Name",
        "Node",
        "LockDelay",
        "Behavior",
        "TTL",
        "NodeChecks",
        "ServiceChecks",
        "Checks",
        "Namespace",
        "Partition",
        "CreateIndex",
        "ModifyIndex",
    )
)
SERVICE_CHECK_FIELDS = JSONFields(("ID", "Namespace"))
# Consul's lockDelayMinThreshold: a lock delay below 1000ns is taken as
# seconds, since users send ``5`` meaning 5s rather than 5ns.
LOCK_DELAY_MIN_THRESHOLD_NS = 1000


def _decode_error(message: str, field: str) -> BadRequest:
    return BadRequest(f"Request decode failed: {message}", field)


def lock_delay_seconds(raw: Any) -> float:
    """``LockDelay`` as Consul's ``Session.UnmarshalJSON`` reads it: a Go
    duration string or a number of nanoseconds, values under 1000 meaning
    seconds. Raises ``BadRequest`` naming ``LockDelay``."""
    if isinstance(raw, str):
        try:
            ns = parse_duration_ns(raw)
        except ValueError as exc:
            raise _decode_error(f"LockDelay: {exc}", "LockDelay") from None
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        ns = int(raw)
    else:
        raise _decode_error("LockDelay must be a duration string or a number", "LockDelay")
    if ns < LOCK_DELAY_MIN_THRESHOLD_NS:
        return float(ns)
    return ns / 1e9


def _str_field(body: Mapping[str, Any], key: str, default: str) -> str:
    value = body.get(key, default)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _decode_error(f"{key} must be a string", key)
    return value


def _str_list(body: Mapping[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _decode_error(f"{key} must be a list of strings", key)
    return list(value)


def _service_checks(body: Mapping[str, Any]) -> tuple[str, ...]:
    raw = body.get("ServiceChecks")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _decode_error("ServiceChecks must be a list of objects", "ServiceChecks")
    ids: list[str] = []
    for i, item in enumerate(raw):
        obj = SERVICE_CHECK_FIELDS.validate(item, path=f"ServiceChecks[{i}]")
        check_id, ns = obj.get("ID"), obj.get("Namespace") or ""
        if not isinstance(check_id, str) or not isinstance(ns, str):
            raise _decode_error("ID and Namespace must be strings", f"ServiceChecks[{i}]")
        if ns not in ("", "default"):
            raise BadRequest("Namespaces are a Consul Enterprise feature", "Namespace")
        ids.append(check_id)
    return tuple(ids)


def node_checks(body: Mapping[str, Any]) -> tuple[str, ...]:
    """The node checks a session binds, after Consul's defaulting
    (``fixupEmptySessionChecks``): ``Checks`` is the pre-1.7 spelling."""
    nodes = _str_list(body, "NodeChecks") if "NodeChecks" in body else [SERF_HEALTH]
    legacy = _str_list(body, "Checks") if "Checks" in body else [SERF_HEALTH]
    if not legacy:
        nodes = []
    elif legacy == [SERF_HEALTH] or not nodes:
        legacy = []
    return tuple(dict.fromkeys([*nodes, *legacy]))


def create_request(body: Mapping[str, Any] | None, node: str, now: float) -> SessionCreate:
    """The ``SessionCreate`` for a ``PUT /v1/session/create`` body (None when
    the body is empty), with a fresh UUID. Validated; raises ``BadRequest``
    or ``ValidationError`` naming the field."""
    body = body or {}
    for key in ("Namespace", "Partition"):
        if _str_field(body, key, "") not in ("", "default"):
            raise BadRequest(f"{key}s are a Consul Enterprise feature", key)
    lock_delay = DEFAULT_LOCK_DELAY
    if body.get("LockDelay") is not None:
        lock_delay = lock_delay_seconds(body["LockDelay"])
    cmd = SessionCreate(
        id=str(uuid.uuid4()),
        node=_str_field(body, "Node", node),
        name=_str_field(body, "Name", ""),
        node_checks=node_checks(body),
        service_checks=_service_checks(body),
        lock_delay=lock_delay,
        behavior=_str_field(body, "Behavior", "") or "release",
        ttl=_str_field(body, "TTL", ""),
        now=now,
    )
    cmd.validate()
    return cmd


def _refused(result: WriteResult) -> RequestError:
    # The command was validated here already, so the FSM refused it for the
    # state it found (node not registered, a check missing or critical):
    # Consul answers such a Session.Apply error with its text and 500.
    return Internal(result.message or str(result.error))


def _session_id(req: Request) -> str:
    session_id = req.path_params["uuid"]
    if not session_id:
        raise BadRequest("Missing session", "session")
    return session_id


def register(router: Router, agent: Agent) -> None:
    """Add the /v1/session routes to the one route table."""

    async def create(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        check_dc(agent, opts)
        body = decode_json_body(req, fields=SESSION_FIELDS, allow_empty=True)
        cmd = create_request(body, agent.node_name, time.time())
        result = await agent.write(cmd)
        if not result.ok:
            raise _refused(result)
        return Response.json({"ID": cmd.id}, pretty=opts.pretty)

    async def destroy(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        check_dc(agent, opts)
        session_id = _session_id(req)
        cmd = SessionDestroy(id=session_id, now=time.time())
        cmd.validate()
        result = await agent.write(cmd)
        if not result.ok:
            raise _refused(result)
        return Response.json(True, pretty=opts.pretty)

    async def renew(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        check_dc(agent, opts)
        session_id = _session_id(req)
        # Consul's Session.Renew runs on the leader, which restarts the
        # session's TTL timer there (meshd.agent.session_ttl), and never blocks.
        renewed = await agent.server_call("Session.Renew", {"id": session_id})
        result = await agent.read("session.info", {"id": session_id}, ReadOptions())
        if not (isinstance(renewed, dict) and renewed.get("found")) or not result.value:
            raise NotFound(f"Session id '{session_id}' not found")
        return Response.json(result.value, pretty=opts.pretty)

    async def info(req: Request) -> Response:
        session_id = _session_id(req)
        return await read_json(agent, req, "session.info", {"id": session_id}, empty=[])

    async def node(req: Request) -> Response:
        name = req.path_params["node"]
        if not name:
            raise BadRequest("Missing node name", "node")
        return await read_json(agent, req, "session.node", {"name": name}, empty=[])

    async def list_all(req: Request) -> Response:
        return await read_json(agent, req, "session.list", {}, empty=[])

    router.add("PUT", "/v1/session/create", create, name="session.create")
    router.add("PUT", "/v1/session/destroy/*uuid", destroy, name="session.destroy")
    router.add("PUT", "/v1/session/renew/*uuid", renew, name="session.renew")
    router.add("GET", "/v1/session/info/*uuid", info, name="session.info")
    router.add("GET", "/v1/session/node/*node", node, name="session.node")
    router.add("GET", "/v1/session/list", list_all, name="session.list")
