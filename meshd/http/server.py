"""HTTP/1.1 server for the agent API: trio streams around llhttp (``httptools``).

Rules of a connection (everything that decides when to read, answer or close
lives in ``_Connection``):

- One task per connection answers requests strictly in order (keep-alive and
  pipelining); a second task, the reader, owns ``receive_some`` for the whole
  life of the connection and feeds the parser. Because someone is always reading,
  a client that goes away (EOF or reset) is noticed while its handler runs
  and the answering task's cancel scope is cancelled: a blocking query stops
  as soon as its client is gone, as Go's request context does for Consul.
  No answer is written after that.
- Except for writes on plain TCP: once the answering task is idle and the
  only request waiting is a complete ``PUT`` or ``DELETE``, the reader parks
  and the answering task reads the next requests itself ("solo"), saving the
  reader's scheduler round on every request of a writer (kv_bench ``put, 1
  conn``); it hands the socket back before it answers anything else. A
  write's handler is bounded (the hold for a leader) and its outcome does
  not depend on the client staying, so nobody watching for its client to go
  away during that handler changes nothing but when the connection closes.
- The reader reads at most ``_READ_AHEAD`` bytes beyond what the answering
  task asked for, so pipelining cannot buffer without bound.
- Limits: request head larger than ``max_header_bytes`` -> 431; body larger
  than ``max_body`` (or the route's own ``App.body_limits`` entry; declared
  or counted) -> 413; malformed HTTP -> 400;
  body not complete ``request_timeout`` after its head -> 408; head not
  complete ``idle_timeout`` after the previous answer -> 408 if it had
  started, else the idle connection is closed silently; an answer the peer
  does not read within ``idle_timeout`` -> closed. Every error answer closes
  the connection after a lingering close, so the client reads the answer
  instead of a reset.
- Admission: over ``max_connections`` a new connection gets 503, over
  ``per_client_max_connections`` from one IP it gets 429 (Consul's
  ``limits.http_max_conns_per_client``); both are then closed. At most
  ``_MAX_REJECTING`` refusals linger to deliver their answer at once; beyond
  that a refused connection is closed without one, so a flood cannot hold
  file descriptors through its refusals. Refusals are logged at most once
  per 10 s per status, with the count of those not logged.
- Accepting: ``accept.serve_listeners`` backs off on EMFILE/ENFILE (100 ms
  doubling to 2 s) and logs it at most once per 10 s, where trio logged a
  traceback every 100 ms.
- Responses always carry ``Content-Length``; HEAD gets the GET headers and no
  body; ``Expect: 100-continue`` is answered just before the body is read.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import socket
import ssl
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from http import HTTPStatus
from typing import NoReturn

import httptools
import trio

from meshd.http.accept import RateLimitedLog, serve_listeners
from meshd.http.app import App
from meshd.http.deadlines import DeadlineSweeper
from meshd.http.message import TEXT_PLAIN, Headers, Request, Response, StreamingResponse
from meshd.http.request_log import log_request
from meshd.http.response_head import InvalidResponse, response_head
from raft.stages import CURRENT, Sample, Stages
from registry.blocking import admit

__all__ = ["ServerLimits", "open_http_listeners", "serve_http"]

log = logging.getLogger("meshd.http")

_RECV_SIZE = 64 * 1024
_READ_AHEAD = 256 * 1024
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 16 * 1024 * 1024
_CLOSE_TIMEOUT = 1.0
_NO_BODY_STATUSES = frozenset({204, 304})
_connection_ids = itertools.count(1)
_NETWORK_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError)
# Refused connections answered (and lingered on) at once; more are just closed.
_MAX_REJECTING = 64
# Requests whose handler runs with nobody watching the socket (see "solo").
_SOLO_METHODS = frozenset({b"PUT", b"DELETE"})
# With MESHD_RAFT_STAGES (benchmarks): a request carrying this header (the
# client's CLOCK_MONOTONIC time in ns when it started sending) is timed stage
# by stage (raft/stages.py, path ``http_<method>``; bench/kv_stages.py).
_STAGES_HEADER = b"x-meshd-stages"


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Size, time and connection limits of one ``serve_http`` (see the module docstring)."""

    max_body: int = 4 << 20
    max_header_bytes: int = 64 * 1024
    idle_timeout: float = 75.0
    request_timeout: float = 30.0
    max_connections: int = 4096
    per_client_max_connections: int = 200


class _Admission:
    """Counts open connections, in total and per client IP."""

    def __init__(self, limits: ServerLimits) -> None:
        self._limits = limits
        self._total = 0
        self._per_client: dict[str, int] = {}
        self.rejecting = 0  # refusals currently sending their answer

    @property
    def total(self) -> int:
        """Connections admitted and still open."""
        return self._total

    def admit(self, host: str) -> int | None:
        """Count a new connection from ``host``; return 503/429 instead when over a limit."""
        # 0 means no limit (Consul's http_max_conns_per_client: 0).
        total_limit = self._limits.max_connections
        if total_limit and self._total >= total_limit:
            return 503
        count = self._per_client.get(host, 0)
        client_limit = self._limits.per_client_max_connections
        if client_limit and count >= client_limit:
            return 429
        self._total += 1
        self._per_client[host] = count + 1
        return None

    def release(self, host: str) -> None:
        """Forget a connection that ``admit`` accepted."""
        self._total -= 1
        count = self._per_client[host] - 1
        if count:
            self._per_client[host] = count
        else:
            del self._per_client[host]


def _peer_address(stream: trio.abc.Stream) -> tuple[str, int] | None:
    inner = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    if not isinstance(inner, trio.SocketStream):
        return None
    try:
        peer = inner.socket.getpeername()
    except OSError:
        return None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return str(peer[0]), int(peer[1])
    return None


def _raw_socket(stream: trio.abc.Stream) -> socket.socket | None:
    """The standard-library socket under a plain ``trio.SocketStream``, for
    the connection's own non-blocking reads and writes; None for TLS or any
    other stream (those go through trio's stream methods)."""
    if type(stream) is not trio.SocketStream:
        return None
    raw = getattr(stream.socket, "_sock", None)
    return raw if isinstance(raw, socket.socket) else None


def _simple_response(status: int, text: str) -> bytes:
    body = text.encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        f"Content-Type: {TEXT_PLAIN}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


async def _linger_close(stream: trio.abc.Stream) -> None:
    """Stop sending, then read and discard until EOF (bounded), so the peer gets our answer.

    Closing a socket with unread input makes the kernel send a reset, which
    can destroy a response the client has not read yet. Errors are ignored.
    """
    with trio.move_on_after(_LINGER_SECONDS):
        try:
            if isinstance(stream, trio.abc.HalfCloseableStream):
                await stream.send_eof()
            drained = 0
            while drained < _LINGER_BYTES:
                data = await stream.receive_some(_RECV_SIZE)
                if not data:
                    break
                drained += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
            pass


async def _close_stream(stream: trio.abc.Stream) -> None:
    # A TLS close_notify needs the peer's cooperation; do not wait long for it.
    with trio.move_on_after(_CLOSE_TIMEOUT):
        await stream.aclose()
    await trio.aclose_forcefully(stream)


async def _reject(stream: trio.abc.Stream, status: int) -> None:
    text = "Too many connections from this client" if status == 429 else "Too many connections"
    with trio.move_on_after(_LINGER_SECONDS):
        try:
            await stream.send_all(_simple_response(status, text))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        else:
            await _linger_close(stream)
    await trio.aclose_forcefully(stream)


class _ClientGone(Exception):
    """The peer closed or reset the connection while we waited for it."""


class _Refused(Exception):
    """Raised inside a parser callback: the request breaks a limit (status, text)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


# What the answering task is doing; decides what a timeout means.
_HEAD, _BODY, _HANDLER, _SEND = range(4)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_BAD_REQUEST = (400, "400 Bad Request")
_HEAD_TOO_LARGE = (431, "431 Request Header Fields Too Large")


class _Incoming:
    """One request as the parser delivers it: head first, body as it arrives."""

    __slots__ = (
        "body",
        "complete",
        "expect_continue",
        "failure",
        "headers",
        "keep_alive",
        "limit",
        "method",
        "read_ns",
        "size",
        "target",
    )

    def __init__(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body: list[bytes] = []
        self.size = 0
        self.limit = 0
        self.complete = False
        self.keep_alive = True
        self.expect_continue = False
        self.failure: tuple[int, str] | None = None  # refused while its body arrived
        self.read_ns = 0  # when its last bytes were read (only while timing stages)


class _Connection:
    """One HTTP/1.1 connection: a reader task feeding the parser and an in-order responder.

    The parser is llhttp (through ``httptools``), driven by the reader: it
    queues each request once its head is complete and fills in the body as
    it arrives; a protocol error or a broken limit is queued as a failure
    after the requests before it, so pipelined requests are answered in
    order before the error.

    A single cancel scope covers the responder; its deadline moves with the
    phase (a float the server's ``DeadlineSweeper`` checks: cheaper than a
    scope per step, or than moving the scope's deadline, which both show in
    the profile):
    waiting for a request head -> ``idle_timeout`` after the previous
    response started; reading a body -> ``request_timeout``; running the
    handler -> none; writing the response -> ``idle_timeout``. The reader
    cancels the scope when the peer goes away.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        app: App,
        limits: ServerLimits,
        peer: tuple[str, int] | None,
        scheme: str,
        sweeper: DeadlineSweeper,
        stages: Stages | None = None,
    ) -> None:
        self._stream = stream
        self._stages = stages
        self._read_ns = 0
        self._sweeper = sweeper
        self._sock = _raw_socket(stream)
        self._app = app
        self._limits = limits
        self._peer = peer
        self._scheme = scheme
        self._id = next(_connection_ids)
        self._seq = 0
        self._parser = httptools.HttpRequestParser(self)
        self._queue: collections.deque[_Incoming | tuple[int, str]] = collections.deque()
        self._current: _Incoming | None = None  # head complete, body still arriving
        self._url: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._in_head = False
        self._in_message = False
        self._stopped = False  # the parser failed or the connection was upgraded
        self._data_arrived = trio.lowlevel.ParkingLot()
        self._reader_wakeup = trio.lowlevel.ParkingLot()
        self._read_ahead = 0
        self._solo = False  # the answering task reads the socket, the reader is parked
        self._eof = False
        self._phase = _HEAD
        self._deadline = trio.current_time() + limits.idle_timeout
        self._scope = trio.CancelScope()
        self._linger = False
        self._sample: Sample | None = None  # the next request's, when timed

    async def run(self) -> None:
        """Serve requests until the connection ends; never raises on network errors.

        Cancellation (server shutdown) closes the connection at once,
        cancelling any handler in progress.
        """
        self._sweeper.add(self)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_loop)
                try:
                    with self._scope:
                        await self._serve_requests()
                except (trio.BrokenResourceError, trio.ClosedResourceError, _ClientGone):
                    pass
                finally:
                    nursery.cancel_scope.cancel()
            if self._scope.cancelled_caught:
                await self._after_cancel()
            if self._linger:
                await _linger_close(self._stream)
        finally:
            # The parser holds our bound callbacks: a cycle that only a full
            # GC pass would free, and the agent's GC policy freezes
            # long-lived objects (agent/gc_policy.py): break it here.
            del self._parser
            self._sweeper.discard(self)
            await _close_stream(self._stream)

    def check_deadline(self, now: float) -> None:
        """Called by the server's ``DeadlineSweeper``: the phase's time is up."""
        if now >= self._deadline:
            self._scope.cancel()

    async def _after_cancel(self) -> None:
        if self._eof:
            if self._phase == _HANDLER:
                log.debug("http client went away, handler cancelled conn=%x", self._id)
            return
        # A deadline passed. Idle keep-alive connections just close; a
        # request that started arriving but did not finish gets 408.
        if self._phase == _BODY or (self._phase == _HEAD and self._in_message):
            with trio.move_on_after(_CLOSE_TIMEOUT), suppress(*_NETWORK_ERRORS, _ClientGone):
                await self._send_error(408, "408 Request Timeout")

    # -- reading ---------------------------------------------------------

    async def _read_loop(self) -> None:
        """Feed everything the peer sends into the parser; on EOF, cancel the responder."""
        while True:
            while self._read_ahead >= _READ_AHEAD or self._solo:
                await self._reader_wakeup.park()
            try:
                data = await self._receive()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self._eof = True
                self._data_arrived.unpark_all()
                self._scope.cancel()
                return
            self._read_ahead += len(data)
            await self._take(data)
            self._solo = self._may_go_solo()  # (the reader runs only while not solo)
            self._data_arrived.unpark_all()

    async def _take(self, data: bytes) -> None:
        """Parse one chunk from the peer (the reader's, or a solo read's)."""
        if self._stages is not None:
            self._read_ns = time.perf_counter_ns()
        if not self._stopped:
            # Parsing thousands of requests that arrived together (10,000
            # watchers re-arming) in one round holds the loop as long as
            # handling them would: parse a batch per round too.
            await admit()
            self._feed(data)

    def _may_go_solo(self) -> bool:
        """Whether the answering task can read the socket itself from now on:
        plain TCP, it is idle, and all that waits is one complete write
        (nothing half-read that the reader would have to finish)."""
        queue = self._queue
        if self._sock is None or self._phase != _HEAD or len(queue) != 1:
            return False
        item = queue[0]
        return (
            isinstance(item, _Incoming)
            and item.complete
            and item.method in _SOLO_METHODS
            and self._current is None
            and not self._in_message
            and not self._stopped
        )

    async def _read_directly(self) -> None:
        """Solo: the answering task's own read (what the reader's loop does
        with one chunk); raises ``_ClientGone`` at EOF or on a reset."""
        data = await self._receive()
        if not data:
            self._eof = True
            raise _ClientGone
        await self._take(data)

    async def _receive(self) -> bytes:
        """The next bytes from the peer (b"" at EOF or reset).

        On a plain TCP connection: wait until the socket is readable, then
        one ``recv``. trio's ``receive_some`` tries a ``recv`` first (which
        fails between requests), and after a successful one spends a whole
        scheduler round in a checkpoint; each request paid both. Waiting is
        the checkpoint here (one per read, so a flood cannot hold the loop).
        """
        sock = self._sock
        if sock is None:
            return bytes(await self._stream.receive_some(_RECV_SIZE))
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                return sock.recv(_RECV_SIZE)
            except BlockingIOError:
                continue
            except OSError:
                return b""  # reset by the peer: as EOF

    async def _send_all(self, data: bytes) -> None:
        """Write ``data``: on a plain TCP connection at once when the socket
        takes it all (the usual case: an answer fits its buffer), without
        trio's checkpoint after the write; otherwise, or once the client is
        gone (the scope cancelled: nothing more is written), through
        ``send_all``, which waits, raises ``BrokenResourceError`` for a dead
        peer and ``Cancelled`` for a cancelled scope."""
        sock = self._sock
        if sock is not None and not self._scope.cancel_called:
            try:
                sent = sock.send(data)
            except OSError:
                sent = 0  # send_all meets the error again and maps it
            if sent == len(data):
                return
            if sent:
                data = data[sent:]
        await self._stream.send_all(data)

    def _feed(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request asking to switch protocols is queued; it is answered
            # like any other and the connection then closes.
            self._stopped = True
            return
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            if not isinstance(refused, _Refused):
                raise
            self._fail(refused.status, refused.text)
            return
        except httptools.HttpParserError as exc:
            log.debug("http bad request conn=%x reason=%s", self._id, exc)
            self._fail(*_BAD_REQUEST)
            return
        if self._in_head:
            # llhttp buffers a head until it is complete: bound it here.
            self._head_bytes += len(data)
            if self._head_bytes > self._limits.max_header_bytes:
                self._fail(*_HEAD_TOO_LARGE)

    def _fail(self, status: int, text: str) -> None:
        self._stopped = True
        current = self._current
        if current is not None:
            current.failure = (status, text)
        else:
            self._queue.append((status, text))

    # httptools callbacks (called from ``feed_data``)

    def on_message_begin(self) -> None:
        self._in_message = self._in_head = True
        self._head_bytes = 0
        self._url = []
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        target = b"".join(self._url)
        method = parser.get_method()
        headers = self._headers
        size = len(method) + len(target) + 12
        declared = expect = None
        for name, value in headers:
            size += len(name) + len(value) + 4
            if name == b"content-length":
                declared = int(value)  # llhttp has validated it
            elif name == b"expect":
                expect = value
        if size > self._limits.max_header_bytes:
            raise _Refused(*_HEAD_TOO_LARGE)
        limit = self._body_limit(method, target)
        if declared is not None and declared > limit:
            raise _Refused(413, self._too_large(limit))
        incoming = _Incoming(method, target, headers)
        incoming.limit = limit
        incoming.keep_alive = parser.should_keep_alive()
        incoming.expect_continue = expect is not None and expect.lower() == b"100-continue"
        self._current = incoming
        self._queue.append(incoming)

    def on_body(self, body: bytes) -> None:
        incoming = self._current
        assert incoming is not None
        incoming.size += len(body)
        if incoming.size > incoming.limit:
            raise _Refused(413, self._too_large(incoming.limit))
        incoming.body.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        if self._current is not None:
            self._current.complete = True
            self._current.read_ns = self._read_ns
            self._current = None

    # -- answering -------------------------------------------------------

    async def _wait_for_data(self) -> None:
        if self._eof:
            raise _ClientGone
        if self._solo:
            await self._read_directly()
            return
        self._read_ahead = 0
        self._reader_wakeup.unpark_all()
        await self._data_arrived.park()

    async def _read_request(self) -> tuple[Request, bool] | None:
        """The next request and whether the connection stays open after its
        answer; None when the connection should end. Error answers (400,
        408, 413, 431) are sent here."""
        queue = self._queue
        while not queue:
            await self._wait_for_data()
        item = queue[0]
        if isinstance(item, tuple):
            await self._send_error(*item)
            return None
        if not item.complete and item.failure is None:
            self._phase = _BODY
            self._deadline = trio.current_time() + self._limits.request_timeout
            if item.expect_continue:
                await self._send_all(_CONTINUE)
            while not item.complete and item.failure is None:
                await self._wait_for_data()
        if item.failure is not None:
            await self._send_error(*item.failure)
            return None
        queue.popleft()
        if self._solo and item.method not in _SOLO_METHODS:
            # Its handler may wait (a blocking query): the reader watches again
            # (read-ahead counted afresh, or it could stay parked meanwhile).
            self._solo = False
            self._read_ahead = 0
            self._reader_wakeup.unpark_all()
        keep_alive = item.keep_alive and not (self._stopped and not queue)
        if self._stages is not None:
            self._open_sample(item)
        return self._build_request(item), keep_alive

    def _open_sample(self, item: _Incoming) -> None:
        """Time this request's stages when its client asked (``_STAGES_HEADER``)."""
        assert self._stages is not None
        self._sample = None
        for name, value in item.headers:
            # A monotonic ns timestamp: digits only, and few (int() refuses
            # over 4,300 of them, and nothing needs more than 20).
            if name == _STAGES_HEADER and len(value) <= 20 and value.isdigit():
                sample = self._stages.begin((self._id, self._seq + 1), int(value))
                if sample is not None:
                    sample += [("read", item.read_ns), ("dequeued", time.perf_counter_ns())]
                    self._sample = sample

    def _too_large(self, limit: int) -> str:
        return f"Request body too large, max size: {limit} bytes"

    def _body_limit(self, method: bytes, target: bytes) -> int:
        """The route's own limit (``App.body_limits``), else ``max_body``."""
        overrides = getattr(self._app, "body_limits", None)
        if overrides:
            path = target.partition(b"?")[0].decode("latin-1")
            found = overrides.get((method.decode("latin-1"), path))
            if found is not None:
                return int(found)
        return self._limits.max_body

    def _build_request(self, item: _Incoming) -> Request:
        valid_utf8 = True
        try:
            target = item.target.decode("utf-8")
        except UnicodeDecodeError:
            target, valid_utf8 = item.target.decode("utf-8", "replace"), False
        path, _, query = target.partition("?")
        if not path.startswith("/"):
            path = _origin_form_path(path)
        self._seq += 1
        return Request(
            item.method.decode("ascii"),
            path,
            query,
            Headers(item.headers),
            b"".join(item.body),
            remote_addr=self._peer,
            request_id=f"{self._id:x}-{self._seq}",
            scheme=self._scheme,
            valid_utf8=valid_utf8,
        )

    async def _serve_requests(self) -> None:
        while True:
            got = await self._read_request()
            if got is None:
                return
            request, keep_alive = got
            self._phase = _HANDLER
            self._deadline = math.inf
            started = time.monotonic()
            # Thousands of requests read in one round (watchers re-arming
            # after a change) are dispatched a batch per round, so the round
            # stays short for the Raft driver sharing this loop.
            await admit()
            if self._stages is not None and self._sample is not None:
                response, kept = await self._staged(request, keep_alive, self._sample)
            else:
                response = await self._answer(request)
                kept = await self._send_response(request.method, response, keep_alive)
            elapsed = time.monotonic() - started
            log_request(request.method, request.path, response.status, elapsed, self._peer)
            if not kept:
                return
            self._phase = _HEAD

    async def _answer(self, request: Request) -> Response:
        """The app's response; a handler's bug is logged and answered 500."""
        try:
            return await self._app.handle(request)
        except Exception:
            log.exception("http app failed request_id=%s", request.request_id)
            return Response.text("Internal error", 500)

    async def _staged(
        self, request: Request, keep_alive: bool, sample: Sample
    ) -> tuple[Response, bool]:
        """Answer ``request`` as ``_serve_requests`` does, stamping its stages
        (a benchmark asked: ``_STAGES_HEADER``); ``CURRENT`` lets the handler
        and the Raft driver stamp theirs into the same sample."""
        assert self._stages is not None
        self._sample = None
        key = (self._id, self._seq)
        token = CURRENT.set(sample)
        try:
            try:
                response = await self._answer(request)
            finally:
                CURRENT.reset(token)
            sample.append(("answered", time.perf_counter_ns()))
            kept = await self._send_response(request.method, response, keep_alive)
        except BaseException:  # cancelled, or the write failed: no sample left open
            self._stages.drop(key)
            raise
        self._stages.end(key, f"http_{request.method.lower()}", "written")
        return response, kept

    async def _send_response(self, method: str, response: Response, keep_alive: bool) -> bool:
        """Write ``response``; returns whether the connection stays open."""
        # One deadline covers writing this answer and waiting for the next
        # request: a peer that stops reading is dropped after idle_timeout.
        self._phase = _SEND
        self._deadline = trio.current_time() + self._limits.idle_timeout
        try:
            head, keep_alive = response_head(response, keep_alive)
        except (InvalidResponse, UnicodeEncodeError):
            # The handler's bug, answered like any other one.
            log.exception("http invalid response status=%r conn=%x", response.status, self._id)
            response = Response.text("Internal error", 500)
            head, keep_alive = response_head(response, keep_alive)
        if isinstance(response, StreamingResponse) and method != "HEAD":
            await self._send_stream(response)
            return False
        body = response.body
        if body and method != "HEAD" and response.status not in _NO_BODY_STATUSES:
            head += body
        await self._send_all(head)
        return keep_alive

    async def _send_stream(self, response: StreamingResponse) -> None:
        """Write a chunked body as it is produced, for as long as it lasts
        (no deadline: it ends when the iterator does, the client goes away
        or the server stops)."""
        head, _ = response_head(response, False, chunked=True)
        self._deadline = math.inf
        await self._stream.send_all(head)
        async for chunk in response.chunks:
            if chunk:
                await self._stream.send_all(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await self._stream.send_all(b"0\r\n\r\n")

    async def _send_error(self, status: int, text: str) -> None:
        """Answer with a plain-text error and mark the connection for a lingering close."""
        self._linger = True
        response = Response.text(text, status)
        phase = self._phase
        try:
            await self._send_response("", response, False)
        finally:
            self._phase = phase


def _origin_form_path(target: str) -> str:
    # Absolute-form ("http://host/path") is legal in requests (RFC 9112 3.2.2).
    scheme, sep, rest = target.partition("://")
    if sep and scheme.lower() in ("http", "https"):
        _, slash, path = rest.partition("/")
        return "/" + path if slash else "/"
    return target


async def open_http_listeners(addrs: Sequence[tuple[str, int]]) -> list[trio.SocketListener]:
    """Bind TCP listeners for every ``(host, port)``; port 0 picks a free port.

    Raises ``OSError`` if an address cannot be bound; listeners opened
    before the failure are closed. Cancellation closes them too.
    """
    listeners: list[trio.SocketListener] = []
    try:
        for host, port in addrs:
            listeners.extend(await trio.open_tcp_listeners(port, host=host))
    except BaseException:
        for listener in listeners:
            await trio.aclose_forcefully(listener)
        raise
    return listeners


async def serve_http(
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    app: App,
    *,
    ssl_context: ssl.SSLContext | None = None,
    max_body: int = 4 << 20,
    max_header_bytes: int = 64 * 1024,
    idle_timeout: float = 75.0,
    request_timeout: float = 30.0,
    max_connections: int = 4096,
    per_client_max_connections: int = 200,
    task_status: trio.TaskStatus[list[trio.abc.Listener[trio.abc.Stream]]] = (
        trio.TASK_STATUS_IGNORED
    ),
) -> NoReturn:
    """Serve ``app`` over HTTP/1.1 on ``listeners`` until cancelled.

    With ``ssl_context`` (an ``ssl.SSLContext``) every listener is wrapped in
    ``trio.SSLListener`` and serves HTTPS. ``task_status.started`` receives
    the listeners actually accepting (wrapped when TLS). Limits are
    described in the module docstring.

    Raises only what the listeners raise on accept (trio retries the
    transient ones); errors of single connections are logged, never
    propagated. Cancellation closes the listeners and every connection,
    cancelling handlers in progress.
    """
    limits = ServerLimits(
        max_body=max_body,
        max_header_bytes=max_header_bytes,
        idle_timeout=idle_timeout,
        request_timeout=request_timeout,
        max_connections=max_connections,
        per_client_max_connections=per_client_max_connections,
    )
    active: list[trio.abc.Listener[trio.abc.Stream]] = list(listeners)
    scheme = "http"
    if ssl_context is not None:
        active = [trio.SSLListener(lst, ssl_context, https_compatible=True) for lst in active]
        scheme = "https"
    admission = _Admission(limits)
    limiter = RateLimitedLog(log)

    async def refuse(stream: trio.abc.Stream, host: str, status: int) -> None:
        limiter.log(
            logging.WARNING,
            f"rejected-{status}",
            "event=http_connection_rejected status=%d from=%s open=%d max_connections=%d "
            "per_client_max_connections=%d",
            status,
            host,
            admission.total,
            limits.max_connections,
            limits.per_client_max_connections,
        )
        if admission.rejecting >= _MAX_REJECTING:
            return  # closed by the accept loop without an answer
        admission.rejecting += 1
        try:
            await _reject(stream, status)
        finally:
            admission.rejecting -= 1

    async def handle(stream: trio.abc.Stream) -> None:
        peer = _peer_address(stream)
        host = peer[0] if peer is not None else ""
        rejected = admission.admit(host)
        if rejected is not None:
            await refuse(stream, host, rejected)
            return
        try:
            await _Connection(stream, app, limits, peer, scheme, sweeper, stages).run()
        except Exception:
            log.exception("http connection failed from=%s", host)
        finally:
            admission.release(host)

    sweeper = DeadlineSweeper(limits.idle_timeout, limits.request_timeout)
    stages = Stages.from_env()  # None unless a benchmark asks
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sweeper.run)
        await serve_listeners(handle, active, limiter=limiter, task_status=task_status)
