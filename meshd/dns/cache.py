"""Encoded answers kept for reuse: the DNS hot path.

A query's bytes after its 2-byte ID, plus the transport, identify its
answer completely, given the catalog state: the answer is a function of
the question, the flags, the EDNS0 options and the catalog. So a cache hit
costs one dictionary lookup and an ID patch, with no parsing or encoding.

An entry is valid while the lookup's ``state_index()`` is the one it was
built at and for at most ``ttl`` seconds (the SOA serial and, when the
lookup has no index, the catalog itself may have moved on). A service
answer has several *variants* (rotations of one shuffle of the instances,
see ``answers``); they are built lazily, the first time a hit picks one,
from the parsed query and lookup result that the entry keeps until all
variants exist. Size is bounded in bytes (LRU eviction).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from .answers import Found, Parsed

__all__ = ["AnswerCache", "CachedAnswer"]

_ENTRY_OVERHEAD = 256  # bytes charged per entry besides its key and variants
_ROW_COST = 1024  # bytes charged per catalog row an entry keeps


@dataclass(slots=True)
class CachedAnswer:
    """One question's encoded answer variants and what is needed to build the rest."""

    index: int | None
    expires: float
    seed: int
    variants: list[bytes | None]
    parsed: Parsed | None
    found: Found | None
    cost: int = 0

    def missing(self) -> int:
        """How many variants are still to build."""
        return sum(1 for v in self.variants if v is None)


class AnswerCache:
    """Answers by query key (LRU, at most ``max_bytes`` charged)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, CachedAnswer] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def charged_bytes(self) -> int:
        """Bytes currently charged to entries."""
        return self._bytes

    def get(self, key: bytes, index: int | None, now: float) -> CachedAnswer | None:
        """The valid entry for ``key`` at catalog ``index`` and monotonic ``now``."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.index != index or now >= entry.expires:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: bytes, entry: CachedAnswer) -> None:
        """Store ``entry`` under ``key`` (replacing any), evicting the least recently used."""
        if key in self._entries:
            self._drop(key)
        entry.cost = _cost(key, entry)
        self._entries[key] = entry
        self._bytes += entry.cost
        self._evict()

    def update(self, key: bytes, entry: CachedAnswer) -> None:
        """Re-charge ``entry`` after a variant was added to it (or its inputs released)."""
        if self._entries.get(key) is not entry:
            return
        self._bytes -= entry.cost
        entry.cost = _cost(key, entry)
        self._bytes += entry.cost
        self._evict()

    def discard(self, key: bytes) -> None:
        """Forget the entry for ``key``, if any."""
        if key in self._entries:
            self._drop(key)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
        self._bytes = 0

    def _drop(self, key: bytes) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.cost

    def _evict(self) -> None:
        while self._bytes > self.max_bytes and self._entries:
            key = next(iter(self._entries))
            self._drop(key)


def _cost(key: bytes, entry: CachedAnswer) -> int:
    built = sum(len(v) for v in entry.variants if v is not None)
    rows = len(entry.found.rows) if entry.found is not None else 0
    return _ENTRY_OVERHEAD + len(key) + built + rows * _ROW_COST
