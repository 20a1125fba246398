"""The mesh graph: proxies' per-edge figures in, the whole-mesh graph out (meshd's).

* ``PUT /v1/internal/telemetry/proxy-stats`` — a local proxy's cumulative
  per-edge counters (connect/proxy/l7_stats.py); needs service:write on the
  proxy's side of every edge (what a sidecar's token holds). 400 naming the
  field for a bad body; nothing is kept then.
* ``GET /v1/internal/telemetry/proxy-stats?window=60s`` — this agent's
  proxies' deltas over the window, ``{"Records": [...]}``: what the other
  agents ask when they build the graph.
* ``GET /v1/internal/ui/mesh-graph?window=60s[&service=NAME]`` — nodes and
  edges over the window (Go duration, 1s to 1h, default 60s) from every
  agent's proxies, each edge with its intention decision
  (meshd/agent/mesh_stats.py has the shape); with ``service`` only the
  edges with NAME at one end.

ACL: an edge needs service:read on both ends, a node on its service; what
the token cannot read is left out with ``X-Consul-Results-Filtered-By-ACLs:
true``.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from ..acl import Permission
from ..durations import parse_duration
from ..errors import DurationError
from ..http import BadRequest, Request, Response
from ..values.mesh_window import (
    DEFAULT_WINDOW,
    MAX_WINDOW,
    MIN_WINDOW,
    StatsFormatError,
    parse_push,
)
from . import ports
from .common import FILTERED_HEADER


class Ports(ports.Datacenter, ports.MeshTelemetry, Protocol):
    """What this module needs from the agent."""


STATS_PATH = "/v1/internal/telemetry/proxy-stats"
GRAPH_PATH = "/v1/internal/ui/mesh-graph"


def parse_window(req: Request) -> float:
    """``?window=`` in seconds (default 60s); ``BadRequest`` naming ``window``."""
    raw = req.query_value("window")
    if not raw:
        return DEFAULT_WINDOW
    try:
        window = parse_duration(raw)
    except DurationError as exc:
        raise BadRequest(f"Invalid window: {exc}", "window") from None
    if not MIN_WINDOW <= window <= MAX_WINDOW:
        raise BadRequest(f"window must be between 1s and 1h, got {raw}", "window")
    return window


def _reader(req: Request) -> Any:
    authz = getattr(req, "authz", None)
    if authz is None:
        return lambda _name: True
    return lambda name: authz.allowed(Permission.SERVICE_READ, name)


# ----------------------------------------------------------------------- handlers
# Module-level: each takes its ports and the request (rows of meshd/api/routes.py ROUTES).


async def put_stats(p: Ports, req: Request) -> Response:
    try:
        push = parse_push(json.loads(req.body or b"null"))
    except StatsFormatError as exc:
        raise BadRequest(f"Request decode failed: {exc}", exc.field) from None
    except ValueError as exc:
        raise BadRequest(f"Request decode failed: {exc}", "body") from None
    authz = getattr(req, "authz", None)
    if authz is not None:
        local = {k[1] if k[0] == "source" else k[2] for k in push.counts}
        for service in sorted(local):
            authz.require(Permission.SERVICE_WRITE, service)
    return Response.json({"Accepted": p.mesh_stats.ingest(push)})


async def get_stats(p: Ports, req: Request) -> Response:
    window = parse_window(req)
    ok = _reader(req)
    deltas = p.mesh_stats.local(window)
    kept = [d.to_json() for d in deltas if ok(d.key[1]) and ok(d.key[2])]
    resp = Response.json({"Records": kept})
    if len(kept) != len(deltas):
        resp.set_header(FILTERED_HEADER, "true")
    return resp


async def graph(p: Ports, req: Request) -> Response:
    window = parse_window(req)
    service = req.query_value("service") or None
    body = await p.mesh_stats.graph(window, service, token=req.token, allowed=_reader(req))
    resp = Response.json(body, pretty="pretty" in req.query)
    if body["FilteredByACLs"]:
        resp.set_header(FILTERED_HEADER, "true")
    return resp
