"""/v1/coordinate/* (https://developer.hashicorp.com/consul/api-docs/coordinate).

Network coordinates come from Serf's Vivaldi in Consul; meshd has no gossip,
so it has none: the WAN area lists this datacenter without coordinates, node
lists are empty and a single node has none (404), which is what Consul
answers before any coordinate has been computed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import filter_schemas
from ..filter import apply_filter
from ..http import NotFound, QueryMeta, QueryOptions, Request, Response, Router
from .common import check_dc

if TYPE_CHECKING:
    from ..agent.agent import Agent


def register(router: Router, agent: Agent) -> None:
    """Add this area's routes to the one route table."""

    async def datacenters(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        body = [{"Datacenter": agent.datacenter, "AreaID": "WAN", "Coordinates": []}]
        return Response.json(body, pretty=opts.pretty)

    async def nodes(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        check_dc(agent, opts)
        # No coordinates to filter, but a bad ?filter is still a 400 (Consul
        # ignores it here; meshd applies it to the listed coordinates).
        listed: list[object] = apply_filter([], opts.filter, filter_schemas.COORDINATE)
        return QueryMeta(index=1).apply_headers(Response.json(listed, pretty=opts.pretty))

    async def node(req: Request) -> Response:
        check_dc(agent, QueryOptions.from_request(req))
        raise NotFound("")

    router.add("GET", "/v1/coordinate/datacenters", datacenters, name="coordinate.datacenters")
    router.add("GET", "/v1/coordinate/nodes", nodes, name="coordinate.nodes")
    router.add("GET", "/v1/coordinate/node/*node", node, name="coordinate.node")
