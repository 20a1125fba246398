"""``meshd ca get-config|set-config|roots`` (Consul's ``consul connect ca``),
through /v1/connect/ca/configuration and /v1/connect/ca/roots.

Messages are Consul's (https://developer.hashicorp.com/consul/commands/connect/ca):
``set-config`` prints ``Configuration updated!``; a missing or unreadable
file is ``Error reading config file: ...``, bad JSON ``Error parsing config
file: ...`` (exit 1). The configuration's ``PrivateKey`` is sent to the agent
but never printed: the agent leaves it out of what it returns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .client import AgentClient
from .errors import CLIError, UnexpectedResponse
from .options import agent_options, flag, option
from .output import echo_json, echo_table

CONFIGURATION = "/v1/connect/ca/configuration"
ROOTS = "/v1/connect/ca/roots"


@click.group()
def ca() -> None:
    """Inspect and configure the Connect certificate authority."""


@ca.command("get-config")
@agent_options()
def get_config(client: AgentClient) -> None:
    """Print the CA provider configuration as JSON."""
    try:
        config = client.get_json(CONFIGURATION)
    except UnexpectedResponse as exc:
        raise CLIError(f"Error request CA configuration: {exc.message}") from None
    echo_json(config)


def _read_config(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CLIError(f"Error reading config file: {path}: {reason}") from None
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise CLIError(f"Error parsing config file: {exc}") from None
    if not isinstance(body, dict):
        raise CLIError("Error parsing config file: expected a JSON object")
    return body


@ca.command("set-config")
@option("config-file", "config_file", default="", metavar="FILE", help="JSON CA configuration.")
@flag(
    "force-without-cross-signing",
    "Rotate the root even if the old one cannot cross-sign the new one.",
    dest="force",
)
@agent_options()
def set_config(client: AgentClient, config_file: str, force: bool) -> None:
    """Replace the CA configuration with the one in -config-file."""
    if not config_file:
        raise CLIError("-config-file is required")
    body = _read_config(config_file)
    if force:
        body["ForceWithoutCrossSigning"] = True
    try:
        client.request("PUT", CONFIGURATION, json_body=body)
    except UnexpectedResponse as exc:
        raise CLIError(f"Error setting CA configuration: {exc.message}") from None
    click.echo("Configuration updated!")


@ca.command("roots")
@agent_options(output=True)
def roots(client: AgentClient, fmt: str) -> None:
    """List the CA roots: the active one signs new certificates."""
    try:
        found = client.get_json(ROOTS) or {}
    except UnexpectedResponse as exc:
        raise CLIError(f"Error reading CA roots: {exc.message}") from None
    if fmt == "json":
        echo_json(found)
        return
    rows = [
        (r.get("ID"), r.get("Name"), bool(r.get("Active")), r.get("NotAfter"))
        for r in found.get("Roots") or []
    ]
    echo_table(["ID", "Name", "Active", "NotAfter"], rows)
