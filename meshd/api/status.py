"""/v1/status/* (https://developer.hashicorp.com/consul/api-docs/status): the
Raft leader and peers, as this agent's servers see them. A client agent asks
a server through its pool. A server names no leader (``""``) until that
leader has established leadership (ACL tokens, CA: meshd.agent.readiness),
so a client that waits for a leader can use the cluster at once."""

from __future__ import annotations

from typing import Protocol

from ..http import QueryOptions, Request, Response, Router
from . import ports
from .common import check_dc


class Ports(ports.Cluster, ports.Readiness, ports.Datacenter, Protocol):
    """What this module needs from the agent."""


def register(router: Router, agent: Ports) -> None:
    """Add this area's routes to the one route table."""

    async def leader(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        check_dc(agent, opts)
        return Response.json(await agent.status_leader(), pretty=opts.pretty)

    async def peers(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        check_dc(agent, opts)
        return Response.json(await agent.status_peers(), pretty=opts.pretty)

    router.add("GET", "/v1/status/leader", leader, name="status.leader")
    router.add("GET", "/v1/status/peers", peers, name="status.peers")
