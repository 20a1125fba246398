"""Node liveness records: the leader's last verdict per node, written only on change."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..records import Liveness
from ..results import OK, Result
from .table import Table
from .watch import WatchSet

if TYPE_CHECKING:
    from .store import StateStore, WriteTx


class LivenessTables:
    """Liveness records by node name."""

    def __init__(self) -> None:
        self.records: Table[Liveness] = Table("liveness", Liveness, lambda r: r.node)

    def tables(self) -> list[Table[Liveness]]:
        """Tables in snapshot order."""
        return [self.records]


def set_liveness(store: StateStore, tx: WriteTx, node: str, status: str) -> Result:
    """Record ``status`` for ``node``; the same status again changes nothing."""
    existing = store.liveness.records.get(node)
    if existing is not None and existing.status == status:
        return OK
    create = existing.create_index if existing else tx.index
    store.liveness.records.put(tx, Liveness(node, status, create, tx.index))
    tx.touch("liveness", "liveness:" + node)
    return OK


def liveness_get(store: StateStore, ws: WatchSet | None, node: str) -> tuple[int, Liveness | None]:
    """The liveness record of ``node`` (None if the leader never judged it)."""
    key = "liveness:" + node
    store.watch(ws, key)
    return max(1, store.fine_index(key, "liveness")), store.liveness.records.get(node)


def liveness_list(store: StateStore, ws: WatchSet | None) -> tuple[int, list[Liveness]]:
    """Every liveness record, by node."""
    store.watch(ws, "liveness")
    return max(1, store.index_of("liveness")), store.liveness.records.sorted_records()
