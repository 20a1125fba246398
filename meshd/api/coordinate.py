"""/v1/coordinate/* (https://developer.hashicorp.com/consul/api-docs/coordinate).

Network coordinates come from Serf's Vivaldi in Consul; meshd has no gossip,
so it computes none. ``PUT /v1/coordinate/update`` (what a client that runs
its own Vivaldi sends) is validated as Consul validates it and sent to a
server (``Coordinate.Update``), which batches updates into one Raft write
per period (``meshd.agent.coordinates``), as Consul does. ``/v1/coordinate/nodes``
and ``/node/:node`` read the replicated table on any agent, with blocking
queries on its index. Without any, node lists are empty and a single node
is a 404, which is what Consul answers before any coordinate has been
computed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

from ..http import (
    BadRequest,
    QueryOptions,
    Request,
    Response,
    decode_json_body,
)
from . import ports
from .common import check_dc, read_json


class Ports(ports.Registry, ports.Servers, Protocol):
    """What this module needs from the agent."""


UPDATE_FIELDS = ("Node", "Segment", "Coord", "Datacenter", "Partition", "Token", "WriteRequest")
COORD_FIELDS = ("Vec", "Error", "Adjustment", "Height")
DIMENSIONALITY = 8  # Serf's default coordinate dimensionality


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(f"invalid coordinate: {field} must be a finite number", field)
    return float(value)


def parse_update(body: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """The node, segment and coordinate of an update. Raises ``BadRequest``
    naming the field (Consul's ``Coordinate.IsValid``: every component
    finite, ``Vec`` of the expected dimensionality)."""
    node, segment = body.get("Node"), body.get("Segment") or ""
    if not isinstance(node, str) or not node:
        raise BadRequest("Missing node name", "Node")
    if not isinstance(segment, str):
        raise BadRequest("Request decode failed: Segment must be a string", "Segment")
    raw = body.get("Coord")
    if not isinstance(raw, Mapping):
        raise BadRequest("invalid coordinate: Coord must be an object", "Coord")
    unknown = sorted(set(raw) - set(COORD_FIELDS))
    if unknown:
        raise BadRequest(
            f"Request decode failed: unknown field {unknown[0]!r}", f"Coord.{unknown[0]}"
        )
    vec = raw.get("Vec")
    if not isinstance(vec, list) or len(vec) != DIMENSIONALITY:
        raise BadRequest(f"invalid coordinate: Vec must have {DIMENSIONALITY} numbers", "Coord.Vec")
    coord = {
        "Vec": [_number(v, "Coord.Vec") for v in vec],
        "Error": _number(raw.get("Error", 0), "Coord.Error"),
        "Adjustment": _number(raw.get("Adjustment", 0), "Coord.Adjustment"),
        "Height": _number(raw.get("Height", 0), "Coord.Height"),
    }
    return node, segment, coord


# ----------------------------------------------------------------------- handlers
# Module-level: each takes its ports and the request (rows of meshd/api/routes.py ROUTES).


async def datacenters(p: Ports, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    body = [{"Datacenter": p.datacenter, "AreaID": "WAN", "Coordinates": []}]
    return Response.json(body, pretty=opts.pretty)


def segment(p: Ports, req: Request) -> dict[str, str]:
    # Consul's filterCoordinates: ?segment= (even blank) keeps that segment only.
    return {"segment": req.query_value("segment")} if "segment" in req.query else {}


async def nodes(p: Ports, req: Request) -> Response:
    return await read_json(p, req, "coordinate.nodes", segment(p, req), empty=[])


async def node(p: Ports, req: Request) -> Response:
    args = {"node": req.path_params["node"], **segment(p, req)}
    return await read_json(p, req, "coordinate.node", args)


async def update(p: Ports, req: Request) -> Response:
    check_dc(p, QueryOptions.from_request(req))
    body = decode_json_body(req, fields=UPDATE_FIELDS)
    node_name, segment, coord = parse_update(body)
    args = {"node": node_name, "segment": segment, "coord": coord}
    await p.server_call("Coordinate.Update", args)
    return Response(200)
