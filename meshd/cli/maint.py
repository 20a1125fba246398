"""``meshd maint`` (like ``consul maint``): node and service maintenance mode
through PUT /v1/agent/maintenance and /v1/agent/service/maintenance/:id.

Without -enable or -disable it lists what is in maintenance on the agent
(its ``_node_maintenance`` and ``_service_maintenance:<id>`` checks).
https://developer.hashicorp.com/consul/commands/maint
"""

from __future__ import annotations

from typing import Any

import click

from .client import AgentClient, quote_path
from .errors import CLIError, UnexpectedResponse
from .options import agent_options, flag, option

NODE_CHECK = "_node_maintenance"
SERVICE_CHECK_PREFIX = "_service_maintenance:"


def _list(client: AgentClient) -> None:
    checks: dict[str, dict[str, Any]] = client.get_json("/v1/agent/checks") or {}
    for check_id, check in sorted(checks.items()):
        if check_id == NODE_CHECK:
            click.echo("Node:")
            click.echo(f"  Name:   {check.get('Node', '')}")
            click.echo(f"  Reason: {check.get('Notes', '')}")
            click.echo("")
    for check_id, check in sorted(checks.items()):
        if check_id.startswith(SERVICE_CHECK_PREFIX):
            click.echo("Service:")
            click.echo(f"  ID:     {check.get('ServiceID', '')}")
            click.echo(f"  Reason: {check.get('Notes', '')}")
            click.echo("")


@click.command()
@flag("enable", "Enter maintenance mode.")
@flag("disable", "Leave maintenance mode.")
@option("reason", "reason", default="", help="Why (with -enable); shown in the check's notes.")
@option("service", "service", default="", metavar="ID", help="A service ID instead of the node.")
@agent_options()
def maint(client: AgentClient, enable: bool, disable: bool, reason: str, service: str) -> None:
    """Put the node or one of its services into (or out of) maintenance mode."""
    if enable and disable:
        raise CLIError("Only one of -enable or -disable may be provided")
    if not enable and reason:
        raise CLIError("Reason may only be provided with -enable")
    if not enable and not disable:
        if service:
            raise CLIError("Service requires either -enable or -disable")
        _list(client)
        return
    params = {"enable": "true" if enable else "false", "reason": reason or None}
    verb = "enabling" if enable else "disabling"
    if service:
        path = f"/v1/agent/service/maintenance/{quote_path(service)}"
        try:
            client.request("PUT", path, params=params)
        except UnexpectedResponse as exc:
            raise CLIError(f"Error {verb} service maintenance: {exc.message}") from None
        state = "entered" if enable else "left"
        click.echo(f"Service {state} maintenance mode: {service}")
        return
    try:
        client.request("PUT", "/v1/agent/maintenance", params=params)
    except UnexpectedResponse as exc:
        raise CLIError(f"Error {verb} node maintenance: {exc.message}") from None
    click.echo("Node entered maintenance mode" if enable else "Node left maintenance mode")
