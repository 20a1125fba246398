"""``meshd proxy``: the per-host L4 mTLS proxy for every sidecar of the local agent.

The options are checked here, then the process replaces itself with the
lean ``python -m connect.proxy.main`` (no CLI, agent or ``cryptography``
modules loaded: ~30 MB RSS instead of ~45 MB). Everything the proxy serves
comes from the agent's HTTP API with blocking queries. ``--workers N``
runs N processes sharing the listeners (SO_REUSEPORT) under a supervisor
that restarts them and serves the summed metrics. SIGTERM/SIGINT stop
everything; an agent unreachable for ``--agent-wait`` seconds at start is a
one-line error and exit status 1.

Per-sidecar settings come from the registration's ``Proxy.Config``
(``idle_timeout`` s, ``max_connections``, ``connect_timeout_ms``) and
``Upstreams[].Config`` (the same plus ``balance``: ``round_robin`` or
``least_conn``); the flags below are the defaults. The flags, their
defaults and the command line that carries them are connect.proxy.flags's.
"""

from __future__ import annotations

import os
import sys

import click

from connect.proxy.flags import DEFAULTS, ProxyFlags, format_host_port, parse_host_port

from .client import parse_address
from .errors import CLIError


def _metrics_addr(text: str) -> tuple[str, int] | None:
    if not text:
        return None
    try:
        return parse_host_port(text)
    except ValueError:
        raise CLIError(f"Error: --metrics-addr must be HOST:PORT, got {text!r}") from None


@click.command()
@click.option(
    "--http-addr",
    "-http-addr",
    envvar=["MESHD_HTTP_ADDR", "CONSUL_HTTP_ADDR"],
    default=format_host_port(DEFAULTS.http_addr),
    show_default=True,
    help="The local agent's HTTP API (plain http).",
)
@click.option(
    "--token",
    "-token",
    envvar=["MESHD_HTTP_TOKEN", "CONSUL_HTTP_TOKEN"],
    default="",
    help="ACL token sent as X-Consul-Token.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=DEFAULTS.workers,
    show_default=True,
    help="Processes sharing the listeners (SO_REUSEPORT).",
)
@click.option(
    "--metrics-addr", default="", metavar="HOST:PORT", help="Serve Prometheus metrics here."
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(0.001),
    default=DEFAULTS.idle_timeout,
    show_default=True,
    help="Idle timeout in seconds (Proxy.Config.idle_timeout overrides).",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1),
    default=DEFAULTS.max_connections,
    show_default=True,
    help="Connections per listener (Proxy.Config.max_connections overrides).",
)
@click.option(
    "--agent-wait",
    type=click.FloatRange(0),
    default=DEFAULTS.agent_wait,
    show_default=True,
    help="Seconds to retry an unreachable agent at start.",
)
@click.option(
    "--log-level",
    "-log-level",
    default=DEFAULTS.log_level,
    show_default=True,
    help="trace, debug, info, warn, err.",
)
@click.option("--log-json", "-log-json", is_flag=True, help="Log JSON lines.")
@click.option(
    "--sidecar-for",
    "-sidecar-for",
    multiple=True,
    help="Serve only this service's sidecar (ID or name; repeatable). Default: all.",
)
def proxy(
    http_addr: str,
    token: str,
    workers: int,
    metrics_addr: str,
    idle_timeout: float,
    max_connections: int,
    agent_wait: float,
    log_level: str,
    log_json: bool,
    sidecar_for: tuple[str, ...],
) -> None:
    """Run the mTLS proxy for every sidecar registered on the local agent."""
    address = parse_address(http_addr)
    if address.scheme != "http":
        raise CLIError(f"Error: meshd proxy needs a plain http agent address, got {address}")
    flags = ProxyFlags(
        http_addr=(address.host, address.port),
        workers=workers,
        metrics_addr=_metrics_addr(metrics_addr),
        idle_timeout=idle_timeout,
        max_connections=max_connections,
        agent_wait=agent_wait,
        log_level=log_level,
        log_json=log_json,
        sidecar_for=sidecar_for,
    )
    argv = flags.command(sys.executable)
    env = dict(os.environ)
    if token.strip():
        env["MESHD_HTTP_TOKEN"] = token.strip()  # never on a command line: ps shows argv
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


if __name__ == "__main__":
    proxy(prog_name="meshd proxy")
