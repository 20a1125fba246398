"""Errors raised by meshd/dns.

The DNS interface answers every expected problem on the wire (FORMERR,
NXDOMAIN, SERVFAIL, REFUSED), so few errors escape it; those that do are
configuration or start-up problems that the agent reports and stops on.
"""

from __future__ import annotations

from meshd.errors import MeshdError

__all__ = ["DNSBindError", "DNSError", "RecursorAddressError"]


class DNSError(MeshdError):
    """Base class of every error meshd/dns raises on purpose."""


class DNSBindError(DNSError):
    """The DNS listeners could not bind ``host:port`` (UDP and TCP on the same port)."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"dns: cannot listen on {host}:{port}: {reason}")
        self.host = host
        self.port = port
        self.reason = reason


class RecursorAddressError(DNSError):
    """A ``recursors`` entry is not ``ip``, ``ip:port`` or ``[ipv6]:port``."""

    def __init__(self, value: str) -> None:
        super().__init__(f"dns: recursor {value!r} is not ip, ip:port or [ipv6]:port")
        self.value = value
