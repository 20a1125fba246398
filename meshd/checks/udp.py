"""UDP checks (Consul agent/checks/check.go ``CheckUDP``).

A datagram is sent to ``UDP`` (``host:port``) from a connected socket. Any
answer, or silence until the timeout, is passing (``UDP connect <addr>:
Success``): UDP has no handshake, so the only failure the sender can see is
an ICMP port-unreachable, which Linux reports as ECONNREFUSED on the
connected socket's next receive. That, or a send error, is critical.
"""

from __future__ import annotations

import socket
from typing import Any

import trio

from .base import CRITICAL, PASSING, CheckOptions, CheckResult
from .dial import describe_error, join_host_port, resolve, split_host_port

__all__ = ["PAYLOAD", "UDPChecker"]

PAYLOAD = b"ping"


class UDPChecker:
    """Probe one UDP address; the runner's timeout ends the wait as passing."""

    def __init__(self, spec: dict[str, Any], options: CheckOptions) -> None:
        """Raises ``ValueError`` when ``UDP`` is not ``host:port``."""
        self.address = str(spec["UDP"])
        self.host, self.port = split_host_port(self.address)

    async def run(self) -> CheckResult:
        """Send a datagram and wait for an answer or an error (until cancelled)."""
        try:
            infos = await resolve(self.host, self.port, socket.SOCK_DGRAM)
        except OSError as exc:
            return CheckResult(CRITICAL, f"dial udp {self.address}: {describe_error(exc)}")
        family, type_, proto, sockaddr = infos[0]
        with trio.socket.socket(family, type_, proto) as sock:
            op = "dial"
            try:
                await sock.connect(sockaddr)
                local = join_host_port(*sock.getsockname()[:2])
                op = f"write udp {local}->{self.address}"
                await sock.send(PAYLOAD)
                op = f"read udp {local}->{self.address}"
                await sock.recv(512)
            except OSError as exc:
                return CheckResult(CRITICAL, f"{op}: {describe_error(exc)}")
        return self._success()

    def timed_out(self, timeout: float) -> CheckResult:
        """Passing: no port-unreachable error arrived within the timeout."""
        return self._success()

    def _success(self) -> CheckResult:
        return CheckResult(PASSING, f"UDP connect {self.address}: Success")
