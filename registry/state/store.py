"""The state store: every table, the index table, the watches, snapshot/restore.

Writes go through a ``WriteTx`` (``store.begin(index, now)``): tables record
undo entries on it, it collects the index names and watch keys the write
touched, and ``commit()`` bumps those indexes to the raft index and fires
the watches, while ``abort()`` undoes everything. Reads are plain functions
in the area modules taking ``(store, ws, ...)`` and returning
``(index, result)``.

The index table follows Consul's: ``"nodes"``, ``"services"``... per table,
plus finer entries (``"service:web"``, ``"node:n1"``) so the X-Consul-Index
of a query only moves when what it read changed. A fine entry is dropped
when its object disappears; queries then fall back to the table index,
which is at least as high, so an index never goes backwards.

All writes happen on the thread that runs trio (the FSM is applied there).
"""

from __future__ import annotations

import gc
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from typing import Any

from ..codec import CodecError, converters, unpack
from ..errors import CorruptSnapshotError
from .acl import ACLTables
from .autopilot import AutopilotTables
from .ca import CATables
from .canaries import CanaryTables
from .catalog import CatalogTables
from .config_entries import ConfigEntryTables
from .coordinates import CoordinateTables
from .frozen import FrozenRows, FrozenSnapshot
from .intentions import IntentionTables
from .kv import KVTables
from .liveness import LivenessTables
from .sessions import SessionTables
from .table import Table
from .watch import WatchRegistry, WatchSet

SNAPSHOT_VERSION = 1
# Tables added after snapshots of this version were first written: a snapshot
# from an older meshd lacks them and restores with them empty (upgrades).
TABLES_ADDED_LATER = frozenset(
    {"acl_auth_methods", "acl_binding_rules", "autopilot_config", "coordinates", "canaries"}
)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building or reading millions of acyclic objects.

    Records hold no reference cycles, so nothing is lost; without this a
    snapshot or restore of a large store spends most of its time in repeated
    full collections.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class WriteTx:
    """One write in progress: undo log, touched indexes, watch keys to fire."""

    __slots__ = ("_drop", "_fire", "_touched", "_undo", "index", "now", "store")

    def __init__(self, store: StateStore, index: int, now: float) -> None:
        self.store = store
        self.index = index
        self.now = now
        self._undo: list[tuple[Table[Any], Hashable, Any]] = []
        self._touched: set[str] = set()
        self._fire: set[Hashable] = set()
        self._drop: set[str] = set()

    def record_undo(self, table: Table[Any], key: Hashable, old: Any) -> None:
        """Remember that ``table[key]`` held ``old`` before this write."""
        self._undo.append((table, key, old))

    def touch(self, *names: str) -> None:
        """Mark index entries (also watch keys) as modified at this index."""
        self._touched.update(names)

    def fire(self, *keys: Hashable) -> None:
        """Fire these watch keys on commit without an index entry (KV keys)."""
        self._fire.update(keys)

    def drop(self, name: str) -> None:
        """Remove a fine-grained index entry on commit (its object is gone)."""
        self._drop.add(name)

    def commit(self) -> None:
        """Publish the write: bump indexes, drop retired ones, fire watches."""
        indexes = self.store.indexes
        for name in self._touched:
            indexes[name] = self.index
        for name in self._drop:
            indexes.pop(name, None)
        watches = self.store.watches
        watches.fire(self._touched)
        watches.fire(self._fire)
        self._undo.clear()

    def abort(self) -> None:
        """Undo every table change made through this transaction."""
        for table, key, old in reversed(self._undo):
            table.undo(key, old)
        self._undo.clear()
        self._touched.clear()
        self._fire.clear()
        self._drop.clear()


class StateStore:
    """Every registry table plus the index table and the watch registry."""

    def __init__(self) -> None:
        self.watches = WatchRegistry()
        self.indexes: dict[str, int] = {}
        self.catalog = CatalogTables()
        self.kv = KVTables()
        self.sessions = SessionTables()
        self.intentions = IntentionTables()
        self.config = ConfigEntryTables()
        self.ca = CATables()
        self.acl = ACLTables()
        self.liveness = LivenessTables()
        self.autopilot = AutopilotTables()
        self.coordinates = CoordinateTables()
        self.canaries = CanaryTables()

    def _tables(self) -> list[Table[Any]]:
        return [
            *self.catalog.tables(),
            *self.kv.tables(),
            *self.sessions.tables(),
            *self.intentions.tables(),
            *self.config.tables(),
            *self.ca.tables(),
            *self.acl.tables(),
            *self.liveness.tables(),
            *self.autopilot.tables(),
            *self.coordinates.tables(),
            *self.canaries.tables(),
        ]

    def begin(self, index: int, now: float = 0.0) -> WriteTx:
        """Start a write at raft ``index``; ``now`` is the proposer's clock."""
        return WriteTx(self, index, now)

    def index_of(self, *names: str) -> int:
        """The highest index among ``names`` (0 if none was ever written)."""
        get = self.indexes.get
        return max(get(n, 0) for n in names)

    def fine_index(self, name: str, *fallback: str) -> int:
        """``indexes[name]`` if present, else the max of the ``fallback`` tables."""
        idx = self.indexes.get(name)
        return idx if idx is not None else self.index_of(*fallback)

    def watch(self, ws: WatchSet | None, *keys: Hashable) -> None:
        """Add the watches of ``keys`` to ``ws`` (no-op when ``ws`` is None)."""
        if ws is not None:
            get = self.watches.get
            for key in keys:
                ws.add(get(key))

    def snapshot(self) -> bytes:
        """Serialize every table and the index table, deterministically."""
        with _gc_paused():
            return self.snapshot_view()()

    def snapshot_view(self) -> FrozenSnapshot:
        """Freeze the state now, cheaply (shallow copies of the row maps):
        the result serializes it later, in bounded steps or at once, to the
        same bytes ``snapshot`` gives now, however the tables change meanwhile."""
        return FrozenSnapshot(
            lambda: [
                (t.name, t.record_type, FrozenRows(t.rows, already_sorted=t.ordered))
                for t in self._tables()
            ],
            [[k, v] for k, v in sorted(self.indexes.items())],
        )

    def restore(self, data: bytes) -> None:
        """Replace every table with a snapshot's and fire every watch.

        Raises ``CorruptSnapshotError`` (leaving the store unchanged) if the
        bytes are not a snapshot of this version.
        """
        fresh = StateStore()
        with _gc_paused():
            self._load_into(fresh, data)
        self.indexes = fresh.indexes
        self.catalog = fresh.catalog
        self.kv = fresh.kv
        self.sessions = fresh.sessions
        self.intentions = fresh.intentions
        self.config = fresh.config
        self.ca = fresh.ca
        self.acl = fresh.acl
        self.liveness = fresh.liveness
        self.autopilot = fresh.autopilot
        self.coordinates = fresh.coordinates
        self.canaries = fresh.canaries
        self.watches.fire_all()

    @staticmethod
    def _load_into(fresh: StateStore, data: bytes) -> None:
        try:
            obj = unpack(data)
            if type(obj) is not dict or obj.get("v") != SNAPSHOT_VERSION:
                raise CorruptSnapshotError("not a registry snapshot of a known version")
            by_name = {t.name: t for t in fresh._tables()}
            for name, rows in obj["tables"]:
                table = by_name.pop(name)
                dec = converters(table.record_type, rows=True).dec
                table.load(dec(r) for r in rows)
            missing = set(by_name) - TABLES_ADDED_LATER
            if missing:
                raise CorruptSnapshotError(f"snapshot misses tables {sorted(missing)}")
            fresh.indexes = {str(k): int(v) for k, v in obj["index"]}
        except (CodecError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptSnapshotError(f"bad snapshot: {exc}") from exc
