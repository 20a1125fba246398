"""GET /v1/agent/monitor: stream the agent's log lines as they are written
(https://developer.hashicorp.com/consul/api-docs/agent#stream-logs).

``?loglevel=`` (default ``info``; trace, debug, info, warn, error, any case)
may be more verbose than the agent's own level; an unknown level is 400
``Unknown log level: <level>``, as in Consul. ``?logjson`` streams hclog's
JSON lines. The answer is chunked and lasts until the client goes away or
the agent stops; a client that reads too slowly loses lines (counted, and
told so in the stream) rather than slowing the agent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ..http import BadRequest, Request, Response, StreamingResponse
from .log_stream import fanout, parse_level

if TYPE_CHECKING:
    from .ports import Configured


async def _stream(level: int, as_json: bool) -> AsyncIterator[bytes]:
    # Subscribed only once the server starts sending (not for HEAD).
    sub = fanout.subscribe(level, as_json)
    try:
        async for batch in sub.batches():
            yield batch
    finally:
        fanout.unsubscribe(sub)


# ----------------------------------------------------------------------- handlers
# Module-level: each takes its ports and the request (rows of meshd/api/routes.py ROUTES).


async def monitor(p: Configured, req: Request) -> Response:
    name = req.query_value("loglevel") or "INFO"
    level = parse_level(name)
    if level is None:
        raise BadRequest(f"Unknown log level: {name}", "loglevel")
    as_json = "logjson" in req.query and req.query_value("logjson") not in ("false", "0")
    content_type = "application/json" if as_json else "text/plain"
    return StreamingResponse(_stream(level, as_json), headers=[("Content-Type", content_type)])
