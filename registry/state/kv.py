"""KV tables (entries, tombstones, lock delays): writes and reads.

Semantics follow Consul's state/kvs.go and the /v1/kv docs:

* ``set`` keeps CreateIndex, LockIndex and the holding session;
* ``cas`` with index 0 only creates; otherwise ModifyIndex must match;
* ``delete-cas`` on a missing key succeeds (as Consul's does);
* ``lock`` needs a live session, fails while another session holds the key
  or while the key's lock-delay (set when a holder's session was
  invalidated) has not passed; a new holder bumps LockIndex;
* ``unlock`` only by the holder; it keeps LockIndex;
* deletes leave a tombstone per key so a blocking get or list on a deleted
  key or prefix sees its index move; ``TombstoneReap`` drops old ones.

Watch keys: ``("kv", key)`` for gets, ``("kvp", prefix)`` for lists; a write
to a key fires its own and every watched prefix of it, found through the
watch registry's prefix index in time linear in the key's length.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import ErrorCode
from ..records import KVEntry, LockDelay, Tombstone
from ..results import OK, Result, failed
from .table import Table
from .watch import WatchSet

if TYPE_CHECKING:
    from .store import StateStore, WriteTx


class KVTables:
    """KV entries (ordered by key), tombstones and lock delays."""

    def __init__(self) -> None:
        self.entries: Table[KVEntry] = Table(
            "kvs",
            KVEntry,
            lambda e: e.key,
            {"session": lambda e: (e.session,) if e.session else ()},
            ordered=True,
        )
        self.tombstones: Table[Tombstone] = Table(
            "tombstones", Tombstone, lambda t: t.key, ordered=True
        )
        self.lock_delays: Table[LockDelay] = Table("lock_delays", LockDelay, lambda d: d.key)

    def tables(self) -> list[Table[KVEntry] | Table[Tombstone] | Table[LockDelay]]:
        """Tables in snapshot order."""
        return [self.entries, self.tombstones, self.lock_delays]


def _fire_key(store: StateStore, tx: WriteTx, key: str) -> None:
    # Only watched prefixes are visited (a radix walk, linear in len(key)),
    # never every prefix of the key: slicing each was quadratic.
    tx.fire(("kv", key), *store.watches.prefix_keys("kvp", key))


def _put(store: StateStore, tx: WriteTx, entry: KVEntry) -> None:
    store.kv.entries.put(tx, entry)
    tx.touch("kvs")
    _fire_key(store, tx, entry.key)


def _new_entry(
    tx: WriteTx, existing: KVEntry | None, key: str, value: bytes, flags: int, session: str
) -> KVEntry:
    if existing is None:
        return KVEntry(key, value, flags, session, 0, tx.index, tx.index)
    return KVEntry(key, value, flags, session, existing.lock_index, existing.create_index, tx.index)


def kv_set(store: StateStore, tx: WriteTx, key: str, value: bytes, flags: int) -> Result:
    """Set a key; an existing holder session and LockIndex are kept."""
    existing = store.kv.entries.get(key)
    session = existing.session if existing else ""
    _put(store, tx, _new_entry(tx, existing, key, value, flags, session))
    return OK


def kv_cas(store: StateStore, tx: WriteTx, key: str, value: bytes, flags: int, cas: int) -> Result:
    """Set only if ModifyIndex equals ``cas`` (``cas`` 0: only if the key is absent)."""
    existing = store.kv.entries.get(key)
    current = existing.modify_index if existing else 0
    if current != cas:
        return failed(ErrorCode.CAS_CONFLICT, f"failed to set key {key!r}, index is stale")
    return kv_set(store, tx, key, value, flags)


def kv_delete_key(store: StateStore, tx: WriteTx, key: str) -> Result:
    """Delete a key, leaving a tombstone (no-op if absent)."""
    if store.kv.entries.delete(tx, key) is None:
        return OK
    store.kv.tombstones.put(tx, Tombstone(key, tx.index))
    tx.touch("kvs", "tombstones")
    _fire_key(store, tx, key)
    return OK


def kv_delete_cas(store: StateStore, tx: WriteTx, key: str, cas: int) -> Result:
    """Delete only if ModifyIndex equals ``cas``; a missing key counts as deleted."""
    existing = store.kv.entries.get(key)
    if existing is None:
        return OK
    if existing.modify_index != cas:
        return failed(ErrorCode.CAS_CONFLICT, f"failed to delete key {key!r}, index is stale")
    return kv_delete_key(store, tx, key)


# -- the plain writes' one-step path -----------------------------------------------------------

PLAIN_OPS = frozenset(("set", "cas", "delete", "delete-cas"))
_KV_INDEX: tuple[str, ...] = ("kvs",)
_KV_DELETE_INDEXES: tuple[str, ...] = ("kvs", "tombstones")


def _slot_setters(cls: type, names: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(getattr(cls, name).__set__ for name in names)


# A frozen dataclass's __init__ sets each field through object.__setattr__;
# setting the slots directly builds the same record in a third of the time
# (kv_codec.new_kv does the same for KVRequest; a test pins both field lists).
_ENTRY_FIELDS = ("key", "value", "flags", "session", "lock_index", "create_index", "modify_index")
_TOMB_FIELDS = ("key", "index")
_ENTRY_SLOTS = _slot_setters(KVEntry, _ENTRY_FIELDS)
_TOMB_SLOTS = _slot_setters(Tombstone, _TOMB_FIELDS)
_new = object.__new__


def _entry(
    key: str, value: bytes, flags: int, session: str, lock: int, create: int, modify: int
) -> KVEntry:
    entry: KVEntry = _new(KVEntry)
    s_key, s_value, s_flags, s_session, s_lock, s_create, s_modify = _ENTRY_SLOTS
    s_key(entry, key)
    s_value(entry, value)
    s_flags(entry, flags)
    s_session(entry, session)
    s_lock(entry, lock)
    s_create(entry, create)
    s_modify(entry, modify)
    return entry


def _tombstone(key: str, index: int) -> Tombstone:
    tomb: Tombstone = _new(Tombstone)
    _TOMB_SLOTS[0](tomb, key)
    _TOMB_SLOTS[1](tomb, index)
    return tomb


def apply_plain(
    store: StateStore, index: int, op: str, key: str, value: bytes, flags: int, cas: int
) -> Result:
    """A whole KV ``set``, ``cas``, ``delete`` or ``delete-cas`` (``op`` in
    ``PLAIN_OPS``) at raft ``index``, without a ``WriteTx``: what ``kv_set``
    and the rest do inside one, followed by its commit (the same rows,
    indexes and watches fired). Every check comes before the first change
    and nothing after it can fail, so there is nothing to undo; most KV
    writes come this way, once on every server (issue #18)."""
    kvt = store.kv
    entries = kvt.entries
    existing = entries.rows.get(key)
    if op == "set" or op == "cas":
        if op == "cas" and (existing.modify_index if existing is not None else 0) != cas:
            return failed(ErrorCode.CAS_CONFLICT, f"failed to set key {key!r}, index is stale")
        if existing is None:
            entry = _entry(key, value, flags, "", 0, index, index)
        else:
            entry = _entry(
                key,
                value,
                flags,
                existing.session,
                existing.lock_index,
                existing.create_index,
                index,
            )
        entries.replace(key, existing, entry)
        names = _KV_INDEX
    else:
        if existing is None:
            return OK
        if op == "delete-cas" and existing.modify_index != cas:
            return failed(ErrorCode.CAS_CONFLICT, f"failed to delete key {key!r}, index is stale")
        entries.replace(key, existing, None)
        tombs = kvt.tombstones
        tombs.replace(key, tombs.rows.get(key), _tombstone(key, index))
        store.indexes["tombstones"] = index
        names = _KV_DELETE_INDEXES
    store.indexes["kvs"] = index
    watches = store.watches
    if len(watches):
        watches.fire((*names, ("kv", key), *watches.prefix_keys("kvp", key)))
    return OK


def iter_prefix(table: Table[KVEntry] | Table[Tombstone], prefix: str) -> Iterator[str]:
    """Keys of an ordered KV table starting with ``prefix``, in order."""
    for key in table.keys_from(prefix):
        if not key.startswith(prefix):
            return
        yield key


def kv_delete_tree(store: StateStore, tx: WriteTx, prefix: str) -> Result:
    """Delete every key starting with ``prefix`` ("" deletes all)."""
    for key in list(iter_prefix(store.kv.entries, prefix)):
        kv_delete_key(store, tx, key)
    return OK


def kv_lock(
    store: StateStore, tx: WriteTx, key: str, value: bytes, flags: int, session: str
) -> Result:
    """Acquire ``key`` for ``session`` (Consul's ``?acquire=``) and set its value."""
    if store.sessions.sessions.get(session) is None:
        return failed(ErrorCode.INVALID_SESSION, f"invalid session {session!r}")
    delay = store.kv.lock_delays.get(key)
    if delay is not None:
        if delay.until > tx.now:
            return failed(
                ErrorCode.LOCK_DELAY,
                f"failed to lock key {key!r}, lock-delay in effect for {delay.until - tx.now:.3f}s",
            )
        store.kv.lock_delays.delete(tx, key)
    existing = store.kv.entries.get(key)
    if existing is None:
        entry = KVEntry(key, value, flags, session, 1, tx.index, tx.index)
    elif existing.session == session:
        entry = _new_entry(tx, existing, key, value, flags, session)
    elif existing.session:
        return failed(ErrorCode.LOCK_HELD, f"failed to lock key {key!r}, lock is already held")
    else:
        entry = replace(
            _new_entry(tx, existing, key, value, flags, session), lock_index=existing.lock_index + 1
        )
    _put(store, tx, entry)
    return OK


def kv_unlock(
    store: StateStore, tx: WriteTx, key: str, value: bytes, flags: int, session: str
) -> Result:
    """Release ``key`` held by ``session`` (Consul's ``?release=``) and set its value."""
    existing = store.kv.entries.get(key)
    if existing is None or existing.session != session:
        return failed(
            ErrorCode.LOCK_HELD,
            f"failed to unlock key {key!r}, lock isn't held, or is held by another session",
        )
    _put(store, tx, _new_entry(tx, existing, key, value, flags, ""))
    return OK


def kv_release_held(store: StateStore, tx: WriteTx, entry: KVEntry) -> None:
    """Clear the holder of ``entry`` (session invalidation with behavior release)."""
    _put(store, tx, replace(entry, session="", modify_index=tx.index))


def set_lock_delay(store: StateStore, tx: WriteTx, key: str, until: float) -> None:
    """Forbid acquiring ``key`` before ``until`` (proposer's clock)."""
    store.kv.lock_delays.put(tx, LockDelay(key, until))


def reap_tombstones(store: StateStore, tx: WriteTx, until_index: int) -> Result:
    """Drop tombstones with index <= ``until_index`` and lock delays over at ``tx.now``."""
    tombs = store.kv.tombstones
    reaped = [t.key for t in tombs.values() if t.index <= until_index]
    for key in reaped:
        tombs.delete(tx, key)
    if reaped:
        tx.touch("tombstones")
    delays = store.kv.lock_delays
    for key in [d.key for d in delays.values() if d.until <= tx.now]:
        delays.delete(tx, key)
    return OK


# -- reads -------------------------------------------------------------------------------------


def kv_table_index(store: StateStore) -> int:
    """Max index of the KV entries and tombstones tables (at least 1)."""
    return max(1, store.index_of("kvs", "tombstones"))


def kv_get(store: StateStore, ws: WatchSet | None, key: str) -> tuple[int, KVEntry | None]:
    """GET /v1/kv/:key: the entry, indexed by its ModifyIndex (or its tombstone's)."""
    store.watch(ws, ("kv", key))
    entry = store.kv.entries.get(key)
    if entry is not None:
        return max(1, entry.modify_index), entry
    tomb = store.kv.tombstones.get(key)
    return (tomb.index if tomb else kv_table_index(store)), None


def _prefix_index(store: StateStore, prefix: str, entries: list[KVEntry]) -> int:
    if not prefix:
        return kv_table_index(store)
    idx = max((e.modify_index for e in entries), default=0)
    tombs = store.kv.tombstones
    for key in iter_prefix(tombs, prefix):
        tomb = tombs.get(key)
        if tomb is not None and tomb.index > idx:
            idx = tomb.index
    return idx if idx else kv_table_index(store)


def kv_list(store: StateStore, ws: WatchSet | None, prefix: str) -> tuple[int, list[KVEntry]]:
    """GET /v1/kv/:prefix?recurse: entries under ``prefix`` in key order."""
    store.watch(ws, ("kvp", prefix))
    table = store.kv.entries
    entries = [e for k in iter_prefix(table, prefix) if (e := table.get(k)) is not None]
    return _prefix_index(store, prefix, entries), entries


def kv_keys(
    store: StateStore, ws: WatchSet | None, prefix: str, separator: str = ""
) -> tuple[int, list[str]]:
    """GET /v1/kv/:prefix?keys&separator=: keys, rolled up after ``separator``."""
    idx, entries = kv_list(store, ws, prefix)
    keys: list[str] = []
    for entry in entries:
        key = entry.key
        if separator:
            pos = key.find(separator, len(prefix))
            if pos >= 0:
                key = key[: pos + len(separator)]
        if not keys or keys[-1] != key:
            keys.append(key)
    return idx, keys
