"""The mTLS transport between Raft servers, on trio.

Wire rules (everything that affects the protocol lives here):

* TLS 1.3, both certificates chain to the cluster CA (``raft.tls``); the
  dialer checks that the listener's certificate names ``server_name``.
* Frames: 4-byte big-endian payload length, one msgpack map; a frame over
  ``max_frame`` is refused and the connection closed.
* First frame: hello ``{"v": 1, "kind": <kind>, "id": <sender id>}``. Kinds
  ``raft``/``raft_snapshot`` also need the DNS SAN ``server_name`` on the
  dialer's certificate, else the connection is refused and logged; other
  kinds go to handlers from ``Transport.register_handler`` (meshd's RPC).
* ``raft``: one-way, then ``raft.codec`` message maps. Replies use the
  responder's own outgoing connection (one per peer, like etcd's stream).
* ``raft_snapshot``: one snapshot per connection, so heartbeats never wait
  behind it: ``{"m": <message without data>, "size": n}``, chunks
  ``{"c": <bytes>}``, ``{"end": true}``; the receiver answers
  ``{"ok": true}`` once the reassembled message is on ``incoming``.

Raft tolerates lost, duplicated and reordered messages (Raft §5.1, §5.3), so
``Transport.send`` never blocks: it writes the frame at once when the peer's
connection is up and idle (the socket takes what it can without waiting;
the peer's writer task finishes the rest before anything newer), else it
enqueues on a bounded per-peer queue, and drops (and counts) when the queue
is full or the peer is unknown.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import ssl
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

import trio

from .accept import AcceptFailures, serve_listeners
from .codec import CodecError, message_from_obj, message_to_obj, pack, unpack
from .errors import PeerRejectedError, TransportError
from .tls import peer_dns_names
from .tlsstream import TLSSocketStream, open_tls_stream, wrap_server_stream
from .types import Message, MessageType, Snapshot

MAX_FRAME = 8 << 20
HELLO_VERSION = 1
KIND_RAFT = "raft"
KIND_SNAPSHOT = "raft_snapshot"

_HEADER = struct.Struct(">I")
_READ_SIZE = 1 << 16
_MAX_BATCH = 512  # messages per send_all; bounds the latency of one write
_CHUNK_OVERHEAD = 32  # msgpack bytes around a chunk payload: {"c": bin32}
_BACKOFF_START = 0.05
_BACKOFF_CAP = 2.0
_CLOSE_TIMEOUT = 1.0
_MAX_ID_LEN = 256

log = logging.getLogger("raft.transport")

Handler = Callable[["FramedStream", "PeerInfo"], Awaitable[None]]


def _kv(event: str, **fields: object) -> str:
    """One structured log line: ``event=... key=value``, values quoted when needed."""
    parts = [f"event={event}"]
    for key, value in fields.items():
        text = str(value)[:256]  # values may come from the network
        if not text or any(c in text for c in ' "=\n\t'):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


def _reason(exc: BaseException) -> str:
    """A short, log-friendly cause: the TLS reason or errno name if there is one."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError):
            return f"tls:{cur.reason or 'verify_failed'}:{cur.verify_message}"
        if isinstance(cur, ssl.SSLError):
            return f"tls:{cur.reason or type(cur).__name__}"
        if isinstance(cur, BaseExceptionGroup) and cur.exceptions:
            cur = cur.exceptions[0]
            continue
        if isinstance(cur, OSError) and cur.errno is not None:
            return f"{type(cur).__name__}:{cur.strerror}"
        cur = cur.__cause__ or cur.__context__
    return str(exc) or type(exc).__name__


@contextmanager
def _mapped(what: str) -> Iterator[None]:
    """Map trio/ssl/socket errors to ``TransportError`` at the I/O boundary."""
    try:
        yield
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        rejected = isinstance(exc.__cause__, ssl.SSLCertVerificationError)
        error = PeerRejectedError if rejected else TransportError
        raise error(f"{what}: {_reason(exc)}") from exc


def encode_frame(obj: Mapping[str, Any], *, max_frame: int = MAX_FRAME) -> bytes:
    """Return ``obj`` as one frame: length prefix plus msgpack payload.

    Raises ``TransportError`` when the payload exceeds ``max_frame`` and
    ``CodecError`` when ``obj`` holds something msgpack cannot encode.
    """
    try:
        payload = pack(obj)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode frame: {exc}") from exc
    if len(payload) > max_frame:
        raise TransportError(f"frame_too_large: {len(payload)} > {max_frame}")
    return _HEADER.pack(len(payload)) + payload


class FramedStream:
    """Length-prefixed msgpack maps over any ``trio.abc.Stream``.

    One task may send while another receives. After a receive error the
    stream is broken and every further ``receive`` raises ``TransportError``
    (frame boundaries can no longer be trusted). Cancelling ``send`` or
    ``receive`` midway leaves a partial frame: close the stream after that.
    """

    def __init__(self, stream: trio.abc.Stream, *, max_frame: int = MAX_FRAME) -> None:
        if not 0 < max_frame <= 0xFFFFFFFF:
            raise ValueError(f"max_frame: out of range: {max_frame}")
        self.stream = stream
        self.max_frame = max_frame
        self._buf = bytearray()
        self._pos = 0
        self._broken: str | None = None
        # Benchmarks (raft/stages.py): when each read returned, so a frame's
        # "bytes read" time is known to whoever decodes it.
        self.stamp_reads = False
        self.read_ns = 0

    @property
    def buffered(self) -> int:
        """Bytes already read from the stream and not yet returned as frames
        (the start of the next frame, if non-zero: one read can bring the end
        of one frame and the start of the next)."""
        return len(self._buf) - self._pos

    async def send(self, obj: Mapping[str, Any]) -> None:
        """Send one map as one frame. Raises ``TransportError`` if it is over
        ``max_frame`` (nothing is written; the stream stays usable) or the
        connection fails."""
        await self.send_frames([encode_frame(obj, max_frame=self.max_frame)])

    async def send_many(self, objs: Iterable[Mapping[str, Any]]) -> None:
        """Send several maps with one write; raises like ``send`` and writes
        nothing if any map is too large."""
        await self.send_frames([encode_frame(o, max_frame=self.max_frame) for o in objs])

    async def send_frames(self, frames: Iterable[bytes]) -> None:
        """Write frames made by ``encode_frame`` with one ``send_all``.
        Raises ``TransportError`` when the connection fails."""
        data = b"".join(frames)
        with _mapped("send"):
            await self.stream.send_all(data)

    async def receive(self) -> dict[str, Any]:
        """Return the next frame's map.

        Raises ``TransportError`` on EOF (``closed_by_peer`` at a frame
        boundary, ``eof_mid_frame`` otherwise), on a frame over ``max_frame``
        (the stream is then closed), on bytes that are not one msgpack map,
        and on connection failure. ``async for`` instead ends at a clean EOF.
        """
        obj = await self._next()
        if obj is None:
            raise TransportError("closed_by_peer")
        return obj

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        while (obj := await self._next()) is not None:
            yield obj

    async def aclose(self) -> None:
        """Close the stream (TLS close_notify, bounded to ~1 s). Never raises
        ``TransportError``; the socket is closed even when cancelled."""
        with trio.move_on_after(_CLOSE_TIMEOUT):
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await self.stream.aclose()

    def _fail(self, reason: str) -> TransportError:
        self._broken = reason
        return TransportError(reason)

    async def _fill(self, need: int) -> bool:
        """Read until ``need`` unread bytes are buffered; False on clean EOF."""
        while len(self._buf) - self._pos < need:
            if self._pos > _READ_SIZE or (self._pos and self._pos == len(self._buf)):
                del self._buf[: self._pos]
                self._pos = 0
            want = need - (len(self._buf) - self._pos)
            # Errors mapped here rather than by ``_mapped``: no context
            # manager built per read on every Raft message's receive path.
            try:
                chunk = await self.stream.receive_some(min(max(_READ_SIZE, want), 1 << 20))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise self._fail(f"receive: {_reason(exc)}") from exc
            if not chunk:
                return False
            if self.stamp_reads:
                self.read_ns = time.perf_counter_ns()
            self._buf += chunk
        return True

    async def receive_batch(self) -> list[dict[str, Any]]:
        """The next frame's map and every later one already buffered (one
        read of the socket often brings several); ``[]`` at a clean EOF.
        Raises like ``receive``; a bad frame behind good ones is raised by
        the next call, after the good ones were returned."""
        obj = await self._next()
        if obj is None:
            return []
        batch = [obj]
        while self._broken is None:
            try:
                more = self._take()
            except TransportError:
                break  # the stream is broken: the next call raises
            if more is None:
                break
            batch.append(more)
        return batch

    def _take(self) -> dict[str, Any] | None:
        """The next frame's map if all of it is buffered, else None (an
        oversized frame is left for ``_next``, which closes the stream)."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos < _HEADER.size:
            return None
        (size,) = _HEADER.unpack_from(buf, pos)
        start = pos + _HEADER.size
        if size > self.max_frame or len(buf) - start < size:
            return None
        payload = bytes(buf[start : start + size])
        self._pos = start + size
        try:
            obj = unpack(payload)
        except CodecError as exc:
            raise self._fail(f"bad_frame: {exc}") from exc
        if not isinstance(obj, dict):
            raise self._fail("bad_frame: not a map")
        return obj

    async def _next(self) -> dict[str, Any] | None:
        if self._broken is not None:
            raise TransportError(f"stream broken: {self._broken}")
        # One read usually brings the whole frame: take, read, take.
        while (obj := self._take()) is None:
            buffered = len(self._buf) - self._pos
            need = _HEADER.size
            if buffered >= _HEADER.size:
                (size,) = _HEADER.unpack_from(self._buf, self._pos)
                if size > self.max_frame:
                    error = self._fail(f"frame_too_large: {size} > {self.max_frame}")
                    await trio.aclose_forcefully(self.stream)
                    raise error
                need += size
            if not await self._fill(need):
                if buffered:
                    raise self._fail("eof_mid_frame")
                return None
        return obj


@dataclasses.dataclass(frozen=True, slots=True)
class PeerInfo:
    """Who is on the other end of an incoming connection."""

    address: str  # "host:port" of the remote socket
    dns_names: tuple[str, ...]  # DNS SANs of its verified certificate
    peer_id: str | None  # "id" from its hello, if it sent one
    hello: Mapping[str, Any]


@dataclasses.dataclass(slots=True)
class PeerStats:
    sent: int = 0
    dropped: int = 0
    received: int = 0
    reconnects: int = 0


class _Peer:
    """Queues and connection state of one outgoing peer."""

    def __init__(self, peer_id: str, address: str, queue_size: int) -> None:
        self.id = peer_id
        self.address = address
        # Messages, or frame bytes a direct send could not finish.
        self.queue_send, self.queue_recv = trio.open_memory_channel[Message | bytes](queue_size)
        # The live connection while its writer is idle and nothing is queued:
        # ``send`` may then write to it at once (see ``Transport.send``).
        self.direct: TLSSocketStream | None = None
        # One snapshot streams while at most one more waits.
        self.snap_send, self.snap_recv = trio.open_memory_channel[Message](1)
        self.scope = trio.CancelScope()
        self.conn_scope: trio.CancelScope | None = None
        self.in_flight = 0
        self.connected_once = False
        self.overflow_logged = False
        self.dial_failures = 0


def _backoff(attempt: int, rng: random.Random) -> float:
    """Exponential backoff with equal jitter: in [d/2, d], d doubling to the cap."""
    delay = min(_BACKOFF_CAP, _BACKOFF_START * (1 << min(attempt, 16)))
    return delay / 2 + rng.uniform(0, delay / 2)


def source_address(bind_host: str) -> str | None:
    """The local address to dial from: ``bind_host`` unless it is a wildcard."""
    return None if bind_host in ("", "0.0.0.0", "::") else bind_host


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TransportError(f"bad_address: {address!r}")
    return host.strip("[]"), int(port)


def _remote_address(stream: TLSSocketStream) -> str:
    try:
        host, port = stream.getpeername()[:2]
    except OSError:
        return "unknown"
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _hello_refusal(
    hello: Mapping[str, Any], names: tuple[str, ...], server_name: str
) -> str | None:
    """Why a hello must be refused, or None. Raft kinds need a server certificate."""
    kind, peer_id = hello.get("kind"), hello.get("id")
    if hello.get("v") != HELLO_VERSION or not isinstance(kind, str):
        return "bad_hello"
    if peer_id is not None and not (isinstance(peer_id, str) and 0 < len(peer_id) <= _MAX_ID_LEN):
        return "bad_hello_id"
    if kind in (KIND_RAFT, KIND_SNAPSHOT):
        if server_name not in names:
            return "missing_server_san"  # e.g. a client.<dc>.<domain> certificate
        if peer_id is None:
            return "bad_hello_id"
    return None


class Transport:
    """mTLS Raft transport: per-peer outgoing queues and one TLS listener.

    ``send`` enqueues without blocking; per-peer tasks started by ``serve``
    dial, batch and write. Every received message is put on ``incoming``,
    which is bounded: when its consumer falls behind, readers stop reading,
    TCP pushes back on the senders and their queues drop.
    """

    def __init__(
        self,
        local_id: str,
        bind: tuple[str, int],
        server_ssl: ssl.SSLContext,
        client_ssl: ssl.SSLContext,
        *,
        server_name: str = "server.dc1.consul",
        queue_size: int = 4096,
        snapshot_chunk: int = 1 << 20,
        max_frame: int = MAX_FRAME,
        max_snapshot: int = 1 << 32,
        io_timeout: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if queue_size < 1 or snapshot_chunk < 1 or max_frame < 1024:
            raise ValueError("queue_size and snapshot_chunk >= 1, max_frame >= 1024 required")
        self.local_id = local_id
        self.bind = bind
        # Dial from the bind address when it is a specific one, so that peers
        # (and their logs) see the address this server is known by.
        self._source = source_address(bind[0])
        self.server_name = server_name
        self._server_ssl = server_ssl
        self._client_ssl = client_ssl
        self._queue_size = queue_size
        self._chunk = min(snapshot_chunk, max_frame - _CHUNK_OVERHEAD)  # chunk frame fits
        self._max_frame = max_frame
        self._max_snapshot = max_snapshot
        self._io_timeout = io_timeout  # handshake, hello, each write, snapshot idle
        self._rng = rng if rng is not None else random.Random()
        self._peers: dict[str, _Peer] = {}
        self._stats: dict[str, PeerStats] = {}
        self._unknown_logged: set[str] = set()
        self._handlers: dict[str, Handler] = {}
        self._nursery: trio.Nursery | None = None
        # Failed accepts (EMFILE & co.): backed off, logged once per 10 s.
        self.accept_failures = AcceptFailures(log)
        self._incoming_send, self.incoming = trio.open_memory_channel[Message](queue_size)
        self.on_snapshot_done: Callable[[str, bool], None] | None = None
        # When set, received messages go to this callback instead of ``incoming``.
        self.on_message: Callable[[Message], None] | None = None
        self.on_unreachable: Callable[[str], None] | None = None
        # Called with the peer id when a peer's incoming raft connection breaks
        # (reset, or closed without TLS close_notify): its process may have died.
        self.on_peer_lost: Callable[[str], None] | None = None
        # Benchmarks (raft/stages.py): with ``stamp_reads``, ``read_ns`` is
        # when the bytes of the message being delivered were read (its
        # ``perf_counter_ns``), while ``on_message`` runs.
        self.stamp_reads = False
        self.read_ns = 0

    # -- public API -------------------------------------------------------

    async def serve(
        self, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on ``bind`` and run every peer's sender until cancelled.

        Calls ``task_status.started((host, port))`` with the bound address
        (the real port for port 0) once listening. Raises ``TransportError``
        if it cannot listen; a broken or refused incoming connection is logged
        and never ends ``serve``. On cancellation every connection and task is
        closed before it returns. Can be called again after it returns
        (queued messages survive), but not concurrently (``RuntimeError``).
        """
        if self._nursery is not None:
            raise RuntimeError("Transport.serve is already running")
        host, port = self.bind
        try:
            tcp_listeners = await trio.open_tcp_listeners(port, host=host or None)
        except OSError as exc:
            raise TransportError(f"cannot listen on {host}:{port}: {_reason(exc)}") from exc
        listeners = tcp_listeners  # TLS is set up per connection in _handle_conn
        bound_host, bound_port = tcp_listeners[0].socket.getsockname()[:2]
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for peer in self._peers.values():
                    self._start_peer(peer)
                await nursery.start(
                    serve_listeners, self._handle_conn, listeners, self.accept_failures
                )
                log.info(_kv("listening", id=self.local_id, addr=f"{bound_host}:{bound_port}"))
                task_status.started((str(bound_host), int(bound_port)))
        finally:
            self._nursery = None
            for listener in listeners:
                await trio.aclose_forcefully(listener)

    def set_peer(self, peer_id: str, address: str) -> None:
        """Add a peer or change its ``host:port``. A changed address closes the
        current connection so the next message dials the new one. Never raises;
        a bad address shows up as failing dials."""
        self._unknown_logged.discard(peer_id)
        if (peer := self._peers.get(peer_id)) is not None:
            if peer.address != address:
                peer.address = address
                if peer.conn_scope is not None:
                    peer.conn_scope.cancel()
            return
        peer = self._peers[peer_id] = _Peer(peer_id, address, self._queue_size)
        self._stat(peer_id)
        if self._nursery is not None:
            self._start_peer(peer)

    def remove_peer(self, peer_id: str) -> None:
        """Forget a peer: queued messages are dropped; its connections and any
        snapshot in flight are cancelled (without ``on_snapshot_done``)."""
        if (peer := self._peers.pop(peer_id, None)) is not None:
            peer.scope.cancel()
            peer.queue_send.close()
            peer.snap_send.close()

    def send(self, msg: Message) -> None:
        """Queue ``msg`` for ``msg.dst`` and return at once; never raises.

        Drops and counts the message if the peer is unknown (logged once per
        peer) or its queue is full (logged once per overflow episode). A
        dropped SNAP is reported as ``on_snapshot_done(dst, False)`` from a
        separate task while serving, never from inside ``send``.
        """
        peer = self._peers.get(msg.dst)
        if peer is None:
            if msg.dst not in self._unknown_logged:
                self._unknown_logged.add(msg.dst)
                log.warning(_kv("peer_unknown", peer_id=msg.dst, type=msg.type.name))
            return self._dropped(msg)
        snap = msg.type == MessageType.SNAP
        if snap and msg.snapshot is None:
            log.warning(_kv("bad_message", peer_id=peer.id, reason="snap_without_snapshot"))
            return self._dropped(msg)
        item: Message | bytes = msg
        if not snap and peer.direct is not None:
            # The common case on the commit path: the connection is up and
            # idle, so write now instead of waking the peer's writer task (a
            # scheduler round per message, and the Raft loop's own work, such
            # as its log write, would otherwise run first).
            try:
                frame = encode_frame(message_to_obj(msg), max_frame=self._max_frame)
            except (TransportError, CodecError) as exc:
                log.warning(_kv("message_dropped", peer_id=peer.id, type=msg.type.name, reason=exc))
                return self._dropped(msg)
            try:
                n = peer.direct.send_nowait(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                n = 0  # the writer task finds out and reconnects
            if n == len(frame):
                self._stat(peer.id).sent += 1
                return None
            peer.direct = None  # the writer finishes this frame first
            item = frame[n:]
        try:
            if snap:
                peer.snap_send.send_nowait(msg)
            else:
                peer.queue_send.send_nowait(item)
        except trio.WouldBlock:
            if isinstance(item, bytes) and peer.conn_scope is not None:
                peer.conn_scope.cancel()  # half a frame is on the wire: reconnect
            if not peer.overflow_logged:
                peer.overflow_logged = True
                log.warning(_kv("queue_full", peer_id=peer.id, type=msg.type.name))
            self._dropped(msg)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._dropped(msg)
        return None

    def register_handler(self, kind: str, handler: Handler) -> None:
        """Route incoming connections whose hello has ``kind`` to ``handler``.

        The handler gets the framed stream (hello already read) and a
        ``PeerInfo``; the connection is closed when it returns. A
        ``TransportError`` from it is logged at DEBUG, any other exception at
        ERROR; neither ends ``serve``. Raises ``ValueError`` for a Raft kind.
        """
        if kind in (KIND_RAFT, KIND_SNAPSHOT):
            raise ValueError(f"kind: {kind!r} is reserved for Raft")
        self._handlers[kind] = handler

    def stats(self) -> dict[str, dict[str, int]]:
        """Per peer id: ``sent``, ``dropped``, ``received``, ``reconnects`` and
        ``queued`` (messages waiting in its queue now)."""
        out = {pid: dataclasses.asdict(st) for pid, st in self._stats.items()}
        for pid, row in out.items():
            peer = self._peers.get(pid)
            row["queued"] = peer.queue_send.statistics().current_buffer_used if peer else 0
        return out

    # -- helpers ----------------------------------------------------------

    def _stat(self, peer_id: str) -> PeerStats:
        if (st := self._stats.get(peer_id)) is None:
            st = self._stats[peer_id] = PeerStats()
        return st

    def _dropped(self, msg: Message) -> None:
        self._stat(msg.dst).dropped += 1
        if msg.type == MessageType.SNAP and (fn := self.on_snapshot_done) is not None:
            if self._nursery is None:
                self._callback(fn, msg.dst, False)
            else:  # not from inside send(): the caller may be mid-Ready
                self._nursery.start_soon(self._call_later, fn, msg.dst)

    async def _call_later(self, fn: Callable[[str, bool], None], peer_id: str) -> None:
        self._callback(fn, peer_id, False)

    def _callback(self, fn: Callable[..., None], *args: Any) -> None:
        # A failing observer must not take the transport down with it.
        try:
            fn(*args)
        except Exception:
            log.exception(_kv("callback_failed", callback=getattr(fn, "__name__", repr(fn))))

    def _start_peer(self, peer: _Peer) -> None:
        assert self._nursery is not None
        peer.scope = trio.CancelScope()  # single-use, and serve() may run again
        self._nursery.start_soon(self._run_peer, peer, peer.scope)

    async def _run_peer(self, peer: _Peer, scope: trio.CancelScope) -> None:
        with scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._message_loop, peer)
                nursery.start_soon(self._snapshot_loop, peer)

    async def _dial(self, peer: _Peer, kind: str) -> FramedStream:
        """Connect, handshake and send the hello; raises ``TransportError``,
        ``PeerRejectedError`` when the peer's certificate fails verification.
        Reports a failure to the log and ``on_unreachable``."""
        stream: TLSSocketStream | None = None
        try:
            host, port = _split_address(peer.address)
            with trio.fail_after(self._io_timeout), _mapped("dial"):
                stream = await open_tls_stream(
                    host,
                    port,
                    self._client_ssl,
                    server_hostname=self.server_name,
                    local_address=self._source,
                )
                framed = FramedStream(stream, max_frame=self._max_frame)
                await framed.send({"v": HELLO_VERSION, "kind": kind, "id": self.local_id})
        except (trio.TooSlowError, TransportError) as exc:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            error = TransportError("dial: timeout") if isinstance(exc, trio.TooSlowError) else exc
            peer.dial_failures += 1
            level = logging.WARNING if peer.dial_failures == 1 else logging.DEBUG
            fields = {"peer_id": peer.id, "addr": peer.address, "kind": kind}
            log.log(level, _kv("dial_failed", **fields, reason=_reason(error)))
            if self.on_unreachable is not None:
                self._callback(self.on_unreachable, peer.id)
            if error is exc:
                raise
            raise error from exc
        if peer.dial_failures or kind == KIND_RAFT:
            log.info(_kv("connected", peer_id=peer.id, addr=peer.address, kind=kind))
        peer.dial_failures = 0
        return framed

    async def _timed(self, what: str, op: Awaitable[Any]) -> Any:
        with trio.move_on_after(self._io_timeout):
            return await op
        raise TransportError(f"{what}_timeout")

    # -- outgoing messages ------------------------------------------------

    async def _next_batch(self, peer: _Peer) -> list[Message | bytes]:
        """Wait for one message, then take whatever else is already queued."""
        batch = [await peer.queue_recv.receive()]
        while len(batch) < _MAX_BATCH:
            try:
                batch.append(peer.queue_recv.receive_nowait())
            except trio.WouldBlock:
                break
        return batch

    async def _message_loop(self, peer: _Peer) -> None:
        attempt = 0
        while True:
            try:
                batch = await self._next_batch(peer)
            except trio.EndOfChannel:
                return
            try:
                framed = await self._dial(peer, KIND_RAFT)
            except TransportError:
                self._stat(peer.id).dropped += len(batch)
                await trio.sleep(_backoff(attempt, self._rng))
                attempt += 1
                continue
            if peer.connected_once:
                self._stat(peer.id).reconnects += 1
            peer.connected_once = True
            opened = trio.current_time()
            try:
                await self._pump(peer, framed, batch)
            finally:
                self._stat(peer.id).dropped += peer.in_flight
                peer.in_flight = 0
                await framed.aclose()
            # A connection refused right after the handshake must not become a
            # tight reconnect loop; only a long-lived one resets the backoff.
            if trio.current_time() - opened >= _BACKOFF_CAP:
                attempt = 0
            else:
                await trio.sleep(_backoff(attempt, self._rng))
                attempt += 1

    async def _pump(self, peer: _Peer, framed: FramedStream, batch: list[Message | bytes]) -> None:
        """Write batches until the connection fails or the peer closes it."""
        stream = framed.stream
        async with trio.open_nursery() as nursery:
            peer.conn_scope = nursery.cancel_scope
            nursery.start_soon(self._watch, peer, framed, nursery.cancel_scope)
            try:
                while True:
                    await self._write_batch(peer, framed, batch)
                    idle = peer.queue_recv.statistics().current_buffer_used == 0
                    if idle and isinstance(stream, TLSSocketStream):
                        peer.direct = stream
                    try:
                        batch = await self._next_batch(peer)
                    finally:
                        peer.direct = None
            except (trio.EndOfChannel, TransportError) as exc:
                if isinstance(exc, TransportError):
                    log.info(_kv("connection_lost", peer_id=peer.id, reason=_reason(exc)))
                nursery.cancel_scope.cancel()
            finally:
                peer.conn_scope = None

    async def _watch(self, peer: _Peer, framed: FramedStream, scope: trio.CancelScope) -> None:
        """Notice at once when the peer closes or refuses our connection (it
        never sends anything on a ``raft`` connection)."""
        try:
            await framed.receive()
            reason = "unexpected_frame"
        except TransportError as exc:
            reason = _reason(exc)
        log.info(_kv("connection_lost", peer_id=peer.id, reason=reason))
        scope.cancel()

    async def _write_batch(
        self, peer: _Peer, framed: FramedStream, batch: list[Message | bytes]
    ) -> None:
        frames = []
        for msg in batch:
            if isinstance(msg, bytes):  # the rest of a frame a direct send began
                frames.append(msg)
                continue
            try:
                frames.append(encode_frame(message_to_obj(msg), max_frame=self._max_frame))
            except (TransportError, CodecError) as exc:
                self._stat(peer.id).dropped += 1
                log.warning(_kv("message_dropped", peer_id=peer.id, type=msg.type.name, reason=exc))
        peer.in_flight = len(frames)
        await self._timed("write", framed.send_frames(frames))
        self._stat(peer.id).sent += len(frames)
        peer.in_flight = 0
        peer.overflow_logged = False

    # -- outgoing snapshots -----------------------------------------------

    async def _snapshot_loop(self, peer: _Peer) -> None:
        while True:
            try:
                msg = await peer.snap_recv.receive()
            except trio.EndOfChannel:
                return
            ok = False
            try:
                await self._stream_snapshot(peer, msg)
                ok = True
            except TransportError as exc:
                log.warning(_kv("snapshot_failed", peer_id=peer.id, reason=_reason(exc)))
                self._stat(peer.id).dropped += 1
            if self.on_snapshot_done is not None:
                self._callback(self.on_snapshot_done, peer.id, ok)

    async def _stream_snapshot(self, peer: _Peer, msg: Message) -> None:
        assert msg.snapshot is not None  # checked in send()
        data = memoryview(msg.snapshot.data)
        framed = await self._dial(peer, KIND_SNAPSHOT)
        try:
            header = {"m": message_to_obj(msg, with_snapshot_data=False), "size": len(data)}
            await self._timed("write", framed.send(header))
            for offset in range(0, len(data), self._chunk):
                chunk = data[offset : offset + self._chunk]
                await self._timed("write", framed.send({"c": chunk}))
            await self._timed("write", framed.send({"end": True}))
            reply = await self._timed("ack", framed.receive())
            if reply.get("ok") is not True:
                raise TransportError(f"snapshot_refused: {reply.get('error', 'no reason')}")
        finally:
            await framed.aclose()
        self._stat(peer.id).sent += 1
        log.info(_kv("snapshot_sent", peer_id=peer.id, bytes=len(data), chunk=self._chunk))

    # -- incoming ---------------------------------------------------------

    def _refuse(self, addr: str, reason: str, **fields: object) -> None:
        log.warning(_kv("peer_refused", reason=reason, peer=addr, **fields))

    async def _handle_conn(self, tcp: trio.SocketStream) -> None:
        """Handshake, read the hello, check identity, dispatch by kind.
        Never raises except ``Cancelled``; always closes the connection."""
        try:
            stream = wrap_server_stream(tcp, self._server_ssl)
        except OSError as exc:
            await trio.aclose_forcefully(tcp)
            return self._refuse("unknown", _reason(exc))
        addr = _remote_address(stream)
        framed = FramedStream(stream, max_frame=self._max_frame)
        try:
            try:
                with trio.fail_after(self._io_timeout), _mapped("handshake"):
                    await stream.do_handshake()
                hello = await self._timed("hello", framed.receive())
            except trio.TooSlowError:
                return self._refuse(addr, "handshake_timeout")
            except TransportError as exc:  # plain TCP, wrong CA, no client cert...
                return self._refuse(addr, _reason(exc))
            names = tuple(peer_dns_names(stream))
            kind, peer_id = hello.get("kind"), hello.get("id")
            if (refusal := _hello_refusal(hello, names, self.server_name)) is not None:
                return self._refuse(addr, refusal, kind=kind, id=peer_id, sans=",".join(names))
            assert isinstance(kind, str) and (peer_id is None or isinstance(peer_id, str))
            if kind in (KIND_RAFT, KIND_SNAPSHOT):
                assert peer_id is not None
                await self._serve_raft(framed, addr, kind, peer_id)
            elif (handler := self._handlers.get(kind)) is None:
                return self._refuse(addr, "unknown_kind", kind=kind, id=peer_id)
            else:
                info = PeerInfo(address=addr, dns_names=names, peer_id=peer_id, hello=hello)
                try:
                    await handler(framed, info)
                except TransportError as exc:
                    log.debug(_kv("connection_closed", peer=addr, kind=kind, reason=exc))
                except Exception:  # one broken RPC handler must not stop Raft
                    log.exception(_kv("handler_failed", peer=addr, kind=kind))
        finally:
            await framed.aclose()
        return None

    async def _serve_raft(self, framed: FramedStream, addr: str, kind: str, peer_id: str) -> None:
        try:
            if kind == KIND_RAFT:
                await self._receive_messages(framed, peer_id)
            else:
                await self._receive_snapshot(framed, peer_id)
        except TransportError as exc:
            level = logging.WARNING if str(exc).startswith("protocol") else logging.DEBUG
            log.log(level, _kv("connection_closed", peer=addr, id=peer_id, reason=exc))
            if kind == KIND_RAFT and self.on_peer_lost is not None:
                # Reset, or closed without close_notify: the peer's process
                # is likely gone. (A peer closing on purpose, e.g. a leader
                # dropping a server it removed, ends the stream cleanly.)
                self._callback(self.on_peer_lost, peer_id)

    async def _deliver(self, peer_id: str, msg: Message) -> None:
        if self.on_message is not None:
            # The consumer takes messages directly (one scheduler round less
            # per message on the commit path); it bounds its own queue.
            self.on_message(msg)
            self._stat(peer_id).received += 1
            return
        # Blocks while ``incoming`` is full: that is the backpressure. The
        # fast path skips the checkpoint; reading the socket provides one.
        try:
            self._incoming_send.send_nowait(msg)
        except trio.WouldBlock:
            await self._incoming_send.send(msg)
        self._stat(peer_id).received += 1

    def _decode(self, obj: Any, peer_id: str) -> Message:
        try:
            msg = message_from_obj(obj)
        except CodecError as exc:
            raise TransportError(f"protocol: {exc}") from exc
        if msg.src != peer_id:
            raise TransportError(f"protocol: src {msg.src!r} differs from hello id")
        return msg

    async def _receive_messages(self, framed: FramedStream, peer_id: str) -> None:
        # Every frame one read brought is decoded and delivered in one go.
        framed.stamp_reads = self.stamp_reads
        while batch := await framed.receive_batch():
            # One field for every peer: right while on_message delivers
            # without yielding (no other peer's batch lands in between).
            self.read_ns = framed.read_ns
            for obj in batch:
                msg = self._decode(obj, peer_id)
                if msg.type == MessageType.SNAP:
                    raise TransportError("protocol: SNAP on a raft connection")
                if msg.dst != self.local_id:  # misrouted: a peer has a stale address
                    self._stat(peer_id).dropped += 1
                    continue
                await self._deliver(peer_id, msg)

    async def _receive_snapshot(self, framed: FramedStream, peer_id: str) -> None:
        header = await self._timed("read", framed.receive())
        msg = self._decode(header.get("m"), peer_id)
        size = header.get("size")
        if msg.type != MessageType.SNAP or msg.snapshot is None or msg.dst != self.local_id:
            raise TransportError("protocol: bad snapshot header")
        if not isinstance(size, int) or not 0 <= size <= self._max_snapshot:
            raise TransportError(f"protocol: snapshot size {size!r} refused")
        buf = bytearray()
        while True:
            frame = await self._timed("read", framed.receive())
            chunk = frame.get("c")
            if isinstance(chunk, bytes) and len(buf) + len(chunk) <= size:
                buf += chunk
            elif frame.get("end") is True and len(buf) == size:
                break
            else:
                raise TransportError(f"protocol: bad snapshot frame at {len(buf)} of {size}")
        full = dataclasses.replace(msg, snapshot=Snapshot(msg.snapshot.meta, bytes(buf)))
        await self._deliver(peer_id, full)
        log.info(_kv("snapshot_received", peer_id=peer_id, bytes=size))
        await self._timed("write", framed.send({"ok": True}))
