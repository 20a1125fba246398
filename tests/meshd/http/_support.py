"""Test support: a server running on 127.0.0.1 and a raw HTTP/1.1 client.

The client writes bytes as given and parses responses by hand (status line,
headers, Content-Length body), so tests can pipeline, send malformed input
and see exactly what the server wrote.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from meshd.http import App, Request, Response, Router, open_http_listeners, serve_http


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def json(self) -> Any:
        return json.loads(self.body)


class RawClient:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._buf = bytearray()

    @classmethod
    async def connect(cls, port: int, *, ssl_context: ssl.SSLContext | None = None) -> RawClient:
        stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
        if ssl_context is not None:
            stream = trio.SSLStream(stream, ssl_context, server_hostname="localhost")
        return cls(stream)

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self) -> bool:
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            return False
        if not data:
            return False
        self._buf += data
        return True

    async def read_response(self, *, head: bool = False) -> RawResponse | None:
        """Read one response; None on a clean EOF before any byte of it."""
        while b"\r\n\r\n" not in self._buf:
            if not await self._fill():
                if self._buf:
                    raise AssertionError(f"truncated response head: {bytes(self._buf)!r}")
                return None
        end = self._buf.index(b"\r\n\r\n")
        lines = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
        del self._buf[: end + 4]
        _, status, reason = [*lines[0].split(" ", 2), ""][:3]
        headers = [(n, v.strip()) for n, _, v in (line.partition(":") for line in lines[1:])]
        response = RawResponse(int(status), reason, headers, b"")
        length = 0 if head or response.status < 200 else int(response.header("content-length") or 0)
        while len(self._buf) < length:
            if not await self._fill():
                raise AssertionError("truncated response body")
        response.body = bytes(self._buf[:length])
        del self._buf[:length]
        return response

    async def request(
        self,
        method: str,
        target: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> RawResponse:
        await self.send(encode_request(method, target, headers=headers, body=body))
        response = await self.read_response(head=method == "HEAD")
        assert response is not None, "connection closed instead of a response"
        return response

    async def at_eof(self, timeout: float = 2.0) -> bool:
        """True when the server closed the connection (within ``timeout``)."""
        with trio.fail_after(timeout):
            return not self._buf and not await self._fill()

    async def aclose(self) -> None:
        await self.stream.aclose()


def encode_request(
    method: str,
    target: str,
    *,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: test"]
    names = {n.lower() for n, _ in headers}
    lines += [f"{n}: {v}" for n, v in headers]
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def echo(req: Request) -> Response:
    return Response.json(
        {
            "method": req.method,
            "path": req.path,
            "params": req.path_params,
            "query": req.query,
            "body": req.body.decode(),
            "route": req.route_name,
        }
    )


class BlockingQuery:
    """A handler that waits until cancelled, as a blocking query does; its
    events say it started and that it was cancelled."""

    def __init__(self) -> None:
        self.started = trio.Event()
        self.cancelled = trio.Event()

    async def __call__(self, req: Request) -> Response:
        self.started.set()
        try:
            await trio.sleep(600)
        except trio.Cancelled:
            self.cancelled.set()
            raise
        return Response.text("too late")


def echo_router() -> Router:
    router = Router()
    router.add(["GET", "PUT"], "/v1/kv/*key", echo, name="kv")
    router.add("GET", "/v1/catalog/service/:service", echo, name="catalog_service")
    router.add("GET", "/v1/json", echo, name="json")
    router.add(["PUT", "POST"], "/v1/echo", echo, name="echo")
    return router


def slow_router(delay: float, body: str = "slow") -> Router:
    """``echo_router`` plus ``GET /v1/slow``: ``body`` after ``delay`` seconds."""

    async def slow(req: Request) -> Response:
        await trio.sleep(delay)
        return Response.text(body)

    router = echo_router()
    router.add("GET", "/v1/slow", slow, name="slow")
    return router


@asynccontextmanager
async def running(app: App, **kwargs: Any) -> AsyncIterator[int]:
    """Serve ``app`` on an ephemeral 127.0.0.1 port for the block; yield the port."""
    listeners = await open_http_listeners([("127.0.0.1", 0)])
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_http, listeners, app, **kwargs))
        yield port
        nursery.cancel_scope.cancel()


async def wait_until_served(port: int, refused: int, timeout: float) -> None:
    """Until a new connection's GET /v1/json is answered 200 (a connection
    slot freed up); every other answer meanwhile must be ``refused``."""
    with trio.fail_after(timeout):
        while True:
            fresh = await RawClient.connect(port)
            r = await fresh.request("GET", "/v1/json")
            await fresh.aclose()
            if r.status == 200:
                return
            assert r.status == refused, r.status
            await trio.sleep(0.01)
