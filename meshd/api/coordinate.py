"""/v1/coordinate/* (https://developer.hashicorp.com/consul/api-docs/coordinate).

Network coordinates come from Serf's Vivaldi in Consul; meshd has no gossip,
so it computes none. ``PUT /v1/coordinate/update`` (what a client that runs
its own Vivaldi sends) is validated as Consul validates it and kept by the
agent that received it, in memory (not replicated): that agent's
``/v1/coordinate/nodes`` and ``/node/:node`` then answer it. Without any,
node lists are empty and a single node is a 404, which is what Consul
answers before any coordinate has been computed.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import filter_schemas
from ..filter import apply_filter
from ..http import (
    BadRequest,
    NotFound,
    QueryMeta,
    QueryOptions,
    Request,
    Response,
    Router,
    decode_json_body,
)
from .common import check_dc

if TYPE_CHECKING:
    from ..agent.agent import Agent

UPDATE_FIELDS = ("Node", "Segment", "Coord", "Datacenter", "Partition", "Token", "WriteRequest")
COORD_FIELDS = ("Vec", "Error", "Adjustment", "Height")
DIMENSIONALITY = 8  # Serf's default coordinate dimensionality
# Coordinates by agent, then by (node, segment): an agent's own memory.
_STORED: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)


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


def register(router: Router, agent: Agent) -> None:
    """Add this area's routes to the one route table."""
    stored = _STORED.setdefault(agent, {})

    def listed(node: str | None = None) -> list[dict[str, Any]]:
        return [
            {"Node": n, "Segment": seg, "Coord": coord}
            for (n, seg), coord in sorted(stored.items())
            if node is None or n == node
        ]

    async def datacenters(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        body = [{"Datacenter": agent.datacenter, "AreaID": "WAN", "Coordinates": []}]
        return Response.json(body, pretty=opts.pretty)

    async def nodes(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        check_dc(agent, opts)
        found = apply_filter(listed(), opts.filter, filter_schemas.COORDINATE)
        return QueryMeta(index=1).apply_headers(Response.json(found, pretty=opts.pretty))

    async def node(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        check_dc(agent, opts)
        found = listed(req.path_params["node"])
        if not found:
            raise NotFound("")
        return QueryMeta(index=1).apply_headers(Response.json(found, pretty=opts.pretty))

    async def update(req: Request) -> Response:
        check_dc(agent, QueryOptions.from_request(req))
        body = decode_json_body(req, fields=UPDATE_FIELDS)
        node_name, segment, coord = parse_update(body)
        stored[(node_name, segment)] = coord
        return Response(200)

    router.add("GET", "/v1/coordinate/datacenters", datacenters, name="coordinate.datacenters")
    router.add("GET", "/v1/coordinate/nodes", nodes, name="coordinate.nodes")
    router.add("GET", "/v1/coordinate/node/*node", node, name="coordinate.node")
    router.add("PUT", "/v1/coordinate/update", update, name="coordinate.update")
