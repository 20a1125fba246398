"""/v1/status/* (https://developer.hashicorp.com/consul/api-docs/status): the
Raft leader and peers, as this agent's servers see them. A client agent asks
a server through its pool. A server names no leader (``""``) until that
leader has established leadership (ACL tokens, CA: meshd.agent.readiness),
so a client that waits for a leader can use the cluster at once."""

from __future__ import annotations

from typing import Protocol

from ..http import QueryOptions, Request, Response
from . import ports
from .common import check_dc


class Ports(ports.Cluster, ports.Readiness, ports.Datacenter, Protocol):
    """What this module needs from the agent."""


# ----------------------------------------------------------------------- handlers
# Module-level: each takes its ports and the request (rows of meshd/api/routes.py ROUTES).


async def leader(p: Ports, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    check_dc(p, opts)
    return Response.json(await p.status_leader(), pretty=opts.pretty)


async def peers(p: Ports, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    check_dc(p, opts)
    return Response.json(await p.status_peers(), pretty=opts.pretty)
