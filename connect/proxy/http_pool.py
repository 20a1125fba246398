"""Pooled keep-alive mTLS connections to upstream proxies (and, on the
inbound side, plain ones to the local app).

http1.py does the protocol (llhttp parsing, direct serialisation); this
module keeps the connections. Bodies are buffered whole: the L7 path
retries requests, so it needs the request body again, and it answers with
a Content-Length (chunked requests and responses are re-framed).

``Pool`` keeps idle connections per endpoint (``MAX_IDLE`` each, LIFO);
a connection goes back only when its response said keep-alive and nothing
followed it. A reused connection the peer had already closed (the race of
every keep-alive pool) is retried once on a fresh one, before any response
byte was read.
"""

from __future__ import annotations

import contextlib
import math
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from connect.l7.request import Headers, RawHeaders

from .expiry import Expired, expiry
from .http1 import (
    HOP_BY_HOP,
    MAX_BODY,
    RECV_SIZE,
    HeaderList,
    ParsedRequest,
    ProtocolError,
    RequestReader,
    ResponseReader,
    UpstreamClosed,
    end_to_end,
    end_to_end_raw,
    request_bytes,
    response_bytes,
    send_bytes,
)
from .pump import wait_fd
from .reactor import reactor, unwatch
from .sockets import close

__all__ = [
    "HOP_BY_HOP",
    "MAX_BODY",
    "Expired",
    "Pool",
    "UpstreamConn",
    "UpstreamReset",
    "UpstreamResponse",
    "end_to_end",
    "forward_fields",
    "local_error",
    "recv_some",
    "send_bytes",
    "serialize",
]

MAX_IDLE = 64


def forward_fields(
    headers: Headers, method: str, body: bytes, *, as_text: bool = False
) -> HeaderList:
    """The end-to-end ``headers`` to forward with ``body`` (Content-Length
    added for a body or a method that has one): the parser's bytes as they
    came when nothing read or changed them (``RawHeaders``) unless
    ``as_text``, else text."""
    framed = body or method in ("POST", "PUT", "PATCH")
    if not as_text and headers.__class__ is RawHeaders:
        assert isinstance(headers, RawHeaders)
        if not headers.decoded:
            raw = end_to_end_raw(headers.raw)
            if framed:
                raw.append((b"content-length", b"%d" % len(body)))
            return raw
    text = end_to_end(headers.items())
    if framed:
        text.append(("content-length", str(len(body))))
    return text


class UpstreamReset(Exception):
    """The upstream closed or broke the connection before a whole response."""

    def __init__(self, reason: str, *, before_response: bool) -> None:
        super().__init__(reason)
        self.before_response = before_response


async def recv_some(sock: socket.socket) -> bytes:
    """Up to RECV_SIZE bytes from a non-blocking (TLS) socket; b"" at EOF."""
    fd = sock.fileno()
    while True:
        try:
            return sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            await wait_fd(fd, readable=True)
        except ssl.SSLWantWriteError:
            await wait_fd(fd, readable=False)
        except ssl.SSLZeroReturnError:
            return b""


class UpstreamConn:
    """One keep-alive connection to an upstream proxy (``expiry.Timed``:
    the deadline of the exchange running on it, if any)."""

    __slots__ = ("deadline", "endpoint", "expired", "reader", "sock", "timer_at", "uses")

    def __init__(self, sock: ssl.SSLSocket, endpoint: str) -> None:
        self.sock = sock
        self.endpoint = endpoint
        self.reader = ResponseReader(sock)
        self.uses = 0
        self.deadline = math.inf
        self.timer_at = math.inf
        self.expired = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        """Close the socket (unwatched by the reactor first)."""
        if self.reader.ready is not None:
            ready, self.reader.ready = self.reader.ready, None
            unwatch(self.sock.fileno(), ready)
        close(self.sock)


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def serialize(resp: UpstreamResponse, request: ParsedRequest, *, close: bool = False) -> bytes:
    """``resp`` as the answer to ``request`` (its end-to-end headers, framed
    anew; a HEAD answer keeps the upstream's Content-Length and no body)."""
    head = request.method == b"HEAD"
    length = None
    if head:
        length = next((v for n, v in resp.headers if n.lower() == "content-length"), None)
    return response_bytes(
        resp.status,
        end_to_end(resp.headers),
        resp.body,
        head=head,
        close=close or not request.keep_alive,
        length=length,
    )


def local_error(exc: ProtocolError) -> bytes:
    """The answer to a request that could not be read; the connection then closes."""
    headers = [("content-type", "text/plain")]
    return response_bytes(exc.status, headers, exc.text.encode(), close=True)


async def serve_requests(
    sock: socket.socket,
    reader: RequestReader,
    answer: Callable[[ParsedRequest], Awaitable[UpstreamResponse]],
) -> None:
    """Read requests from ``sock`` one at a time and send each ``answer``,
    until the client closes, asks to, or sends what cannot be read (answered
    with ``local_error``). The loop of both L7 sides. ``sock`` is watched by the
    reactor while it runs (reactor.py: no epoll re-arm per wait
    while many connections are busy)."""
    fd = sock.fileno()
    ready = reader.ready = reactor().watch(fd)
    try:
        await _serve(sock, reader, answer)
    finally:
        reader.ready = None
        unwatch(fd, ready)


async def _serve(
    sock: socket.socket,
    reader: RequestReader,
    answer: Callable[[ParsedRequest], Awaitable[UpstreamResponse]],
) -> None:
    while True:
        try:
            event = await reader.next_request()
        except ProtocolError as exc:
            with contextlib.suppress(OSError, ssl.SSLError):
                await send_bytes(sock, local_error(exc))
            return
        except (OSError, ssl.SSLError):
            return
        if event is None:
            return
        resp = await answer(event)
        try:
            await send_bytes(sock, serialize(resp, event))
        except (OSError, ssl.SSLError, ProtocolError):
            return
        if not event.keep_alive:
            return


Dialer = Callable[[str], Awaitable[ssl.SSLSocket]]


class Pool:
    """Idle keep-alive connections by endpoint (``host:port``)."""

    def __init__(self, dial: Dialer) -> None:
        self._dial = dial
        self._idle: dict[str, list[UpstreamConn]] = {}

    async def get(self, endpoint: str, deadline: float = math.inf) -> UpstreamConn:
        """An idle connection to ``endpoint`` or a new one (its dial errors
        propagate: OSError, ssl.SSLError, trio.TooSlowError, identity errors;
        a dial still running at ``deadline`` raises ``Expired``)."""
        idle = self._idle.get(endpoint)
        while idle:
            conn = idle.pop()
            if conn.sock.fileno() >= 0:
                return conn
        if deadline == math.inf:
            return _watched(UpstreamConn(await self._dial(endpoint), endpoint))
        with trio.move_on_at(deadline):  # only a dial pays for a cancel scope
            return _watched(UpstreamConn(await self._dial(endpoint), endpoint))
        raise Expired("deadline passed while connecting")

    def put(self, conn: UpstreamConn) -> None:
        """Keep ``conn`` for reuse when another request may follow on it."""
        if conn.reader.reusable:
            idle = self._idle.get(conn.endpoint)
            if idle is None:
                idle = self._idle[conn.endpoint] = []
            if len(idle) < MAX_IDLE:
                idle.append(conn)
                return
        conn.close()

    def retain(self, endpoints: set[str]) -> None:
        """Close idle connections to endpoints no longer in ``endpoints``."""
        for ep in [e for e in self._idle if e not in endpoints]:
            for conn in self._idle.pop(ep):
                conn.close()

    def close_all(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    async def request(
        self,
        endpoint: str,
        method: str,
        target: str,
        headers: HeaderList,
        body: bytes,
        deadline: float = math.inf,
    ) -> UpstreamResponse:
        """One exchange with ``endpoint`` (``headers`` as text, or bytes as
        parsed); a stale pooled connection is replaced once. Raises
        UpstreamReset, the dial errors of ``get``, or ``Expired`` when the
        exchange is still running at ``deadline`` (trio clock; expiry.py
        keeps it without a cancel scope per exchange)."""
        timed = deadline != math.inf
        for _ in range(2):
            conn = await self.get(endpoint, deadline)
            reused = conn.uses > 0
            conn.uses += 1
            if timed:
                expiry().arm(conn, deadline)
            try:
                resp = await _exchange(conn, method, target, headers, body)
            except UpstreamReset as exc:
                conn.close()
                if reused and exc.before_response:
                    continue
                raise
            except trio.ClosedResourceError:
                conn.close()
                if conn.expired:
                    raise Expired("deadline passed") from None
                raise
            except BaseException:
                conn.close()
                raise
            finally:
                conn.deadline = math.inf  # expiry's disarm, inlined
            self.put(conn)
            return resp
        raise UpstreamReset("connection reset", before_response=True)


def _watched(conn: UpstreamConn) -> UpstreamConn:
    """``conn`` watched by the reactor for its life (reactor.py: its answers
    are waited for in the reactor's set while many connections are busy)."""
    conn.reader.ready = reactor().watch(conn.sock.fileno())
    return conn


async def _exchange(
    conn: UpstreamConn, method: str, target: str, headers: HeaderList, body: bytes
) -> UpstreamResponse:
    try:
        await send_bytes(conn.sock, request_bytes(method, target, headers, body))
    except (OSError, ssl.SSLError, ProtocolError) as exc:
        raise UpstreamReset(str(exc) or "send failed", before_response=True) from None
    try:
        status, hdrs, resp_body = await conn.reader.read(method == "HEAD")
    except UpstreamClosed as exc:
        raise UpstreamReset(str(exc), before_response=exc.before_response) from None
    except (OSError, ssl.SSLError) as exc:
        raise UpstreamReset(
            str(exc) or "read failed", before_response=not conn.reader.got_head
        ) from None
    return UpstreamResponse(status, hdrs, resp_body)
