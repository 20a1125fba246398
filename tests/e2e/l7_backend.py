"""An HTTP/1.1 keep-alive backend for the L7 mesh e2e tests.

``python tests/e2e/l7_backend.py HOST PORT NAME`` answers ``NAME <path>``
to every request, and on purpose misbehaves on some paths:
``/slow`` answers after 1 s, ``/delay`` after 0.5 s, ``/flaky`` answers 503 to 30% of requests
(random), ``/health`` always 200, and a backend named ``bad...`` answers 500
to everything else. Stdlib only; a thread per connection.
"""

from __future__ import annotations

import random
import socketserver
import sys
import time
from http.server import BaseHTTPRequestHandler


def make_handler(name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            status = 200
            if self.path.startswith("/slow"):
                time.sleep(1.0)
            elif self.path.startswith("/delay"):
                time.sleep(0.5)
            elif self.path.startswith("/flaky") and random.random() < 0.3:
                status = 503
            if name.startswith("bad") and not self.path.startswith("/health"):
                status = 500
            body = f"{name} {self.path}\n".encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = _answer
        do_POST = _answer

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
