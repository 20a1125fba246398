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
    """Coordinates keyed by node and segment, indexed by node."""

    def __init__(self) -> None:
        self.coords: Table[Coordinate] = Table(
            "coordinates", Coordinate, _key, {"node": lambda c: (c.node,)}
        )

    def tables(self) -> list[Table[Coordinate]]:
        """Tables in snapshot order."""
        return [self.coords]


def batch_update(store: StateStore, tx: WriteTx, cmd: CoordinateBatchUpdate) -> Result:
    """Store every update of the batch (a later one for the same key wins).

    As Consul's CoordinateBatchUpdate, updates for nodes the catalog does
    not hold are dropped silently: coordinates are removed with their node
    (``delete_node_coordinates``), and the node's next update fixes a race.
    """
    for c in cmd.updates:
        if store.catalog.nodes.get(c.node) is None:
            continue
        if store.coordinates.coords.get(_key(c)) != c:
            store.coordinates.coords.put(tx, c)
    tx.touch(INDEX)
    return OK


def delete_node_coordinates(store: StateStore, tx: WriteTx, node: str) -> None:
    """Drop every coordinate of ``node`` (its deregistration)."""
    gone = list(store.coordinates.coords.by("node", node).values())
    for c in gone:
        store.coordinates.coords.delete(tx, _key(c))
    if gone:
        tx.touch(INDEX)


def coordinate_list(store: StateStore, ws: WatchSet | None) -> tuple[int, list[Coordinate]]:
    """Every coordinate, by node then segment."""
    store.watch(ws, INDEX)
    rows = sorted(store.coordinates.coords.values(), key=lambda c: (c.node, c.segment))
    return max(1, store.index_of(INDEX)), rows


def coordinate_node(
    store: StateStore, ws: WatchSet | None, node: str
) -> tuple[int, list[Coordinate]]:
    """The coordinates of ``node`` (one per segment)."""
    store.watch(ws, INDEX)
    rows = sorted(store.coordinates.coords.by("node", node).values(), key=lambda c: c.segment)
    return max(1, store.index_of(INDEX)), rows
