"""Forwarding names outside the domain to the ``recursors`` (Consul's ``handleRecurse``).

Rules:

- Recursors are tried in order; each gets ``recursor_timeout``. A reply
  whose RCODE is neither NOERROR nor NXDOMAIN, a timeout or a network error
  moves on to the next one; when all fail the caller answers SERVFAIL.
- The query goes out as the client sent it (flags, EDNS0 options) but with
  a fresh random ID; a reply counts only if it carries that ID, the QR bit
  and the same question, so an off-path spoofed or late packet is ignored.
  The accepted reply is relayed byte for byte under the client's ID.
- A TCP client is forwarded over TCP. A UDP client is forwarded over UDP;
  when that reply is truncated (TC), the query is repeated over TCP and the
  full reply is relayed if it fits the client's UDP limit, otherwise the
  truncated reply is, so the client retries over TCP (and gets the full
  answer through the TCP path).
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
from collections.abc import Sequence

import dns.flags
import dns.message
import dns.rcode
import trio

from .errors import RecursorAddressError
from .framing import frame, receive_message
from .settings import Transport

__all__ = ["Recursor", "forward", "parse_recursor"]

log = logging.getLogger("meshd.dns")

Recursor = tuple[str, int]


def parse_recursor(value: str | Recursor) -> Recursor:
    """``"ip"``, ``"ip:port"``, ``"[ipv6]:port"`` or ``(ip, port)`` as ``(ip, port)``.

    Raises ``RecursorAddressError`` for anything else (host names included:
    resolving them would need the resolver being configured).
    """
    if isinstance(value, tuple):
        host, port = value
    else:
        host, port = _split(value)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise RecursorAddressError(str(value)) from None
    if not 0 < port < 65536:
        raise RecursorAddressError(str(value))
    return host, port


def _split(text: str) -> Recursor:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":") if rest else "53"
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, "53"
    try:
        return host, int(port_text)
    except ValueError:
        raise RecursorAddressError(text) from None


async def forward(
    message: dns.message.Message,
    wire: bytes,
    recursors: Sequence[Recursor],
    *,
    transport: Transport,
    timeout: float,
    client_limit: int,
    rng: random.Random,
) -> bytes | None:
    """The first usable reply of a recursor to ``wire``, under the client's ID; None if none.

    Cancellation propagates (no reply is sent).
    """
    for recursor in recursors:
        reply = await _ask(recursor, message, wire, transport, timeout, client_limit, rng)
        if reply is None:
            continue
        rcode = dns.rcode.from_flags(int.from_bytes(reply[2:4], "big"), 0)
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            log.debug("event=dns_recursor_rcode recursor=%s:%d rcode=%s", *recursor, rcode.name)
            continue
        return wire[:2] + reply[2:]
    log.warning("event=dns_recursors_failed question=%s", message.question[0].to_text())
    return None


async def _ask(
    recursor: Recursor,
    message: dns.message.Message,
    wire: bytes,
    transport: Transport,
    timeout: float,
    client_limit: int,
    rng: random.Random,
) -> bytes | None:
    query_id = rng.getrandbits(16)
    out = query_id.to_bytes(2, "big") + wire[2:]
    if transport == "tcp":
        return await _over_tcp(recursor, out, message, query_id, timeout)
    reply = await _over_udp(recursor, out, message, query_id, timeout)
    if reply is not None and int.from_bytes(reply[2:4], "big") & dns.flags.TC:
        full = await _over_tcp(recursor, out, message, query_id, timeout)
        if full is not None and len(full) <= client_limit:
            return full
    return reply


async def _over_udp(
    recursor: Recursor, out: bytes, message: dns.message.Message, query_id: int, timeout: float
) -> bytes | None:
    family = socket.AF_INET6 if ":" in recursor[0] else socket.AF_INET
    try:
        with trio.socket.socket(family, socket.SOCK_DGRAM) as sock, trio.move_on_after(timeout):
            await sock.connect(recursor)
            await sock.send(out)
            while True:
                data = await sock.recv(65535)
                if _is_reply(data, message, query_id):
                    return data
    except OSError as exc:
        log.debug("event=dns_recursor_error recursor=%s:%d error=%s", *recursor, exc)
    return None


async def _over_tcp(
    recursor: Recursor, out: bytes, message: dns.message.Message, query_id: int, timeout: float
) -> bytes | None:
    try:
        with trio.move_on_after(timeout):
            stream = await trio.open_tcp_stream(*recursor)
            async with stream:
                await stream.send_all(frame(out))
                data = await receive_message(stream)
                if data is not None and _is_reply(data, message, query_id):
                    return data
    except (OSError, trio.BrokenResourceError) as exc:
        log.debug("event=dns_recursor_error recursor=%s:%d error=%s", *recursor, exc)
    return None


def _is_reply(data: bytes, message: dns.message.Message, query_id: int) -> bool:
    """True when ``data`` answers our query: our ID, QR set, the same question."""
    if len(data) < 12 or int.from_bytes(data[:2], "big") != query_id:
        return False
    try:
        reply = dns.message.from_wire(data, question_only=True)
    except Exception:  # a recursor's garbage is not our crash
        return False
    return bool(reply.flags & dns.flags.QR) and reply.question == message.question
