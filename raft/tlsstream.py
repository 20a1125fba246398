"""TLS streams for the Raft transport and meshd's RPC: a non-blocking stdlib
``ssl.SSLSocket`` driven by trio's fd readiness.

``trio.SSLStream`` runs TLS through a MemoryBIO and moves every record
between the BIO and the socket in Python, with a lock and several
checkpoints per call; on the commit path (one small frame each way per
append, per follower) that cost more than the rest of the transport. Here
OpenSSL reads and writes the socket itself and a task parks on
``trio.lowlevel.wait_readable``/``wait_writable`` only when the kernel or
OpenSSL says "would block".

One task may send while another receives (``FramedStream``'s contract). If
both need the same readiness at once (TLS can want to read in order to
write), the second polls briefly instead of parking twice on one fd.

Errors are raised as ``trio.BrokenResourceError`` (chained to the ``OSError``
or ``ssl.SSLError`` behind them) and ``trio.ClosedResourceError`` after
``aclose``, as ``trio.SSLStream`` does, so callers map them the same way.
A clean close sends close_notify and reads as EOF on the other side; a peer
that closes without one (a "ragged" EOF: its process exited or was killed)
reads as ``trio.BrokenResourceError``, so the Raft transport can tell a
crashed leader from one that closed the connection on purpose.
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import ssl
import struct
import termios
from typing import Any

import trio

__all__ = ["TLSSocketStream", "open_tls_stream", "wait_fd", "wrap_server_stream"]

_WANT_READ = (ssl.SSLWantReadError, BlockingIOError, InterruptedError)
_POLL = 0.001  # while another task holds the same readiness
_FIONREAD_BUF = b"\0\0\0\0"


def _unread_bytes(fd: int) -> int:
    """Bytes the kernel holds for ``fd`` (FIONREAD); 1 if it cannot tell."""
    try:
        return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, _FIONREAD_BUF))[0])
    except OSError:
        return 1


async def wait_fd(fd: int, *, readable: bool) -> None:
    """Park until ``fd`` is readable (or writable). If another task is already
    parked on the same readiness of it (TLS can want the opposite I/O of the
    call that hit it), poll briefly instead: trio allows one waiter each."""
    try:
        if readable:
            await trio.lowlevel.wait_readable(fd)
        else:
            await trio.lowlevel.wait_writable(fd)
    except trio.BusyResourceError:
        await trio.sleep(_POLL)


class TLSSocketStream(trio.abc.Stream):
    """A ``trio.abc.Stream`` over a connected, non-blocking ``ssl.SSLSocket``.

    Call ``do_handshake`` before anything else. ``getpeercert`` and
    ``getpeername`` answer about the peer (``raft.tls.peer_dns_names`` takes
    this stream)."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self._closed = False
        # The ``_ssl`` object behind the socket, called directly: two Python
        # frames fewer per read and write (as connect/proxy/pump.py does).
        sslobj = getattr(sock, "_sslobj", None)
        self._read: Any = sslobj.read if sslobj is not None else sock.recv
        self._write: Any = sslobj.write if sslobj is not None else sock.send
        self._pending: Any = sslobj.pending if sslobj is not None else sock.pending
        # The last receive emptied the socket (a read said "would block"): the
        # next one waits for readability first instead of paying for a read
        # that fails (a syscall and an exception).
        self._drained = False
        # An EOF or error met after data in the same receive: raised next time.
        self._deferred: BaseException | None = None

    @property
    def socket(self) -> ssl.SSLSocket:
        return self._sock

    def getpeercert(self) -> Any:
        return self._sock.getpeercert()

    def getpeername(self) -> Any:
        return self._sock.getpeername()

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream was closed")

    async def do_handshake(self) -> None:
        """Run the TLS handshake; raises ``trio.BrokenResourceError`` (from the
        ``ssl.SSLError``, e.g. a certificate the context refuses)."""
        self._check_open()
        while True:
            try:
                self._sock.do_handshake()
                break
            except _WANT_READ:
                await wait_fd(self._fd, readable=True)
            except ssl.SSLWantWriteError:
                await wait_fd(self._fd, readable=False)
            except OSError as exc:
                raise trio.BrokenResourceError(f"handshake failed: {exc}") from exc
        await trio.lowlevel.checkpoint()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check_open()
        view = memoryview(data)
        send = self._write
        waited = False
        while view:
            try:
                n = send(view)
            except (ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
                await wait_fd(self._fd, readable=False)
                waited = True
                continue
            except ssl.SSLWantReadError:
                await wait_fd(self._fd, readable=True)
                waited = True
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(f"send failed: {exc}") from exc
            view = view[n:]
            if self._closed:
                raise trio.ClosedResourceError("stream was closed")
        if not waited:
            # The write went through without waiting: still give others a
            # turn (a wait above already was a checkpoint: no second one).
            await trio.lowlevel.cancel_shielded_checkpoint()

    def send_nowait(self, data: bytes) -> int:
        """Write as much of ``data`` as the socket takes without waiting and
        return how many bytes that was; the caller sends the rest (from that
        offset, as OpenSSL requires) with ``send_all``. Raises like
        ``send_all``."""
        self._check_open()
        send = self._write
        try:  # the common case: a small frame goes in one write
            total: int = send(data)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            raise trio.BrokenResourceError(f"send failed: {exc}") from exc
        view = memoryview(data)
        while total < len(view):
            try:
                total += send(view[total:])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                raise trio.BrokenResourceError(f"send failed: {exc}") from exc
        return total

    async def wait_send_all_might_not_block(self) -> None:
        self._check_open()
        await wait_fd(self._fd, readable=False)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Everything readable now (every TLS record already here, up to
        ``max_bytes``), after waiting for the first byte if there is none."""
        self._check_open()
        size = max_bytes or 65536
        waited = False
        if self._drained and self._deferred is None and not self._pending():
            await wait_fd(self._fd, readable=True)
            waited = True
        while True:
            try:
                data = self._read_once(size)
            except ssl.SSLWantWriteError:
                await wait_fd(self._fd, readable=False)
            except _WANT_READ:
                await wait_fd(self._fd, readable=True)
            except ssl.SSLZeroReturnError:  # close_notify
                data = b""
                break
            except ssl.SSLEOFError as exc:
                # The peer's socket closed without close_notify: its process
                # exited or was killed (a deliberate close says goodbye).
                raise trio.BrokenResourceError("peer closed without close_notify") from exc
            except OSError as exc:
                if self._closed:
                    raise trio.ClosedResourceError("stream was closed") from exc
                raise trio.BrokenResourceError(f"receive failed: {exc}") from exc
            else:
                break
            waited = True
            self._check_open()
        if data and len(data) < size:
            data = self._read_more(data, size)
        if not waited:  # a wait above already was a checkpoint
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    def _read_once(self, size: int) -> bytes:
        if (exc := self._deferred) is not None:
            self._deferred = None
            raise exc
        data: bytes = self._read(size)
        return data

    def _read_more(self, data: bytes, size: int) -> bytes:
        """Append the records that are already here to ``data`` (one wake of
        the reader takes a burst of small frames, not one record per wake).
        An EOF or error is kept for the next ``receive_some``."""
        parts = [data]
        n = len(data)
        self._drained = False
        while n < size:
            if not self._pending() and not _unread_bytes(self._fd):
                # Nothing in OpenSSL's buffer or the kernel's: cheaper to ask
                # than a read failing with an exception.
                self._drained = True
                break
            try:
                more = self._read(size - n)
            except _WANT_READ:
                self._drained = True
                break
            except ssl.SSLWantWriteError:
                break  # the next receive reads first, and waits for what TLS wants
            except OSError as exc:  # ssl.SSLError included
                self._deferred = exc
                break
            if not more:
                break
            parts.append(more)
            n += len(more)
        return data if len(parts) == 1 else b"".join(parts)

    async def aclose(self) -> None:
        """Send close_notify if the socket takes it at once, then close. Never
        waits for the peer; idempotent."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        sock = self._sock
        try:
            # Tasks parked on this fd must wake (with ClosedResourceError).
            trio.lowlevel.notify_closing(self._fd)
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sock._sslobj.shutdown()  # type: ignore[attr-defined]  # SSL_shutdown, no waiting
        finally:
            sock.close()
        await trio.lowlevel.checkpoint()


def _adopt(stream: trio.SocketStream) -> socket.socket:
    """The stdlib socket behind a trio ``SocketStream``, which gives it up."""
    trio_sock = stream.socket
    family, type_, proto = trio_sock.family, trio_sock.type, trio_sock.proto
    fd = trio_sock.detach()
    return socket.socket(family, type_, proto, fileno=fd)


async def open_tls_stream(
    host: str,
    port: int,
    context: ssl.SSLContext,
    *,
    server_hostname: str,
    local_address: str | None = None,
) -> TLSSocketStream:
    """Connect (trio's happy eyeballs, TCP_NODELAY) and complete the TLS
    handshake. Raises ``OSError`` when the connection fails and
    ``trio.BrokenResourceError`` when the handshake does."""
    tcp = await trio.open_tcp_stream(host, port, local_address=local_address)
    try:
        raw = _adopt(tcp)
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    try:
        sock = context.wrap_socket(
            raw,
            server_hostname=server_hostname,
            do_handshake_on_connect=False,
            suppress_ragged_eofs=False,
        )
    except BaseException:
        raw.close()
        raise
    stream = TLSSocketStream(sock)
    try:
        await stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


def wrap_server_stream(tcp: trio.SocketStream, context: ssl.SSLContext) -> TLSSocketStream:
    """Server side of an accepted connection; call ``do_handshake`` next."""
    raw = _adopt(tcp)
    try:
        sock = context.wrap_socket(
            raw, server_side=True, do_handshake_on_connect=False, suppress_ragged_eofs=False
        )
    except BaseException:
        raw.close()
        raise
    return TLSSocketStream(sock)
