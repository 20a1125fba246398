"""``meshd monitor`` (like ``consul monitor``): follow the agent's log lines
as they are written, through the streaming GET /v1/agent/monitor.

``-log-level`` may be more verbose than the agent's own level (the agent
sends the extra lines only to this stream). Runs until interrupted (exit 0)
or until the agent goes away, which prints Consul's ``Remote side ended the
monitor!`` and exits 1.
https://developer.hashicorp.com/consul/commands/monitor
"""

from __future__ import annotations

import http.client

import click

from .client import AgentClient, Param
from .errors import CLIError, UnexpectedResponse
from .options import agent_options, flag, option

ENDED = (
    "Remote side ended the monitor! This usually means that the\nremote side has exited or crashed."
)


@click.command()
@option(
    "log-level",
    "log_level",
    default="info",
    show_default=True,
    help="Lines at this level and above: trace, debug, info, warn or error.",
)
@flag("log-json", "Stream the lines as JSON objects.", dest="log_json")
@agent_options()
def monitor(client: AgentClient, log_level: str, log_json: bool) -> None:
    """Stream the agent's log lines until interrupted."""
    params: dict[str, Param] = {"loglevel": log_level, "logjson": log_json or None}
    try:
        with client.stream("/v1/agent/monitor", params=params) as resp:
            while True:
                try:
                    data = resp.read1(65536)
                except (OSError, http.client.HTTPException):
                    data = b""
                if not data:
                    break
                click.echo(data, nl=False)  # bytes: written as sent, flushed
    except UnexpectedResponse as exc:
        raise CLIError(f"Error starting monitor: {exc.message}") from None
    except KeyboardInterrupt:
        return
    raise CLIError(ENDED)
