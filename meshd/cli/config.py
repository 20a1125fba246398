"""``meshd config read|write|list|delete`` (like ``consul config``): config
entries through /v1/config.

``write`` takes a JSON or HCL file (or ``-`` for stdin) holding one entry
with ``Kind`` and ``Name`` (Consul's field names, any case for those two),
with ``-cas -modify-index N`` for check-and-set.

Beyond Consul (meshd extension): ``write FILE FILE...`` and ``apply DIR``
(every ``*.json``/``*.hcl`` in DIR) send several entries as ONE atomic
write (``PUT /v1/internal/config/batch``), validated as a whole graph, so
an ordering like "router before the protocol it needs" never fails
half-way: all entries are written, or none. Messages are Consul's:
``Config entry written: service-defaults/web``, ``Config entry not written:
...`` (a lost CAS, exit 1), ``Config entry deleted: ...``.

``write --dry-run FILE...`` (meshd) writes nothing: it prints how the
requests the proxies recently saw would be routed, split or denied under
the entries compared with now (``POST /v1/internal/config/dry-run``;
``-format=json`` prints the whole answer); bad entries fail as a write does.
https://developer.hashicorp.com/consul/commands/config
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .client import AgentClient, quote_path
from .errors import CLIError, UnexpectedResponse
from .options import agent_options, flag, format_option, option

CAS_HELP = "Check-and-set: only act if the entry's ModifyIndex is -modify-index."
DRY_RUN_HELP = (
    "Write nothing: report how recent requests would be routed, split or denied "
    "under these entries compared with now (meshd)."
)


@click.group()
def config() -> None:
    """Read, write, list and delete config entries."""


def _need(kind: str, name: str | None = None) -> None:
    if not kind:
        raise CLIError("Must specify the -kind parameter")
    if name is not None and not name:
        raise CLIError("Must specify the -name parameter")


def _path(kind: str, name: str = "") -> str:
    path = f"/v1/config/{quote_path(kind)}"
    return f"{path}/{quote_path(name)}" if name else path


@config.command("read")
@option("kind", "kind", default="", help="The entry's kind (service-defaults, ...).")
@option("name", "name", default="", help="The entry's name.")
@agent_options()
def read(client: AgentClient, kind: str, name: str) -> None:
    """Print one config entry as JSON."""
    _need(kind, name)
    try:
        entry = client.get_json(_path(kind, name))
    except UnexpectedResponse as exc:
        raise CLIError(f"Error reading config entry {kind}/{name}: {exc.message}") from None
    click.echo(json.dumps(entry, indent=4))


@config.command("list")
@option("kind", "kind", default="", help="The kind of entries to list.")
@agent_options()
def list_(client: AgentClient, kind: str) -> None:
    """Print the names of the config entries of one kind."""
    _need(kind)
    try:
        entries = client.get_json(_path(kind)) or []
    except UnexpectedResponse as exc:
        raise CLIError(f"Error listing config entries for kind {kind}: {exc.message}") from None
    for entry in entries:
        click.echo(entry.get("Name", ""))


def _load_entry(source: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CLIError(f"Failed to read config entry input: {source}: {reason}") from None
    if source.lower().endswith(".hcl") or not text.lstrip().startswith("{"):
        # Consul's config write takes HCL (Kind = "service-defaults" ...) or JSON.
        from ..config.hcl import HCLSyntaxError, parse_hcl

        try:
            return parse_hcl(text)
        except HCLSyntaxError as exc:
            raise CLIError(f"Failed to decode config entry input: {exc}") from None
    try:
        entry = json.loads(text)
    except ValueError as exc:
        raise CLIError(f"Failed to decode config entry input: {exc}") from None
    if not isinstance(entry, dict):
        raise CLIError("Failed to decode config entry input: expected a JSON object")
    return entry


def _kind_name(entry: dict[str, Any]) -> tuple[str, str]:
    fields = {k.lower(): v for k, v in entry.items()}
    kind, name = fields.get("kind"), fields.get("name")
    if not isinstance(kind, str) or not kind:
        raise CLIError("Failed to decode config entry input: missing Kind")
    if not isinstance(name, str) or not name:
        raise CLIError("Failed to decode config entry input: missing Name")
    return kind, name


def _check_cas(cas: bool, modify_index: int | None) -> None:
    if cas and modify_index is None:
        raise CLIError("Must specify a -modify-index greater than 0 with -cas")
    if modify_index is not None and not cas:
        raise CLIError("Cannot specify -modify-index without -cas")


@config.command("write")
@click.argument("sources", nargs=-1)
@flag("cas", CAS_HELP)
@option("modify-index", "modify_index", type=click.IntRange(0), default=None, help="With -cas.")
@flag("dry-run", DRY_RUN_HELP, dest="dry_run")
@format_option
@agent_options()
def write(
    client: AgentClient,
    sources: tuple[str, ...],
    cas: bool,
    modify_index: int | None,
    dry_run: bool,
    fmt: str,
) -> None:
    """Create or replace the config entry in FILE (HCL or JSON; - for stdin).

    Several FILEs are written atomically, validated together (meshd).
    With -dry-run nothing is written: the summary says how the recent
    requests the proxies recorded would fare (-format=json: the whole answer)."""
    if not sources:
        raise CLIError(
            "Must provide exactly one positional argument to specify the config entry to write"
        )
    _check_cas(cas, modify_index)
    if dry_run:
        _dry_run(client, [_load_entry(source) for source in sources], fmt)
        return
    if len(sources) > 1:
        if cas:
            raise CLIError("Cannot use -cas with several config entry files")
        _write_batch(client, [_load_entry(source) for source in sources])
        return
    entry = _load_entry(sources[0])
    kind, name = _kind_name(entry)
    try:
        resp = client.request(
            "PUT", "/v1/config", params={"cas": modify_index if cas else None}, json_body=entry
        )
    except UnexpectedResponse as exc:
        raise CLIError(f"Error writing config entry {kind}/{name}: {exc.message}") from None
    written = resp.json() if resp.body.strip() else True
    if written is False:
        raise CLIError(f"Config entry not written: {kind}/{name}")
    click.echo(f"Config entry written: {kind}/{name}")


def _dry_run(client: AgentClient, entries: list[dict[str, Any]], fmt: str) -> None:
    """POST ``entries`` to the dry run and print its summary (or JSON)."""
    names = [_kind_name(entry) for entry in entries]
    try:
        resp = client.request("POST", "/v1/internal/config/dry-run", json_body=entries)
    except UnexpectedResponse as exc:
        if len(names) == 1:
            kind, name = names[0]
            raise CLIError(f"Error writing config entry {kind}/{name}: {exc.message}") from None
        raise CLIError(f"Error writing config entries (none written): {exc.message}") from None
    answer = resp.json()
    if fmt == "json":
        click.echo(json.dumps(answer, indent=4))
        return
    for line in answer.get("Summary") or []:
        click.echo(line)
    click.echo(
        f"Dry run: nothing written ({answer.get('Samples', 0)} recent requests, "
        f"last {answer.get('Window', '0s')})"
    )


@config.command("apply")
@click.argument("directory", required=False)
@agent_options()
def apply(client: AgentClient, directory: str | None) -> None:
    """Write every *.json and *.hcl entry in DIRECTORY as one atomic write (meshd)."""
    if not directory:
        raise CLIError("Must provide exactly one directory of config entry files")
    path = Path(directory)
    if not path.is_dir():
        raise CLIError(f"Not a directory: {directory}")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".json", ".hcl"))
    if not files:
        raise CLIError(f"No config entry files (*.json, *.hcl) in {directory}")
    _write_batch(client, [_load_entry(str(p)) for p in files])


def _write_batch(client: AgentClient, entries: list[dict[str, Any]]) -> None:
    """PUT ``entries`` as one batch; all are written or none."""
    names = [_kind_name(entry) for entry in entries]
    try:
        client.request("PUT", "/v1/internal/config/batch", json_body=entries)
    except UnexpectedResponse as exc:
        raise CLIError(f"Error writing config entries (none written): {exc.message}") from None
    for kind, name in names:
        click.echo(f"Config entry written: {kind}/{name}")


@config.command("delete")
@option("kind", "kind", default="", help="The entry's kind.")
@option("name", "name", default="", help="The entry's name.")
@option("filename", "filename", default="", help="Take -kind and -name from this entry file.")
@flag("cas", CAS_HELP)
@option("modify-index", "modify_index", type=click.IntRange(0), default=None, help="With -cas.")
@agent_options()
def delete(
    client: AgentClient, kind: str, name: str, filename: str, cas: bool, modify_index: int | None
) -> None:
    """Delete one config entry."""
    if filename:
        if kind or name:
            raise CLIError("Cannot specify -kind or -name with -filename")
        kind, name = _kind_name(_load_entry(filename))
    _need(kind, name)
    _check_cas(cas, modify_index)
    try:
        resp = client.request(
            "DELETE", _path(kind, name), params={"cas": modify_index if cas else None}
        )
    except UnexpectedResponse as exc:
        raise CLIError(f"Error deleting config entry {kind}/{name}: {exc.message}") from None
    if cas and resp.body.strip() and resp.json() is False:
        raise CLIError(f"Config entry not deleted: {kind}/{name}")
    click.echo(f"Config entry deleted: {kind}/{name}")
