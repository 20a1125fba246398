"""The proxy process's flags, their defaults, and the command line that carries them.

``meshd proxy`` (click, meshd/cli/proxy.py) validates the options and execs
``python -m connect.proxy.main`` (argparse, main.py); the supervisor starts
its workers with the same command line. All three take the defaults from
``DEFAULTS`` and build the command with ``ProxyFlags.command``, so a flag
is declared in one place. The token is not a flag: it travels in the
environment (``MESHD_HTTP_TOKEN``), never on a command line that ``ps``
shows.

This module imports only the standard library and the proxy's config
defaults: the CLI imports it without loading the proxy.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from .config import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS

ENTRY_MODULE = "connect.proxy.main"


def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too; an empty host is 127.0.0.1).

    Raises ``ValueError`` naming the text when it is not one.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def format_host_port(addr: tuple[str, int]) -> str:
    """The inverse of ``parse_host_port`` (``[v6]:PORT`` for an IPv6 host)."""
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class ProxyFlags:
    """Everything ``python -m connect.proxy.main`` takes on its command line.

    ``worker_id`` is set only on the supervisor's workers; ``metrics_addr``
    ``None`` serves no metrics.
    """

    http_addr: tuple[str, int] = ("127.0.0.1", 8500)
    workers: int = 1
    metrics_addr: tuple[str, int] | None = None
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    agent_wait: float = 30.0
    log_level: str = "info"
    log_json: bool = False
    sidecar_for: tuple[str, ...] = ()
    worker_id: int | None = None

    def command(self, python: str = sys.executable) -> list[str]:
        """``python -m connect.proxy.main`` with these flags (every one spelt
        out, so the process does not depend on a default changing)."""
        cmd = [
            python,
            "-m",
            ENTRY_MODULE,
            "--http-addr",
            format_host_port(self.http_addr),
            "--workers",
            str(self.workers),
            "--idle-timeout",
            repr(self.idle_timeout),
            "--max-connections",
            str(self.max_connections),
            "--agent-wait",
            repr(self.agent_wait),
            "--log-level",
            self.log_level,
        ]
        if self.metrics_addr is not None:
            cmd += ["--metrics-addr", format_host_port(self.metrics_addr)]
        if self.log_json:
            cmd.append("--log-json")
        for service in self.sidecar_for:
            cmd += ["--sidecar-for", service]
        if self.worker_id is not None:
            cmd += ["--worker-id", str(self.worker_id)]
        return cmd


DEFAULTS = ProxyFlags()
