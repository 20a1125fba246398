"""HTTP/1.1 framing for the L7 path: llhttp (``httptools``) parsing and
direct byte serialisation, over the proxy's non-blocking sockets.

h11 did this before; its pure-Python state machine was ~40% of the L7
path's user CPU per request. Behaviour kept from it:

- requests: keep-alive for HTTP/1.1 (HTTP/1.0, or ``Connection: close``,
  ends the connection after its response, which then says
  ``connection: close``); an HTTP/1.1 request without ``Host`` is a bad
  request; chunked and Content-Length bodies (both together are refused),
  buffered whole up to ``MAX_BODY`` (413); a head over ``MAX_HEAD`` bytes is
  refused with 431; ``Expect: 100-continue`` is answered
  ``100 Continue`` before the body is read; pipelined requests are
  answered in order, one after the other (a bad one after good ones is
  answered after them, then the connection closes);
- responses from upstreams: 1xx skipped, Content-Length, chunked or
  until-EOF bodies, no body for HEAD/204/304; a connection goes back to
  the pool only when the response said keep-alive and nothing follows it.

Header names arrive lowercased (as h11 gave them); outgoing names keep the
spelling they are given. A status line carries the reason phrase
(``HTTP/1.1 200 OK``). Upgrade/CONNECT requests never reach here on a
fresh connection (the handlers hand them to L4 first); one on a
keep-alive connection is answered as a plain request and the connection
then closes.
"""

from __future__ import annotations

import array
import collections
import socket
import ssl
from fcntl import ioctl
from http import HTTPStatus
from termios import FIONREAD
from typing import cast

import httptools

from .pump import send_all, wait_fd
from .reactor import Readiness

RECV_SIZE = 65536
MAX_BODY = 64 * 1024 * 1024
MAX_HEAD = 16384  # h11's default max_incomplete_event_size
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
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
_HOP_BY_HOP_RAW = frozenset(name.encode() for name in HOP_BY_HOP)
# A request's header fields: str pairs, or bytes ones as parsed.
HeaderList = list[tuple[str, str]] | list[tuple[bytes, bytes]]
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})  # else until EOF
_STATUS_LINES: dict[int, bytes] = {}
_RECV_BUF = bytearray(RECV_SIZE)  # one receive buffer for every connection (one thread)
_RECV_VIEW = memoryview(_RECV_BUF)
_UNREAD = array.array("i", [0])  # FIONREAD's answer (one thread)


class ProtocolError(Exception):
    """A message that cannot be parsed or framed: ``status`` and a one-line ``text``."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class _Refused(Exception):
    """Raised from a parser callback; carried out as the ProtocolError."""

    def __init__(self, error: ProtocolError) -> None:
        super().__init__(error.text)
        self.error = error


class _Stop(Exception):
    """Raised from a parser callback: nothing more is read on this connection."""


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")
    return line


def end_to_end(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` without hop-by-hop and framing headers (and those that
    ``Connection`` names)."""
    out: list[tuple[str, str]] = []
    named: set[str] | None = None
    for pair in headers:
        low = pair[0].lower()
        if low in HOP_BY_HOP:
            if low == "connection":
                named = named or set()
                named.update(t.strip().lower() for t in pair[1].split(","))
            continue
        out.append(pair)
    if named and not named <= HOP_BY_HOP:  # "keep-alive" names nothing left
        out = [(n, v) for n, v in out if n.lower() not in named]
    return out


def end_to_end_raw(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``end_to_end`` for headers as parsed (bytes), the same pairs kept in
    order: forwarded without a decode and an encode."""
    out = [pair for pair in headers if pair[0].lower() not in _HOP_BY_HOP_RAW]
    if len(out) == len(headers):  # no Connection header either
        return out
    named: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":  # its tokens as end_to_end reads them
            tokens = value.decode("latin-1").split(",")
            named.update(t.strip().lower().encode("latin-1") for t in tokens)
    named -= _HOP_BY_HOP_RAW  # "keep-alive" names nothing left
    if named:
        out = [pair for pair in out if pair[0].lower() not in named]
    return out


def _head(first: bytes, headers: list[tuple[str, str]]) -> bytes:
    text = "".join([f"{n}: {v}\r\n" for n, v in headers])
    if text.count("\n") != len(headers) or text.count("\r") != len(headers):
        raise ProtocolError(502, "header with a line break")
    return first + text.encode("latin-1") + b"\r\n"


def response_bytes(
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    head: bool = False,
    close: bool = False,
    length: str | None = None,
) -> bytes:
    """A whole response: ``headers`` (end-to-end ones) plus framing.

    Content-Length is the body's, or ``length`` (what the upstream said)
    for an answer to HEAD, which carries no body; ``close`` adds
    ``connection: close``."""
    out = list(headers)
    if close:
        out.append(("connection", "close"))
    if not head:
        out.append(("content-length", str(len(body))))
    elif length is not None:
        out.append(("content-length", length))
    data = _head(status_line(status), out)
    return data + body if body and not head else data


def request_bytes(method: str, target: str, headers: HeaderList, body: bytes) -> bytes:
    """A whole request; ``headers`` carry its framing (Content-Length)
    already: str pairs, or bytes ones as parsed (``end_to_end_raw``)."""
    first = f"{method} {target} HTTP/1.1\r\n".encode("latin-1")
    if not headers or isinstance(headers[0][0], str):
        return _head(first, cast("list[tuple[str, str]]", headers)) + body
    text = b"".join([n + b": " + v + b"\r\n" for n, v in headers])
    if text.count(b"\n") != len(headers) or text.count(b"\r") != len(headers):
        raise ProtocolError(502, "header with a line break")
    return first + text + b"\r\n" + body


async def recv_into_view(
    sock: socket.socket,
    *,
    wait_first: bool = False,
    ready: Readiness | None = None,
    peer_waits: bool = False,
) -> memoryview:
    """The next bytes of a non-blocking (TLS) socket, in the shared buffer
    (valid until the next call); empty at EOF.

    ``wait_first``: the bytes are most likely not there yet (an answer just
    asked for), so wait for readability before the first ``recv`` instead of
    paying for one that fails (a syscall and an exception). Bytes OpenSSL
    has already decrypted are read at once. TLS reads go straight to the
    ``_ssl`` object, as pump.py's do (``SSLSocket.recv_into`` adds two
    Python frames per call); a ragged EOF is an EOF, as it is there.

    ``ready``: the socket is watched by the reactor (reactor.py): its
    readability is waited for there, without re-arming the fd each time.
    In the reactor's set it is edge-triggered: a wait before a read is only
    safe once nothing is left of the bytes that came, so ``wait_first`` is
    ignored while ``ready.more`` says some may be. A plain read that filled
    the buffer may have left some; a TLS read returns one record, so it may
    have left some unless ``peer_waits`` (the read ended a message and the
    peer sends nothing before our next one: a response; a client may
    pipeline requests); before such a wait, the kernel's count of unread
    bytes (``_unread``) says whether a read would find any.
    Raises OSError, ssl.SSLError, trio.ClosedResourceError (the fd is being
    closed)."""
    fd = sock.fileno()
    sslobj = getattr(sock, "_sslobj", None)
    if wait_first and not (sslobj is not None and sslobj.pending()):
        if ready is None:
            await wait_fd(fd, readable=True)
        elif not (ready.more and ready.in_set and (sslobj is None or _unread(fd))):
            await ready.wait()
    while True:
        try:
            n = sock.recv_into(_RECV_BUF) if sslobj is None else sslobj.read(RECV_SIZE, _RECV_BUF)
            if ready is not None:
                ready.more = n == RECV_SIZE if sslobj is None else not peer_waits
            return _RECV_VIEW[:n]
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            if ready is None:
                await wait_fd(fd, readable=True)
            else:
                ready.more = False
                await ready.wait()
        except ssl.SSLWantWriteError:
            await wait_fd(fd, readable=False)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return _RECV_VIEW[:0]


def _unread(fd: int) -> bool:
    """Whether the kernel holds bytes of ``fd`` not read yet (FIONREAD).

    What a TLS read that may have left a record behind checks before a
    wait: one ioctl instead of a read that fails (a syscall, OpenSSL's
    error path and an ``SSLWantReadError``; the common case on a keep-alive
    connection, whose peer waits for our answer). Bytes that arrive after
    the check make a new edge, so the wait that follows still sees them.
    Sound only while OpenSSL takes one record at a time from the kernel
    (Python's ssl never turns read-ahead on; no kTLS, no MemoryBIO here):
    then what ``pending()`` does not hold is still in the kernel."""
    try:
        ioctl(fd, FIONREAD, _UNREAD, True)
    except OSError:
        return True  # let the read report it
    return _UNREAD[0] > 0


async def send_bytes(sock: socket.socket, data: bytes) -> None:
    """All of ``data`` to ``sock``. Raises OSError/ssl.SSLError."""
    if data:
        sslobj = getattr(sock, "_sslobj", None)
        try:  # the common case: the whole of it goes at once
            sent = sock.send(data) if sslobj is None else sslobj.write(data)
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        if sent < len(data):
            await send_all(sock, sock.fileno(), memoryview(data)[sent:])


class ParsedRequest:
    """One whole request as received (names lowercased), h11.Request-like."""

    __slots__ = ("_parts", "body", "expect_continue", "headers", "keep_alive", "method", "target")

    def __init__(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = b""
        self.keep_alive = True
        self.expect_continue = False
        self._parts: list[bytes] = []


class RequestReader:
    """The requests arriving on one server-side connection, in order."""

    def __init__(self, sock: socket.socket, max_body: int = MAX_BODY) -> None:
        self.sock = sock
        self.max_body = max_body
        self.ready: Readiness | None = None  # set while the reactor watches ``sock``
        self._parser = httptools.HttpRequestParser(self)
        self._ready: collections.deque[ParsedRequest] = collections.deque()
        self._current: ParsedRequest | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._size = 0
        self._head_bytes = 0
        self._in_head = False
        self._in_message = False
        self._error: ProtocolError | None = None
        self._stopped = False
        self._continued = False
        self._eof = False
        self._reads = 0

    def feed(self, data: bytes | memoryview) -> None:
        """Parse ``data``; a failure is kept and raised after the requests before it."""
        if self._stopped:
            return
        was_in_head = self._in_head
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._stopped = True  # answered as a plain request, then the connection ends
            if self._ready:
                self._ready[-1].keep_alive = False
            return
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            if isinstance(refused, _Refused):
                self._fail(refused.error)
            elif not isinstance(refused, _Stop):
                self._fail(ProtocolError(400, "bad request: malformed request"))
            return
        except httptools.HttpParserError as exc:
            if self._stopped:  # bytes after a request that ends the connection
                return
            reason = str(exc).split(": ", 1)[-1] or "malformed request"
            self._fail(ProtocolError(400, f"bad request: {reason}"))
            return
        if self._in_head and was_in_head:  # bound an incomplete head (httptools buffers it)
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                self._fail(ProtocolError(431, "bad request: request header fields too large"))

    def _fail(self, error: ProtocolError) -> None:
        self._stopped = True
        self._error = error

    def parsed(self) -> ParsedRequest | None:
        """The first whole request among the bytes fed so far, if any (no read)."""
        return self._ready.popleft() if self._ready else None

    async def next_request(self) -> ParsedRequest | None:
        """The next whole request; None when the peer closed between requests.

        Raises ProtocolError (answer it, then close), OSError, ssl.SSLError."""
        while True:
            if self._ready:
                return self._ready.popleft()
            if self._error is not None:
                raise self._error
            if self._eof or self._stopped:
                if self._in_message:
                    raise ProtocolError(400, "bad request: connection closed mid-request")
                return None
            current = self._current
            if current is not None and current.expect_continue and not self._continued:
                self._continued = True
                if not self._size:
                    await send_bytes(self.sock, CONTINUE)
            # Past the first read, a peer sends its next request only after
            # our answer: the bytes are rarely there already.
            data = await recv_into_view(self.sock, wait_first=self._reads > 0, ready=self.ready)
            self._reads += 1
            if not data:
                self._eof = True
                continue
            self.feed(data)

    # httptools callbacks (called from ``feed_data``)

    def on_message_begin(self) -> None:
        if self._stopped:  # after a request that ends the connection
            raise _Stop
        self._in_message = self._in_head = True
        self._head_bytes = 0
        self._url = b""
        self._headers = []
        self._size = 0
        self._continued = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        headers = self._headers
        size = len(self._url) + 16
        host = expect = False
        for name, value in headers:
            size += len(name) + len(value) + 4
            if name == b"host":
                host = True
            elif name == b"expect":
                expect = value.lower() == b"100-continue"
        if size > MAX_HEAD:
            raise _Refused(ProtocolError(431, "bad request: request header fields too large"))
        version = parser.get_http_version()
        if version == "1.1" and not host:
            raise _Refused(ProtocolError(400, "bad request: missing Host header"))
        req = ParsedRequest(parser.get_method(), self._url, headers)
        req.keep_alive = version == "1.1" and parser.should_keep_alive()
        req.expect_continue = expect and version == "1.1"
        self._current = req

    def on_body(self, body: bytes) -> None:
        req = self._current
        assert req is not None
        self._size += len(body)
        if self._size > self.max_body:
            raise _Refused(ProtocolError(413, "bad request: body too large"))
        req._parts.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        req = self._current
        if req is None:
            return
        self._current = None
        parts = req._parts
        if parts:
            req.body = parts[0] if len(parts) == 1 else b"".join(parts)
            req._parts = []
        self._ready.append(req)
        if not req.keep_alive:
            self._stopped = True  # nothing after it is read


class UpstreamClosed(Exception):
    """The upstream closed or broke the connection: ``before_response`` tells
    whether any response head had arrived."""

    def __init__(self, reason: str, *, before_response: bool) -> None:
        super().__init__(reason)
        self.before_response = before_response


class ResponseReader:
    """Reads the responses of one client-side keep-alive connection."""

    __slots__ = (
        "_done",
        "_framed",
        "_head_only",
        "_headers",
        "_in_body",
        "_keep_alive",
        "_parser",
        "_parts",
        "_size",
        "_status",
        "ready",
        "reusable",
        "sock",
    )

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._parser = httptools.HttpResponseParser(self)
        self._status = 0
        self._headers: list[tuple[str, str]] = []  # decoded as they come
        self._parts: list[bytes] = []
        self._size = 0
        self._head_only = False
        self._framed = True
        self._done = False
        self._in_body = False
        self._keep_alive = True
        self.reusable = True  # another request may follow on this connection
        self.ready: Readiness | None = None  # set while the reactor watches ``sock``

    async def read(self, head_only: bool) -> tuple[int, list[tuple[str, str]], bytes]:
        """The (final) response to the request just sent.

        Raises UpstreamClosed; OSError and ssl.SSLError pass through."""
        self._done = False
        self._in_body = False
        self._status = 0
        self._head_only = head_only
        wait_first = True  # the request was just sent
        while not self._done:
            data = await recv_into_view(
                self.sock, wait_first=wait_first, ready=self.ready, peer_waits=True
            )
            wait_first = False
            if not data:
                self.reusable = False
                if self._in_body and not self._framed:
                    self._finish()  # a body delimited by the end of the connection
                    break
                raise UpstreamClosed("connection closed", before_response=not self._status)
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                # 101 to a request whose Upgrade was never forwarded
                self.reusable = False
                raise UpstreamClosed("upgrade refused", before_response=not self._status) from None
            except httptools.HttpParserError as exc:
                self.reusable = False
                if self._done:
                    break  # what follows a whole response: not reused
                refused = exc.__context__
                reason = str(refused) if isinstance(refused, _Refused) else str(exc)
                raise UpstreamClosed(reason, before_response=not self._status) from None
        if not self._keep_alive:
            self.reusable = False
        body = b"".join(self._parts) if len(self._parts) != 1 else self._parts[0]
        return self._status, self._headers, body

    @property
    def got_head(self) -> bool:
        """Whether the current response's (final) head has arrived."""
        return self._status != 0

    def _finish(self) -> None:
        self._done = True
        self._in_body = False

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self._done:  # bytes after a whole response: never reuse this connection
            self.reusable = False
            raise _Refused(ProtocolError(502, "data after the response"))
        self._headers = []
        self._parts = []
        self._size = 0
        self._framed = False

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.lower()
        if key in _FRAMING:
            self._framed = True
        self._headers.append((key.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if status < 200:
            return  # 1xx: skipped (its message completes at once)
        self._status = status
        self._keep_alive = parser.should_keep_alive()
        self._in_body = True
        if self._head_only:
            # llhttp does not know the request was HEAD: stop here, and do
            # not reuse the connection (the parser would wait for a body).
            self._done = True
            self.reusable = False
            raise _Refused(ProtocolError(502, "head response"))

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY:
            raise _Refused(ProtocolError(502, "response body too large"))
        self._parts.append(body)

    def on_message_complete(self) -> None:
        if self._status:
            self._finish()
