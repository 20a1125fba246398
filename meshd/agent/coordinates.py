"""Coordinate updates, batched into Raft writes on the server that receives them.

As Consul's Coordinate endpoint does: ``Coordinate.Update`` (the RPC behind
``PUT /v1/coordinate/update``, checked for node:write on the update's node)
only queues the update; every ``UPDATE_PERIOD`` the server writes what was
queued as one ``CoordinateBatchUpdate`` (at most ``MAX_BATCH`` updates per
entry, the latest update per node and segment), so a heavy update rate costs
one Raft write per period, not one per update. Updates beyond
``MAX_PENDING`` waiting for the next flush are refused (Consul's
``CoordinateUpdateMaxBatches`` limit), so a flood cannot grow memory.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from registry.commands import CoordinateBatchUpdate
from registry.records import Coordinate

from ..errors import MeshdError, TooManyRequests

log = logging.getLogger(__name__)

UPDATE_PERIOD = 1.0  # Consul's coordinate_update_period default (5 s there; meshd flushes sooner)
MAX_BATCH = 128  # Consul's coordinate_update_batch_size
MAX_PENDING = MAX_BATCH * 5  # ... times coordinate_update_max_batches


def coordinate_from_args(args: Mapping[str, Any]) -> Coordinate:
    """The ``Coordinate`` an RPC's ``{"node", "segment", "coord"}`` names
    (already validated by the HTTP edge that built them)."""
    coord = args.get("coord") or {}
    return Coordinate(
        node=str(args.get("node") or ""),
        segment=str(args.get("segment") or ""),
        vec=tuple(float(x) for x in coord.get("Vec") or ()),
        error=float(coord.get("Error", 0.0)),
        adjustment=float(coord.get("Adjustment", 0.0)),
        height=float(coord.get("Height", 0.0)),
    )


def coordinate_json(c: Coordinate) -> dict[str, Any]:
    """Consul's ``{"Node", "Segment", "Coord"}`` entry."""
    return {
        "Node": c.node,
        "Segment": c.segment,
        "Coord": {
            "Vec": list(c.vec),
            "Error": c.error,
            "Adjustment": c.adjustment,
            "Height": c.height,
        },
    }


class CoordinateBatcher:
    """Queued coordinate updates of one server, flushed every period."""

    def __init__(self, write: Callable[[CoordinateBatchUpdate], Awaitable[Any]]) -> None:
        self._write = write
        self._pending: dict[tuple[str, str], Coordinate] = {}
        self.flushes = 0  # Raft writes made (tests and figures)

    def queue(self, c: Coordinate) -> None:
        """Keep ``c`` for the next flush (replacing an older one for its key)."""
        key = (c.node, c.segment)
        if key not in self._pending and len(self._pending) >= MAX_PENDING:
            raise TooManyRequests("coordinate update rate limit exceeded, increase batch size")
        self._pending[key] = c

    async def flush(self) -> None:
        """Write what is queued, ``MAX_BATCH`` updates per Raft entry."""
        pending, self._pending = self._pending, {}
        items = [pending[k] for k in sorted(pending)]
        for start in range(0, len(items), MAX_BATCH):
            batch = CoordinateBatchUpdate(updates=tuple(items[start : start + MAX_BATCH]))
            try:
                await self._write(batch)
                self.flushes += 1
            except MeshdError as exc:  # no leader for now: the next update retries
                log.warning(
                    "event=coordinate_flush_failed count=%d reason=%s", len(batch.updates), exc
                )

    async def run(self) -> None:
        while True:
            await trio.sleep(UPDATE_PERIOD)
            if self._pending:
                await self.flush()
