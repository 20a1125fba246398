"""``Table``: records by primary key plus secondary indexes, with undo.

A tiny stand-in for go-memdb: every ``put``/``delete`` goes through a
``WriteTx`` that records how to undo it, so a transaction or a registration
that fails half-way is rolled back exactly (all or nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sortedcontainers import SortedDict

if TYPE_CHECKING:
    from .store import WriteTx

R = TypeVar("R")
IndexFn = Callable[[Any], Iterable[Hashable]]

_EMPTY: Mapping[Any, Any] = {}


class Table(Generic[R]):
    """Records of one type keyed by ``pk(record)``.

    ``indexes`` maps an index name to a function giving the index values a
    record is filed under (none, one or several). ``ordered`` keeps primary
    keys sorted (KV prefix scans, node listing).
    """

    __slots__ = ("_indexes", "index_fns", "name", "ordered", "pk", "record_type", "rows")

    def __init__(
        self,
        name: str,
        record_type: type[R],
        pk: Callable[[R], Hashable],
        indexes: Mapping[str, IndexFn] | None = None,
        *,
        ordered: bool = False,
    ) -> None:
        self.name = name
        self.record_type = record_type
        self.pk = pk
        self.ordered = ordered
        self.rows: dict[Any, R] = SortedDict() if ordered else {}
        self.index_fns: dict[str, IndexFn] = dict(indexes or {})
        self._indexes: dict[str, dict[Hashable, dict[Any, R]]] = {n: {} for n in self.index_fns}

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, key: Hashable) -> R | None:
        """The record with primary key ``key``, or None."""
        return self.rows.get(key)

    def by(self, index: str, value: Hashable) -> Mapping[Any, R]:
        """Records filed under ``value`` in ``index`` (pk -> record); do not mutate."""
        return self._indexes[index].get(value, _EMPTY)

    def index_map(self, index: str) -> Mapping[Hashable, Mapping[Any, R]]:
        """The whole secondary index: value -> (pk -> record); for hot loops, read-only."""
        return self._indexes[index]

    def index_values(self, index: str) -> Iterable[Hashable]:
        """Every value ``index`` currently holds records under."""
        return self._indexes[index].keys()

    def values(self) -> Iterable[R]:
        """All records (in primary-key order for ordered tables)."""
        return self.rows.values()

    def keys_from(self, start: str) -> Iterator[Any]:
        """Ordered tables only: primary keys >= ``start`` in order."""
        it: Iterator[Any] = self.rows.irange(minimum=start)  # type: ignore[attr-defined]
        return it

    def put(self, tx: WriteTx, record: R) -> R | None:
        """Insert or replace ``record``; returns the record it replaced."""
        key = self.pk(record)
        old = self._set(key, record)
        tx.record_undo(self, key, old)
        return old

    def delete(self, tx: WriteTx, key: Hashable) -> R | None:
        """Delete by primary key; returns the deleted record (None if absent)."""
        if key not in self.rows:
            return None
        old = self._set(key, None)
        tx.record_undo(self, key, old)
        return old

    def _set(self, key: Hashable, record: R | None) -> R | None:
        """Make ``key`` hold ``record`` (None deletes), keeping indexes in step."""
        old = self.rows.get(key)
        if old is not None:
            for name, fn in self.index_fns.items():
                buckets = self._indexes[name]
                for value in fn(old):
                    bucket = buckets.get(value)
                    if bucket is not None:
                        bucket.pop(key, None)
                        if not bucket:
                            del buckets[value]
        if record is None:
            self.rows.pop(key, None)
        else:
            self.rows[key] = record
            for name, fn in self.index_fns.items():
                buckets = self._indexes[name]
                for value in fn(record):
                    bucket = buckets.get(value)
                    if bucket is None:
                        buckets[value] = {key: record}
                    else:
                        bucket[key] = record
        return old

    def replace(self, key: Hashable, old: R | None, record: R | None) -> None:
        """Make ``key`` hold ``record`` (None deletes) with no undo recorded:
        for a write that changes its rows only once it cannot fail any more
        (a plain KV set or delete, ``kv.apply_plain``). ``old`` is the row
        ``key`` holds now (the caller has just read it).

        Replacing a row by one filed under the same index values (a KV
        entry keeping its session) updates the buckets in place, and an
        ordered table's existing key is set without its sorted-key list.
        """
        if old is None or record is None or self.rows.get(key) is not old:
            self._set(key, record)  # (a stale ``old``: the general path)
            return
        indexes = self._indexes
        for name, fn in self.index_fns.items():
            values = fn(record)
            if values != fn(old):
                self._set(key, record)
                return
            buckets = indexes[name]
            for value in values:
                buckets[value][key] = record
        if self.ordered:  # the key is there: SortedDict's own __setitem__ adds nothing
            dict.__setitem__(self.rows, key, record)
        else:
            self.rows[key] = record

    def undo(self, key: Hashable, old: R | None) -> None:
        """Restore ``key`` to ``old`` (used by ``WriteTx.abort``)."""
        self._set(key, old)

    def sorted_records(self) -> list[R]:
        """All records in primary-key order (snapshots)."""
        if self.ordered:
            return list(self.rows.values())
        return [self.rows[k] for k in sorted(self.rows)]

    def load(self, records: Iterable[R]) -> None:
        """Replace the contents with ``records`` (restore; no undo)."""
        self.rows = SortedDict() if self.ordered else {}
        self._indexes = {n: {} for n in self.index_fns}
        for record in records:
            self._set(self.pk(record), record)
