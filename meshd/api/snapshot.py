"""/v1/snapshot (https://developer.hashicorp.com/consul/api-docs/snapshot):
GET saves the registry as an archive (``meshd/agent/snapshot_archive.py``
describes the format), PUT restores one.

A save is taken on the leader (``?stale``: on any server) and carries the
Raft index it was taken at in ``X-Consul-Index``. A restore verifies the
archive first: a corrupt one answers 400 and changes nothing. Restore works
on a single-server cluster; several servers answer 501 (a replicated restore
command is needed first). A restore has its own body limit
(``RESTORE_MAX_BODY``, set in ``App.body_limits`` by ``routes.build_app``)
instead of the API's 4 MiB one, which real snapshots exceed; both archive
formats (Consul's tar.gz and meshd's older flat one) are accepted.
Through a client agent, archives larger than one RPC frame travel in chunks
both ways (``Snapshot.Chunk`` for a save, ``Snapshot.Upload`` for a restore).
"""

from __future__ import annotations

from typing import Protocol

from ..http import BadRequest, QueryMeta, QueryOptions, Request, Response
from . import ports
from .common import check_dc


class Ports(ports.Snapshots, ports.Cluster, ports.Datacenter, Protocol):
    """What this module needs from the agent."""


CONTENT_TYPE = "application/octet-stream"
# Consul sets no limit of its own; this bounds what one restore holds in memory.
RESTORE_MAX_BODY = 512 << 20
BODY_LIMITS = {("PUT", "/v1/snapshot"): RESTORE_MAX_BODY}


# ----------------------------------------------------------------------- handlers
# Module-level: each takes its ports and the request (rows of meshd/api/routes.py ROUTES).


async def save(p: Ports, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    check_dc(p, opts)
    archive, index = await p.snapshot_save(stale=opts.consistency == "stale")
    resp = Response(200, [("Content-Type", CONTENT_TYPE)], archive)
    meta = QueryMeta(
        index=index, known_leader=bool(await p.status_leader()), effective_consistency=""
    )
    return meta.apply_headers(resp)


async def restore(p: Ports, req: Request) -> Response:
    check_dc(p, QueryOptions.from_request(req))
    if not req.body:
        raise BadRequest("Invalid snapshot archive: empty request body", "body")
    await p.snapshot_restore(req.body)
    return Response(200)
