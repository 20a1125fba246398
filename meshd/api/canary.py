"""/v1/internal/canary: canary releases that finish themselves (meshd
extension, issue 19; shapes in CONTRACTS.md "Canaries").

* ``POST /v1/internal/canary/:service`` starts one: the body names ``To``
  (and optionally ``From``, ``Steps``, ``Interval``, ``MaxErrorRate``,
  ``MaxP99``, ``MinRequests``). Both subsets must exist on the service's
  resolver (Consul's text, 400 naming the field); the service-splitter
  (created or rewritten, From 100 - Steps[0], To Steps[0]) must pass the
  discovery-chain check a ``PUT /v1/config`` would. The record and the
  splitter are stored by one Raft command; 409 if a canary of the service
  is running or paused.
* ``GET /v1/internal/canary`` lists, ``GET /v1/internal/canary/:service``
  answers one (404 if none); both block with ``?index=``.
* ``PUT .../pause``, ``.../resume``, ``.../abort`` answer the canary JSON;
  abort sets the splitter back to 100 % From. 409 when the state does not
  allow it.

ACL: reads need ``service:read``, writes ``service:write`` on the service.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

from connect.l7.chain_validate import EntrySet
from connect.l7.entries_resolver import ServiceResolverEntry
from registry.codec import from_obj
from registry.commands import CanarySet
from registry.errors import ErrorCode
from registry.records import CANARY_ACTIVE, Canary, CanaryEvent, ConfigEntry

from ..durations import parse_duration
from ..errors import DurationError
from ..http import (
    BadRequest,
    Conflict,
    HTTPError,
    NotFound,
    Request,
    Response,
    decode_json_body,
)
from ..values.canary_core import apply, canary_json, splitter_body
from ..values.canary_events import EVENT_NAME, event_payload, log_event, wall_now
from ..values.events import UserEvent
from ..wire import ReadOptions
from . import ports
from .common import json_response, read, with_meta
from .config_typed import check_graph, load_graph, parse_typed, stored_form


class Ports(ports.Registry, ports.RawReads, ports.Events, Protocol):
    """What this module needs from the agent."""


DEFAULT_STEPS = (5.0, 10.0, 25.0, 50.0, 100.0)
MAX_STEPS = 20
MIN_INTERVAL, MAX_INTERVAL = 1.0, 24 * 3600.0
_FIELDS = ("To", "From", "Steps", "Interval", "MaxErrorRate", "MaxP99", "MinRequests")
_TRIES = 5


def _bad(field: str, text: str) -> BadRequest:
    return BadRequest(f"Invalid {field}: {text}", field)


def _duration(body: Mapping[str, Any], field: str, default: str, low: float, high: float) -> float:
    raw = body.get(field, default)
    try:
        value = parse_duration(raw) if isinstance(raw, str) else math.nan
    except DurationError as exc:
        raise _bad(field, str(exc)) from None
    if not low <= value <= high:
        raise _bad(field, f"must be a duration between {low:g}s and {high:g}s, not {raw!r}")
    return value


def _steps(body: Mapping[str, Any]) -> tuple[float, ...]:
    raw = body.get("Steps", list(DEFAULT_STEPS))
    if not isinstance(raw, list) or not raw or len(raw) > MAX_STEPS:
        raise _bad("Steps", f"must be a list of 1 to {MAX_STEPS} percentages")
    steps: list[float] = []
    for x in raw:
        if isinstance(x, bool) or not isinstance(x, int | float) or not 0 < x <= 100:
            raise _bad("Steps", f"{x!r} is not a percentage in (0, 100]")
        if steps and x <= steps[-1]:
            raise _bad("Steps", "must increase strictly")
        steps.append(float(x))
    if steps[-1] != 100:
        raise _bad("Steps", "the last step must be 100")
    return tuple(steps)


def parse_spec(service: str, body: Any, now: float) -> Canary:
    """The record a POST body describes, starting at ``now`` (subsets not yet
    checked). Raises ``BadRequest`` naming the field."""
    if not isinstance(body, Mapping):
        raise BadRequest("Request decoding failed: body must be a JSON object")
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise _bad(unknown[0], "unknown field")
    to = body.get("To")
    if not isinstance(to, str) or not to:
        raise _bad("To", "the canary subset must be set")
    frm = body.get("From", "")
    if not isinstance(frm, str):
        raise _bad("From", "must be a string")
    rate = body.get("MaxErrorRate", 0.01)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise _bad("MaxErrorRate", f"must be a fraction between 0 and 1, not {rate!r}")
    min_req = body.get("MinRequests", 20)
    if isinstance(min_req, bool) or not isinstance(min_req, int) or min_req < 0:
        raise _bad("MinRequests", f"must be a whole number >= 0, not {min_req!r}")
    return Canary(
        service=service,
        from_subset=frm,
        to_subset=to,
        steps=_steps(body),
        interval=_duration(body, "Interval", "30s", MIN_INTERVAL, MAX_INTERVAL),
        max_error_rate=float(rate),
        max_p99=_duration(body, "MaxP99", "300ms", 0.001, 3600.0),
        min_requests=min_req,
        step_started_at=now,
    )


def _goq(text: str) -> str:
    return json.dumps(text)


def _with_subsets(graph: EntrySet, spec: Canary) -> Canary:
    """``spec`` with From defaulted to the resolver's DefaultSubset, once both
    subsets are known to exist there. Raises ``BadRequest`` (Consul's text)."""
    found = graph.get("service-resolver", spec.service)
    resolver = found if isinstance(found, ServiceResolverEntry) else None
    subsets = resolver.subsets if resolver is not None else {}

    def check(field: str, name: str) -> None:
        if name not in subsets:
            text = f"service {_goq(spec.service)} does not have a subset named {_goq(name)}"
            raise _bad(field, text)

    check("To", spec.to_subset)
    frm = spec.from_subset or (resolver.default_subset if resolver is not None else "")
    if not frm:
        raise _bad("From", f"service {_goq(spec.service)} has no DefaultSubset: set From")
    check("From", frm)
    if frm == spec.to_subset:
        raise _bad("From", "must differ from To")
    started = CanaryEvent(spec.step_started_at, 0, spec.steps[0], "step", "started")
    return replace(spec, from_subset=frm, history=(started,))


async def _record(agent: Ports, service: str) -> Canary | None:
    """The stored record, read consistently (so a write may CAS on it)."""
    result = await agent.read(
        "canary.record", {"service": service}, ReadOptions(consistency="consistent")
    )
    return None if result.value is None else from_obj(result.value, Canary)


async def _splitter_body(agent: Ports, service: str) -> Mapping[str, Any] | None:
    result = await agent.read(
        "config.get", {"kind": "service-splitter", "name": service}, ReadOptions()
    )
    value = result.value
    if not isinstance(value, Mapping):
        return None
    return {
        k: v for k, v in value.items() if k not in ("Kind", "Name", "CreateIndex", "ModifyIndex")
    }


async def _announce(agent: Ports, rec: Canary) -> None:
    log_event(rec)
    await agent.fire_event(UserEvent.new(EVENT_NAME, event_payload(rec), "", "", ""))


async def start(agent: Ports, service: str, body: Any) -> Canary:
    """Validate and store a new canary of ``service`` with its splitter."""
    spec = parse_spec(service, body, wall_now())
    for _ in range(_TRIES):
        graph, config_index = await load_graph(agent)
        rec = _with_subsets(graph, spec)
        existing = await _record(agent, service)
        if existing is not None and existing.state in CANARY_ACTIVE:
            raise Conflict(f"a canary of {service} is already {existing.state}")
        data = {"Kind": "service-splitter", "Name": service}
        data.update(splitter_body(rec, await _splitter_body(agent, service)))
        typed = parse_typed("service-splitter", data)
        check_graph(agent, graph, [typed])
        cmd = CanarySet(
            canary=rec,
            splitter=stored_form(typed),
            cas=existing.modify_index if existing else 0,
            config_index=config_index,
            now=spec.step_started_at,
        )
        result = await agent.write(cmd)
        if result.ok:
            await _announce(agent, rec)
            return rec
        if result.error != ErrorCode.CAS_CONFLICT:
            raise _refused(result.error, result.message)
    raise Conflict("the canary or config entries kept changing during the write; retry")


def _refused(error: object, message: str) -> Exception:
    """A write the servers refused for another reason than a lost CAS."""
    if error == ErrorCode.INVALID:
        return BadRequest(f"Invalid request: {message}")
    return HTTPError(500, message or str(error))


_ALLOWED = {"pause": ("running",), "resume": ("paused",), "abort": CANARY_ACTIVE}


async def change(agent: Ports, service: str, kind: str) -> None:
    """Pause, resume or abort the canary of ``service`` (one CAS write)."""
    for _ in range(_TRIES):
        rec = await _record(agent, service)
        if rec is None:
            raise NotFound(f"no canary for service {_goq(service)}")
        if rec.state not in _ALLOWED[kind]:
            raise Conflict(f"cannot {kind} the canary of {service}: it is {rec.state}")
        new = apply(rec, kind, "by operator" if kind == "abort" else "", wall_now())
        splitter = None
        if kind == "abort":
            body = splitter_body(new, await _splitter_body(agent, service))
            splitter = ConfigEntry("service-splitter", service, body)
        cmd = CanarySet(canary=new, splitter=splitter, cas=rec.modify_index, now=wall_now())
        result = await agent.write(cmd)
        if result.ok:
            await _announce(agent, new)
            return
        if result.error != ErrorCode.CAS_CONFLICT:
            raise _refused(result.error, result.message)
    raise Conflict("the canary kept changing during the write; retry")


# ----------------------------------------------------------------------- handlers
# Module-level: each takes its ports and the request (rows of meshd/api/routes.py ROUTES).


async def get_one(p: Ports, req: Request) -> Response:
    service = req.path_params["service"]
    result, opts = await read(p, req, "canary.get", {"service": service})
    if result.value is None:  # with X-Consul-Index: a client may block until one starts
        text = f"no canary for service {_goq(service)}"
        return with_meta(Response.text(text, status=404), result)
    return json_response(result.value, result, opts)


async def list_all(p: Ports, req: Request) -> Response:
    result, opts = await read(p, req, "canary.list", {})
    return json_response(result.value or [], result, opts)


async def _answer(p: Ports, service: str) -> Response:
    opts = ReadOptions(consistency="consistent")
    result = await p.read("canary.get", {"service": service}, opts)
    return Response.json(result.value)


async def post(p: Ports, req: Request) -> Response:
    service = req.path_params["service"]
    await start(p, service, decode_json_body(req))
    return await _answer(p, service)


async def _change(p: Ports, req: Request, kind: str) -> Response:
    service = req.path_params["service"]
    await change(p, service, kind)
    return await _answer(p, service)


async def pause(p: Ports, req: Request) -> Response:
    return await _change(p, req, "pause")


async def resume(p: Ports, req: Request) -> Response:
    return await _change(p, req, "resume")


async def abort(p: Ports, req: Request) -> Response:
    return await _change(p, req, "abort")


__all__ = ["canary_json", "parse_spec"]
