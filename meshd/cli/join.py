"""``meshd join ADDRESS...`` and ``meshd force-leave NODE`` (like ``consul join``
and ``consul force-leave``), through PUT /v1/agent/join/:address and
PUT /v1/agent/force-leave/:node.
https://developer.hashicorp.com/consul/commands/join
https://developer.hashicorp.com/consul/commands/force-leave
"""

from __future__ import annotations

import click

from .client import AgentClient, quote_path
from .errors import CLIError, UnexpectedResponse
from .options import agent_options, flag


@click.command()
@click.argument("addresses", nargs=-1)
@flag("wan", "Join the servers' WAN pool (refused: meshd runs one datacenter).")
@agent_options()
def join(client: AgentClient, addresses: tuple[str, ...], wan: bool) -> None:
    """Tell the agent to join the cluster through the members at ADDRESS..."""
    if not addresses:
        raise CLIError("At least one address to join must be specified.")
    joined = 0
    for address in addresses:
        try:
            client.request(
                "PUT", f"/v1/agent/join/{quote_path(address)}", params={"wan": wan or None}
            )
        except UnexpectedResponse as exc:
            click.echo(f"Error joining address '{address}': {exc.message}", err=True)
            continue
        joined += 1
    if not joined:
        raise CLIError("Failed to join any nodes.")
    click.echo(f"Successfully joined cluster by contacting {joined} nodes.")


@click.command("force-leave")
@click.argument("node", required=False)
@flag("prune", "Remove the node from the member list at once instead of marking it left.")
@flag("wan", "Leave the WAN pool only (refused: meshd runs one datacenter).")
@agent_options()
def force_leave(client: AgentClient, node: str | None, prune: bool, wan: bool) -> None:
    """Force a failed member NODE into the left state (prints nothing on success)."""
    if not node:
        raise CLIError("A node name must be specified to force leave.")
    if wan:
        raise CLIError("Error force leaving: -wan is not supported: meshd runs one datacenter")
    try:
        client.request(
            "PUT", f"/v1/agent/force-leave/{quote_path(node)}", params={"prune": prune or None}
        )
    except UnexpectedResponse as exc:
        raise CLIError(f"Error force leaving: {exc.message}") from None
