"""``meshd operator autopilot get-config|set-config|state`` (like ``consul
operator autopilot``), through /v1/operator/autopilot/configuration and
/v1/operator/autopilot/state.
https://developer.hashicorp.com/consul/commands/operator/autopilot
"""

from __future__ import annotations

from typing import Any

import click

from .client import AgentClient
from .errors import CLIError, UnexpectedResponse
from .options import agent_options
from .output import echo_json

CONFIGURATION = "/v1/operator/autopilot/configuration"
STATE = "/v1/operator/autopilot/state"
CONFIG_ORDER = (
    "CleanupDeadServers",
    "LastContactThreshold",
    "MaxTrailingLogs",
    "MinQuorum",
    "ServerStabilizationTime",
    "RedundancyZoneTag",
    "DisableUpgradeMigration",
    "UpgradeVersionTag",
)


@click.group()
def autopilot() -> None:
    """Autopilot: server health and dead-server cleanup settings."""


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and not value:
        return '""'
    return str(value)


def _get(client: AgentClient) -> dict[str, Any]:
    try:
        config: dict[str, Any] = client.get_json(CONFIGURATION)
    except UnexpectedResponse as exc:
        raise CLIError(f"Error querying Autopilot configuration: {exc.message}") from None
    return config


@autopilot.command("get-config")
@agent_options()
def get_config(client: AgentClient) -> None:
    """Print the autopilot configuration (Consul's key = value lines)."""
    config = _get(client)
    for key in CONFIG_ORDER:
        click.echo(f"{key} = {_value(config.get(key, ''))}")


_SETTERS = [
    ("cleanup-dead-servers", "CleanupDeadServers", click.BOOL),
    ("max-trailing-logs", "MaxTrailingLogs", click.IntRange(0)),
    ("min-quorum", "MinQuorum", click.IntRange(0)),
    ("last-contact-threshold", "LastContactThreshold", str),
    ("server-stabilization-time", "ServerStabilizationTime", str),
    ("redundancy-zone-tag", "RedundancyZoneTag", str),
    ("disable-upgrade-migration", "DisableUpgradeMigration", click.BOOL),
    ("upgrade-version-tag", "UpgradeVersionTag", str),
]


def _set_config(client: AgentClient, **changes: Any) -> None:
    """Change the given settings with a check-and-set on the current ones."""
    config = _get(client)
    for flag_name, key, _type in _SETTERS:
        value = changes.get(flag_name.replace("-", "_"))
        if value is not None:
            config[key] = value
    params = {"cas": config.get("ModifyIndex", 0)}
    try:
        resp = client.request("PUT", CONFIGURATION, params=params, json_body=config)
    except UnexpectedResponse as exc:
        raise CLIError(f"Error setting Autopilot configuration: {exc.message}") from None
    if resp.json() is not True:
        raise CLIError("Configuration could not be atomically updated, please try again")
    click.echo("Configuration updated!")


set_config = click.command("set-config")(agent_options()(_set_config))
set_config.help = "Change autopilot settings (only the flags given)."
for _flag, _key, _type in reversed(_SETTERS):
    set_config.params.insert(
        0, click.Option([f"-{_flag}", f"--{_flag}"], type=_type, default=None, help=f"{_key}.")
    )
autopilot.add_command(set_config)


def _echo_state(state: dict[str, Any]) -> None:
    click.echo(f"Healthy:                      {_value(state.get('Healthy'))}")
    click.echo(f"Failure Tolerance:            {state.get('FailureTolerance', 0)}")
    click.echo(f"Optimistic Failure Tolerance: {state.get('OptimisticFailureTolerance', 0)}")
    click.echo(f"Leader:                       {state.get('Leader', '')}")
    click.echo("Voters:")
    for voter in state.get("Voters") or []:
        click.echo(f"   {voter}")
    click.echo("")
    click.echo("Servers:")
    for sid, server in sorted((state.get("Servers") or {}).items()):
        click.echo(f"   {sid}")
        for label, key in (
            ("Name", "Name"),
            ("Address", "Address"),
            ("Version", "Version"),
            ("Status", "Status"),
            ("Node Type", "NodeType"),
            ("Node Status", "NodeStatus"),
            ("Healthy", "Healthy"),
            ("Last Contact", "LastContact"),
            ("Last Term", "LastTerm"),
            ("Last Index", "LastIndex"),
        ):
            click.echo(f"      {label + ':':<16} {_value(server.get(key, ''))}")
        click.echo("")


@autopilot.command("state")
@agent_options(output=True)
def state(client: AgentClient, fmt: str) -> None:
    """Print the servers' autopilot state: health, voters, the leader."""
    try:
        body = client.get_json(STATE)
    except UnexpectedResponse as exc:
        raise CLIError(f"Error querying Autopilot state: {exc.message}") from None
    if fmt == "json":
        echo_json(body)
        return
    _echo_state(body)
