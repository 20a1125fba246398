"""``meshd leave``: the agent leaves the cluster gracefully and shuts down
(PUT /v1/agent/leave, like ``consul leave``)."""

from __future__ import annotations

import click

from .client import AgentClient
from .errors import CLIError, UnexpectedResponse
from .options import agent_options


@click.command()
@agent_options()
def leave(client: AgentClient) -> None:
    """Make the agent leave the cluster and stop."""
    try:
        client.request("PUT", "/v1/agent/leave")
    except UnexpectedResponse as exc:
        raise CLIError(f"Error leaving: {exc.message}") from None
    click.echo("Graceful leave complete")
