"""TCP checks (Consul agent/checks/check.go ``CheckTCP``).

Passing when a connection to ``TCP`` (``host:port``) is accepted, with
output ``TCP connect <addr>: Success``; critical otherwise, with Go's error
text (``dial tcp 127.0.0.1:1: connect: connection refused``). The
connection is closed at once; nothing is sent.
"""

from __future__ import annotations

from typing import Any

import trio

from ..durations import format_duration
from .base import CRITICAL, PASSING, CheckOptions, CheckResult
from .dial import DialError, connect_tcp, split_host_port

__all__ = ["TCPChecker"]


class TCPChecker:
    """Probe one TCP address by connecting to it."""

    def __init__(self, spec: dict[str, Any], options: CheckOptions) -> None:
        """Raises ``ValueError`` when ``TCP`` is not ``host:port``."""
        self.address = str(spec["TCP"])
        self.host, self.port = split_host_port(self.address)

    async def run(self) -> CheckResult:
        """Connect and close; a refused or unreachable address is critical."""
        try:
            stream = await connect_tcp(self.host, self.port)
        except DialError as exc:
            return CheckResult(CRITICAL, str(exc))
        await trio.aclose_forcefully(stream)
        return CheckResult(PASSING, f"TCP connect {self.address}: Success")

    def timed_out(self, timeout: float) -> CheckResult:
        """Critical: the connection was neither accepted nor refused in time."""
        return CheckResult(
            CRITICAL, f"dial tcp {self.address}: i/o timeout ({format_duration(timeout)})"
        )
