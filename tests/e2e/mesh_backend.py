"""A tiny HTTP/1.1 keep-alive backend for the mesh e2e tests.

``python tests/e2e/mesh_backend.py HOST PORT NAME`` answers every request
with ``NAME <path>\\n`` and keeps the connection open, so tests can run
long-lived connections through the proxies. Stdlib only; a thread per
connection.
"""

from __future__ import annotations

import socketserver
import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler


class QuietHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1, no access log; ``reply`` sends a whole answer."""

    protocol_version = "HTTP/1.1"

    def reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def make_handler(name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            self.reply(200, f"{name} {self.path}\n".encode())

    return Handler


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(handler_for: Callable[[str], type[BaseHTTPRequestHandler]]) -> None:
    """``HOST PORT NAME`` from argv; say ``ready`` once listening, then serve."""
    host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with Server((host, port), handler_for(name)) as server:
        print("ready", flush=True)
        server.serve_forever()


def main() -> None:
    serve(make_handler)


if __name__ == "__main__":
    main()
