"""``meshd login`` / ``logout``: Consul's request shapes and messages.

/v1/acl/login and /v1/acl/logout are not served by the agent yet (auth
methods are another branch's work), so these tests answer them with a
small recording HTTP server speaking Consul's documented API
(https://developer.hashicorp.com/consul/api-docs/acl#login-to-auth-method).
"""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.meshd.cli_support import invoke, one_error_line

SECRET = "8f5a6c2e-1b1d-4c55-9a51-2d3c4b5a6f70"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ3ZWIifQ.c2ln"


class _Consul(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode() if not isinstance(body, str) else body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        token = self.headers.get("X-Consul-Token")
        self.requests.append({"path": self.path, "body": body, "token": token})
        if self.path == "/v1/acl/login":
            if body.get("AuthMethod") == "jwt" and body.get("BearerToken") == JWT:
                self._answer(200, {"AccessorID": "a-1", "SecretID": SECRET, "Local": True})
            else:
                self._answer(403, "Permission denied: invalid bearer token")
        elif self.path == "/v1/acl/logout":
            self._answer(
                200 if token == SECRET else 403, "" if token == SECRET else "ACL not found"
            )
        else:
            self._answer(404, "not found")


@contextmanager
def consul() -> Iterator[tuple[list[str], list[dict[str, Any]]]]:
    _Consul.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Consul)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ["-http-addr", f"127.0.0.1:{server.server_address[1]}"], _Consul.requests
    finally:
        server.shutdown()
        server.server_close()


def test_login_sends_the_bearer_token_and_writes_the_secret_to_the_sink(tmp_path: Path) -> None:
    bearer = tmp_path / "jwt"
    bearer.write_text(JWT + "\n")
    sink = tmp_path / "token"
    with consul() as (addr, seen):
        args = ["login", "-method", "jwt", "-bearer-token-file", str(bearer)]
        result = invoke([*args, "-token-sink-file", str(sink), "-meta", "host=web-1", *addr])
        assert (result.exit_code, result.output) == (0, "")
        assert sink.read_text() == SECRET
        assert stat.S_IMODE(sink.stat().st_mode) == 0o600
        [req] = seen
        assert req["path"] == "/v1/acl/login" and req["token"] is None
        assert req["body"] == {"AuthMethod": "jwt", "BearerToken": JWT, "Meta": {"host": "web-1"}}
        # logout presents the token from the sink
        result = invoke(["logout", "-token-file", str(sink), *addr])
        assert (result.exit_code, result.output) == (0, "")
        assert seen[-1] == {"path": "/v1/acl/logout", "body": None, "token": SECRET}


def test_login_and_logout_errors_are_consuls_one_liners(tmp_path: Path) -> None:
    bearer = tmp_path / "jwt"
    bearer.write_text("not-the-jwt")
    sink = tmp_path / "token"
    with consul() as (addr, seen):
        full = ["login", "-method", "jwt", "-bearer-token-file", str(bearer)]
        line = one_error_line(invoke([*full, "-token-sink-file", str(sink), *addr]))
        assert line == (
            "Error logging in: Unexpected response code: 403 "
            "(Permission denied: invalid bearer token)"
        )
        assert not sink.exists()
        assert one_error_line(invoke(["login", *addr])) == "Missing required '-method' flag"
        line = one_error_line(invoke(["login", "-method", "jwt", *addr]))
        assert line == "Missing required '-bearer-token-file' flag"
        line = one_error_line(invoke(full + addr))
        assert line == "Missing required '-token-sink-file' flag"
        empty = tmp_path / "empty"
        empty.write_text(" \n")
        args = ["login", "-method", "jwt", "-bearer-token-file", str(empty)]
        line = one_error_line(invoke([*args, "-token-sink-file", str(sink), *addr]))
        assert line == f"No bearer token found in {empty}"
        line = one_error_line(invoke(["logout", "-token", "wrong", *addr]))
        assert line.startswith("Error destroying token: Unexpected response code: 403")
        line = one_error_line(invoke(["logout", *addr]))
        assert line == "Error destroying token: no token given (-token or -token-file)"
        assert [r["path"] for r in seen] == ["/v1/acl/login", "/v1/acl/logout"]
