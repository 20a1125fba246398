"""Agent-to-server RPC on port 8300, multiplexed over one mTLS connection.

Connections arrive through ``raft.transport.Transport``'s listener with the
hello kind ``"rpc"`` (so RPC shares Raft's port and TLS policy, as Consul's
8300 does). Frames are msgpack maps::

    request   {"v": 1, "id": n, "m": "KV.Apply", "a": {...}, "t": token}
    response  {"v": 1, "id": n, "ok": true, "r": result}
              {"v": 1, "id": n, "ok": false, "e": {"code": ..., "msg": ..., ...}}

Every request runs in its own task on the server, so a blocking query that
waits minutes does not hold up the calls behind it; answers go back in
completion order and are matched by ``id``.

``t`` is the ACL token the call acts with (the caller's, forwarded by the
agent making the call; see ``meshd.agent.rpc_rules``): the certificate only
authenticates the transport. The server's handlers read it from
``caller_token``.

Limits (Consul's ``limits.rpc_max_conns_per_client``): at most
``max_conns`` connections in all and ``max_conns_per_client`` per client IP
(0: no limit); a frame that has started arriving must be complete within
``frame_timeout`` seconds (an idle connection between frames may stay open),
and frames still arriving hold at most ``max_pending_bytes`` together (a
connection whose large frame would exceed it is closed), so slow or
half-sent frames cannot pin the server's memory.
An offender's connection is closed, logged at most once per
``LOG_INTERVAL`` per reason with the count of the ones not logged.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import math
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import trio

from raft.errors import RaftError, TransportError
from raft.tlsstream import open_tls_stream
from raft.transport import FramedStream, PeerInfo

from .metrics.recorder import NO_METRICS, Recorder

log = logging.getLogger("meshd.rpc")

RPC_KIND = "rpc"
VERSION = 1
MAX_IN_FLIGHT = 4096  # per connection, on both ends
LOG_INTERVAL = 10.0  # seconds between two log lines about refused connections
# Unfinished frames of all connections together hold at most this many bytes
# (8 full-size frames); frames up to SMALL_FRAME are never refused for it.
MAX_PENDING_BYTES = 64 << 20
SMALL_FRAME = 64 << 10

# The token of the RPC request being handled ("" when the caller sent none).
# Each request runs in its own task, so a handler sees its own caller's.
caller_token: contextvars.ContextVar[str] = contextvars.ContextVar(
    "meshd_rpc_caller_token", default=""
)


class RPCError(Exception):
    """An error answered by the remote end. ``code`` is one of the names in
    ``CODES``; ``details`` carries extra fields (e.g. ``leader``, ``field``)."""

    def __init__(self, code: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        self.code = code
        self.message = message
        self.details = dict(details or {})
        super().__init__(f"{code}: {message}")


CODES = (
    "NotLeader",  # details: leader (address or None)
    "Validation",  # details: field
    "UnknownMethod",
    # meshd.errors.REQUEST_ERRORS: the agent re-raises the same error class.
    "InvalidArgument",  # details: field
    "PermissionDenied",
    "ACLNotFound",
    "ACLDisabled",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "TooManyRequests",
    "NoLeader",
    "Unavailable",
    "Unimplemented",
    "Internal",
    "Timeout",  # raised by the client itself (RPCTimeout)
)


class RPCUnavailable(RPCError):
    """The server could not be reached or the connection broke mid-call; the
    call may or may not have taken effect."""

    def __init__(self, message: str) -> None:
        super().__init__("Unavailable", message)


class RPCConnectionLost(RPCUnavailable):
    """The connection broke after the request was sent: the server may have
    carried it out. A write must not be sent again (to this server or
    another); a read may."""


class RPCTimeout(RPCError, trio.TooSlowError):
    """No answer within the call's timeout; the call may or may not have
    taken effect, so it is not retried. Also a ``trio.TooSlowError``, so a
    caller's own deadline and the call's are caught alike."""

    def __init__(self, message: str) -> None:
        RPCError.__init__(self, "Timeout", message)


Handler = Callable[[Mapping[str, Any], PeerInfo], Awaitable[Any]]
_NO_SCOPE = contextlib.nullcontext()


@dataclass(frozen=True)
class Method:
    handler: Handler
    # Methods that may run for minutes (blocking queries) are not counted
    # against the per-connection limit's fast path; all are still bounded.
    blocking: bool = False


class RPCServer:
    """Dispatches RPC frames to registered methods. Register it on the
    transport with ``transport.register_handler(RPC_KIND, server.handle)``.

    ``metrics`` records every request (method, result, duration) and the
    blocking-capable ones in flight; it may be replaced while serving."""

    def __init__(
        self,
        *,
        metrics: Recorder | None = None,
        max_conns: int = 0,
        max_conns_per_client: int = 0,
        frame_timeout: float = math.inf,
        max_pending_bytes: int = MAX_PENDING_BYTES,
    ) -> None:
        self._methods: dict[str, Method] = {}
        self._error_mappers: list[Callable[[BaseException], RPCError | None]] = []
        self.metrics = metrics if metrics is not None else NO_METRICS
        self.max_conns = max_conns
        self.max_conns_per_client = max_conns_per_client
        self.frame_timeout = frame_timeout
        self._conns = 0
        self._per_client: dict[str, int] = {}
        self._refusals = _RefusalLog()
        self._pending = _Pending(max_pending_bytes)

    def methods(self) -> list[str]:
        """The names of every registered method."""
        return sorted(self._methods)

    def register(self, name: str, handler: Handler, *, blocking: bool = False) -> None:
        self._methods[name] = Method(handler, blocking)

    def add_error_mapper(self, fn: Callable[[BaseException], RPCError | None]) -> None:
        """``fn`` turns a handler's exception into an ``RPCError`` (or returns
        None to pass); unmapped exceptions answer ``Internal``."""
        self._error_mappers.append(fn)

    async def handle(self, framed: FramedStream, peer: PeerInfo) -> None:
        """Serve one connection until the client closes it. Cancelling this
        cancels every request still running on it."""
        host = peer.address.rpartition(":")[0].strip("[]") or peer.address
        refusal = self._admit(host)
        if refusal is not None:
            self._refusals.note(refusal, host)
            return  # the transport closes the connection
        try:
            await self._serve_conn(framed, peer)
        finally:
            self._conns -= 1
            left = self._per_client[host] - 1
            if left:
                self._per_client[host] = left
            else:
                del self._per_client[host]

    def _admit(self, host: str) -> str | None:
        """Count a new connection from ``host``, or say why it is refused."""
        if self.max_conns and self._conns >= self.max_conns:
            return "max_conns"
        per_client = self._per_client.get(host, 0)
        if self.max_conns_per_client and per_client >= self.max_conns_per_client:
            return "max_conns_per_client"
        self._conns += 1
        self._per_client[host] = per_client + 1
        return None

    async def _serve_conn(self, framed: FramedStream, peer: PeerInfo) -> None:
        send_lock = trio.Lock()
        limiter = trio.CapacityLimiter(MAX_IN_FLIGHT)
        deadline = _FrameDeadline(framed.stream, self.frame_timeout, self._pending)
        framed.stream = deadline
        async with trio.open_nursery() as nursery:
            try:
                while True:
                    with deadline.scope(framed.buffered):
                        req = await framed.receive()
                    if deadline.expired:
                        self._refusals.note("frame_timeout", peer.address)
                        break
                    nursery.start_soon(self._serve_one, framed, send_lock, limiter, req, peer)
            except TransportError:
                if deadline.over_budget:
                    self._refusals.note("pending_bytes", peer.address)
                # else the client went away
            nursery.cancel_scope.cancel()

    async def _serve_one(
        self,
        framed: FramedStream,
        send_lock: trio.Lock,
        limiter: trio.CapacityLimiter,
        req: Mapping[str, Any],
        peer: PeerInfo,
    ) -> None:
        rid = req.get("id")
        name = req.get("m")
        method = self._methods.get(name) if isinstance(name, str) else None
        label = str(name) if method is not None else "unknown"  # bounded label values
        try:
            limiter.acquire_nowait()
        except trio.WouldBlock:
            self.metrics.rpc_request(label, "TooManyRequests", 0.0)
            await self._answer(framed, send_lock, rid, None, RPCError("TooManyRequests", "busy"))
            return
        started = trio.current_time()
        token = req.get("t")
        caller_token.set(token if isinstance(token, str) else "")
        try:
            with self.metrics.blocking_query("rpc") if method and method.blocking else _NO_SCOPE:
                result, error = await self._dispatch(req, peer)
        finally:
            limiter.release()
        outcome = "ok" if error is None else error.code
        self.metrics.rpc_request(label, outcome, trio.current_time() - started)
        await self._answer(framed, send_lock, rid, result, error)

    async def _dispatch(
        self, req: Mapping[str, Any], peer: PeerInfo
    ) -> tuple[Any, RPCError | None]:
        name = req.get("m")
        args = req.get("a", {})
        if not isinstance(name, str) or not isinstance(args, Mapping):
            return None, RPCError("InvalidArgument", "malformed request frame")
        method = self._methods.get(name)
        if method is None:
            return None, RPCError("UnknownMethod", f"unknown method {name!r}")
        try:
            return await method.handler(args, peer), None
        except RPCError as exc:
            return None, exc
        except Exception as exc:
            for mapper in self._error_mappers:
                mapped = mapper(exc)
                if mapped is not None:
                    return None, mapped
            log.exception("event=rpc_handler_failed method=%s peer=%s", name, peer.address)
            return None, RPCError("Internal", "internal error")

    async def _answer(
        self,
        framed: FramedStream,
        lock: trio.Lock,
        rid: Any,
        result: Any,
        error: RPCError | None,
    ) -> None:
        frame: dict[str, Any] = {"v": VERSION, "id": rid, "ok": error is None}
        if error is None:
            frame["r"] = result
        else:
            frame["e"] = {"code": error.code, "msg": error.message, **error.details}
        with contextlib.suppress(TransportError):  # the client is gone: nobody waits for it
            await _send_locked(lock, framed, frame)


class _Pending:
    """Bytes of unfinished frames held by all of a server's connections."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


class _FrameDeadline(trio.abc.Stream):
    """The stream under a server's ``FramedStream``: once bytes of a frame
    arrive, the frame must be complete within ``timeout`` (``scope`` arms
    the deadline at the first bytes a ``receive`` reads, or at once when the
    ``FramedStream`` already holds the frame's first bytes), so a client cannot
    hold a half-sent frame's buffer for ever. Waiting between frames is free.
    The bytes of frames still arriving count against ``pending`` (shared by
    the server's connections): a frame past ``SMALL_FRAME`` that would take
    it over its limit breaks its connection (``over_budget``)."""

    def __init__(self, inner: trio.abc.Stream, timeout: float, pending: _Pending) -> None:
        self.inner = inner
        self.timeout = timeout
        self._pending = pending
        self._scope: trio.CancelScope | None = None
        self._held = 0  # bytes held or read during the current receive
        self.expired = False
        self.over_budget = False

    @contextlib.contextmanager
    def scope(self, buffered: int = 0) -> Any:
        """Cover one ``receive``. ``buffered``: bytes of the next frame the
        ``FramedStream`` already holds (read together with an earlier frame or
        the hello): the frame has started, so the deadline starts now, as no
        read in this receive would see its first bytes."""
        scope = self._scope = trio.CancelScope()
        if buffered:
            scope.deadline = trio.current_time() + self.timeout
            self._held = buffered
            self._pending.used += buffered
        try:
            with scope:
                yield
        finally:
            self._scope = None
            self._pending.used -= self._held
            self._held = 0
        if scope.cancelled_caught:
            self.expired = True

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        scope = self._scope
        if data and scope is not None:
            if scope.deadline == math.inf:
                scope.deadline = trio.current_time() + self.timeout
            self._held += len(data)
            self._pending.used += len(data)
            if self._held > SMALL_FRAME and self._pending.used > self._pending.limit:
                self.over_budget = True
                raise trio.BrokenResourceError("unfinished RPC frames over their byte budget")
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _send_locked(lock: trio.Lock, framed: FramedStream, frame: Mapping[str, Any]) -> None:
    """``framed.send(frame)`` holding ``lock``. A free lock is taken without
    ``Lock.acquire``'s own scheduling round (the send checkpoints anyway):
    one fewer task switch per call, which 2,000 agents' heartbeats from one
    process and a busy leader's answers both pay."""
    try:
        lock.acquire_nowait()
    except trio.WouldBlock:
        await lock.acquire()
    try:
        await framed.send(frame)
    finally:
        lock.release()


class _RefusalLog:
    """One log line per reason per ``LOG_INTERVAL``, with how many were not
    logged since the last, so a flood of bad clients cannot flood the log."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}
        self.counts: dict[str, int] = {}

    def note(self, reason: str, peer: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = trio.current_time()
        if now - self._last.get(reason, -math.inf) < LOG_INTERVAL:
            self._quiet[reason] = self._quiet.get(reason, 0) + 1
            return
        self._last[reason] = now
        log.warning(
            "event=rpc_conn_closed reason=%s peer=%s not_logged=%d",
            reason,
            peer,
            self._quiet.pop(reason, 0),
        )


class _Conn:
    def __init__(self, framed: FramedStream) -> None:
        self.framed = framed
        self.waiters: dict[int, tuple[trio.Event, list[Any]]] = {}
        self.send_lock = trio.Lock()
        self.broken: str | None = None
        self.scope = trio.CancelScope()


class RPCClient:
    """Calls RPC methods on servers, one multiplexed connection per address.

    ``nursery`` owns the reader tasks; cancelling it closes every connection.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        ssl_context: ssl.SSLContext,
        *,
        server_name: str,
        local_id: str,
        connect_timeout: float = 5.0,
        source_address: str | None = None,
        token: Callable[[], str] | None = None,
    ) -> None:
        self._nursery = nursery
        # The token a call acts with when it names none (see ``call``).
        self._token = token
        self._ssl = ssl_context
        self._server_name = server_name
        self._local_id = local_id
        self._connect_timeout = connect_timeout
        self._source = source_address
        self._conns: dict[str, _Conn] = {}
        self._connecting: dict[str, trio.Lock] = {}
        self._ids = itertools.count(1)

    async def call(
        self,
        address: str,
        method: str,
        args: Mapping[str, Any],
        *,
        timeout: float = 30.0,
        token: str | None = None,
    ) -> Any:
        """Call ``method`` on the server at ``address`` and return its result,
        acting with ``token`` (else the client's ``token()``, else none).

        Raises ``RPCError`` for an error the server answered,
        ``RPCUnavailable`` if it could not be reached or the connection broke
        before the request was sent, ``RPCConnectionLost`` (a subclass) if it
        broke after,
        and ``RPCTimeout`` after ``timeout``: trio's and ssl's exceptions stay
        inside the client. On cancellation the call is abandoned (the server
        may still carry it out).
        """
        try:
            return await self._call(address, method, args, timeout, token)
        except trio.TooSlowError:
            raise RPCTimeout(f"{method} to {address}: no answer within {timeout:g}s") from None

    async def _call(
        self,
        address: str,
        method: str,
        args: Mapping[str, Any],
        timeout: float,
        token: str | None,
    ) -> Any:
        with trio.fail_after(timeout):
            conn = await self._connection(address)
            rid = next(self._ids)
            done = trio.Event()
            slot: list[Any] = []
            conn.waiters[rid] = (done, slot)
            try:
                frame = {"v": VERSION, "id": rid, "m": method, "a": dict(args)}
                if token is None and self._token is not None:
                    token = self._token()
                if token:
                    frame["t"] = token
                sent = False
                try:
                    await _send_locked(conn.send_lock, conn.framed, frame)
                    sent = True
                except TransportError as exc:
                    # Not (wholly) sent: the server cannot have decoded it.
                    self._break(address, conn, str(exc))
                await done.wait()
            finally:
                conn.waiters.pop(rid, None)
        resp = slot[0]
        if resp is None:
            lost = RPCConnectionLost if sent else RPCUnavailable
            raise lost(f"connection to {address} lost: {conn.broken}")
        if resp.get("ok"):
            return resp.get("r")
        err = dict(resp.get("e") or {})
        code = str(err.pop("code", "Internal"))
        msg = str(err.pop("msg", ""))
        raise RPCError(code, msg, err)

    async def _connection(self, address: str) -> _Conn:
        conn = self._conns.get(address)
        if conn is not None and conn.broken is None:
            return conn
        lock = self._connecting.setdefault(address, trio.Lock())
        async with lock:
            conn = self._conns.get(address)
            if conn is not None and conn.broken is None:
                return conn
            framed = await self._dial(address)
            conn = _Conn(framed)
            self._conns[address] = conn
            self._nursery.start_soon(self._reader, address, conn)
            return conn

    async def _dial(self, address: str) -> FramedStream:
        host, _, port = address.rpartition(":")
        try:
            with trio.fail_after(self._connect_timeout):
                stream = await open_tls_stream(
                    host,
                    int(port),
                    self._ssl,
                    server_hostname=self._server_name,
                    local_address=self._source,
                )
                framed = FramedStream(stream)
                await framed.send({"v": VERSION, "kind": RPC_KIND, "id": self._local_id})
                return framed
        except (OSError, ssl.SSLError, trio.BrokenResourceError, trio.TooSlowError) as exc:
            # TLS failures arrive wrapped; the wrapped SSLError says what was wrong.
            reason = str(exc) or str(exc.__cause__ or type(exc).__name__)
            raise RPCUnavailable(f"cannot reach {address}: {reason}") from exc
        except (RaftError, ValueError) as exc:
            raise RPCUnavailable(f"cannot reach {address}: {exc}") from exc

    async def _reader(self, address: str, conn: _Conn) -> None:
        with conn.scope:
            try:
                while True:
                    resp = await conn.framed.receive()
                    waiter = conn.waiters.get(resp.get("id"))  # type: ignore[arg-type]
                    if waiter is not None:
                        waiter[1].append(resp)
                        waiter[0].set()
            except TransportError as exc:
                self._break(address, conn, str(exc))
        self._break(address, conn, "closed")
        with trio.CancelScope(shield=True):
            await conn.framed.aclose()

    def _break(self, address: str, conn: _Conn, reason: str) -> None:
        if conn.broken is None:
            conn.broken = reason
        if self._conns.get(address) is conn:
            del self._conns[address]
        for done, slot in list(conn.waiters.values()):
            if not slot:
                slot.append(None)
            done.set()
        conn.scope.cancel()

    async def aclose(self) -> None:
        for address, conn in list(self._conns.items()):
            self._break(address, conn, "client closed")
