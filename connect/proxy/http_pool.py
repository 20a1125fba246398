"""HTTP/1.1 over the proxy's non-blocking sockets: reads, and pooled
keep-alive mTLS connections to upstream proxies.

h11 does the protocol (sans-I/O); this module moves its bytes with the same
readiness loop as the L4 pump (``wait_fd``). Bodies are buffered whole:
the L7 path retries requests, so it needs the request body again, and it
answers with a Content-Length (chunked requests and responses are
re-framed).

``Pool`` keeps idle connections per endpoint (``MAX_IDLE`` each, LIFO);
a connection goes back only when h11 says both sides are ready for the
next cycle. A reused connection the peer had already closed (the race of
every keep-alive pool) is retried once on a fresh one, before any response
byte was read.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import h11

from .pump import send_all, wait_fd
from .sockets import close

MAX_IDLE = 64
RECV_SIZE = 65536
MAX_BODY = 64 * 1024 * 1024
# Hop-by-hop headers (RFC 9110 7.6.1) and the framing ones this side sets.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


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


async def send_bytes(sock: socket.socket, data: bytes) -> None:
    """All of ``data`` to ``sock``. Raises OSError/ssl.SSLError."""
    if data:
        await send_all(sock, sock.fileno(), memoryview(data))


async def next_event(conn: h11.Connection, sock: socket.socket) -> object:
    """The next h11 event, reading from ``sock`` as needed.

    Raises h11.RemoteProtocolError, OSError, ssl.SSLError."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await recv_some(sock))


async def read_body(conn: h11.Connection, sock: socket.socket) -> bytes:
    """The rest of the current message's body (until EndOfMessage)."""
    parts: list[bytes] = []
    size = 0
    while True:
        event = await next_event(conn, sock)
        if isinstance(event, h11.Data):
            parts.append(bytes(event.data))
            size += len(event.data)
            if size > MAX_BODY:
                raise h11.RemoteProtocolError("body too large", error_status_hint=413)
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(parts)
        elif isinstance(event, h11.ConnectionClosed):
            raise h11.RemoteProtocolError("connection closed in the middle of a body")


def end_to_end(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` without hop-by-hop and framing headers (and those that
    ``Connection`` names)."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
    }
    return [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP and n.lower() not in named]


@dataclass
class UpstreamConn:
    """One keep-alive connection to an upstream proxy."""

    sock: ssl.SSLSocket
    endpoint: str
    h: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))
    uses: int = 0


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


Dialer = Callable[[str], Awaitable[ssl.SSLSocket]]


class Pool:
    """Idle keep-alive connections by endpoint (``host:port``)."""

    def __init__(self, dial: Dialer) -> None:
        self._dial = dial
        self._idle: dict[str, list[UpstreamConn]] = {}

    async def get(self, endpoint: str) -> UpstreamConn:
        """An idle connection to ``endpoint`` or a new one (its dial errors
        propagate: OSError, ssl.SSLError, trio.TooSlowError, identity errors)."""
        idle = self._idle.get(endpoint)
        while idle:
            conn = idle.pop()
            if conn.sock.fileno() >= 0:
                return conn
        return UpstreamConn(await self._dial(endpoint), endpoint)

    def put(self, conn: UpstreamConn) -> None:
        """Keep ``conn`` for reuse when both sides can start another cycle."""
        h = conn.h
        if h.our_state is h11.DONE and h.their_state is h11.DONE:
            h.start_next_cycle()
            idle = self._idle.setdefault(conn.endpoint, [])
            if len(idle) < MAX_IDLE:
                idle.append(conn)
                return
        close(conn.sock)

    def retain(self, endpoints: set[str]) -> None:
        """Close idle connections to endpoints no longer in ``endpoints``."""
        for ep in [e for e in self._idle if e not in endpoints]:
            for conn in self._idle.pop(ep):
                close(conn.sock)

    def close_all(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                close(conn.sock)
        self._idle.clear()

    async def request(
        self,
        endpoint: str,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> UpstreamResponse:
        """One exchange with ``endpoint``; a stale pooled connection is
        replaced once. Raises UpstreamReset, or the dial errors of ``get``."""
        for _ in range(2):
            conn = await self.get(endpoint)
            reused = conn.uses > 0
            conn.uses += 1
            try:
                resp = await _exchange(conn, method, target, headers, body)
            except UpstreamReset as exc:
                close(conn.sock)
                if reused and exc.before_response:
                    continue
                raise
            except BaseException:
                close(conn.sock)
                raise
            self.put(conn)
            return resp
        raise UpstreamReset("connection reset", before_response=True)


async def _exchange(
    conn: UpstreamConn, method: str, target: str, headers: list[tuple[str, str]], body: bytes
) -> UpstreamResponse:
    h = conn.h
    try:
        out = h.send(h11.Request(method=method, target=target, headers=headers))
        if body:
            out += h.send(h11.Data(data=body))
        out += h.send(h11.EndOfMessage())
        await send_bytes(conn.sock, out)
    except (OSError, ssl.SSLError, h11.LocalProtocolError) as exc:
        raise UpstreamReset(str(exc) or "send failed", before_response=True) from None
    got_response = False
    try:
        while True:
            event = await next_event(h, conn.sock)
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                got_response = True
                resp_body = await read_body(h, conn.sock)
                hdrs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
                return UpstreamResponse(event.status_code, hdrs, resp_body)
            if isinstance(event, h11.ConnectionClosed):
                raise UpstreamReset("connection closed", before_response=not got_response)
    except (OSError, ssl.SSLError, h11.RemoteProtocolError) as exc:
        raise UpstreamReset(str(exc) or "read failed", before_response=not got_response) from None
