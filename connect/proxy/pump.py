"""The data path: non-blocking stdlib sockets driven by trio's fd readiness.

trio's ``SSLStream`` keeps TLS in a MemoryBIO and handles records in Python;
here each connection is a pair of plain ``socket.socket``/``ssl.SSLSocket``
objects in non-blocking mode. A direction is a loop of ``recv_into`` a
preallocated 64 KiB buffer and ``send`` of the bytes received; only when the
kernel or OpenSSL says "would block" does the task park on
``trio.lowlevel.wait_readable``/``wait_writable``. TCP_NODELAY is set on
both sockets by the callers.

Half-close: each direction ends on its own. EOF on a plain socket becomes a
TLS close_notify followed by a TCP FIN (``shutdown(SHUT_WR)``) on the TLS
side; close_notify (or a FIN without it, a "ragged" EOF, treated the same
way) on the TLS side becomes ``shutdown(SHUT_WR)`` on the plain side. The
other direction keeps flowing until it ends too.

OpenSSL's ``SSL_shutdown`` (behind ``SSLSocket.unwrap``, which calls it
twice) reads from the socket after sending close_notify and fails the
connection (APPLICATION_DATA_AFTER_CLOSE_NOTIFY) if application data is
there, so close_notify is only sent when nothing is waiting to be read
(``pending()`` and ``FIONREAD`` are zero); otherwise the reading task sends
it as soon as it has drained the socket (after ``CLOSE_NOTIFY_GRACE`` a
plain FIN is sent instead). A record arriving in the microseconds between
that check and ``SSL_shutdown`` would still break the connection: the one
known gap of the fast path.

TLS reads and writes call the ``_ssl`` object behind the ``SSLSocket``
directly (two Python frames fewer per call), a short read is taken as
"drained" (wait for readiness instead of a recv that fails with an
exception), and one 64 KiB receive buffer serves every connection.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import socket
import ssl
import struct
import termios
from collections.abc import Callable

import trio

from .logfmt import emit
from .reactor import AGAIN, reactor

BUFFER_SIZE = 65536
# Byte counts are reported every this many chunks and at the end.
FLUSH_EVERY = 64
# Give a pending close_notify this long to find a quiet socket, then FIN only.
CLOSE_NOTIFY_GRACE = 2.0

_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError)
_SHARED = bytearray(BUFFER_SIZE)
_SHARED_VIEW = memoryview(_SHARED)
TLS_RECORD = 16384
_FIONREAD_BUF = b"\0\0\0\0"
_BUSY_POLL = 0.001  # while another task holds the same readiness of an fd

FlushFn = Callable[[int, int], None]


async def wait_fd(fd: int, *, readable: bool) -> None:
    """Park until ``fd`` is readable (or writable). If another task is already
    parked on the same readiness of it (TLS can want the opposite I/O of the
    call that hit it), poll briefly instead: trio allows one waiter each.

    The same ten lines as ``raft.tlsstream.wait_fd``, kept here on purpose:
    connect imports nothing of raft (nor raft of connect), and a shared
    package for one function would be a fifth package to version.
    """
    try:
        if readable:
            await trio.lowlevel.wait_readable(fd)
        else:
            await trio.lowlevel.wait_writable(fd)
    except trio.BusyResourceError:
        await trio.sleep(_BUSY_POLL)


def _unread_bytes(fd: int) -> int:
    try:
        raw = fcntl.ioctl(fd, termios.FIONREAD, _FIONREAD_BUF)
    except OSError:
        return 0
    return int(struct.unpack("i", raw)[0])


async def send_all(sock: socket.socket, fd: int, view: memoryview) -> None:
    """Write all of ``view`` to a non-blocking (TLS) socket.

    Raises OSError/ssl.SSLError from the socket; cancellation leaves part
    of the data unsent (the connection is being torn down anyway).
    """
    while view:
        try:
            sent = sock.send(view)
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
            await wait_fd(fd, readable=False)
            continue
        except ssl.SSLWantReadError:
            await wait_fd(fd, readable=True)
            continue
        view = view[sent:]


async def handshake(sock: ssl.SSLSocket) -> None:
    """Run a TLS handshake on a non-blocking socket; bound it with a cancel scope.

    Raises ssl.SSLError/OSError when it fails.
    """
    fd = sock.fileno()
    while True:
        try:
            sock.do_handshake()
            return
        except ssl.SSLWantReadError:
            await trio.lowlevel.wait_readable(fd)
        except ssl.SSLWantWriteError:
            await trio.lowlevel.wait_writable(fd)


def _read_more_records(src: _End, view: memoryview, n: int) -> tuple[int, bool]:
    """After a full TLS record, read the records already here into the rest
    of the buffer, so one plain ``send`` carries up to 64 KiB instead of 16
    (the bulk path's cost is per chunk). Returns the bytes now in ``view``
    and whether the peer's EOF was met."""
    read = src.sock._sslobj.read  # type: ignore[attr-defined]
    while n + TLS_RECORD <= BUFFER_SIZE:
        try:
            got = read(BUFFER_SIZE - n, view[n:])
        except (*_WOULD_BLOCK, ssl.SSLWantWriteError):
            return n, False
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            return n, True
        if got == 0:
            return n, True
        n += got
        if got < TLS_RECORD:
            break
    return n, False


class _End:
    """One socket of a spliced pair and its half-close state."""

    __slots__ = ("_pending", "close_pending", "fd", "read_eof", "sock", "tls", "write_closed")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.read_eof = False
        self.write_closed = False
        self.close_pending = False
        sslobj = getattr(sock, "_sslobj", None)
        self._pending: Callable[[], int] | None = sslobj.pending if sslobj is not None else None

    def receiver(self) -> tuple[Callable[[bytearray], int], int]:
        """``(recv_into(buf), n)``: a read shorter than ``n`` drained the socket.

        TLS goes straight to the ``_ssl`` object (``SSLSocket.recv_into``
        adds two Python frames per call); a read returns one record at most.
        """
        sslobj = getattr(self.sock, "_sslobj", None)
        if sslobj is not None:
            return functools.partial(sslobj.read, BUFFER_SIZE), TLS_RECORD
        return self.sock.recv_into, BUFFER_SIZE

    def sender(self) -> Callable[[memoryview], int]:
        sslobj = getattr(self.sock, "_sslobj", None)
        return sslobj.write if sslobj is not None else self.sock.send

    def has_pending(self) -> bool:
        """Decrypted bytes OpenSSL holds that the kernel does not see."""
        return self._pending is not None and self._pending() > 0

    def quiet(self) -> bool:
        assert isinstance(self.sock, ssl.SSLSocket)
        return self.sock.pending() == 0 and _unread_bytes(self.fd) == 0

    async def close_write(self) -> None:
        """Half-close our sending side (see the module docstring for TLS)."""
        if self.write_closed:
            return
        if self.tls and not self.read_eof and not self.quiet():
            self.close_pending = True
            with trio.move_on_after(CLOSE_NOTIFY_GRACE):
                while self.close_pending and not self.write_closed:
                    await trio.sleep(0.005)
            if self.write_closed:
                return
        await self._close_write_now()

    async def _close_write_now(self) -> None:
        self.write_closed = True
        self.close_pending = False
        if self.tls:
            await self._close_notify()
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.sock, socket.SHUT_WR)

    async def _close_notify(self) -> None:
        assert isinstance(self.sock, ssl.SSLSocket)
        for _ in range(100):
            try:
                self.sock.unwrap()
                return
            except ssl.SSLWantWriteError:
                await wait_fd(self.fd, readable=False)
            except (ssl.SSLWantReadError, ssl.SSLError, OSError, ValueError):
                # WantRead: close_notify is out, the peer's is not in yet.
                return

    async def maybe_close_now(self) -> None:
        """Called by the reader once drained: send a deferred close_notify."""
        if self.close_pending and not self.write_closed and self.quiet():
            await self._close_write_now()


class Splice:
    """Copies bytes both ways between two connected sockets until both
    directions have ended, the idle timeout passes, or it is cancelled.

    ``down`` is the accepted socket, ``up`` the dialled one; byte counts
    (down->up, up->down) go to ``on_flush`` in batches. Closing the sockets
    is the caller's job.
    """

    def __init__(
        self,
        down: socket.socket,
        up: socket.socket,
        *,
        idle_timeout: float,
        on_flush: FlushFn | None = None,
    ) -> None:
        self.down = _End(down)
        self.up = _End(up)
        self.idle_timeout = idle_timeout
        self.on_flush = on_flush
        self.bytes_up = 0
        self.bytes_down = 0
        self._pending = [0, 0]
        self._scope = trio.CancelScope()
        self._next_touch = 0.0
        self._chunks = 0
        self.idle_expired = False
        self.error: OSError | None = None

    def _touch(self, now: float | None = None) -> None:
        if now is None:
            now = trio.current_time()
        if now >= self._next_touch:
            # Moving the deadline costs a heap push: do it at most once a second.
            self._next_touch = now + 1.0
            self._scope.deadline = now + self.idle_timeout

    def _flush(self) -> None:
        up, down = self._pending
        self._pending[0] = self._pending[1] = 0
        self.bytes_up += up
        self.bytes_down += down
        if self.on_flush is not None and (up or down):
            self.on_flush(up, down)

    async def run(self) -> None:
        """Pump both directions until both end. A broken socket (OSError,
        ssl.SSLError) ends both and is kept in ``error``; cancellation
        stops both."""
        self._touch()
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._guarded, self.down, self.up, 0)
                    nursery.start_soon(self._guarded, self.up, self.down, 1)
            self.idle_expired = self._scope.cancelled_caught and self.error is None
        finally:
            self._flush()

    async def _guarded(self, src: _End, dst: _End, slot: int) -> None:
        try:
            await self._copy(src, dst, slot)
        except OSError as exc:  # ssl.SSLError is an OSError
            if self.error is None:
                self.error = exc
            self._scope.cancel()

    def _count(self, slot: int, n: int, now: float) -> None:
        self._pending[slot] += n
        self._chunks += 1
        if not self._chunks % FLUSH_EVERY:
            self._flush()
        if now >= self._next_touch:
            self._touch(now)

    async def _copy(self, src: _End, dst: _End, slot: int) -> None:
        # The steady state runs in the reactor (_Direction.step); this task
        # only handles what a step cannot finish on its own.
        job = _Direction(self, src, dst, slot)
        pump = reactor().pump
        wait_first = False
        while True:
            result = await pump(job, wait_first=wait_first)
            wait_first = False
            if result is _EOF:
                break
            if result is _WANT_WRITE:
                await wait_fd(src.fd, readable=False)
            elif result is _DRAINED:
                await src.maybe_close_now()
                wait_first = True
            else:
                rest, eof_next = result
                await send_all(dst.sock, dst.fd, memoryview(rest))
                if eof_next:
                    break
        src.read_eof = True
        await dst.close_write()
        if src.close_pending:
            await src._close_write_now()


async def run_splice(
    down: socket.socket,
    up: socket.socket,
    *,
    idle_timeout: float,
    on_flush: FlushFn,
    direction: str,
    source: str,
    destination: str,
    scope: trio.CancelScope | None = None,
) -> None:
    """``Splice(down, up).run()`` (inside ``scope`` when given, so cancelling it
    ends the splice quietly), then a debug ``connection_closed`` line when the
    connection ended on an error or the idle timeout. Closing is the caller's job."""
    splice = Splice(down, up, idle_timeout=idle_timeout, on_flush=on_flush)
    with scope if scope is not None else contextlib.nullcontext():
        await splice.run()
    if splice.error is not None or splice.idle_expired:
        emit(
            10,
            "connection_closed",
            direction=direction,
            source=source,
            destination=destination,
            reason="idle timeout" if splice.idle_expired else str(splice.error),
        )


# What a step hands back to its task (see reactor.py); a partial send hands
# back ``(unsent bytes, eof_next)``.
_EOF = "eof"
_DRAINED = "drained"  # drained while a close_notify waits for a quiet socket
_WANT_WRITE = "want_write"


class _Direction:
    """One direction of a ``Splice`` as a reactor job: the copy loop of the
    steady state, with no await in it."""

    __slots__ = ("drained_below", "dst", "fd", "recv", "send", "slot", "splice", "src")

    def __init__(self, splice: Splice, src: _End, dst: _End, slot: int) -> None:
        self.splice = splice
        self.src = src
        self.dst = dst
        self.slot = slot
        self.fd = src.fd
        self.recv, self.drained_below = src.receiver()
        self.send = dst.sender()

    def step(self, budget: int, now: float) -> object:
        """Copy until the source is drained (``None``), the budget is spent
        (``AGAIN``) or the task must act (EOF, a would-block send, a TLS
        write wanting a read, a pending close_notify). Raises OSError
        (ssl.SSLError) from either socket."""
        # One buffer for every connection of the process: a send that would
        # block hands a copy of what is left to the task.
        buf, view, src = _SHARED, _SHARED_VIEW, self.src
        for _ in range(budget):
            try:
                n = self.recv(buf)
            except _WOULD_BLOCK:
                return _DRAINED if src.close_pending else None
            except ssl.SSLWantWriteError:
                return _WANT_WRITE
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                n = 0  # a FIN without close_notify: still an EOF for TCP
            if n == 0:
                return _EOF
            eof_next = False
            if n == TLS_RECORD and src.tls:
                n, eof_next = _read_more_records(src, view, n)
            try:
                sent = self.send(view[:n])
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                sent = 0
            self.splice._count(self.slot, n, now)
            if sent < n:
                return bytes(view[sent:n]), eof_next
            if eof_next:
                return _EOF
            if n < self.drained_below and not src.has_pending():
                # A short read means the socket is drained: wait instead of a
                # recv that fails (for TLS an exception object each time).
                return _DRAINED if src.close_pending else None
        return AGAIN
