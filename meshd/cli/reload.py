"""``meshd reload``: make the agent re-read its configuration files
(PUT /v1/agent/reload, like ``consul reload`` or SIGHUP)."""

from __future__ import annotations

import click

from .client import AgentClient
from .errors import CLIError, UnexpectedResponse
from .options import agent_options


@click.command()
@agent_options()
def reload(client: AgentClient) -> None:
    """Reload the agent's configuration files."""
    try:
        client.request("PUT", "/v1/agent/reload")
    except UnexpectedResponse as exc:
        raise CLIError(f"Error reloading: {exc.message}") from None
    click.echo("Configuration reload triggered")
