"""A backend for the tracing e2e tests that calls its own upstream, as an application would.

``python tests/e2e/trace_backend.py HOST PORT NAME [UPSTREAM_HOST:PORT [drop]]``
answers ``GET /health`` with 200, and every other request with a JSON body
``{"name", "traceparent" (as received), "upstream" (what the upstream
answered)}``: it first calls ``GET <path>`` on its upstream (the local
proxy's upstream listener), copying the trace headers of the request it
serves — unless ``drop``, the application that forgets to. Stdlib only.
"""

from __future__ import annotations

import http.client
import json
import sys
from http.server import BaseHTTPRequestHandler

if __package__:
    from tests.e2e.mesh_backend import QuietHandler, serve
else:  # run as a script: its own folder is sys.path[0]
    from mesh_backend import QuietHandler, serve

FORWARDED = (
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-request-id",
)


def _call(upstream: str, path: str, headers: dict[str, str]) -> object:
    host, _, port = upstream.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        try:
            return json.loads(body)
        except ValueError:
            return {"status": resp.status, "body": body}
    finally:
        conn.close()


def make_handler(name: str) -> type[BaseHTTPRequestHandler]:
    upstream = sys.argv[4] if len(sys.argv) > 4 else ""
    drop = len(sys.argv) > 5 and sys.argv[5] == "drop"

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/health"):
                self.reply(200, b"ok\n")
                return
            answer: dict[str, object] = {
                "name": name,
                "traceparent": self.headers.get("traceparent", ""),
            }
            if upstream:
                keep = {} if drop else {h: v for h in FORWARDED if (v := self.headers.get(h))}
                answer["upstream"] = _call(upstream, self.path, keep)
            self.reply(200, json.dumps(answer).encode())

    return Handler


if __name__ == "__main__":
    serve(make_handler)
