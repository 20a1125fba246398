"""/v1/event/* (https://developer.hashicorp.com/consul/api-docs/event):
fire a user event, list the ones this agent has seen.

``PUT /v1/event/fire/*name`` keeps the event on this agent and hands it to
every server; ``GET /v1/event/list`` shows the servers' last 256 events
merged with this agent's, those whose node/service/tag filters accept this
agent, optionally only ``?name=``. Its ``X-Consul-Index`` is Consul's
pseudo-index (the last event ID folded into 64 bits), and ``?index=`` blocks
until it changes.
"""

from __future__ import annotations

from typing import Protocol

from .. import filter_schemas
from ..filter import apply_filter
from ..http import (
    BadRequest,
    PayloadTooLarge,
    QueryMeta,
    QueryOptions,
    Request,
    Response,
)
from ..values.events import MAX_PAYLOAD, UserEvent, compile_filter
from . import ports
from .common import check_dc


class Ports(ports.Events, ports.Datacenter, Protocol):
    """What this module needs from the agent."""


def _filter(req: Request, name: str) -> str:
    expr = req.query_value(name)
    if expr:
        try:
            compile_filter(expr)
        except ValueError as exc:
            raise BadRequest(f"Invalid {name} filter {expr!r}: {exc}", name) from None
    return expr


# ----------------------------------------------------------------------- handlers
# Module-level: each takes its ports and the request (rows of meshd/api/routes.py ROUTES).


async def fire(p: Ports, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    check_dc(p, opts)
    name = req.path_params["name"]
    if not name:
        raise BadRequest("Missing name", "name")
    if name.startswith("_"):
        raise BadRequest(f"Invalid event name {name!r}: names starting with '_' are reserved")
    if len(req.body) > MAX_PAYLOAD:
        raise PayloadTooLarge(
            f"User event payload of {len(req.body)} bytes exceeds the limit of {MAX_PAYLOAD}"
        )
    event = UserEvent.new(
        name, req.body, _filter(req, "node"), _filter(req, "service"), _filter(req, "tag")
    )
    await p.fire_event(event)
    # Consul answers before the event gets its Lamport time: LTime is 0 here.
    return Response.json(event.to_json(), pretty=opts.pretty)


async def list_events(p: Ports, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    check_dc(p, opts)
    # Consul ignores ?filter here; meshd applies it (400 when invalid).
    apply_filter([], opts.filter, filter_schemas.EVENT)
    events, index = await p.list_events(req.query_value("name"), index=opts.index, wait=opts.wait)
    listed = apply_filter([e.to_json() for e in events], opts.filter, filter_schemas.EVENT)
    resp = Response.json(listed, pretty=opts.pretty)
    return QueryMeta(index=index, effective_consistency="").apply_headers(resp)
