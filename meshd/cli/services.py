"""``meshd services register|deregister`` (like ``consul services``): add or
remove services on the local agent through /v1/agent/service/*.

A definition file is JSON, HCL or TOML holding ``{"service": {...}}``,
``{"services": [...]}`` or a bare definition (an object with a name), in
Consul's CamelCase or the configuration files' snake_case. Field names are
sent in Consul's canonical spelling; values (Meta keys and so on) as written.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from ..defs.definitions import CHECK_FIELDS, SERVICE_FIELDS
from .client import AgentClient, quote_path
from .errors import CLIError, UnexpectedResponse
from .options import agent_options, option

_SERVICE_KEYS = {k.lower(): k for k in SERVICE_FIELDS}
_CHECK_KEYS = {k.lower(): k for k in CHECK_FIELDS}


def _norm(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def _canon(obj: Mapping[str, Any], table: Mapping[str, str]) -> dict[str, Any]:
    # Unknown keys pass through untouched: the agent names them in its 400.
    return {table.get(_norm(k), k): v for k, v in obj.items()}


def canonical_service(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A definition with Consul's field spelling (``enable_tag_override`` ->
    ``EnableTagOverride``), its checks too."""
    spec = _canon(obj, _SERVICE_KEYS)
    if isinstance(spec.get("Check"), list):  # HCL's repeated check { } blocks
        checks = spec.get("Checks")
        spec["Checks"] = [*spec.pop("Check"), *(checks if isinstance(checks, list) else [])]
    if isinstance(spec.get("Check"), Mapping):
        spec["Check"] = _canon(spec["Check"], _CHECK_KEYS)
    if isinstance(spec.get("Checks"), list):
        spec["Checks"] = [
            _canon(c, _CHECK_KEYS) if isinstance(c, Mapping) else c for c in spec["Checks"]
        ]
    return spec


def _parse_file(path: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CLIError(f"Error: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CLIError(f"Error: {path} is not UTF-8 text") from None
    suffix = Path(path).suffix.lower()
    if suffix == ".hcl":
        from ..config.hcl import HCLSyntaxError, parse_hcl

        try:
            return parse_hcl(text)
        except HCLSyntaxError as exc:
            raise CLIError(f"Error: {path}: {exc}") from None
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise CLIError(f"Error: {path} is not valid TOML: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        if suffix == ".json":
            raise CLIError(f"Error: {path} is not valid JSON: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        raise CLIError(f"Error: {path} is neither valid JSON nor valid TOML") from None


def load_definitions(path: str) -> list[dict[str, Any]]:
    """The service definitions in a JSON, HCL or TOML file. Raises ``CLIError``."""
    data = _parse_file(path)
    if not isinstance(data, Mapping):
        raise CLIError(f"Error: {path}: expected an object holding a service definition")
    keys = {_norm(k): k for k in data}
    if "services" in keys:
        found = data[keys["services"]]
        if not isinstance(found, list):
            raise CLIError(f"Error: {path}: services must be a list of definitions")
    elif "service" in keys and isinstance(data[keys["service"]], Mapping):
        found = [data[keys["service"]]]
    elif "service" in keys and isinstance(data[keys["service"]], list):
        found = data[keys["service"]]  # an HCL file that repeats service { }
    elif "name" in keys:
        found = [data]
    else:
        raise CLIError(
            f'Error: {path}: no service definition ("service", "services" or an object with a name)'
        )
    out = []
    for i, item in enumerate(found):
        if not isinstance(item, Mapping):
            raise CLIError(f"Error: {path}: services[{i}] must be an object")
        out.append(canonical_service(item))
    if not out:
        raise CLIError(f"Error: {path}: no service definitions")
    return out


def _meta(values: tuple[str, ...]) -> dict[str, str]:
    meta = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"Error: -meta expects key=value, got {item!r}")
        meta[key] = value
    return meta


@click.group()
def services() -> None:
    """Register and deregister services on the local agent."""


@services.command("register")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@option("name", "name", default="", help="Service name (instead of a file).")
@option("id", "service_id", default="", help="Service ID (default: the name).")
@option("address", "address", default="", help="Service address (default: the node's).")
@option("port", "port", type=click.IntRange(0, 65535), default=None, help="Service port.")
@option("tag", "tags", multiple=True, help="A tag (repeatable).")
@option("meta", "meta", multiple=True, metavar="KEY=VALUE", help="Metadata (repeatable).")
@agent_options()
def register(
    client: AgentClient,
    files: tuple[str, ...],
    name: str,
    service_id: str,
    address: str,
    port: int | None,
    tags: tuple[str, ...],
    meta: tuple[str, ...],
) -> None:
    """Register services from FILES (HCL, JSON or TOML), or one service from flags."""
    flags_used = bool(name or service_id or address or port is not None or tags or meta)
    if files and flags_used:
        raise CLIError("Error: give definition files or -name and its flags, not both")
    if files:
        definitions = [d for f in files for d in load_definitions(f)]
    elif name:
        flag_def: dict[str, Any] = {"Name": name, "ID": service_id, "Address": address}
        flag_def.update(Port=port, Tags=list(tags), Meta=_meta(meta))
        definitions = [{k: v for k, v in flag_def.items() if v not in ("", None, [], {})}]
    else:
        raise CLIError("Error: give a definition file or -name (see meshd services register -h)")
    for spec in definitions:
        label = str(spec.get("Name", ""))
        try:
            client.request("PUT", "/v1/agent/service/register", json_body=spec)
        except UnexpectedResponse as exc:
            raise CLIError(f'Error registering service "{label}": {exc.message}') from None
        click.echo(f"Registered service: {label}")


def _ids_from(target: str) -> list[str]:
    if os.path.isfile(target):
        return [str(d.get("ID") or d.get("Name") or "") for d in load_definitions(target)]
    if target.lower().endswith((".json", ".toml", ".hcl")):
        raise CLIError(f"Error: cannot read {target}: No such file or directory")
    return [target]


@services.command("deregister")
@click.argument("targets", nargs=-1, metavar="[ID|FILE]...")
@option("id", "service_id", default="", help="The ID of the service to deregister.")
@agent_options()
def deregister(client: AgentClient, targets: tuple[str, ...], service_id: str) -> None:
    """Deregister services by ID, or those defined in FILEs."""
    ids = [service_id] if service_id else []
    for target in targets:
        ids.extend(_ids_from(target))
    if not ids or not all(ids):
        raise CLIError("Error: give the service ID (or a definition file) to deregister")
    for sid in ids:
        try:
            client.request("PUT", f"/v1/agent/service/deregister/{quote_path(sid)}")
        except UnexpectedResponse as exc:
            raise CLIError(f'Error deregistering service "{sid}": {exc.message}') from None
        click.echo(f"Deregistered service: {sid}")
