"""Config entries table: Kind + Name + an arbitrary JSON body.

Follows Consul's /v1/config: upsert, check-and-set on ModifyIndex (0 means
create-only), delete, delete with CAS, get and list by kind. The body is
stored as given (typed per kind by its consumers, e.g. connect/ for
service-router or proxy-defaults).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..commands import ConfigEntryBatch, ConfigEntryRequest
from ..errors import ErrorCode
from ..records import ConfigEntry
from ..results import OK, Result, failed
from .table import Table
from .watch import WatchSet

if TYPE_CHECKING:
    from .store import StateStore, WriteTx


class ConfigEntryTables:
    """Config entries by (kind, name) and by kind."""

    def __init__(self) -> None:
        self.entries: Table[ConfigEntry] = Table(
            "config_entries", ConfigEntry, lambda e: (e.kind, e.name), {"kind": lambda e: (e.kind,)}
        )

    def tables(self) -> list[Table[ConfigEntry]]:
        """Tables in snapshot order."""
        return [self.entries]


def _touch(tx: WriteTx, kind: str, name: str) -> None:
    tx.touch("config-entries", f"config:{kind}", f"config:{kind}/{name}")


def apply_config_entry(store: StateStore, tx: WriteTx, cmd: ConfigEntryRequest) -> Result:
    """Apply an upsert/upsert-cas/delete/delete-cas; a failed CAS is a False result."""
    table = store.config.entries
    entry = cmd.entry
    key = (entry.kind, entry.name)
    existing = table.get(key)
    if cmd.op in ("upsert-cas", "delete-cas"):
        current = existing.modify_index if existing else 0
        if current != cmd.cas or (cmd.op == "delete-cas" and existing is None):
            return failed(
                ErrorCode.CAS_CONFLICT,
                f"config entry {entry.kind}/{entry.name}: index {cmd.cas} != {current}",
            )
    if cmd.op in ("delete", "delete-cas"):
        delete_entry(tx, table, entry.kind, entry.name)
        return OK
    put_entry(tx, table, entry, existing)
    return OK


def delete_entry(tx: WriteTx, table: Table[ConfigEntry], kind: str, name: str) -> None:
    """Delete ``kind/name`` (if present), waking its watchers."""
    if table.delete(tx, (kind, name)) is not None:
        _touch(tx, kind, name)
        tx.drop(f"config:{kind}/{name}")
        if not table.by("kind", kind):
            tx.drop(f"config:{kind}")


def put_entry(
    tx: WriteTx, table: Table[ConfigEntry], entry: ConfigEntry, existing: ConfigEntry | None
) -> None:
    """Store ``entry`` (keeping ``existing``'s CreateIndex), waking its watchers."""
    created = existing.create_index if existing else tx.index
    table.put(tx, ConfigEntry(entry.kind, entry.name, entry.body, created, tx.index))
    _touch(tx, entry.kind, entry.name)


def apply_config_batch(store: StateStore, tx: WriteTx, cmd: ConfigEntryBatch) -> Result:
    """Upsert every entry of the batch in this one transaction (meshd's
    atomic multi-entry write). With ``cmd.index`` set, a config entry
    written after that index fails the whole batch (CAS_CONFLICT): the API
    validated the graph as of that index and re-validates."""
    current = store.index_of("config-entries")
    if cmd.index and current > cmd.index:
        return failed(
            ErrorCode.CAS_CONFLICT, f"config entries changed: index {current} > {cmd.index}"
        )
    table = store.config.entries
    for entry in cmd.entries:
        put_entry(tx, table, entry, table.get((entry.kind, entry.name)))
    return OK


def config_entry_get(
    store: StateStore, ws: WatchSet | None, kind: str, name: str
) -> tuple[int, ConfigEntry | None]:
    """/v1/config/:kind/:name (None if absent)."""
    key = f"config:{kind}/{name}"
    store.watch(ws, key)
    return max(1, store.fine_index(key, "config-entries")), store.config.entries.get((kind, name))


def config_entry_list(
    store: StateStore, ws: WatchSet | None, kind: str | None = None
) -> tuple[int, list[ConfigEntry]]:
    """/v1/config/:kind (or every entry when ``kind`` is None), sorted by kind and name."""
    table = store.config.entries
    if kind is None:
        store.watch(ws, "config-entries")
        return max(1, store.index_of("config-entries")), table.sorted_records()
    key = f"config:{kind}"
    store.watch(ws, key)
    bucket = table.by("kind", kind)
    return max(1, store.fine_index(key, "config-entries")), [bucket[k] for k in sorted(bucket)]
