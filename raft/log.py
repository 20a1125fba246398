"""The in-memory view of a server's Raft log.

Everything after the compaction point is held in memory; ``stable`` marks how
much of it the driver has made durable, ``commit`` and ``applied`` how far it
is committed and handed out for application. The core never reads storage:
the driver loads the durable state once at start and passes it in.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import CompactedError, RaftInvariantError
from .types import Entry


class RaftLog:
    """Entries ``(offset, last]`` with the term of ``offset`` remembered."""

    def __init__(
        self, offset: int = 0, offset_term: int = 0, entries: Sequence[Entry] = ()
    ) -> None:
        self.offset = offset
        self.offset_term = offset_term
        self.entries: list[Entry] = list(entries)
        for i, e in enumerate(self.entries):
            if e.index != offset + 1 + i:
                raise RaftInvariantError(f"log not contiguous at {e.index} (offset {offset})")
        self.stable = self.last_index()
        # Entries up to ``persisting`` were handed to the driver to write; up
        # to ``stable`` the driver confirmed them durable.
        self.persisting = self.stable
        self.commit = offset
        self.applied = offset
        # Bumped whenever held entries are replaced (a follower's conflicting
        # append, a snapshot restore): callers caching facts about the
        # entries (the core's configuration history) recheck them then.
        self.truncations = 0

    # -- reading -----------------------------------------------------------

    def last_index(self) -> int:
        return self.offset + len(self.entries)

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.offset_term

    def first_index(self) -> int:
        """The first index still held (entries before it are compacted)."""
        return self.offset + 1

    def term(self, index: int) -> int | None:
        """Term of ``index``; ``None`` when compacted away or beyond the end."""
        if index == self.offset:
            return self.offset_term
        if index < self.offset or index > self.last_index():
            return None
        return self.entries[index - self.offset - 1].term

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def entry(self, index: int) -> Entry:
        if index <= self.offset:
            raise CompactedError(f"index {index} is compacted (first is {self.offset + 1})")
        return self.entries[index - self.offset - 1]

    def slice(self, lo: int, hi: int, max_bytes: int = 1 << 30) -> list[Entry]:
        """Entries ``[lo, hi)``, at least one and at most ``max_bytes`` of data.

        Raises ``CompactedError`` if ``lo`` was compacted.
        """
        if lo <= self.offset:
            raise CompactedError(f"index {lo} is compacted (first is {self.offset + 1})")
        hi = min(hi, self.last_index() + 1)
        out: list[Entry] = []
        size = 0
        for e in self.entries[lo - self.offset - 1 : hi - self.offset - 1]:
            size += len(e.data) + 16
            if out and size > max_bytes:
                break
            out.append(e)
        return out

    def is_up_to_date(self, index: int, term: int) -> bool:
        """Whether a candidate's last entry is at least as up to date (§5.4.1)."""
        return term > self.last_term() or (term == self.last_term() and index >= self.last_index())

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """Largest index <= ``index`` whose term is <= ``term`` (fast backtracking)."""
        index = min(index, self.last_index())
        while index > self.offset:
            t = self.term(index)
            if t is not None and t <= term:
                break
            index -= 1
        return index

    def unstable(self) -> list[Entry]:
        """Entries not yet handed to the driver for writing."""
        return self.entries[self.persisting - self.offset :]

    def next_committed(self, max_count: int) -> list[Entry]:
        """Committed entries not yet handed out, oldest first."""
        hi = min(self.commit, self.last_index(), self.applied + max_count)
        if hi <= self.applied:
            return []
        return self.entries[self.applied - self.offset : hi - self.offset]

    # -- writing -----------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries that directly follow the last one (leader path)."""
        if entries and entries[0].index != self.last_index() + 1:
            raise RaftInvariantError(
                f"append at {entries[0].index} does not follow {self.last_index()}"
            )
        self.entries.extend(entries)

    def truncate_and_append(self, entries: Sequence[Entry]) -> None:
        """Replace everything from ``entries[0].index`` on (follower path)."""
        if not entries:
            return
        first = entries[0].index
        if first <= self.commit:
            raise RaftInvariantError(f"truncating committed entry {first} (commit {self.commit})")
        if first <= self.offset:
            raise RaftInvariantError(f"truncating compacted entry {first}")
        if first <= self.last_index():
            self.truncations += 1
        del self.entries[first - self.offset - 1 :]
        self.entries.extend(entries)
        self.stable = min(self.stable, first - 1)
        self.persisting = min(self.persisting, first - 1)

    def maybe_append(
        self, prev_index: int, prev_term: int, commit: int, entries: Sequence[Entry]
    ) -> int | None:
        """AppendEntries receiver rules (§5.3); the new last index, or ``None``
        if the log does not contain ``prev_index`` at ``prev_term``."""
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = prev_index + len(entries)
        if entries and entries[0].index == self.offset + len(self.entries) + 1:
            # The common case: they follow the last entry (what the loop
            # below would find at its first entry, without a term lookup).
            self.entries.extend(entries)
            self.commit_to(min(commit, last_new))
            return last_new
        for i, e in enumerate(entries):
            t = self.term(e.index)
            if t is None and e.index <= self.offset:
                continue  # already compacted: it is committed and so matches
            if t != e.term:
                self.truncate_and_append(entries[i:])
                break
        self.commit_to(min(commit, last_new))
        return last_new

    def commit_to(self, index: int) -> bool:
        index = min(index, self.last_index())
        if index > self.commit:
            self.commit = index
            return True
        return False

    def stable_to(self, index: int, term: int) -> None:
        """The driver persisted entries up to ``index`` (ignored if truncated since)."""
        if self.term(index) == term and index > self.stable:
            self.stable = index

    def applied_to(self, index: int) -> None:
        if index > self.commit:
            raise RaftInvariantError(f"applied {index} beyond commit {self.commit}")
        self.applied = max(self.applied, index)

    def compact(self, index: int) -> None:
        """Drop in-memory entries up to ``index`` (covered by a snapshot)."""
        if index <= self.offset:
            return
        if index > self.applied:
            raise RaftInvariantError(f"compacting {index} beyond applied {self.applied}")
        t = self.term(index)
        assert t is not None
        del self.entries[: index - self.offset]
        self.offset, self.offset_term = index, t

    def restore(self, index: int, term: int) -> None:
        """Reset to an empty log that starts after a received snapshot."""
        self.entries = []
        self.truncations += 1
        self.offset, self.offset_term = index, term
        self.commit = self.applied = self.stable = self.persisting = index
