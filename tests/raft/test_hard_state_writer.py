"""HardStateWriter: a commit-only change waits for the next write."""

from raft.types import (
    Configuration,
    Entry,
    HardState,
    HardStateWriter,
    Ready,
    Snapshot,
    SnapshotMeta,
)


def entry(index: int, term: int = 2) -> Entry:
    return Entry(index=index, term=term, data=b"x")


def test_commit_only_change_is_held_until_entries_are_written() -> None:
    w = HardStateWriter(HardState(2, "a", 5))
    assert w.for_ready(Ready(hard_state=HardState(2, "a", 6))) is None
    assert w.for_ready(Ready(hard_state=HardState(2, "a", 7))) is None
    # The next entries carry the newest held commit index.
    assert w.for_ready(Ready(entries=[entry(8)])) == HardState(2, "a", 7)
    # Released once: later entries alone carry no hard state.
    assert w.for_ready(Ready(entries=[entry(9)])) is None


def test_term_or_vote_changes_are_written_at_once() -> None:
    w = HardStateWriter(HardState(2, "a", 5))
    assert w.for_ready(Ready(hard_state=HardState(3, None, 5))) == HardState(3, None, 5)
    w.persisted = HardState(3, None, 5)
    assert w.for_ready(Ready(hard_state=HardState(3, "b", 5))) == HardState(3, "b", 5)


def test_a_newer_hard_state_replaces_the_held_one() -> None:
    w = HardStateWriter(HardState(2, "a", 5))
    assert w.for_ready(Ready(hard_state=HardState(2, "a", 6))) is None
    assert w.for_ready(Ready(hard_state=HardState(3, None, 6))) == HardState(3, None, 6)
    w.persisted = HardState(3, None, 6)
    assert w.for_ready(Ready(entries=[entry(7, 3)])) is None


def test_commit_with_entries_or_a_snapshot_is_written_with_them() -> None:
    w = HardStateWriter(HardState(2, "a", 5))
    assert w.for_ready(Ready(hard_state=HardState(2, "a", 6), entries=[entry(7)])) == HardState(
        2, "a", 6
    )
    snap = Snapshot(SnapshotMeta(index=9, term=2, configuration=Configuration(())), b"")
    assert w.for_ready(Ready(hard_state=HardState(2, "a", 9), snapshot=snap)) == HardState(
        2, "a", 9
    )
