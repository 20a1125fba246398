"""Listening, accepting and dialling with non-blocking stdlib sockets.

Sockets stay stdlib objects (not ``trio.socket``) so the data path can use
them directly (pump.py); trio only supplies readiness waits. Listeners set
SO_REUSEADDR, and SO_REUSEPORT when several worker processes share the
ports (the kernel then spreads new connections between them).
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Awaitable, Callable

import trio

from .config import ListenerSpec
from .logfmt import emit
from .reactor import notify_closing

BACKLOG = 1024
Handler = Callable[["Listener", socket.socket], Awaitable[None]]


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def tune(sock: socket.socket) -> None:
    """Non-blocking with Nagle off: requests and answers go out at once."""
    sock.setblocking(False)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A non-blocking listening socket. Raises OSError (address in use...)."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def dial(host: str, port: int) -> socket.socket:
    """Connect to ``host:port`` (an IP address); bound it with a cancel scope.

    Raises OSError when the connection is refused or fails.
    """
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        tune(sock)
        err = sock.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS, errno.EAGAIN):
            raise OSError(err, errno.errorcode.get(err, str(err)))
        if err:
            await trio.lowlevel.wait_writable(sock)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, errno.errorcode.get(err, str(err)))
    except BaseException:
        close(sock)
        raise
    return sock


def close(sock: socket.socket) -> None:
    """Close ``sock``, waking any task still parked on it (no-op if detached)."""
    if sock.fileno() < 0:
        return
    with contextlib.suppress(RuntimeError):  # outside a trio run
        notify_closing(sock.fileno())  # trio's waits and the reactor's
    sock.close()


class Listener:
    """One listening socket; each accepted connection runs ``handler``.

    ``spec`` may be replaced while running (an in-place update): new
    connections see the new settings. Over ``spec.limits.max_connections``
    a new connection is closed at once and ``on_reject`` is called.
    """

    def __init__(
        self,
        spec: ListenerSpec,
        handler: Handler,
        *,
        reuse_port: bool = False,
        on_reject: Callable[[ListenerSpec], None] | None = None,
    ) -> None:
        self.spec = spec
        self.handler = handler
        self.reuse_port = reuse_port
        self.on_reject = on_reject
        self.active = 0
        self.address: tuple[str, int] = (spec.host, spec.port)

    async def serve(
        self, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind (raising OSError if impossible), report the address, accept
        until cancelled; cancellation also ends every connection."""
        sock = bind(self.spec.host, self.spec.port, reuse_port=self.reuse_port)
        try:
            host, port = sock.getsockname()[:2]
            self.address = (host, port)
            async with trio.open_nursery() as nursery:
                task_status.started(self.address)
                await self._accept(sock, nursery)
        finally:
            close(sock)

    async def _accept(self, sock: socket.socket, nursery: trio.Nursery) -> None:
        accepted = 0
        while True:
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                await trio.lowlevel.wait_readable(sock)
                continue
            except OSError as exc:
                # EMFILE/ENFILE/ENOBUFS: back off instead of spinning.
                emit(
                    40,
                    "accept_failed",
                    listener=f"{self.spec.host}:{self.spec.port}",
                    reason=exc.strerror,
                )
                await trio.sleep(0.1)
                continue
            if self.active >= self.spec.limits.max_connections:
                conn.close()
                if self.on_reject is not None:
                    self.on_reject(self.spec)
                continue
            tune(conn)
            self.active += 1
            nursery.start_soon(self._run, conn)
            accepted += 1
            if not accepted % 32:
                await trio.lowlevel.checkpoint()

    async def _run(self, conn: socket.socket) -> None:
        try:
            await self.handler(self, conn)
        finally:
            self.active -= 1
            close(conn)
