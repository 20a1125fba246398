"""``meshd intention create|delete|get|list|check|match`` (like ``consul
intention``), through /v1/connect/intentions and /v1/agent/connect/authorize.

Output and exit statuses are Consul's (https://developer.hashicorp.com/consul/commands/intention):
``Created: web => db (allow)``, ``Intention deleted.``, ``check`` prints
``Allowed`` (exit 0) or ``Denied`` (exit 2), ``list`` with no intentions
says ``There are no intentions.`` on stderr and exits 2. Unlike Consul,
``check`` also prints the reason (the intention or the default policy that
decided) on a second line, and a failure to ask is exit 1, not 2, so that a
script can tell "denied" from "could not check".

SRC and DST are service names, ``*``, or ``default/<name>`` (only the
default namespace exists).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import click

from .client import AgentClient
from .errors import CLIError, UnexpectedResponse
from .options import agent_options, flag, option
from .output import echo_json, echo_pairs, echo_table

INTENTIONS = "/v1/connect/intentions"
EXACT = f"{INTENTIONS}/exact"
# ``check`` asks /v1/agent/connect/authorize for a reason; the request needs
# a service SPIFFE ID for SRC. Authorization reads only its trust domain and
# service, so the datacenter segment is a placeholder.
_CHECK_DATACENTER = "dc1"
DENIED_EXIT = 2


class ExitTwo(CLIError):
    """A one-line message on stderr and exit status 2 (Consul's "no result")."""

    exit_code = DENIED_EXIT


def parse_target(text: str, what: str) -> str:
    """A service name from ``name`` or ``<namespace>/name`` (namespace default);
    raises ``CLIError`` like Consul's ``ParseIntentionTarget``."""
    namespace, sep, name = text.rpartition("/")
    if "/" in namespace:
        raise CLIError(f"Error: Invalid intention {what}: target can contain at most one '/'")
    if sep and namespace != "default":
        raise CLIError(
            f"Error: Invalid intention {what}: namespace {namespace!r} does not exist "
            "(namespaces are a Consul Enterprise feature)"
        )
    if not name:
        raise CLIError(f"Error: Invalid intention {what}: missing service name")
    return name


def describe(ixn: Mapping[str, Any]) -> str:
    """``SRC => DST (action)`` as Consul's ``api.Intention.String``."""
    perms = ixn.get("Permissions") or []
    if not perms:
        detail = str(ixn.get("Action", ""))
    elif len(perms) == 1:
        detail = "1 permission"
    else:
        detail = f"{len(perms)} permissions"
    return f"{ixn.get('SourceName', '')} => {ixn.get('DestinationName', '')} ({detail})"


def _meta(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"Error: -meta expects key=value, got {item!r}")
        out[key] = value
    return out


def _rfc850_local(text: str) -> str:
    """An RFC 3339 time as Go's ``Local().Format(time.RFC850)``."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return when.astimezone().strftime("%A, %d-%b-%y %H:%M:%S %Z")


def _get(client: AgentClient, args: tuple[str, ...]) -> dict[str, Any]:
    """The intention named by ``ID`` or ``SRC DST`` (Consul's ``GetFromArgs``)."""
    if len(args) == 1:
        resp = client.request("GET", f"{INTENTIONS}/{args[0]}", allow=(400, 404))
        if resp.status == 400:
            raise CLIError(f"Error reading the intention: {resp.body.decode(errors='replace')}")
        if resp.status == 404:
            raise CLIError(f"Intention not found with ID {args[0]!r}")
    elif len(args) == 2:
        src, dst = parse_target(args[0], "source"), parse_target(args[1], "destination")
        resp = client.request(
            "GET", EXACT, params={"source": src, "destination": dst}, allow=(404,)
        )
        if resp.status == 404:
            raise CLIError(f'Intention with source "{src}" and destination "{dst}" not found.')
    else:
        raise CLIError("Error: command requires exactly 1 or 2 arguments: ID, or SRC DST")
    found: dict[str, Any] = resp.json()
    return found


@click.group()
def intention() -> None:
    """Create, inspect and check the intentions between services."""


@intention.command("create")
@click.argument("src")
@click.argument("dst")
@flag("allow", "The intention allows the connection (the default).")
@flag("deny", "The intention denies the connection.")
@flag("replace", "Replace an intention for the same SRC and DST instead of failing.")
@option("description", "description", default="", help="A description of the intention.")
@option("meta", "meta", multiple=True, metavar="KEY=VALUE", help="Metadata (repeatable).")
@agent_options()
def create(
    client: AgentClient,
    src: str,
    dst: str,
    allow: bool,
    deny: bool,
    replace: bool,
    description: str,
    meta: tuple[str, ...],
) -> None:
    """Create an intention from SRC to DST."""
    if allow and deny:
        raise CLIError("Only one of -allow or -deny may be specified.")
    source, destination = parse_target(src, "source"), parse_target(dst, "destination")
    body: dict[str, Any] = {
        "SourceName": source,
        "DestinationName": destination,
        "SourceType": "consul",
        "Action": "deny" if deny else "allow",
        "Description": description,
        "Meta": _meta(meta),
    }
    shown = describe(body)
    try:
        if replace:
            # The name-based upsert replaces the pair atomically (Consul 1.9+).
            params = {"source": source, "destination": destination}
            client.request("PUT", EXACT, params=params, json_body=body)
        else:
            client.request("POST", INTENTIONS, json_body=body)
    except UnexpectedResponse as exc:
        hint = ""
        if not replace and "duplicate intention found" in exc.message:
            hint = " (add --replace to replace it)"
        raise CLIError(f'Error creating intention "{shown}": {exc.message}{hint}') from None
    click.echo(f"Created: {shown}")


@intention.command("delete")
@click.argument("args", nargs=-1, metavar="(ID | SRC DST)")
@agent_options()
def delete(client: AgentClient, args: tuple[str, ...]) -> None:
    """Delete the intention with ID, or the one from SRC to DST."""
    ixn = _get(client, args)
    try:
        client.request("DELETE", f"{INTENTIONS}/{ixn['ID']}")
    except UnexpectedResponse as exc:
        raise CLIError(f"Error deleting the intention: {exc.message}") from None
    click.echo("Intention deleted.")


@intention.command("get")
@click.argument("args", nargs=-1, metavar="(ID | SRC DST)")
@agent_options(output=True)
def get(client: AgentClient, fmt: str, args: tuple[str, ...]) -> None:
    """Show the intention with ID, or the one from SRC to DST."""
    ixn = _get(client, args)
    if fmt == "json":
        echo_json(ixn)
        return
    rows: list[tuple[str, Any]] = [
        ("Source:", ixn.get("SourceName", "")),
        ("Destination:", ixn.get("DestinationName", "")),
    ]
    if ixn.get("Action"):
        rows.append(("Action:", ixn["Action"]))
    if ixn.get("ID"):
        rows.append(("ID:", ixn["ID"]))
    if ixn.get("Description"):
        rows.append(("Description:", ixn["Description"]))
    meta = ixn.get("Meta") or {}
    rows.extend((f"Meta[{k}]:", meta[k]) for k in sorted(meta))
    rows.append(("Created At:", _rfc850_local(str(ixn.get("CreatedAt", "")))))
    echo_pairs(rows)
    if ixn.get("Permissions"):
        click.echo("Permissions:")
        echo_json(ixn["Permissions"])


@intention.command("list")
@agent_options(output=True)
def list_(client: AgentClient, fmt: str) -> None:
    """List every intention, highest precedence first."""
    found = client.get_json(INTENTIONS) or []
    if fmt == "json":
        echo_json(found)
        return
    if not found:
        raise ExitTwo("There are no intentions.")
    rows = [
        (
            i.get("ID"),
            i.get("SourceName"),
            i.get("Action"),
            i.get("DestinationName"),
            i.get("Precedence"),
        )
        for i in found
    ]
    echo_table(["ID", "Source", "Action", "Destination", "Precedence"], rows)


def _trust_domain(client: AgentClient) -> str:
    """The cluster's trust domain, or "" when the CA cannot tell (not
    initialised, or an agent without the CA endpoints)."""
    resp = client.request("GET", "/v1/connect/ca/roots", allow=range(400, 600))
    if resp.status != 200:
        return ""
    body = resp.json()
    return str(body.get("TrustDomain") or "") if isinstance(body, dict) else ""


def decision(client: AgentClient, source: str, destination: str) -> tuple[bool, str]:
    """Whether ``source`` may connect to ``destination`` and why.

    Asks /v1/agent/connect/authorize with a synthesised SPIFFE ID (which
    gives the reason); falls back to /v1/connect/intentions/check when the
    CA has no trust domain yet or ``source`` is not a plain service name.
    Raises ``CLIError`` when neither answers.
    """
    td = _trust_domain(client) if source != "*" else ""
    if td:
        uri = f"spiffe://{td}/ns/default/dc/{_CHECK_DATACENTER}/svc/{source}"
        body = {"Target": destination, "ClientCertURI": uri}
        resp = client.request(
            "POST", "/v1/agent/connect/authorize", json_body=body, allow=(400, 404, 405)
        )
        if resp.status == 200:
            answer = resp.json()
            return bool(answer.get("Authorized")), str(answer.get("Reason", ""))
    params = {"source": source, "destination": destination}
    answer = client.get_json(f"{INTENTIONS}/check", **params)
    reason = "no reason available: the CA is not initialised, asked /v1/connect/intentions/check"
    return bool(answer.get("Allowed")), reason


@intention.command("check")
@click.argument("src")
@click.argument("dst")
@agent_options(output=True)
def check(client: AgentClient, fmt: str, src: str, dst: str) -> None:
    """Would SRC be allowed to connect to DST? Exit 0 if so, 2 if denied."""
    source, destination = parse_target(src, "source"), parse_target(dst, "destination")
    try:
        allowed, reason = decision(client, source, destination)
    except UnexpectedResponse as exc:
        raise CLIError(f"Error checking the connection: {exc.message}") from None
    if fmt == "json":
        echo_json({"Allowed": allowed, "Reason": reason})
    else:
        click.echo("Allowed" if allowed else "Denied")
        click.echo(reason)
    if not allowed:
        click.get_current_context().exit(DENIED_EXIT)


@intention.command("match")
@click.argument("name")
@flag("source", "Match intentions with NAME as their source.", dest="by_source")
@flag(
    "destination",
    "Match intentions with NAME as their destination (the default).",
    dest="by_destination",
)
@agent_options(output=True)
def match(client: AgentClient, fmt: str, name: str, by_source: bool, by_destination: bool) -> None:
    """The intentions that apply to NAME, in the order they are evaluated."""
    if by_source and by_destination:
        raise CLIError("Error: only one of -source or -destination may be specified")
    by = "source" if by_source else "destination"
    target = parse_target(name, by)
    try:
        found = client.get_json(f"{INTENTIONS}/match", by=by, name=target)
    except UnexpectedResponse as exc:
        raise CLIError(f"Error matching the connection: {exc.message}") from None
    matches = found.get(target) or []
    if fmt == "json":
        echo_json(matches)
        return
    for ixn in matches:
        click.echo(describe(ixn))
