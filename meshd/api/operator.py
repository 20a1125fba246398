"""/v1/operator/raft/* and /v1/operator/autopilot/*
(https://developer.hashicorp.com/consul/api-docs/operator/raft and
.../operator/autopilot). Reads and changes go to the leader (``?stale``
lets any server answer the configuration)."""

from __future__ import annotations

from typing import Protocol

from ..http import BadRequest, QueryOptions, Request, Response, Router
from . import ports
from .common import check_dc, read_json

MISSING_PEER = (
    "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove"
)


class Ports(ports.Registry, ports.Servers, Protocol):
    """What this module needs from the agent."""


def register(router: Router, agent: Ports) -> None:
    """Add this area's routes to the one route table."""

    async def configuration(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        check_dc(agent, opts)
        stale = opts.consistency == "stale"
        body = await agent.server_call("Operator.RaftConfiguration", {"stale": stale})
        return Response.json(body, pretty=opts.pretty)

    async def remove_peer(req: Request) -> Response:
        check_dc(agent, QueryOptions.from_request(req))
        server_id, address = req.query_value("id"), req.query_value("address")
        if not server_id and not address:
            raise BadRequest(MISSING_PEER, "id")
        await agent.server_call("Operator.RaftRemovePeer", {"id": server_id, "address": address})
        return Response(200)

    async def transfer_leader(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        check_dc(agent, opts)
        body = await agent.server_call("Operator.RaftTransferLeader", {"id": req.query_value("id")})
        return Response.json({"Success": bool(body.get("Success"))}, pretty=opts.pretty)

    async def health(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        check_dc(agent, opts)
        body = await agent.server_call("Operator.AutopilotHealth", {})
        # Consul answers 429 when unhealthy, so a load balancer can check it.
        return Response.json(body, status=200 if body["Healthy"] else 429, pretty=opts.pretty)

    async def autopilot_configuration(req: Request) -> Response:
        return await read_json(agent, req, "operator.autopilot_config", {})

    router.add(
        "GET", "/v1/operator/raft/configuration", configuration, name="operator.raft.configuration"
    )
    router.add("DELETE", "/v1/operator/raft/peer", remove_peer, name="operator.raft.peer")
    router.add(
        "POST",
        "/v1/operator/raft/transfer-leader",
        transfer_leader,
        name="operator.raft.transfer_leader",
    )
    router.add("GET", "/v1/operator/autopilot/health", health, name="operator.autopilot.health")
    router.add(
        "GET",
        "/v1/operator/autopilot/configuration",
        autopilot_configuration,
        name="operator.autopilot.configuration",
    )
