"""``meshd info``: the agent's runtime statistics by section (agent, consul,
raft, runtime, ...), from the ``Stats`` of GET /v1/agent/self, printed as
``consul info`` does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from .client import AgentClient
from .errors import CLIError, UnexpectedResponse
from .options import agent_options
from .output import cell, echo_json


@click.command()
@agent_options(output=True)
def info(client: AgentClient, fmt: str) -> None:
    """Show the agent's statistics for debugging."""
    try:
        self_info = client.get_json("/v1/agent/self")
    except UnexpectedResponse as exc:
        raise CLIError(f"Error querying agent: {exc.message}") from None
    stats = self_info.get("Stats") if isinstance(self_info, Mapping) else None
    if not isinstance(stats, Mapping):
        raise CLIError("Error: the agent's /v1/agent/self answer has no Stats")
    if fmt == "json":
        echo_json(stats)
        return
    for section in sorted(stats):
        click.echo(f"{section}:")
        values: Any = stats[section]
        if not isinstance(values, Mapping):
            click.echo(f"\t{cell(values)}")
            continue
        for key in sorted(values):
            click.echo(f"\t{key} = {cell(values[key])}")
