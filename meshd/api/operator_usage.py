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

from ..http import QueryOptions, Request, Response
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


# ----------------------------------------------------------------------- handlers
# Module-level: each takes its ports and the request (rows of meshd/api/routes.py ROUTES).


async def usage(p: Ports, req: Request) -> Response:
    result, opts = await read(p, req, "operator.usage", {"datacenter": p.datacenter})
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


async def keyring(p: Ports, req: Request) -> Response:
    check_dc(p, QueryOptions.from_request(req))
    members = [m for m in await p.members() if m.get("Status") == 1]
    names = [str(m["Name"]) for m in members]
    errors = [f"{p.datacenter} (LAN) error: {len(names)}/{len(names)} nodes reported failure"]
    errors += [f"{name}: {NOT_ENCRYPTED}" for name in names]
    return Response.text(multierror(errors), status=500)
