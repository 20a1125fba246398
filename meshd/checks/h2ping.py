"""H2PING checks (Consul agent/checks/check.go ``CheckH2PING``).

Opens an HTTP/2 connection to ``H2PING`` (``host:port``), over TLS with ALPN
``h2`` unless ``H2PingUseTLS`` is false, sends a PING frame and is passing
when the ACK arrives (``HTTP2 ping was successful``); critical otherwise
(``HTTP2 ping failed: <error>``).
"""

from __future__ import annotations

from typing import Any

import h2.events

from .base import CRITICAL, PASSING, CheckOptions, CheckResult
from .dial import DialError, open_stream, split_host_port, tls_context
from .http2 import HTTP2Connection, HTTP2Error

__all__ = ["H2PingChecker"]

_OPAQUE = b"meshd-h2"  # PING payload: exactly 8 bytes


class H2PingChecker:
    """Probe one HTTP/2 server with a PING frame."""

    def __init__(self, spec: dict[str, Any], options: CheckOptions) -> None:
        """Raises ``ValueError`` when ``H2PING`` is not ``host:port``."""
        self.address = str(spec["H2PING"])
        self.host, self.port = split_host_port(self.address)
        use_tls = spec.get("H2PingUseTLS")
        self.use_tls = True if use_tls is None else bool(use_tls)
        self.skip_verify = bool(spec.get("TLSSkipVerify"))
        self.server_name = str(spec.get("TLSServerName") or "")

    async def run(self) -> CheckResult:
        """Connect, PING, wait for the ACK."""
        tls = tls_context(self.skip_verify, ("h2",)) if self.use_tls else None
        try:
            stream = await open_stream(self.host, self.port, tls=tls, server_name=self.server_name)
        except DialError as exc:
            return CheckResult(CRITICAL, f"Failed to dial to {self.address}: {exc}")
        conn = HTTP2Connection(stream)
        try:
            await conn.start()
            conn.h2.ping(_OPAQUE)
            await conn.flush()
            while True:
                for event in await conn.events():
                    if isinstance(event, h2.events.PingAckReceived):
                        return CheckResult(PASSING, "HTTP2 ping was successful")
        except HTTP2Error as exc:
            return CheckResult(CRITICAL, f"HTTP2 ping failed: {exc}")
        finally:
            await conn.aclose()

    def timed_out(self, timeout: float) -> CheckResult:
        """Critical: no ACK in time."""
        return CheckResult(CRITICAL, "HTTP2 ping failed: context deadline exceeded")
