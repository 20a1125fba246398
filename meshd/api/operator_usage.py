"""/v1/operator/usage and /v1/operator/keyring
(https://developer.hashicorp.com/consul/api-docs/operator/usage,
https://developer.hashicorp.com/consul/api-docs/operator/keyring).

Usage counts the catalog's services, instances (per Connect kind) and nodes
of this datacenter, as Consul's ``ServiceUsage``, with the query metadata
in the body as Consul's ``structs.Usage`` embeds it.

meshd has no gossip, hence no gossip encryption: every keyring call answers
what a Consul cluster without ``encrypt`` answers, a 500 listing each
member's ``Keyring is empty (encryption not enabled)`` in go-multierror's
format (so ``consul keyring -list`` and clients report the same thing).
"""

from __future__ import annotations

from typing import Protocol

from ..http import QueryOptions, Request, Response, Router
from . import ports
from .common import check_dc, read, with_meta


class Ports(ports.Registry, ports.Cluster, Protocol):
    """What this module needs from the agent."""


NOT_ENCRYPTED = "Keyring is empty (encryption not enabled)"


def multierror(errors: list[str]) -> str:
    """go-multierror's ``Error()`` text."""
    if len(errors) == 1:
        return f"1 error occurred:\n\t* {errors[0]}\n\n"
    points = "\n\t* ".join(errors)
    return f"{len(errors)} errors occurred:\n\t* {points}\n\n"


def register(router: Router, agent: Ports) -> None:
    """Add the usage and keyring routes to the one route table."""

    async def usage(req: Request) -> Response:
        result, opts = await read(agent, req, "operator.usage", {"datacenter": agent.datacenter})
        body = {
            "Usage": result.value,
            "Index": result.index,
            "LastContact": int(result.last_contact * 1_000_000_000),  # a Go Duration
            "KnownLeader": result.known_leader,
            "ConsistencyLevel": result.consistency or "leader",
            "NotModified": False,
            "Backend": 0,
            "ResultsFilteredByACLs": False,
        }
        return with_meta(Response.json(body, pretty=opts.pretty), result)

    async def keyring(req: Request) -> Response:
        check_dc(agent, QueryOptions.from_request(req))
        members = [m for m in await agent.members() if m.get("Status") == 1]
        names = [str(m["Name"]) for m in members]
        errors = [
            f"{agent.datacenter} (LAN) error: {len(names)}/{len(names)} nodes reported failure"
        ]
        errors += [f"{name}: {NOT_ENCRYPTED}" for name in names]
        return Response.text(multierror(errors), status=500)

    router.add("GET", "/v1/operator/usage", usage, name="operator.usage")
    router.add(
        ("GET", "POST", "PUT", "DELETE"), "/v1/operator/keyring", keyring, name="operator.keyring"
    )
