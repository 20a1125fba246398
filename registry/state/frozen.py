"""A frozen view of the state store for snapshots, serialized in steps.

Taking the view is cheap: each table's row map is copied shallowly (records
are immutable, so the copy is a consistent view however the tables change
afterwards). Serializing it is not (about a second at 170,000 instances),
so ``FrozenSnapshot.steps()`` does it a bounded number of rows at a time:
the Raft driver runs one step per scheduler round, and the event loop (with
its heartbeats) never waits for more than a step.
"""

from __future__ import annotations

import gc
import heapq
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any

import msgpack

from ..codec import converters

STEP_ROWS = 2048  # rows encoded (or keys sorted) per step: a few ms each


class FrozenRows:
    """The rows of one table at one moment, iterable in primary-key order."""

    __slots__ = ("_rows", "_sorted")

    def __init__(self, rows: Mapping[Hashable, Any], *, already_sorted: bool) -> None:
        self._sorted = already_sorted
        self._rows: Any = list(rows.values()) if already_sorted else dict(rows)

    def __len__(self) -> int:
        return len(self._rows)

    def ordered(self) -> Iterator[Any]:
        """The records in key order, with ``None`` between sorting steps
        (records are never None): sorted runs of ``STEP_ROWS`` keys, then
        a lazy merge of the runs."""
        if self._sorted:
            yield from self._rows
            return
        rows: dict[Any, Any] = self._rows
        keys = list(rows)
        runs = []
        for start in range(0, len(keys), STEP_ROWS):
            runs.append(sorted(keys[start : start + STEP_ROWS]))
            yield None
        for key in heapq.merge(*runs):
            yield rows[key]


class FrozenSnapshot:
    """Every table and the index table at one moment; ``steps()`` builds the
    snapshot bytes (the same ones ``StateStore.snapshot`` gives) in bounded
    steps, ``__call__`` all at once."""

    def __init__(
        self, tables: Callable[[], list[tuple[str, type[Any], FrozenRows]]], index: list[Any]
    ) -> None:
        # The cyclic GC is paused from the copies until the view is dropped:
        # a fresh 170,000-entry copy in the young generations would be
        # traversed by the next collections (~20 ms each) for nothing, as
        # would everything serializing allocates. Records hold no cycles.
        self._gc_was_enabled = gc.isenabled()
        gc.disable()
        self._tables = tables()
        self._index = index
        self._result: bytes | None = None

    def steps(self) -> Iterator[None]:
        """Serialize, yielding after every ``STEP_ROWS`` rows; then ``result()``.

        msgpack of ``{"v", "index", "tables"}`` packed piece by piece is
        byte for byte what packing the whole document at once gives."""
        try:
            yield from self._serialize()
        finally:
            self._tables = []  # freed before the collector runs again
            if self._gc_was_enabled:
                self._gc_was_enabled = False
                gc.enable()

    def __del__(self) -> None:
        # A view dropped without being serialized must not leave GC paused.
        if self._gc_was_enabled:
            self._gc_was_enabled = False
            gc.enable()

    def _serialize(self) -> Iterator[None]:
        from .store import SNAPSHOT_VERSION

        packer = msgpack.Packer(use_bin_type=True)
        parts = [packer.pack_map_header(3), packer.pack("v"), packer.pack(SNAPSHOT_VERSION)]
        parts += [packer.pack("index"), packer.pack(self._index), packer.pack("tables")]
        parts.append(packer.pack_array_header(len(self._tables)))
        pack: Callable[[Any], bytes] = packer.pack
        for name, record_type, rows in self._tables:
            enc = converters(record_type, rows=True).enc
            parts += [packer.pack_array_header(2), pack(name), packer.pack_array_header(len(rows))]
            budget = STEP_ROWS
            for record in rows.ordered():
                if record is None:
                    yield None
                    continue
                parts.append(pack(enc(record)))
                budget -= 1
                if not budget:
                    budget = STEP_ROWS
                    yield None
        self._result = b"".join(parts)

    def result(self) -> bytes:
        """The bytes, once ``steps()`` is exhausted."""
        if self._result is None:
            raise RuntimeError("snapshot not serialized yet: run steps() to the end")
        return self._result

    def __call__(self) -> bytes:
        for _ in self.steps():
            pass
        return self.result()
