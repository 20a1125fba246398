"""``meshd kv get|put|delete|export|import`` (like ``consul kv``), through /v1/kv/*.

Messages and exit statuses are Consul's, so scripts written for ``consul kv``
keep working: a missing key is ``Error! No key exists at: k`` (exit 1), a
lost check-and-set is ``Error! Did not write to k: CAS failed`` (exit 1).
https://developer.hashicorp.com/consul/commands/kv
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from .client import AgentClient, quote_path
from .errors import CLIError, UnexpectedResponse
from .options import agent_options, flag, option
from .output import echo_json, echo_pairs

CAS_HELP = "Check-and-set: only act if the key's ModifyIndex is -modify-index."
INDEX_HELP = "The ModifyIndex the key must have (with -cas; 0: the key must not exist)."


def _key(key: str) -> str:
    # Keys never start with "/"; users type "/foo" anyway (Consul strips it too).
    return key[1:] if key.startswith("/") else key


def _value(entry: Mapping[str, Any]) -> bytes:
    raw = entry.get("Value")
    if not raw:
        return b""
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise CLIError(f"Error: the agent sent a malformed value for {entry.get('Key')}") from None


def _shown(value: bytes, as_base64: bool) -> bytes:
    return base64.b64encode(value) if as_base64 else value


def _echo_bytes(data: bytes) -> None:
    click.echo(data)  # bytes go to the binary stream untouched, newline added


def _detailed(entry: Mapping[str, Any], as_base64: bool) -> None:
    value = _shown(_value(entry), as_base64).decode("utf-8", "replace")
    echo_pairs(
        [
            ("CreateIndex", entry.get("CreateIndex", 0)),
            ("Flags", entry.get("Flags", 0)),
            ("Key", entry.get("Key", "")),
            ("LockIndex", entry.get("LockIndex", 0)),
            ("ModifyIndex", entry.get("ModifyIndex", 0)),
            ("Session", entry.get("Session") or "-"),
            ("Value", value),
        ]
    )


@click.group()
def kv() -> None:
    """Read and write the key/value store."""


@kv.command("get")
@click.argument("key", default="")
@flag("recurse", "Every key under the prefix KEY, as key:value lines.")
@flag("detailed", "Show the metadata (indexes, flags, session) with the value.")
@flag("keys", "List the keys under the prefix KEY (up to -separator).")
@option("separator", "separator", default="/", show_default=True, help="With -keys.")
@flag("base64", "Print values base64-encoded.", dest="as_base64")
@flag("stale", "Let any server answer, even one behind the leader.")
@agent_options(output=True)
def get(
    client: AgentClient,
    fmt: str,
    key: str,
    recurse: bool,
    detailed: bool,
    keys: bool,
    separator: str,
    as_base64: bool,
    stale: bool,
) -> None:
    """Print the value at KEY (exit 1 when there is none)."""
    key = _key(key)
    if not key and not (recurse or keys):
        raise CLIError("Error! Missing KEY argument")
    path = f"/v1/kv/{quote_path(key)}"
    if keys:
        params = {"keys": True, "separator": separator or None, "stale": stale or None}
        resp = client.request("GET", path, params=params, allow=(404,))
        found = [] if resp.status == 404 else resp.json()
        if fmt == "json":
            echo_json(found)
        else:
            for name in found:
                click.echo(name)
        return
    params = {"recurse": recurse or None, "stale": stale or None}
    resp = client.request("GET", path, params=params, allow=(404,))
    entries: list[dict[str, Any]] = [] if resp.status == 404 else resp.json()
    if not recurse and not entries:
        raise CLIError(f"Error! No key exists at: {key}")
    if fmt == "json":
        echo_json(entries if recurse else entries[0])
        return
    for i, entry in enumerate(entries):
        if detailed:
            if i:
                click.echo("")
            _detailed(entry, as_base64)
        elif recurse:
            _echo_bytes(entry.get("Key", "").encode() + b":" + _shown(_value(entry), as_base64))
        else:
            _echo_bytes(_shown(_value(entry), as_base64))


def _data(data: str | None, decode_base64: bool) -> bytes:
    """Consul's DATA argument: absent (empty), ``-`` (stdin), ``@file`` or literal."""
    if data is None:
        raw = b""
    elif data == "-":
        raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    elif data.startswith("@"):
        try:
            raw = Path(data[1:]).read_bytes()
        except OSError as exc:
            raise CLIError(f"Error! Failed to read file {data[1:]}: {exc.strerror}") from None
    else:
        raw = data.encode()
    if decode_base64:
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise CLIError("Error! Cannot base64 decode data: invalid base64") from None
    return raw


def _check_cas(cas: bool, modify_index: int | None) -> None:
    if cas and modify_index is None:
        raise CLIError("Error! Missing -modify-index (required with -cas)")
    if modify_index is not None and not cas:
        raise CLIError("Error! Cannot specify -modify-index without -cas!")


@kv.command("put")
@click.argument("key")
@click.argument("data", required=False)
@option("flags", "flags", type=click.IntRange(0), default=0, help="Opaque integer stored with it.")
@flag("cas", CAS_HELP)
@option("modify-index", "modify_index", type=click.IntRange(0), default=None, help=INDEX_HELP)
@flag("base64", "DATA is base64-encoded; store the decoded bytes.", dest="as_base64")
@flag("acquire", "Write and take the lock for -session.")
@flag("release", "Write and release the lock held by -session.")
@option("session", "session", default="", help="Session ID for -acquire/-release.")
@agent_options()
def put(
    client: AgentClient,
    key: str,
    data: str | None,
    flags: int,
    cas: bool,
    modify_index: int | None,
    as_base64: bool,
    acquire: bool,
    release: bool,
    session: str,
) -> None:
    """Write DATA at KEY. DATA may be "-" (stdin) or @FILE (its contents)."""
    key = _key(key)
    if not key:
        raise CLIError("Error! Missing KEY argument")
    _check_cas(cas, modify_index)
    if (acquire or release) and not session:
        raise CLIError("Error! Missing -session (required with -acquire and -release)")
    if acquire and release:
        raise CLIError("Error! Cannot specify both -acquire and -release")
    value = _data(data, as_base64)
    params: dict[str, Any] = {
        "flags": flags or None,
        "cas": modify_index if cas else None,
        "acquire": session if acquire else None,
        "release": session if release else None,
    }
    try:
        resp = client.request("PUT", f"/v1/kv/{quote_path(key)}", params=params, body=value)
    except UnexpectedResponse as exc:
        raise CLIError(f"Error! Failed writing data: {exc.message}") from None
    if resp.json() is not True:
        if cas:
            raise CLIError(f"Error! Did not write to {key}: CAS failed")
        if acquire:
            raise CLIError(f"Error! Failed writing data: lock on {key} not acquired")
        raise CLIError(f"Error! Failed writing data to {key}")
    if acquire:
        click.echo(f"Success! Lock acquired on: {key}")
    elif release:
        click.echo(f"Success! Lock released on: {key}")
    else:
        click.echo(f"Success! Data written to: {key}")


@kv.command("delete")
@click.argument("key", default="")
@flag("recurse", "Delete every key under the prefix KEY.")
@flag("cas", CAS_HELP)
@option("modify-index", "modify_index", type=click.IntRange(0), default=None, help=INDEX_HELP)
@agent_options()
def delete(
    client: AgentClient, key: str, recurse: bool, cas: bool, modify_index: int | None
) -> None:
    """Delete KEY (or, with -recurse, every key under the prefix KEY)."""
    key = _key(key)
    if not key and not recurse:
        raise CLIError("Error! Missing KEY argument")
    _check_cas(cas, modify_index)
    if recurse and cas:
        raise CLIError("Error! Cannot specify both -cas and -recurse!")
    params = {"recurse": recurse, "cas": modify_index if cas else None}
    try:
        resp = client.request("DELETE", f"/v1/kv/{quote_path(key)}", params=params)
    except UnexpectedResponse as exc:
        what = "prefix" if recurse else "key"
        raise CLIError(f"Error! Did not delete {what} {key}: {exc.message}") from None
    if cas and resp.json() is not True:
        raise CLIError(f"Error! Did not delete key {key}: CAS failed")
    if recurse:
        click.echo(f"Success! Deleted keys with prefix: {key}")
    else:
        click.echo(f"Success! Deleted key: {key}")


# Consul's `kv export` / `kv import` format: a JSON array of
# {"key", "flags", "value" (base64)} objects, tab-indented on export.
# https://developer.hashicorp.com/consul/commands/kv/export


@kv.command("export")
@click.argument("prefix", default="")
@agent_options()
def export(client: AgentClient, prefix: str) -> None:
    """Print every key under PREFIX (all keys by default) as importable JSON."""
    prefix = _key(prefix)
    try:
        resp = client.request(
            "GET", f"/v1/kv/{quote_path(prefix)}", params={"recurse": True}, allow=(404,)
        )
    except UnexpectedResponse as exc:
        raise CLIError(f"Error querying Consul agent: {exc.message}") from None
    entries: list[dict[str, Any]] = [] if resp.status == 404 else resp.json()
    exported = [
        {"key": e.get("Key", ""), "flags": e.get("Flags", 0), "value": e.get("Value") or ""}
        for e in entries
    ]
    click.echo(json.dumps(exported, indent="\t"))


def _import_entries(data: str | None) -> list[dict[str, Any]]:
    if data is None:
        raise CLIError("Error! Missing DATA argument")
    raw = _data(data, False)
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        raise CLIError(f"Error! Cannot unmarshal data: {exc}") from None
    ok = isinstance(entries, list) and all(
        isinstance(e, dict) and isinstance(e.get("key"), str) for e in entries
    )
    if not ok:
        raise CLIError('Error! Cannot unmarshal data: expected a list of {"key", "value"} objects')
    return list(entries)


@kv.command("import")
@click.argument("data", required=False)
@option("prefix", "prefix", default="", help="Prepended to every imported key.")
@agent_options()
def import_(client: AgentClient, data: str | None, prefix: str) -> None:
    """Write the entries of a `kv export` document: DATA is the JSON, - (stdin) or @FILE."""
    entries = _import_entries(data)
    decoded = []
    for entry in entries:  # decode everything before writing anything
        key = entry["key"]
        try:
            value = base64.b64decode(entry.get("value") or "", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CLIError(f"Error! Base64 decoding failed for {key}: {exc}") from None
        flags = entry.get("flags", 0)
        if not isinstance(flags, int) or isinstance(flags, bool) or flags < 0:
            raise CLIError(f"Error! Invalid flags for {key}: {flags!r}")
        decoded.append((prefix + key, flags, value))
    for key, flags, value in decoded:
        try:
            client.request(
                "PUT", f"/v1/kv/{quote_path(key)}", params={"flags": flags or None}, body=value
            )
        except UnexpectedResponse as exc:
            raise CLIError(f"Error! Failed writing data for key {key}: {exc.message}") from None
        click.echo(f"Imported: {key}")
