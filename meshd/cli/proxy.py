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
``least_conn``); the flags below are the defaults. The flags (name, help, range), their
defaults and the command line that carries them are connect.proxy.flags's
``FLAGS`` table; the click options here are generated from it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from connect.proxy.flags import FLAGS, Flag, ProxyFlags, format_host_port, parse_host_port

from .client import parse_address
from .errors import CLIError


def _metrics_addr(text: str) -> tuple[str, int] | None:
    if not text:
        return None
    try:
        return parse_host_port(text)
    except ValueError:
        raise CLIError(f"Error: --metrics-addr must be HOST:PORT, got {text!r}") from None


# Where the CLI reads a flag from the environment too (Consul's variables).
_ENVVARS = {"--http-addr": ["MESHD_HTTP_ADDR", "CONSUL_HTTP_ADDR"]}
_TOKEN = click.option(
    "--token",
    "-token",
    envvar=["MESHD_HTTP_TOKEN", "CONSUL_HTTP_TOKEN"],
    default="",
    help="ACL token sent as X-Consul-Token.",
)
_Command = Callable[..., None]


def _option(flag: Flag) -> Callable[[_Command], _Command]:
    """The click option for a row of connect.proxy.flags.FLAGS. Addresses stay
    text here: the CLI reads them as Consul does (parse_address) below."""
    names = [flag.name, f"-{flag.name[2:]}"] if flag.consul_spelling else [flag.name]
    kw: dict[str, Any] = {"help": flag.help, "metavar": flag.metavar}
    if flag.kind == "bool":
        kw["is_flag"] = True
    elif flag.kind == "list":
        kw["multiple"] = True
    elif flag.default is None:
        kw["default"] = ""
    else:
        kw["show_default"] = True
        kw["default"] = flag.default
        if flag.kind == "addr" and isinstance(flag.default, tuple):
            kw["default"] = format_host_port(flag.default)
        elif flag.kind == "int":
            kw["type"] = click.IntRange(_int(flag.low), _int(flag.high))
        elif flag.kind == "float":
            kw["type"] = click.FloatRange(flag.low, flag.high)
    if flag.name in _ENVVARS:
        kw["envvar"] = _ENVVARS[flag.name]
    return click.option(*names, **kw)


def _int(bound: float | None) -> int | None:
    return None if bound is None else int(bound)


def _options(command: _Command) -> _Command:
    """The proxy's flags, with the token after the address (where Consul lists it)."""
    options = [_option(flag) for flag in FLAGS if not flag.internal]
    options.insert(1, _TOKEN)
    for option in reversed(options):
        command = option(command)
    return command


@click.command()
@_options
def proxy(token: str, **options: Any) -> None:
    """Run the mTLS proxy for every sidecar registered on the local agent."""
    address = parse_address(options["http_addr"])
    if address.scheme != "http":
        raise CLIError(f"Error: meshd proxy needs a plain http agent address, got {address}")
    values = {flag.field: options[flag.field] for flag in FLAGS if not flag.internal}
    values["http_addr"] = (address.host, address.port)
    values["metrics_addr"] = _metrics_addr(options["metrics_addr"])
    flags = ProxyFlags(**values)
    argv = flags.command(sys.executable)
    env = dict(os.environ)
    if token.strip():
        env["MESHD_HTTP_TOKEN"] = token.strip()  # never on a command line: ps shows argv
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


if __name__ == "__main__":
    proxy(prog_name="meshd proxy")
