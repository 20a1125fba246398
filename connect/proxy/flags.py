"""The proxy process's flags, their defaults, and the command line that carries them.

``meshd proxy`` (click, meshd/cli/proxy.py) validates the options and execs
``python -m connect.proxy.main`` (argparse, main.py); the supervisor starts
its workers with the same command line. A flag is declared once, as a row of
``FLAGS`` (name, kind, help, range; the default is ``DEFAULTS``'s field):
both parsers and ``ProxyFlags.command`` are generated from the table. The
token is not a flag: it travels in the environment (``MESHD_HTTP_TOKEN``),
never on a command line that ``ps`` shows.

This module imports only the standard library and the proxy's config
defaults: the CLI imports it without loading the proxy.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal

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
        cmd = [python, "-m", ENTRY_MODULE]
        for flag in FLAGS:
            cmd += flag.argv(getattr(self, flag.field))
        return cmd


DEFAULTS = ProxyFlags()

FlagKind = Literal["addr", "int", "float", "str", "bool", "list"]


@dataclass(frozen=True, slots=True)
class Flag:
    """One flag of the proxy process. ``low``/``high`` bound a number
    (inclusive; both parsers check them); ``consul_spelling`` lets the CLI
    take ``-name`` too, as Consul's flags are spelt; ``internal`` flags are
    set by the supervisor only, not offered by ``meshd proxy``."""

    name: str
    kind: FlagKind
    help: str
    low: float | None = None
    high: float | None = None
    metavar: str | None = None
    consul_spelling: bool = False
    internal: bool = False

    @property
    def field(self) -> str:
        """The ``ProxyFlags`` field: ``--http-addr`` -> ``http_addr``."""
        return self.name[2:].replace("-", "_")

    @property
    def default(self) -> object:
        return getattr(DEFAULTS, self.field)

    def parse(self, text: str) -> object:
        """One value of this flag from its text. Raises ``ValueError`` naming the
        text (an unparsable address or number, a number out of range)."""
        if self.kind == "addr":
            return parse_host_port(text)
        if self.kind not in ("int", "float"):
            return text
        try:
            value = int(text) if self.kind == "int" else float(text)
        except ValueError:
            raise ValueError(f"invalid {self.kind} value: {text!r}") from None
        if self.low is not None and value < self.low:
            raise ValueError(f"{text} is below the minimum {self.low:g}")
        if self.high is not None and value > self.high:
            raise ValueError(f"{text} is above the maximum {self.high:g}")
        return value

    def argv(self, value: object) -> list[str]:
        """The command-line words that carry ``value`` (none for None/False)."""
        if value is None or value is False:
            return []
        if value is True:
            return [self.name]
        if self.kind == "list" and isinstance(value, tuple | list):
            return [word for item in value for word in (self.name, str(item))]
        if self.kind == "addr" and isinstance(value, tuple):
            return [self.name, format_host_port(value)]
        return [self.name, repr(value) if self.kind == "float" else str(value)]


FLAGS: tuple[Flag, ...] = (
    Flag(
        "--http-addr",
        "addr",
        "The local agent's HTTP API (plain http).",
        consul_spelling=True,
    ),
    Flag("--workers", "int", "Processes sharing the listeners (SO_REUSEPORT).", low=1, high=256),
    Flag("--metrics-addr", "addr", "Serve Prometheus metrics here.", metavar="HOST:PORT"),
    Flag(
        "--idle-timeout",
        "float",
        "Idle timeout in seconds (Proxy.Config.idle_timeout overrides).",
        low=0.001,
    ),
    Flag(
        "--max-connections",
        "int",
        "Connections per listener (Proxy.Config.max_connections overrides).",
        low=1,
    ),
    Flag("--agent-wait", "float", "Seconds to retry an unreachable agent at start.", low=0),
    Flag("--log-level", "str", "trace, debug, info, warn, err.", consul_spelling=True),
    Flag("--log-json", "bool", "Log JSON lines.", consul_spelling=True),
    Flag(
        "--sidecar-for",
        "list",
        "Serve only this service's sidecar (ID or name; repeatable). Default: all.",
        consul_spelling=True,
    ),
    Flag("--worker-id", "int", "The worker's number (set by the supervisor).", internal=True),
)
