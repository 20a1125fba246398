"""``meshd snapshot save|restore|inspect`` (like ``consul snapshot``).

``save`` fetches GET /v1/snapshot, checks the archive before keeping it and
replaces FILE atomically (a temporary file in the same directory, fsynced,
then renamed), so a failed save never leaves a truncated snapshot behind.
``restore`` sends FILE with PUT /v1/snapshot. ``inspect`` reads FILE locally
with the agent's archive reader (``meshd.agent.snapshot_archive``: Consul's
gzip-compressed tar with meta.json, state.bin and SHA256SUMS, or meshd's
older flat format; every checksum is verified); no agent is needed.
https://developer.hashicorp.com/consul/commands/snapshot
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ..agent.snapshot_archive import ArchiveError, decode_archive
from .client import AgentClient
from .errors import CLIError, UnexpectedResponse
from .options import agent_options, flag, format_option
from .output import echo_json, echo_pairs


def inspect_bytes(data: bytes, source: str) -> dict[str, Any]:
    """Verify an archive and describe it (JSON keys as in its header).

    Raises ``CLIError`` when ``data`` is not an intact snapshot archive.
    """
    try:
        meta, state = decode_archive(data)
    except ArchiveError as exc:
        raise CLIError(f"Error verifying snapshot {source}: {exc}") from None
    return {
        "Index": meta.index,
        "Term": meta.term,
        "Datacenter": meta.datacenter,
        "Node": meta.node,
        "Time": meta.time,
        "Size": len(data),
        "StateSize": len(state),
        "StateSHA256": hashlib.sha256(state).hexdigest(),
        "Version": meta.version,
    }


def _inspect_rows(info: Mapping[str, Any]) -> list[tuple[str, Any]]:
    taken = datetime.fromtimestamp(info["Time"], UTC).isoformat(timespec="seconds")
    return [
        ("Index", info["Index"]),
        ("Term", info["Term"]),
        ("Datacenter", info["Datacenter"]),
        ("Node", info["Node"]),
        ("Taken", taken.replace("+00:00", "Z")),
        ("Size", info["Size"]),
        ("State size", info["StateSize"]),
        ("Checksum", f"sha256:{info['StateSHA256']}"),
        ("Version", info["Version"]),
    ]


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CLIError(f"Error opening snapshot file {path}: {exc.strerror}") from None


def write_atomically(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` all at once (temp file, fsync, rename)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@click.group()
def snapshot() -> None:
    """Save, restore and inspect snapshots of the servers' state."""


@snapshot.command("save")
@click.argument("file", type=click.Path(dir_okay=False))
@flag("stale", "Let any server answer, even without a leader.")
@agent_options()
def save(client: AgentClient, file: str, stale: bool) -> None:
    """Save a snapshot of the cluster state to FILE."""
    if not Path(file).resolve().parent.is_dir():
        raise CLIError(f"Error creating snapshot file {file}: the directory does not exist")
    try:
        resp = client.request("GET", "/v1/snapshot", params={"stale": stale})
    except UnexpectedResponse as exc:
        raise CLIError(f"Error saving snapshot: {exc.message}") from None
    info = inspect_bytes(resp.body, "from the agent")
    try:
        write_atomically(file, resp.body)
    except OSError as exc:
        raise CLIError(f"Error writing snapshot file {file}: {exc.strerror or exc}") from None
    index = resp.index or info["Index"]
    click.echo(f"Saved and verified snapshot to index {index}")


@snapshot.command("restore")
@click.argument("file", type=click.Path(dir_okay=False))
@agent_options()
def restore(client: AgentClient, file: str) -> None:
    """Replace the cluster state with the snapshot in FILE."""
    data = _read(file)
    try:
        client.request("PUT", "/v1/snapshot", body=data)
    except UnexpectedResponse as exc:
        raise CLIError(f"Error restoring snapshot: {exc.message}") from None
    click.echo("Restored snapshot")


@snapshot.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False))
@format_option
def inspect(file: str, fmt: str) -> None:
    """Show a snapshot file's index, term, size and checksum (read locally)."""
    info = inspect_bytes(_read(file), file)
    if fmt == "json":
        echo_json(info)
        return
    echo_pairs(_inspect_rows(info))
