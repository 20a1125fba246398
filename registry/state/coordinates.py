"""Network coordinates by (node, segment): Consul's coordinates table.

Written in batches (``CoordinateBatchUpdate``: one Raft entry per flush
period of the agents that received updates), read by
``/v1/coordinate/nodes`` and ``/node/:node`` on any agent, blocking on the
``coordinates`` index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..records import Coordinate
from ..results import OK, Result
from .table import Table
from .watch import WatchSet

if TYPE_CHECKING:
    from ..commands import CoordinateBatchUpdate
    from .store import StateStore, WriteTx

INDEX = "coordinates"


def _key(c: Coordinate) -> str:
    return f"{c.node}\x00{c.segment}"


class CoordinateTables:
    """Coordinates keyed by node then segment (sorted, so a node's are adjacent)."""

    def __init__(self) -> None:
        self.coords: Table[Coordinate] = Table("coordinates", Coordinate, _key)

    def tables(self) -> list[Table[Coordinate]]:
        """Tables in snapshot order."""
        return [self.coords]


def batch_update(store: StateStore, tx: WriteTx, cmd: CoordinateBatchUpdate) -> Result:
    """Store every update of the batch (a later one for the same key wins)."""
    for c in cmd.updates:
        if store.coordinates.coords.get(_key(c)) != c:
            store.coordinates.coords.put(tx, c)
    tx.touch(INDEX)
    return OK


def coordinate_list(store: StateStore, ws: WatchSet | None) -> tuple[int, list[Coordinate]]:
    """Every coordinate, by node then segment."""
    store.watch(ws, INDEX)
    rows = sorted(store.coordinates.coords.values(), key=lambda c: (c.node, c.segment))
    return max(1, store.index_of(INDEX)), rows


def coordinate_node(
    store: StateStore, ws: WatchSet | None, node: str
) -> tuple[int, list[Coordinate]]:
    """The coordinates of ``node`` (one per segment)."""
    idx, rows = coordinate_list(store, ws)
    return idx, [c for c in rows if c.node == node]
