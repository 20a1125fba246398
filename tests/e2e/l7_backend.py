"""An HTTP/1.1 keep-alive backend for the L7 mesh e2e tests.

``python tests/e2e/l7_backend.py HOST PORT NAME`` answers ``NAME <path>``
to every request, and on purpose misbehaves on some paths:
``/slow`` answers after 1 s, ``/delay`` after 0.5 s, ``/flaky`` answers 503 to 30% of requests
(random), ``/status/NNN`` answers status NNN, ``/health`` always 200, a
backend named ``bad...`` answers 500 to everything else and one whose name
ends in ``-err20`` answers 500 to 20% of it (random). A mirrored copy
(Host ending in ``-shadow``) of ``/mirror/hang...`` answers after 3 s, of
``/mirror/error...`` with 500. ``/_seen?prefix=P`` (asked directly, not
through the mesh) lists the ``[host, path]`` of every request so far whose
path starts with ``P``. Stdlib only; a thread per connection.
"""

from __future__ import annotations

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

if __package__:
    from tests.e2e.mesh_backend import QuietHandler, serve
else:  # run as a script: its own folder is sys.path[0]
    from mesh_backend import QuietHandler, serve


def make_handler(name: str) -> type[BaseHTTPRequestHandler]:
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    class Handler(QuietHandler):
        disable_nagle_algorithm = True  # headers and body are two writes

        def _seen(self) -> None:
            prefix = parse_qs(urlsplit(self.path).query).get("prefix", [""])[0]
            with lock:
                found = [[h, p] for h, p in seen if p.startswith(prefix)]
            self.reply(200, json.dumps(found).encode())

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            if self.path.startswith("/_seen"):
                return self._seen()
            host = self.headers.get("Host") or ""
            with lock:
                seen.append((host, self.path))
            status = 200
            if host.endswith("-shadow") and self.path.startswith("/mirror/hang"):
                time.sleep(3.0)
            elif host.endswith("-shadow") and self.path.startswith("/mirror/error"):
                status = 500
            elif self.path.startswith("/slow"):
                time.sleep(1.0)
            elif self.path.startswith("/delay"):
                time.sleep(0.5)
            elif self.path.startswith("/flaky") and random.random() < 0.3:
                status = 503
            elif self.path.startswith("/status/") and self.path[8:11].isdigit():
                status = int(self.path[8:11])
            if name.startswith("bad") and not self.path.startswith("/health"):
                status = 500
            if name.endswith("-err20") and not self.path.startswith("/health"):
                status = 500 if random.random() < 0.2 else status
            self.reply(status, f"{name} {self.path}\n".encode())

        do_GET = _answer
        do_POST = _answer
        do_DELETE = _answer

    return Handler


if __name__ == "__main__":
    serve(make_handler)
