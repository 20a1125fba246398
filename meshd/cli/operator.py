"""``meshd operator raft list-peers|remove-peer|transfer-leader`` (like
``consul operator raft``), through /v1/operator/raft/*.
https://developer.hashicorp.com/consul/api-docs/operator/raft
"""

from __future__ import annotations

from typing import Any

import click

from .client import AgentClient
from .errors import CLIError, UnexpectedResponse
from .options import agent_options, flag, option
from .output import echo_json, echo_table


@click.group()
def operator() -> None:
    """Cluster operator tools."""


@operator.group("raft")
def raft() -> None:
    """Inspect and change the servers' Raft configuration."""


def _peer_row(server: dict[str, Any]) -> list[Any]:
    return [
        server.get("Node", ""),
        server.get("ID", ""),
        server.get("Address", ""),
        "leader" if server.get("Leader") else "follower",
        bool(server.get("Voter")),
        server.get("ProtocolVersion", ""),
    ]


@raft.command("list-peers")
@flag("stale", "Let any server answer, even without a leader.")
@agent_options(output=True)
def list_peers(client: AgentClient, fmt: str, stale: bool) -> None:
    """List the Raft servers and which one leads."""
    try:
        conf = client.get_json("/v1/operator/raft/configuration", stale=stale)
    except UnexpectedResponse as exc:
        raise CLIError(f"Error getting peers: {exc.message}") from None
    servers = (conf.get("Servers") or []) if isinstance(conf, dict) else []
    if fmt == "json":
        echo_json(conf)
        return
    headers = ["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]
    echo_table(headers, [_peer_row(s) for s in servers])


@raft.command("remove-peer")
@option("id", "peer_id", default="", help="The server's Raft ID.")
@option("address", "address", default="", help="The server's Raft address (host:port).")
@agent_options()
def remove_peer(client: AgentClient, peer_id: str, address: str) -> None:
    """Remove a failed server from the Raft configuration."""
    if bool(peer_id) == bool(address):
        raise CLIError("Error! Give exactly one of -id or -address")
    params = {"id": peer_id} if peer_id else {"address": address}
    try:
        client.request("DELETE", "/v1/operator/raft/peer", params=params)
    except UnexpectedResponse as exc:
        raise CLIError(f"Error removing peer: {exc.message}") from None
    if peer_id:
        click.echo(f'Removed peer with id "{peer_id}"')
    else:
        click.echo(f'Removed peer with address "{address}"')


@raft.command("transfer-leader")
@option("id", "peer_id", default="", help="The server to hand leadership to (default: any).")
@agent_options()
def transfer_leader(client: AgentClient, peer_id: str) -> None:
    """Make the leader hand leadership to another voter."""
    try:
        resp = client.request(
            "POST", "/v1/operator/raft/transfer-leader", params={"id": peer_id or None}
        )
    except UnexpectedResponse as exc:
        raise CLIError(f"Error transferring leadership: {exc.message}") from None
    result = resp.json() if resp.body.strip() else {}
    if isinstance(result, dict) and result.get("Success") is False:
        raise CLIError("Error transferring leadership: the leader did not hand over")
    click.echo("Success")
