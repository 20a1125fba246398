"""Tests for raft/storage.py and raft/wal.py: MemoryStorage, SqliteStorage and
SegmentLogStorage (the semantics and durability tests run on every storage
that has them; tests/raft/test_wal.py has the segment format's own)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from raft.errors import SnapshotCorruptError, StorageError
from raft.storage import (
    MemoryStorage,
    PersistentState,
    SqliteStorage,
    Storage,
    read_snapshot_file,
)
from raft.types import (
    Configuration,
    Entry,
    EntryKind,
    HardState,
    Server,
    Snapshot,
    SnapshotMeta,
    Suffrage,
)
from raft.wal import SegmentLogStorage

CONF = Configuration(
    (Server("a", "10.0.0.1:8300"), Server("b", "10.0.0.2:8300", Suffrage.NONVOTER))
)


def entries(first: int, last: int, term: int = 1, tag: bytes = b"") -> list[Entry]:
    return [Entry(i, term, EntryKind.NORMAL, b"cmd-%d" % i + tag) for i in range(first, last + 1)]


def snap(index: int, term: int = 1, data: bytes | None = None) -> Snapshot:
    body = data if data is not None else b"fsm-state-at-%d" % index * 50
    return Snapshot(SnapshotMeta(index, term, CONF), body)


def snap_files(directory: Path) -> list[str]:
    return sorted(p.name for p in (directory / "snapshots").iterdir())


DurableStorage = SqliteStorage | SegmentLogStorage
DURABLE: dict[str, Callable[..., DurableStorage]] = {
    "sqlite": SqliteStorage,
    "segments": SegmentLogStorage,
}


@pytest.fixture(params=["memory", "sqlite", "segments"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    s: Storage = MemoryStorage() if request.param == "memory" else DURABLE[request.param](tmp_path)
    yield s
    s.close()


@pytest.fixture(params=sorted(DURABLE))
def durable(request: pytest.FixtureRequest) -> Callable[..., DurableStorage]:
    """The class of each storage that keeps its state on disk."""
    return DURABLE[request.param]


# -- semantics shared by both implementations ------------------------------


def test_empty_storage_loads_defaults(storage: Storage) -> None:
    assert storage.load() == PersistentState(HardState(), None, [])
    assert storage.load_snapshot() is None


def test_saved_entries_and_hard_state_round_trip(storage: Storage) -> None:
    batch = [
        Entry(1, 1, EntryKind.NOOP),
        Entry(2, 1, EntryKind.CONFIG, b"\x00\xffconf"),
        Entry(3, 2, EntryKind.NORMAL, b"x" * 1000),
    ]
    storage.save(HardState(term=2, vote="a", commit=2), batch)
    state = storage.load()
    assert state.hard_state == HardState(term=2, vote="a", commit=2)
    assert state.snapshot is None
    assert state.entries == batch


def test_conflicting_append_truncates_the_suffix(storage: Storage) -> None:
    storage.save(None, entries(1, 10, term=1))
    storage.save(None, entries(6, 7, term=2, tag=b"-new"))
    got = storage.load().entries
    assert [e.index for e in got] == list(range(1, 8))
    assert got[:5] == entries(1, 5, term=1)
    assert got[5:] == entries(6, 7, term=2, tag=b"-new")


def test_after_a_truncating_append_the_log_ends_at_its_last_entry(storage: Storage) -> None:
    storage.save(None, entries(1, 10, term=1))
    storage.save(None, entries(6, 7, term=2))
    with pytest.raises(StorageError, match="gap"):
        storage.save(None, entries(9, 9, term=2))
    storage.save(None, entries(8, 8, term=2))
    assert [e.index for e in storage.load().entries] == list(range(1, 9))


def test_none_hard_state_leaves_the_stored_one_unchanged(storage: Storage) -> None:
    storage.save(HardState(term=3, vote="b", commit=0), [])
    storage.save(None, entries(1, 2))
    assert storage.load().hard_state == HardState(term=3, vote="b", commit=0)


def test_save_rejects_a_batch_with_a_hole(storage: Storage) -> None:
    with pytest.raises(StorageError, match="not contiguous"):
        storage.save(None, [Entry(1, 1), Entry(3, 1)])
    assert storage.load().entries == []


def test_save_rejects_an_append_past_the_end_of_the_log(storage: Storage) -> None:
    storage.save(None, entries(1, 3))
    with pytest.raises(StorageError, match="gap"):
        storage.save(HardState(term=9), entries(5, 6))
    state = storage.load()
    assert state.entries == entries(1, 3)
    assert state.hard_state == HardState()  # the whole save was refused


def test_snapshot_compacts_the_log_and_keeps_trailing_entries(storage: Storage) -> None:
    storage.save(HardState(term=1, commit=20), entries(1, 30))
    storage.save_snapshot(snap(20), compact_upto=15)
    state = storage.load()
    assert state.snapshot == snap(20).meta
    assert [e.index for e in state.entries] == list(range(21, 31))
    assert storage.load_snapshot() == snap(20)


def test_installed_snapshot_with_huge_compact_drops_the_whole_log(storage: Storage) -> None:
    storage.save(None, entries(1, 30))
    storage.save_snapshot(snap(100, term=4), compact_upto=2**70)
    assert storage.load() == PersistentState(HardState(), snap(100, term=4).meta, [])
    storage.save(None, entries(101, 102, term=4))
    assert [e.index for e in storage.load().entries] == [101, 102]


def test_closed_storage_refuses_calls(storage: Storage) -> None:
    storage.close()
    storage.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        storage.load()
    with pytest.raises(StorageError, match="closed"):
        storage.save(HardState(term=1), [])


# -- SqliteStorage durability ------------------------------------------------


def test_hard_state_and_log_survive_close_and_reopen(
    durable: Callable[..., DurableStorage], tmp_path: Path
) -> None:
    s = durable(tmp_path)
    s.save(HardState(term=5, vote="c", commit=3), entries(1, 4, term=5))
    s.close()
    s = durable(tmp_path)
    state = s.load()
    s.close()
    assert state == PersistentState(HardState(term=5, vote="c", commit=3), None, entries(1, 4, 5))


def test_snapshot_and_compaction_survive_reopen(tmp_path: Path) -> None:
    s = SqliteStorage(tmp_path)
    s.save(HardState(term=2, commit=50), entries(1, 60, term=2))
    s.save_snapshot(snap(40, term=2), compact_upto=35)
    s.save_snapshot(snap(50, term=2), compact_upto=45)
    s.close()
    s = SqliteStorage(tmp_path)
    state = s.load()
    assert state.snapshot == SnapshotMeta(50, 2, CONF)
    assert [e.index for e in state.entries] == list(range(51, 61))
    assert s.load_snapshot() == snap(50, term=2)
    indexes = [r[0] for r in sqlite3.connect(tmp_path / "raft.db").execute("SELECT idx FROM log")]
    # Trailing logs would keep 46..; the log since the previous snapshot
    # (40) is kept so that a corrupt newest file can fall back to it.
    assert indexes == list(range(41, 61))
    s.close()


def test_compaction_never_passes_the_oldest_retained_snapshot(tmp_path: Path) -> None:
    s = SqliteStorage(tmp_path)  # retains 2 snapshots
    s.save(HardState(term=1, commit=100), entries(1, 100))
    s.save_snapshot(snap(30), compact_upto=25)  # the first: nothing to fall back to
    assert s.load().entries[0].index == 31
    assert sqlite3.connect(tmp_path / "raft.db").execute("SELECT MIN(idx) FROM log").fetchone() == (
        1,
    )
    s.save_snapshot(snap(60), compact_upto=55)
    s.save_snapshot(snap(90), compact_upto=85)
    assert snap_files(tmp_path) == ["snapshot-1-60.snap", "snapshot-1-90.snap"]
    low = sqlite3.connect(tmp_path / "raft.db").execute("SELECT MIN(idx) FROM log").fetchone()
    assert low == (61,)
    # A snapshot from the leader (or a restore) replaces the history.
    s.save_snapshot(snap(120, term=2), compact_upto=120)
    assert s.load().entries == []
    s.close()


def test_only_the_newest_n_snapshots_are_retained(
    durable: Callable[..., DurableStorage], tmp_path: Path
) -> None:
    s = durable(tmp_path, retain_snapshots=3)
    s.save(None, entries(1, 50))
    for i in (10, 20, 30, 40, 50):
        s.save_snapshot(snap(i), compact_upto=0)
    assert snap_files(tmp_path) == [
        "snapshot-1-30.snap",
        "snapshot-1-40.snap",
        "snapshot-1-50.snap",
    ]
    assert s.load_snapshot() == snap(50)
    s.close()


def _two_snapshots(tmp_path: Path, durable: Callable[..., DurableStorage]) -> Path:
    """Snapshots at 10 and 20, log 1..30 intact; returns the newest file."""
    s = durable(tmp_path)
    s.save(HardState(term=1, commit=30), entries(1, 30))
    s.save_snapshot(snap(10), compact_upto=0)
    s.save_snapshot(snap(20), compact_upto=0)
    s.close()
    return tmp_path / "snapshots" / "snapshot-1-20.snap"


def _flip_last_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01
    path.write_bytes(bytes(raw))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-7])


def _flip_header_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[25] ^= 0x01  # inside the msgpack header
    path.write_bytes(bytes(raw))


def _bad_magic(path: Path) -> None:
    path.write_bytes(b"NOTASNAP" + path.read_bytes()[8:])


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "flipped-data-byte": (_flip_last_byte, "sha256"),
    "truncated": (_truncate, "expected"),
    "flipped-header-byte": (_flip_header_byte, "header checksum"),
    "bad-magic": (_bad_magic, "magic"),
}


@pytest.mark.parametrize("how", ["flipped-data-byte", "truncated"])
def test_corrupt_newest_snapshot_falls_back_to_previous_and_logs(
    durable: Callable[..., DurableStorage],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    how: str,
) -> None:
    newest = _two_snapshots(tmp_path, durable)
    CORRUPTIONS[how][0](newest)
    s = durable(tmp_path)
    with caplog.at_level(logging.WARNING, logger="raft.storage"):
        state = s.load()
        loaded = s.load_snapshot()
    s.close()
    assert state.snapshot == snap(10).meta
    assert [e.index for e in state.entries] == list(range(11, 31))
    assert loaded == snap(10)
    warnings = [r.getMessage() for r in caplog.records if r.name == "raft.storage"]
    assert len(warnings) == 2  # one per call
    assert all("event=snapshot_corrupt" in w for w in warnings)
    assert f"file={newest}" in warnings[0]
    assert "reason=" in warnings[0]


@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
def test_read_snapshot_file_raises_on_corruption(
    durable: Callable[..., DurableStorage], tmp_path: Path, how: str
) -> None:
    newest = _two_snapshots(tmp_path, durable)
    assert read_snapshot_file(newest) == snap(20)
    damage, reason = CORRUPTIONS[how]
    damage(newest)
    with pytest.raises(SnapshotCorruptError, match=reason) as info:
        read_snapshot_file(newest)
    assert str(newest) in str(info.value)


def test_read_snapshot_file_raises_on_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.snap"
    empty.write_bytes(b"")
    with pytest.raises(SnapshotCorruptError, match="truncated"):
        read_snapshot_file(empty)
    with pytest.raises(SnapshotCorruptError, match="unreadable"):
        read_snapshot_file(tmp_path / "missing.snap")


def test_leftover_temp_files_are_removed_at_open(
    durable: Callable[..., DurableStorage], tmp_path: Path
) -> None:
    _two_snapshots(tmp_path, durable)
    leftover = tmp_path / "snapshots" / "snapshot-1-30.snap.tmp"
    leftover.write_bytes(b"half a snapshot")
    s = durable(tmp_path)
    assert snap_files(tmp_path) == ["snapshot-1-10.snap", "snapshot-1-20.snap"]
    assert s.load_snapshot() == snap(20)
    s.close()


def test_corrupt_newest_snapshot_falls_back_with_trailing_logs_below_the_threshold(
    durable: Callable[..., DurableStorage],
    tmp_path: Path,
) -> None:
    """The defaults (trailing logs 10,240 < snapshot threshold 16,384) in
    small: each snapshot compacts to 5 entries behind it, yet the log since
    the previous snapshot stays, so the fallback rebuilds every entry."""
    s = durable(tmp_path)
    s.save(HardState(term=1, commit=30), entries(1, 30))
    s.save_snapshot(snap(10), compact_upto=5)
    s.save_snapshot(snap(20), compact_upto=15)
    s.close()
    _flip_last_byte(tmp_path / "snapshots" / "snapshot-1-20.snap")
    s = durable(tmp_path)
    state = s.load()
    s.close()
    assert state.snapshot == snap(10).meta
    assert [e.index for e in state.entries] == list(range(11, 31))


def test_load_fails_when_log_was_compacted_past_the_valid_snapshot(tmp_path: Path) -> None:
    s = SqliteStorage(tmp_path)
    s.save(HardState(term=1, commit=30), entries(1, 30))
    s.save_snapshot(snap(10), compact_upto=0)
    s.save_snapshot(snap(20), compact_upto=15)
    s.close()
    with sqlite3.connect(tmp_path / "raft.db") as db:  # an older build compacted so
        db.execute("DELETE FROM log WHERE idx <= 15")
    _flip_last_byte(tmp_path / "snapshots" / "snapshot-1-20.snap")
    s = SqliteStorage(tmp_path)
    with pytest.raises(StorageError, match=r"11\.\.15 are missing"):
        s.load()
    s.close()


def test_load_fails_when_newest_snapshot_is_corrupt_and_log_is_empty(
    durable: Callable[..., DurableStorage], tmp_path: Path
) -> None:
    s = durable(tmp_path)
    s.save_snapshot(snap(10), compact_upto=2**63)
    s.save_snapshot(snap(20), compact_upto=2**63)  # installed from a leader
    s.close()
    _truncate(tmp_path / "snapshots" / "snapshot-1-20.snap")
    s = durable(tmp_path)
    with pytest.raises(StorageError, match=r"index 20.* is corrupt"):
        s.load()
    s.close()


def test_load_fails_on_a_gap_inside_the_log(tmp_path: Path) -> None:
    s = SqliteStorage(tmp_path)
    s.save(None, entries(1, 10))
    s.close()
    with sqlite3.connect(tmp_path / "raft.db") as db:
        db.execute("DELETE FROM log WHERE idx = 5")
    s = SqliteStorage(tmp_path)
    with pytest.raises(StorageError, match="index 6 follows 4"):
        s.load()
    s.close()


def test_load_fails_when_log_does_not_start_at_one_without_snapshot(tmp_path: Path) -> None:
    s = SqliteStorage(tmp_path)
    s.save(None, entries(1, 10))
    s.close()
    with sqlite3.connect(tmp_path / "raft.db") as db:
        db.execute("DELETE FROM log WHERE idx < 3")
    s = SqliteStorage(tmp_path)
    with pytest.raises(StorageError, match=r"starts at index 3 .* no valid snapshot"):
        s.load()
    s.close()


def test_database_uses_wal_and_synchronous_full(tmp_path: Path) -> None:
    s = SqliteStorage(tmp_path)
    conn = s._conn  # the storage's own connection: synchronous is per connection
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    s.close()
    with sqlite3.connect(tmp_path / "raft.db") as other:  # WAL is persistent in the file
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_new_database_has_small_pages_and_an_existing_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    s = SqliteStorage(tmp_path / "new")
    s.save(HardState(1, "a", 0), [Entry(1, 1, data=b"x" * 200)])
    assert s._conn.execute("PRAGMA page_size").fetchone()[0] == 1024
    s.close()
    old = tmp_path / "old"
    old.mkdir()
    with sqlite3.connect(old / "raft.db") as db:  # an older build's file: 4 KiB pages
        db.execute("PRAGMA page_size=4096")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(
            "CREATE TABLE log (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, "
            "kind INTEGER NOT NULL, data BLOB NOT NULL)"
        )
        db.execute("INSERT INTO log VALUES (1, 1, 0, x'00')")
    db.close()
    s = SqliteStorage(old)
    assert s._conn.execute("PRAGMA page_size").fetchone()[0] == 4096
    s.save(None, [Entry(2, 1, data=b"y")])
    assert [e.index for e in s.load().entries] == [1, 2]
    s.close()


class _FailingConnection:
    """Wraps a sqlite3 connection and fails the batch insert."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.in_transaction = False

    def execute(self, *args: Any) -> sqlite3.Cursor:
        cur = self._conn.execute(*args)
        self.in_transaction = self._conn.in_transaction
        return cur

    def executemany(self, *args: Any) -> sqlite3.Cursor:
        raise sqlite3.OperationalError("disk I/O error")


def test_sqlite_errors_are_wrapped_and_the_transaction_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = SqliteStorage(tmp_path)
    s.save(HardState(term=1), entries(1, 3))
    real = s._conn
    monkeypatch.setattr(s, "_conn", _FailingConnection(real))
    with pytest.raises(StorageError, match="disk I/O error") as info:
        s.save(HardState(term=2), entries(2, 5, term=2))
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    monkeypatch.setattr(s, "_conn", real)
    assert s.load() == PersistentState(HardState(term=1), None, entries(1, 3))
    s.close()


def test_os_errors_writing_a_snapshot_are_wrapped_and_log_kept(
    durable: Callable[..., DurableStorage], tmp_path: Path
) -> None:
    s = durable(tmp_path)
    s.save(None, entries(1, 10))
    snapdir = tmp_path / "snapshots"
    snapdir.rmdir()
    snapdir.write_bytes(b"not a directory")  # works even as root, unlike chmod
    with pytest.raises(StorageError, match="cannot write snapshot") as info:
        s.save_snapshot(snap(5), compact_upto=5)
    assert isinstance(info.value.__cause__, OSError)
    snapdir.unlink()
    snapdir.mkdir()
    assert [e.index for e in s.load().entries] == list(range(1, 11))
    s.close()


def test_unknown_format_version_is_refused(tmp_path: Path) -> None:
    SqliteStorage(tmp_path).close()
    with sqlite3.connect(tmp_path / "raft.db") as db:
        db.execute("UPDATE kv SET value = ? WHERE key = 'format_version'", (b"99",))
    with pytest.raises(StorageError, match="format version"):
        SqliteStorage(tmp_path)


@pytest.mark.parametrize("kind", ["memory", "sqlite", "segments"])
def test_append_after_a_snapshot_ahead_of_the_log_is_accepted(kind: str, tmp_path: Path) -> None:
    """A leader may snapshot entries it applied before its own write of them
    landed; after a crash the log ends before the snapshot, and the next
    append (right after the snapshot) must be accepted (found by tests/sim)."""
    storage: Storage = MemoryStorage() if kind == "memory" else DURABLE[kind](tmp_path)
    storage.save(HardState(1, None, 5), [Entry(i, 1) for i in range(1, 6)])
    conf = Configuration((Server("a", "a:1"),))
    storage.save_snapshot(Snapshot(SnapshotMeta(6, 1, conf), b"state"), compact_upto=0)
    storage.save(None, [Entry(7, 1), Entry(8, 1)])
    state = storage.load()
    assert state.snapshot is not None and state.snapshot.index == 6
    assert [e.index for e in state.entries] == [7, 8]
    storage.close()
