"""``meshd event -name NAME [PAYLOAD]`` (like ``consul event``): fire a user
event through PUT /v1/event/fire/:name, optionally only for the nodes,
services and tags matching regular expressions.
https://developer.hashicorp.com/consul/commands/event
"""

from __future__ import annotations

import re

import click

from .client import AgentClient, quote_path
from .errors import CLIError, UnexpectedResponse
from .options import agent_options, option


def _check_regexp(what: str, expr: str) -> None:
    try:
        re.compile(expr)
    except re.error as exc:
        raise CLIError(f"Failed to compile {what} filter regexp: {exc}") from None


@click.command()
@click.argument("payload", required=False)
@option("name", "name", default="", help="The event's name (required).")
@option("node", "node", default="", metavar="REGEXP", help="Only nodes whose name matches.")
@option(
    "service", "service", default="", metavar="REGEXP", help="Only nodes with a matching service."
)
@option("tag", "tag", default="", metavar="REGEXP", help="With -service: only matching tags.")
@agent_options()
def event(
    client: AgentClient, payload: str | None, name: str, node: str, service: str, tag: str
) -> None:
    """Fire a user event carrying PAYLOAD to the agents of the cluster."""
    if not name:
        raise CLIError("Event name must be specified")
    if name.startswith("_"):
        raise CLIError("Event names starting with '_' are reserved for internal use")
    if tag and not service:
        raise CLIError("Cannot provide tag filter without service filter.")
    for what, expr in (("node", node), ("service", service), ("tag", tag)):
        if expr:
            _check_regexp(what, expr)
    params = {"node": node or None, "service": service or None, "tag": tag or None}
    try:
        resp = client.request(
            "PUT",
            f"/v1/event/fire/{quote_path(name)}",
            params=params,
            body=(payload or "").encode(),
        )
    except UnexpectedResponse as exc:
        raise CLIError(f"Error firing event: {exc.message}") from None
    click.echo(f"Event ID: {resp.json().get('ID', '')}")
