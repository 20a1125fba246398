"""Real local servers the check tests probe: HTTP(S), gRPC (HTTP/2) and UDP.

Each listens on 127.0.0.1 port 0 inside the test's nursery and records what
it received, so tests assert on both sides of the exchange.
"""

from __future__ import annotations

import json
import ssl
import tempfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h11
import trio

from meshd.agent_tls import create_ca, create_cert

# ----------------------------------------------------------------- HTTP


@dataclass
class HTTPServer:
    """Answers by path: /ok 200, /busy 429, /fail 500, /hang never, /big 10 kB,
    /redirect 302 to /ok, /echo the request as JSON, /toggle ``toggle_status``."""

    port: int = 0
    scheme: str = "http"
    requests: list[dict[str, Any]] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)
    toggle_status: int = 200
    hanging: int = 0

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def _answer(self, req: dict[str, Any]) -> tuple[int, bytes, list[tuple[str, str]]]:
        path = req["target"].split("?", 1)[0]
        if path == "/ok":
            return 200, b"all good", []
        if path == "/busy":
            return 429, b"slow down", []
        if path == "/fail":
            return 500, b"boom", []
        if path == "/big":
            return 200, b"x" * 10_000, []
        if path == "/redirect":
            return 302, b"", [("Location", "/ok")]
        if path == "/echo":
            return 200, json.dumps(req).encode(), []
        if path == "/toggle":
            return self.toggle_status, b"toggled", []
        return 404, b"not found", []

    async def handle(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER)
        req: dict[str, Any] = {}
        body = b""
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    conn.receive_data(bytes(data))
                elif isinstance(event, h11.Request):
                    req = {
                        "method": event.method.decode(),
                        "target": event.target.decode(),
                        "headers": [[n.decode(), v.decode()] for n, v in event.headers],
                    }
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    return
            req["body"] = body.decode()
            self.requests.append(req)
            if req["target"] == "/hang":
                self.hanging += 1
                await trio.sleep_forever()
            status, payload, headers = self._answer(req)
            headers = [*headers, ("Content-Length", str(len(payload)))]
            out = conn.send(h11.Response(status_code=status, headers=headers))
            out += conn.send(h11.Data(data=payload)) + conn.send(h11.EndOfMessage())
            await stream.send_all(out)
        except (trio.BrokenResourceError, h11.RemoteProtocolError):
            pass
        finally:
            await trio.aclose_forcefully(stream)


def tls_server_context(names: list[str | None]) -> ssl.SSLContext:
    """A server context with a throwaway CA-signed certificate; records SNI names."""
    ca_cert, ca_key = create_ca()
    cert, key = create_cert(ca_cert, ca_key, kind="server", dns_names=["checks.test"])
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = Path(tmp, "c.pem"), Path(tmp, "k.pem")
        cert_path.write_text(cert)
        key_path.write_text(key)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert_path, key_path)

    def sni(sock: Any, name: str | None, _ctx: Any) -> None:
        names.append(name)

    ctx.sni_callback = sni
    return ctx


async def start_http(nursery: trio.Nursery, *, tls: bool = False) -> HTTPServer:
    """Start an HTTP (or HTTPS) server in ``nursery`` and return it once listening."""
    server = HTTPServer(scheme="https" if tls else "http")
    handler = server.handle
    if tls:
        ctx = tls_server_context(server.server_names)

        async def handler(stream: trio.abc.Stream) -> None:
            ssl_stream = trio.SSLStream(stream, ctx, server_side=True)
            try:
                await ssl_stream.do_handshake()
            except trio.BrokenResourceError:
                await trio.aclose_forcefully(stream)
                return
            await server.handle(ssl_stream)

    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    server.port = listeners[0].socket.getsockname()[1]
    return server


# ----------------------------------------------------------------- gRPC


@dataclass
class GRPCServer:
    """A grpc.health.v1 server over h2c: ``statuses`` maps service name to
    ServingStatus; unknown services get NOT_FOUND, as grpc-go's health server."""

    port: int = 0
    statuses: dict[str, int] = field(default_factory=lambda: {"": 1})
    calls: list[tuple[str, str]] = field(default_factory=list)

    async def handle(self, stream: trio.abc.Stream) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        conn = h2.connection.H2Connection(config=config)
        conn.initiate_connection()
        await stream.send_all(conn.data_to_send())
        paths: dict[int, str] = {}
        bodies: dict[int, bytes] = {}
        try:
            while data := await stream.receive_some(65536):
                for event in conn.receive_data(bytes(data)):
                    if isinstance(event, h2.events.RequestReceived):
                        headers = {str(k): str(v) for k, v in event.headers}
                        paths[event.stream_id] = headers[":path"]
                    elif isinstance(event, h2.events.DataReceived):
                        bodies[event.stream_id] = bodies.get(event.stream_id, b"") + event.data
                    elif isinstance(event, h2.events.StreamEnded):
                        sid = event.stream_id
                        self._respond(conn, sid, paths[sid], bodies.get(sid, b""))
                await stream.send_all(conn.data_to_send())
        except trio.BrokenResourceError:
            pass
        finally:
            await trio.aclose_forcefully(stream)

    def _respond(self, conn: h2.connection.H2Connection, sid: int, path: str, body: bytes) -> None:
        message = body[5:]
        service = message[2:].decode() if message else ""
        self.calls.append((path, service))
        base = [(":status", "200"), ("content-type", "application/grpc")]
        if service not in self.statuses:
            trailers = [("grpc-status", "5"), ("grpc-message", "unknown%20service")]
            conn.send_headers(sid, base + trailers, end_stream=True)
            return
        status = self.statuses[service]
        reply = b"\x08" + bytes([status])
        conn.send_headers(sid, base)
        conn.send_data(sid, b"\x00" + len(reply).to_bytes(4, "big") + reply)
        conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)


async def start_grpc(nursery: trio.Nursery) -> GRPCServer:
    server = GRPCServer()
    listeners = await nursery.start(partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1"))
    server.port = listeners[0].socket.getsockname()[1]
    return server


# ----------------------------------------------------------------- ports


async def closed_port() -> int:
    """A loopback TCP port that was just open and is now closed."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port: int = listeners[0].socket.getsockname()[1]
    for lst in listeners:
        await lst.aclose()
    return port


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    """Poll ``predicate()`` every 10 ms until true; fail the test after ``timeout``."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)
