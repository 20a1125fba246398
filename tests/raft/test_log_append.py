"""RaftLog's follower append: the fast path for entries that follow the log
and the truncation count the core's configuration history relies on."""

from __future__ import annotations

from raft.log import RaftLog
from raft.types import Entry


def _log(*terms: int) -> RaftLog:
    return RaftLog(0, 0, [Entry(i + 1, t) for i, t in enumerate(terms)])


def test_following_entries_are_appended_without_a_truncation() -> None:
    log = _log(1, 1)
    assert log.maybe_append(2, 1, 3, [Entry(3, 2), Entry(4, 2)]) == 4
    assert [(e.index, e.term) for e in log.entries] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    assert log.commit == 3 and log.truncations == 0
    # A duplicate of what it holds changes nothing either.
    assert log.maybe_append(1, 1, 4, [Entry(2, 1), Entry(3, 2)]) == 3
    assert log.last_index() == 4 and log.commit == 3 and log.truncations == 0


def test_a_conflict_truncates_and_counts() -> None:
    log = _log(1, 1, 1)
    log.stable_to(3, 1)
    log.persisting = 3
    assert log.maybe_append(1, 1, 0, [Entry(2, 2)]) == 2
    assert [(e.index, e.term) for e in log.entries] == [(1, 1), (2, 2)]
    assert log.truncations == 1 and log.stable == 1 and log.persisting == 1
    assert log.maybe_append(2, 1, 0, [Entry(3, 2)]) is None  # prev term mismatch
    assert log.truncations == 1
    log.restore(10, 3)
    assert log.truncations == 2 and log.last_index() == 10
