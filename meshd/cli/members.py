"""``meshd members``: the cluster members this agent knows
(GET /v1/agent/members, like ``consul members``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import click

from .client import AgentClient
from .errors import CLIError
from .options import agent_options, flag, option
from .output import echo_json, echo_table

# serf.MemberStatus as Consul reports it in /v1/agent/members.
STATUS_NAMES = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}
# Consul tags servers role=consul and clients role=node.
ROLE_NAMES = {"consul": "server", "node": "client", "server": "server", "client": "client"}


def status_name(value: Any) -> str:
    """A member's status as a word (``alive``), whether sent as a number or a word."""
    if isinstance(value, int) and not isinstance(value, bool):
        return STATUS_NAMES.get(value, "unknown")
    return str(value or "unknown")


def _address(member: Mapping[str, Any]) -> str:
    addr = str(member.get("Addr", ""))
    if ":" in addr:
        addr = f"[{addr}]"
    port = member.get("Port")
    return f"{addr}:{port}" if port else addr


def _tags(member: Mapping[str, Any]) -> str:
    # One comma-separated column without blanks, as consul members -detailed.
    tags = member.get("Tags") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(tags.items()))


def _row(member: Mapping[str, Any]) -> list[Any]:
    tags = member.get("Tags") or {}
    role = str(tags.get("role", ""))
    return [
        member.get("Name", ""),
        _address(member),
        status_name(member.get("Status")),
        ROLE_NAMES.get(role, role or "unknown"),
        str(tags.get("build", "")).split(":")[0],
        tags.get("vsn", ""),
        tags.get("dc", ""),
    ]


@click.command()
@flag("detailed", "Show every member tag instead of the summary columns.")
@flag("wan", "List the servers as the WAN pool shows them (NAME.DC).")
@option("status", "status", default="", metavar="REGEX", help="Only members whose status matches.")
@agent_options(output=True)
def members(client: AgentClient, fmt: str, detailed: bool, wan: bool, status: str) -> None:
    """List the members of the cluster as this agent sees them."""
    try:
        pattern = re.compile(status) if status else None
    except re.error as exc:
        raise CLIError(f"Error: invalid -status pattern {status!r}: {exc}") from None
    found = client.get_json("/v1/agent/members", wan=wan or None)
    if not isinstance(found, list):
        raise CLIError("Error: unexpected /v1/agent/members answer (not a list)")
    chosen = [
        m
        for m in sorted(found, key=lambda m: str(m.get("Name", "")))
        if pattern is None or pattern.search(status_name(m.get("Status")))
    ]
    if fmt == "json":
        echo_json(chosen)
        return
    if detailed:
        rows = [
            [m.get("Name", ""), _address(m), status_name(m.get("Status")), _tags(m)] for m in chosen
        ]
        echo_table(["Node", "Address", "Status", "Tags"], rows)
        return
    headers = ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC"]
    echo_table(headers, [_row(m) for m in chosen])
