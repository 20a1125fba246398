"""The DNS listeners: UDP and TCP on one address and port (Consul's 8600), on trio.

Rules of the servers (what to answer lives in ``handler``/``answers``):

- UDP: one task reads the socket. It drains up to ``udp_batch`` datagrams
  per wake-up straight from the non-blocking socket and answers cache hits
  inline (no task switch, no trio checkpoint per packet: this is the
  throughput path); a miss becomes a task of its own, at most
  ``max_pending_udp`` at once, past which queries are dropped (the client
  retries) so a slow catalog cannot grow memory without bound. A reply that
  cannot be sent at once (full buffer, unreachable peer) is dropped, as UDP
  allows.
- TCP: length-prefixed messages (RFC 1035 4.2.2), answered in order on each
  connection (RFC 7766 permits it); at most ``max_tcp_connections`` at
  once (more are closed on accept); a connection idle, or sending a
  message slower than, ``tcp_idle_timeout`` is closed; a query that gets
  no reply (not a query at all) closes its connection.
- Nothing a client sends stops a server: handler failures are logged and
  that query gets no answer (SERVFAIL where the handler could build one).
- ``serve_dns`` calls ``task_status.started((udp_address, tcp_address))``
  once both sockets listen; with port 0 both get the same free port.
  Cancelling it closes both sockets and every connection.
"""

from __future__ import annotations

import errno
import logging
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from ..http.accept import MAX_BACKOFF, MIN_BACKOFF, RateLimitedLog
from ..metrics.recorder import Recorder
from .errors import DNSBindError
from .forward import Recursor
from .framing import frame, receive_message
from .handler import DNSHandler
from .lookup import Lookup
from .settings import DNSSettings, Transport

__all__ = ["DNSServerLimits", "Responder", "bind_dns_sockets", "serve_dns", "serve_responder"]

log = logging.getLogger("meshd.dns")

Address = tuple[str, int]
_PORT_ATTEMPTS = 20


@dataclass(frozen=True)
class DNSServerLimits:
    """Resource bounds of the DNS listeners."""

    max_pending_udp: int = 1024
    max_tcp_connections: int = 512
    tcp_idle_timeout: float = 10.0
    udp_batch: int = 64
    socket_buffer: int = 1024 * 1024


class Responder(Protocol):
    """What the listeners call; ``DNSHandler`` is the real one."""

    def cached_reply(self, wire: bytes, transport: Transport) -> bytes | None:
        """A reply available without waiting, or None."""
        ...

    async def reply(self, wire: bytes, transport: Transport) -> bytes | None:
        """The reply, None to send nothing."""
        ...


async def serve_dns(
    bind: Address,
    lookup: Lookup,
    settings: DNSSettings,
    *,
    recursors: Sequence[str | Recursor] = (),
    rng: random.Random | None = None,
    limits: DNSServerLimits | None = None,
    metrics: Recorder | None = None,
    task_status: trio.TaskStatus[tuple[Address, Address]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve DNS for ``lookup`` on ``bind`` (UDP and TCP) until cancelled;
    ``metrics`` counts queries by type and response code.

    Raises ``DNSBindError`` if the address cannot be bound,
    ``RecursorAddressError`` for a bad recursor, before ``started``.
    """
    handler = DNSHandler(lookup, settings, recursors=recursors, rng=rng, metrics=metrics)
    await serve_responder(bind, handler, limits=limits, task_status=task_status)


async def serve_responder(
    bind: Address,
    responder: Responder,
    *,
    limits: DNSServerLimits | None = None,
    task_status: trio.TaskStatus[tuple[Address, Address]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the UDP and TCP listeners for any ``Responder`` (``serve_dns`` uses ``DNSHandler``)."""
    limits = limits or DNSServerLimits()
    udp, tcp = bind_dns_sockets(bind, limits)
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(tcp))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve_udp, udp, responder, limits, nursery)
            nursery.start_soon(_serve_tcp, listener, responder, limits)
            addresses = (_address(udp), _address(tcp))
            log.info("event=dns_listening udp=%s:%d tcp=%s:%d", *addresses[0], *addresses[1])
            task_status.started(addresses)
    finally:
        trio.lowlevel.notify_closing(udp)
        udp.close()
        with trio.CancelScope(shield=True):
            await listener.aclose()


def bind_dns_sockets(bind: Address, limits: DNSServerLimits) -> tuple[socket.socket, socket.socket]:
    """A non-blocking UDP socket and a listening TCP socket on the same address and port.

    Port 0 picks a port free for both (a few attempts). Raises ``DNSBindError``.
    """
    host, port = bind
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    attempts = _PORT_ATTEMPTS if port == 0 else 1
    for attempt in range(attempts):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            udp.bind((host, port))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, udp.getsockname()[1]))
            tcp.listen(128)
        except OSError as exc:
            udp.close()
            tcp.close()
            if attempt == attempts - 1:
                raise DNSBindError(host, port, exc.strerror or str(exc)) from exc
            continue
        udp.setblocking(False)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            udp.setsockopt(socket.SOL_SOCKET, option, limits.socket_buffer)
        return udp, tcp
    raise AssertionError("unreachable")


def _address(sock: socket.socket) -> Address:
    name: Any = sock.getsockname()
    return str(name[0]), int(name[1])


class _Count:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


async def _serve_udp(
    sock: socket.socket, responder: Responder, limits: DNSServerLimits, nursery: trio.Nursery
) -> None:
    pending = _Count()
    buffer = bytearray(65535)
    view = memoryview(buffer)
    while True:
        await trio.lowlevel.wait_readable(sock)  # always a checkpoint: other tasks run here
        for _ in range(limits.udp_batch):
            try:
                size, peer = sock.recvfrom_into(buffer)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # e.g. an ICMP error queued on the socket: not fatal
                continue
            wire = bytes(view[:size])
            try:
                reply = responder.cached_reply(wire, "udp")
            except Exception:
                log.exception("event=dns_query_failed transport=udp")
                continue
            if reply is not None:
                _send(sock, reply, peer)
            elif pending.value < limits.max_pending_udp:
                pending.value += 1
                nursery.start_soon(_answer_udp, sock, responder, wire, peer, pending)


async def _answer_udp(
    sock: socket.socket, responder: Responder, wire: bytes, peer: Any, pending: _Count
) -> None:
    try:
        reply = await responder.reply(wire, "udp")
    except Exception:
        log.exception("event=dns_query_failed transport=udp")
        return
    finally:
        pending.value -= 1
    if reply is not None:
        _send(sock, reply, peer)


def _send(sock: socket.socket, reply: bytes, peer: Any) -> None:
    try:
        sock.sendto(reply, peer)
    except OSError as exc:  # full buffer or unreachable peer: UDP may drop
        log.debug("event=dns_send_failed peer=%s error=%s", peer, exc)


async def _serve_tcp(
    listener: trio.SocketListener, responder: Responder, limits: DNSServerLimits
) -> None:
    active = _Count()
    # Out of descriptors: back off (100 ms doubling to 2 s, reset by the next
    # accept) and log once per 10 s with a count, as the HTTP API does,
    # instead of a line every 100 ms (issue 13).
    limiter = RateLimitedLog(log)
    backoff = MIN_BACKOFF
    async with trio.open_nursery() as nursery:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                limiter.log(
                    logging.WARNING,
                    "accept",
                    "event=dns_accept_failed errno=%s error=%s retry_in=%.1fs",
                    name,
                    exc.strerror or exc,
                    backoff,
                )
                await trio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = MIN_BACKOFF
            if active.value >= limits.max_tcp_connections:
                await stream.aclose()
                continue
            active.value += 1
            nursery.start_soon(_tcp_connection, stream, responder, limits, active)


async def _tcp_connection(
    stream: trio.SocketStream, responder: Responder, limits: DNSServerLimits, active: _Count
) -> None:
    try:
        async with stream:
            while True:
                wire: bytes | None = None
                with trio.move_on_after(limits.tcp_idle_timeout):
                    wire = await receive_message(stream)
                if wire is None:
                    return
                reply = await _tcp_reply(responder, wire)
                if reply is None:
                    return
                with trio.move_on_after(limits.tcp_idle_timeout) as scope:
                    await stream.send_all(frame(reply))
                if scope.cancelled_caught:
                    return
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        return
    finally:
        active.value -= 1


async def _tcp_reply(responder: Responder, wire: bytes) -> bytes | None:
    try:
        reply = responder.cached_reply(wire, "tcp")
        if reply is None:
            reply = await responder.reply(wire, "tcp")
    except Exception:
        log.exception("event=dns_query_failed transport=tcp")
        return None
    return reply
