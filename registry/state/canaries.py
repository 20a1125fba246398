"""Canaries table: one canary release record per service (meshd extension,
issue 19).

``CanarySet`` stores a record and, in the same transaction, the service's
service-splitter entry, guarded by check-and-set on the stored record's
ModifyIndex (0: none stored). The leader's controller writes every step this
way, so a step is never lost nor applied twice across a leader change, and
the splitter's weights and the record never disagree. Reads watch the
service's record (or the table) so the API can block with ``?index=``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..errors import ErrorCode
from ..records import Canary
from ..results import OK, Result, failed
from .config_entries import put_entry
from .table import Table
from .watch import WatchSet

if TYPE_CHECKING:
    from ..commands import CanarySet
    from .store import StateStore, WriteTx

INDEX = "canaries"


class CanaryTables:
    """Canary records by service name."""

    def __init__(self) -> None:
        self.canaries: Table[Canary] = Table("canaries", Canary, lambda c: c.service)

    def tables(self) -> list[Table[Canary]]:
        """Tables in snapshot order."""
        return [self.canaries]


def set_canary(store: StateStore, tx: WriteTx, cmd: CanarySet) -> Result:
    """Store the record (and the splitter) if the stored record's
    ModifyIndex is ``cmd.cas`` (and, with ``config_index``, no config entry
    changed after it); otherwise a CAS_CONFLICT result and no change."""
    table = store.canaries.canaries
    existing = table.get(cmd.canary.service)
    current = existing.modify_index if existing else 0
    if current != cmd.cas:
        return failed(
            ErrorCode.CAS_CONFLICT,
            f"canary {cmd.canary.service}: index {cmd.cas} != {current}",
        )
    config_now = store.index_of("config-entries")
    if cmd.config_index and config_now > cmd.config_index:
        text = f"config entries changed: index {config_now} > {cmd.config_index}"
        return failed(ErrorCode.CAS_CONFLICT, text)
    created = existing.create_index if existing else tx.index
    table.put(tx, replace(cmd.canary, create_index=created, modify_index=tx.index))
    tx.touch(INDEX, f"canary:{cmd.canary.service}")
    if cmd.splitter is not None:
        entries = store.config.entries
        key = (cmd.splitter.kind, cmd.splitter.name)
        put_entry(tx, entries, cmd.splitter, entries.get(key))
    return OK


def canary_get(store: StateStore, ws: WatchSet | None, service: str) -> tuple[int, Canary | None]:
    """The canary of ``service`` (None if it never had one)."""
    key = f"canary:{service}"
    store.watch(ws, key)
    return max(1, store.fine_index(key, INDEX)), store.canaries.canaries.get(service)


def canary_list(store: StateStore, ws: WatchSet | None) -> tuple[int, list[Canary]]:
    """Every canary record, sorted by service."""
    store.watch(ws, INDEX)
    table = store.canaries.canaries
    return max(1, store.index_of(INDEX)), sorted(table.values(), key=lambda c: c.service)
