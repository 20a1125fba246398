"""A tiny HTTP/1.1 keep-alive backend for the mesh e2e tests.

``python tests/e2e/mesh_backend.py HOST PORT NAME`` answers every request
with ``NAME <path>\\n`` and keeps the connection open, so tests can run
long-lived connections through the proxies. Stdlib only; a thread per
connection.
"""

from __future__ import annotations

import socketserver
import sys
from http.server import BaseHTTPRequestHandler


def make_handler(name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = f"{name} {self.path}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> None:
    host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with Server((host, port), make_handler(name)) as server:
        print("ready", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
