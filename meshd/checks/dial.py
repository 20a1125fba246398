"""Opening the connections that network checks probe, and naming their failures.

Failures are rendered the way Go's net package words them (``dial tcp
127.0.0.1:1: connect: connection refused``), because Consul's check output
is Go's error text and operators grep for it. trio, ssl and socket errors are
turned into that text here and never escape the check modules.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
from functools import cache
from typing import Any

import trio

__all__ = [
    "DialError",
    "connect_tcp",
    "describe_error",
    "join_host_port",
    "open_stream",
    "split_host_port",
    "tls_context",
]


class DialError(Exception):
    """A connection could not be opened; ``str()`` is Go-style error text."""


def split_host_port(address: str, default_port: int | None = None) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6) into its parts.

    Raises ``ValueError`` naming the problem when the port is missing (and no
    ``default_port`` is given) or is not a number in 0-65535.
    """
    host, sep, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif not sep or ":" in host or address.endswith("]"):
        if default_port is None:
            raise ValueError(f"address {address}: missing port in address")
        host, port_text = address.strip("[]"), str(default_port)
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"address {address}: invalid port")
    return host, int(port_text)


def join_host_port(host: str, port: int) -> str:
    """The inverse of ``split_host_port``: brackets around IPv6 literals."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def describe_error(exc: BaseException) -> str:
    """Go-style text for a socket, TLS or stream failure (``connection refused``)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"tls: failed to verify certificate: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"tls: {exc.reason or exc}".lower()
    if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ is not None:
        return describe_error(exc.__cause__)
    if isinstance(exc, socket.gaierror):
        return f"lookup: {exc.strerror or exc}".lower()
    if isinstance(exc, OSError) and exc.errno is not None:
        text = os.strerror(exc.errno)  # trio's strerror adds the address
        return text[:1].lower() + text[1:]
    if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError):
        return "connection reset by peer"
    return str(exc) or type(exc).__name__


@cache
def _ip_family(host: str) -> int | None:
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return None


async def resolve(host: str, port: int, type_: int) -> list[tuple[int, int, int, Any]]:
    """``(family, type, proto, sockaddr)`` for each address of ``host``.

    IP literals (the common case for checks) are answered without a call to
    the resolver; names go through ``getaddrinfo`` in a worker thread, every
    time, as Go's resolver does. Raises ``OSError`` (``gaierror``).
    """
    family = _ip_family(host)
    if family is not None:
        return [(family, type_, 0, (host, port))]
    infos = await trio.socket.getaddrinfo(host, port, type=type_)
    return [(fam, typ, proto, addr) for fam, typ, proto, _, addr in infos]


async def connect_tcp(host: str, port: int) -> trio.SocketStream:
    """Connect to ``host:port``, trying each resolved address in turn.

    Numeric addresses are resolved without a thread. Raises ``DialError``
    with Go's wording (``dial tcp host:port: connect: connection refused``).
    On cancellation the half-open socket is closed.
    """
    address = join_host_port(host, port)
    try:
        infos = await resolve(host, port, socket.SOCK_STREAM)
    except OSError as exc:
        raise DialError(f"dial tcp {address}: {describe_error(exc)}") from None
    last: OSError | None = None
    for family, type_, proto, sockaddr in infos:
        sock = trio.socket.socket(family, type_, proto)
        try:
            await sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        except BaseException:
            sock.close()
            raise
        return trio.SocketStream(sock)
    reason = describe_error(last) if last else "no addresses"
    raise DialError(f"dial tcp {address}: connect: {reason}")


@cache
def tls_context(skip_verify: bool, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """A client TLS context, built once per combination (loading CAs is slow).

    ``skip_verify`` turns off certificate and host name verification, as
    Consul's ``TLSSkipVerify`` does; ``alpn`` lists the protocols to offer.
    """
    ctx = ssl.create_default_context()
    if skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


async def open_stream(
    host: str, port: int, *, tls: ssl.SSLContext | None = None, server_name: str = ""
) -> trio.abc.Stream:
    """Connect, then (with ``tls``) complete a TLS handshake naming ``server_name`` or ``host``.

    Raises ``DialError`` on any failure; the connection is closed on failure
    and on cancellation.
    """
    stream = await connect_tcp(host, port)
    if tls is None:
        return stream
    ssl_stream = trio.SSLStream(stream, tls, server_hostname=server_name or host)
    try:
        await ssl_stream.do_handshake()
    except (trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
        await trio.aclose_forcefully(stream)
        raise DialError(describe_error(exc)) from None
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return ssl_stream
