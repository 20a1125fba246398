"""/v1/operator/raft/* and /v1/operator/autopilot/*
(https://developer.hashicorp.com/consul/api-docs/operator/raft and
.../operator/autopilot). Reads and changes go to the leader (``?stale``
lets any server answer the configuration)."""

from __future__ import annotations

from typing import Protocol

from ..http import BadRequest, QueryOptions, Request, Response
from . import ports
from .common import check_dc, read_json

MISSING_PEER = (
    "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove"
)


class Ports(ports.Registry, ports.Servers, Protocol):
    """What this module needs from the agent."""


# ----------------------------------------------------------------------- handlers
# Module-level: each takes its ports and the request (rows of meshd/api/routes.py ROUTES).


async def configuration(p: Ports, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    check_dc(p, opts)
    stale = opts.consistency == "stale"
    body = await p.server_call("Operator.RaftConfiguration", {"stale": stale})
    return Response.json(body, pretty=opts.pretty)


async def remove_peer(p: Ports, req: Request) -> Response:
    check_dc(p, QueryOptions.from_request(req))
    server_id, address = req.query_value("id"), req.query_value("address")
    if not server_id and not address:
        raise BadRequest(MISSING_PEER, "id")
    await p.server_call("Operator.RaftRemovePeer", {"id": server_id, "address": address})
    return Response(200)


async def transfer_leader(p: Ports, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    check_dc(p, opts)
    body = await p.server_call("Operator.RaftTransferLeader", {"id": req.query_value("id")})
    return Response.json({"Success": bool(body.get("Success"))}, pretty=opts.pretty)


async def health(p: Ports, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    check_dc(p, opts)
    body = await p.server_call("Operator.AutopilotHealth", {})
    # Consul answers 429 when unhealthy, so a load balancer can check it.
    return Response.json(body, status=200 if body["Healthy"] else 429, pretty=opts.pretty)


async def autopilot_configuration(p: Ports, req: Request) -> Response:
    return await read_json(p, req, "operator.autopilot_config", {})
