"""SegmentLogStorage's own format (raft/wal.py): torn tails, corruption,
segments, compaction, the hard state file and the migration from sqlite.
The semantics it shares with the other storages are in test_storage.py."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from raft.errors import StorageError, StorageUnavailableError
from raft.storage import PersistentState, SqliteStorage
from raft.types import Configuration, Entry, HardState, Server, Snapshot, SnapshotMeta
from raft.wal import MOVED_MARKER, PREALLOCATE, SegmentLogStorage, encode_frame

CONF = Configuration((Server("a", "a:1"),))


def entries(first: int, last: int, term: int = 1, size: int = 40) -> list[Entry]:
    return [Entry(i, term, data=b"%d-" % i + b"x" * size) for i in range(first, last + 1)]


def snap(index: int) -> Snapshot:
    return Snapshot(SnapshotMeta(index, 1, CONF), b"state-%d" % index)


def segments(d: Path) -> list[Path]:
    return sorted((d / "wal").glob("wal-*.log"))


def data_end(seg: Path) -> int:
    """Where a segment's frames end (the file is preallocated with zeros after)."""
    return len(seg.read_bytes().rstrip(b"\0"))


def reopen(d: Path, **kw: int) -> PersistentState:
    s = SegmentLogStorage(d, **kw)
    try:
        return s.load()
    finally:
        s.close()


def indexes(state: PersistentState) -> list[int]:
    return [e.index for e in state.entries]


def ten_saves(d: Path) -> list[int]:
    """Entries 1..10, one save each; returns the segment's data end after each."""
    s = SegmentLogStorage(d)
    sizes = []
    for i in range(1, 11):
        s.save(HardState(1, "a", i - 1), entries(i, i))
        sizes.append(data_end(segments(d)[-1]))
    s.close()
    return sizes


@pytest.mark.parametrize("how", ["truncated", "zeroed"])
@pytest.mark.parametrize("cut", [1, 7, 30, 60])
def test_a_torn_last_frame_is_cut_off_and_appends_go_on_after_it(
    tmp_path: Path, cut: int, how: str
) -> None:
    sizes = ten_saves(tmp_path)
    seg = segments(tmp_path)[-1]
    # The crash hit the 10th save's write: the file ends inside its frame
    # (appended) or the frame's last bytes never left the page cache (zeros).
    if how == "truncated":
        os.truncate(seg, sizes[-1] - cut)
    else:
        with open(seg, "r+b") as f:
            f.seek(sizes[-1] - cut)
            f.write(b"\0" * cut)
    state = reopen(tmp_path)
    assert indexes(state) == list(range(1, 10))
    assert data_end(seg) == sizes[-2]  # the torn bytes are gone
    s = SegmentLogStorage(tmp_path)
    s.save(None, entries(10, 11, term=2))
    s.close()
    state = reopen(tmp_path)
    assert indexes(state) == list(range(1, 12))
    assert state.entries[-1].term == 2


@pytest.mark.parametrize("how", ["truncated", "zeroed"])
def test_a_torn_frame_whose_value_holds_a_valid_frame_is_a_torn_tail(
    tmp_path: Path, how: str
) -> None:
    ten_saves(tmp_path)
    inner = encode_frame(entries(11, 11), 10)  # a stored value may hold a frame's bytes
    s = SegmentLogStorage(tmp_path)
    s.save(None, [Entry(11, 1, data=b"v" * 10 + inner + b"w" * 100)])
    s.close()
    seg = segments(tmp_path)[-1]
    end = data_end(seg)
    if how == "truncated":  # the crash came after the inner frame's bytes were written
        os.truncate(seg, end - 50)
    else:
        with open(seg, "r+b") as f:
            f.seek(end - 50)
            f.write(b"\0" * 50)
    assert indexes(reopen(tmp_path)) == list(range(1, 11))


def test_a_tail_of_zeros_is_a_torn_write(tmp_path: Path) -> None:
    ten_saves(tmp_path)
    seg = segments(tmp_path)[-1]
    with open(seg, "ab") as f:  # size grew, the data blocks never made it
        f.write(b"\0" * 4096)
    assert indexes(reopen(tmp_path)) == list(range(1, 11))


def test_a_bad_frame_followed_by_more_frames_is_an_error_naming_file_and_offset(
    tmp_path: Path,
) -> None:
    sizes = ten_saves(tmp_path)
    seg = segments(tmp_path)[-1]
    raw = bytearray(seg.read_bytes())
    raw[sizes[4] + 50] ^= 0x01  # inside the 6th frame's payload
    seg.write_bytes(bytes(raw))
    with pytest.raises(StorageError) as info:
        SegmentLogStorage(tmp_path)
    msg = str(info.value)
    assert "\n" not in msg
    assert f"{seg} is corrupt at offset {sizes[4]}: checksum mismatch" in msg
    assert seg.read_bytes() == bytes(raw)  # nothing cut off


@pytest.mark.parametrize("past", ["the file", "the data, into the zeros"])
def test_a_damaged_length_claiming_past_the_data_is_still_an_error(
    tmp_path: Path, past: str
) -> None:
    sizes = ten_saves(tmp_path)
    seg = segments(tmp_path)[-1]
    raw = bytearray(seg.read_bytes())
    length = 2**31 if past == "the file" else sizes[-1] + 100 - sizes[2] - 40
    raw[sizes[2] + 4 : sizes[2] + 8] = length.to_bytes(4, "big")  # the 4th frame's length
    seg.write_bytes(bytes(raw))
    problem = "frame runs" if past == "the file" else "checksum mismatch"
    with pytest.raises(StorageError, match=f"{seg} is corrupt at offset {sizes[2]}: {problem}"):
        SegmentLogStorage(tmp_path)


def test_damage_in_an_older_segment_is_an_error_even_at_its_end(tmp_path: Path) -> None:
    s = SegmentLogStorage(tmp_path, segment_size=1024)
    for i in range(1, 41):
        s.save(None, entries(i, i))
    s.close()
    older = segments(tmp_path)[0]
    assert len(segments(tmp_path)) > 2
    size = older.stat().st_size
    os.truncate(older, size - 3)
    with pytest.raises(StorageError, match=rf"{older} is corrupt at offset \d+: frame runs past"):
        SegmentLogStorage(tmp_path, segment_size=1024)


def test_segments_rotate_and_a_snapshot_deletes_the_whole_ones_below_it(tmp_path: Path) -> None:
    s = SegmentLogStorage(tmp_path, segment_size=1024)
    for i in range(1, 101):
        s.save(HardState(1, "a", i), entries(i, i))
    before = segments(tmp_path)
    assert len(before) >= 8
    s.save_snapshot(snap(40), compact_upto=30)  # the first: nothing to fall back to
    assert segments(tmp_path) == before
    s.save_snapshot(snap(60), compact_upto=50)  # the log is kept after the one at 40
    after = segments(tmp_path)
    assert set(after) < set(before) and after[-1] == before[-1]
    s.close()
    state = reopen(tmp_path, segment_size=1024)
    assert state.snapshot == snap(60).meta
    assert indexes(state) == list(range(61, 101))
    assert state.hard_state == HardState(1, "a", 100)
    first_kept = int(after[0].name.split("-")[2].split(".")[0])
    assert 30 < first_kept <= 41  # whole segments below 40 went, none above it


def test_a_conflicting_suffix_written_across_segments_replaces_the_old_one(
    tmp_path: Path,
) -> None:
    s = SegmentLogStorage(tmp_path, segment_size=1024)
    s.save(None, entries(1, 40, term=1, size=10))
    for i in range(41, 60):
        s.save(None, entries(i, i, term=1))
    s.save(None, entries(30, 31, term=2))  # a new leader's entries from index 30
    s.close()
    state = reopen(tmp_path, segment_size=1024)
    assert indexes(state) == list(range(1, 32))
    assert [e.term for e in state.entries[28:]] == [1, 2, 2]


def test_term_and_vote_go_to_the_hard_state_file_only_when_they_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import raft.wal

    writes: list[HardState] = []
    real = raft.wal.write_hard_state
    monkeypatch.setattr(
        raft.wal, "write_hard_state", lambda p, hs: (writes.append(hs), real(p, hs))
    )
    s = SegmentLogStorage(tmp_path)
    s.save(HardState(2, "a", 0), entries(1, 1))
    for i in range(2, 6):
        s.save(HardState(2, "a", i - 1), entries(i, i))  # commit only
    s.save(HardState(3, None, 4), [])
    s.close()
    assert writes == [HardState(2, "a", 0), HardState(3, None, 4)]
    assert reopen(tmp_path).hard_state == HardState(3, None, 4)


def test_a_save_is_one_write_and_one_fdatasync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = SegmentLogStorage(tmp_path)
    s.save(HardState(1, "a", 0), entries(1, 1))
    calls: list[str] = []
    real_pwrite, real_sync = os.pwrite, os.fdatasync
    monkeypatch.setattr(os, "pwrite", lambda *a: (calls.append("pwrite"), real_pwrite(*a))[1])
    monkeypatch.setattr(os, "fdatasync", lambda fd: (calls.append("fdatasync"), real_sync(fd))[1])
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync"))
    s.save(HardState(1, "a", 1), entries(2, 4))
    monkeypatch.undo()
    s.close()
    assert calls == ["pwrite", "fdatasync"]
    assert reopen(tmp_path).hard_state == HardState(1, "a", 1)


def test_a_failed_write_leaves_no_garbage_and_the_next_save_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = SegmentLogStorage(tmp_path)
    s.save(HardState(1, "a", 0), entries(1, 3))
    size = data_end(segments(tmp_path)[-1])

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", full)
    with pytest.raises(StorageUnavailableError, match=r"disk is full: .*No space left"):
        s.save(None, entries(4, 40))
    monkeypatch.undo()
    assert data_end(segments(tmp_path)[-1]) == size
    s.save(None, entries(4, 5))
    s.close()
    assert indexes(reopen(tmp_path)) == [1, 2, 3, 4, 5]


def test_the_tail_a_failed_write_left_is_cut_back_durably(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = SegmentLogStorage(tmp_path)
    s.save(None, entries(1, 3))
    calls: list[str] = []
    real_truncate, real_sync = os.ftruncate, os.fdatasync

    def sync(fd: int) -> None:
        calls.append("fdatasync")
        if calls.count("fdatasync") == 1:
            raise OSError(errno.EIO, "I/O error")
        real_sync(fd)

    monkeypatch.setattr(
        os, "ftruncate", lambda fd, n: (calls.append("ftruncate"), real_truncate(fd, n))[1]
    )
    monkeypatch.setattr(os, "fdatasync", sync)
    with pytest.raises(StorageError, match="I/O error"):
        s.save(None, entries(4, 5))
    monkeypatch.undo()
    s.close()
    # the frame's sync failed; the cut back to before it is synced before the
    # save returns (a rotation next would sync only the new segment)
    assert calls == ["fdatasync", "ftruncate", "fdatasync"]
    assert indexes(reopen(tmp_path)) == [1, 2, 3]


def test_a_corrupt_hard_state_file_is_a_one_line_error(tmp_path: Path) -> None:
    s = SegmentLogStorage(tmp_path)
    s.save(HardState(1, "a", 0), entries(1, 1))
    s.close()
    hs = tmp_path / "wal" / "hardstate"
    raw = bytearray(hs.read_bytes())
    raw[-1] ^= 0x01
    hs.write_bytes(bytes(raw))
    with pytest.raises(StorageError, match=f"{hs} is corrupt: bad header or checksum"):
        SegmentLogStorage(tmp_path)


def _sqlite_dir(d: Path) -> PersistentState:
    old = SqliteStorage(d)
    old.save(HardState(4, "b", 25), entries(1, 30, term=4))
    old.save_snapshot(snap(20), compact_upto=10)
    state = old.load()
    old.close()
    return state


def test_a_sqlite_directory_is_migrated_on_first_open(tmp_path: Path) -> None:
    expected = _sqlite_dir(tmp_path)
    assert reopen(tmp_path) == expected
    assert (tmp_path / "raft.db").read_bytes() == MOVED_MARKER
    assert (tmp_path / "raft.db.migrated").exists()
    assert not (tmp_path / "wal.tmp").exists()
    assert not (tmp_path / "wal" / "MIGRATING").exists()
    s = SegmentLogStorage(tmp_path)
    s.save(None, entries(31, 32, term=4))
    s.close()
    assert indexes(reopen(tmp_path)) == list(range(21, 33))


def test_a_migration_interrupted_before_its_rename_starts_again(tmp_path: Path) -> None:
    expected = _sqlite_dir(tmp_path)
    (tmp_path / "wal.tmp").mkdir()
    (tmp_path / "wal.tmp" / "wal-0000000000000001-00000000000000000001.log").write_bytes(b"half")
    assert reopen(tmp_path) == expected
    assert not (tmp_path / "wal.tmp").exists()


@pytest.mark.parametrize("crash", ["before raft.db was renamed", "before the marker"])
def test_a_migration_interrupted_after_its_rename_keeps_the_segments(
    tmp_path: Path, crash: str
) -> None:
    expected = _sqlite_dir(tmp_path)
    reopen(tmp_path)
    (tmp_path / "wal" / "MIGRATING").write_bytes(b"")  # the crash came before its removal
    if crash == "before raft.db was renamed":
        os.replace(tmp_path / "raft.db.migrated", tmp_path / "raft.db")
    else:
        (tmp_path / "raft.db").unlink()
    s = SegmentLogStorage(tmp_path)
    s.save(None, entries(31, 31, term=4))
    s.close()
    assert indexes(reopen(tmp_path)) == [*indexes(expected), 31]  # not migrated twice
    assert (tmp_path / "raft.db").read_bytes() == MOVED_MARKER
    assert sorted(p.name for p in tmp_path.glob("raft.db*")) == ["raft.db", "raft.db.migrated"]
    assert not (tmp_path / "wal" / "MIGRATING").exists()


def test_sqlite_storage_refuses_a_migrated_directory_and_an_older_build_fails_loudly(
    tmp_path: Path,
) -> None:
    _sqlite_dir(tmp_path)
    reopen(tmp_path)
    # MESHD_RAFT_LOG=sqlite: an empty log next to the snapshots, term 0, no vote.
    with pytest.raises(StorageError) as info:
        SqliteStorage(tmp_path)
    msg = str(info.value)
    assert "\n" not in msg and f"{tmp_path} holds the segmented raft log (wal/)" in msg
    assert "unset MESHD_RAFT_LOG=sqlite" in msg
    # An older build only looks at raft.db: it must not open it as a fresh log.
    os.rename(tmp_path / "wal", tmp_path / "wal.aside")
    with pytest.raises(StorageError, match=r"raft\.db: file is not a database"):
        SqliteStorage(tmp_path)
    assert (tmp_path / "raft.db").read_bytes() == MOVED_MARKER


def test_a_live_raft_db_next_to_the_segments_is_refused(tmp_path: Path) -> None:
    import sqlite3

    expected = _sqlite_dir(tmp_path)
    reopen(tmp_path)
    (tmp_path / "raft.db").unlink()  # an older build then started a fresh sqlite log
    with sqlite3.connect(tmp_path / "raft.db") as db:
        db.execute("CREATE TABLE log (idx INTEGER PRIMARY KEY)")
    db.close()
    backup = (tmp_path / "raft.db.migrated").read_bytes()
    with pytest.raises(StorageError) as info:
        SegmentLogStorage(tmp_path)
    assert f"{tmp_path} holds both the segmented raft log (wal/) and a sqlite raft.db" in str(
        info.value
    )
    assert (tmp_path / "raft.db.migrated").read_bytes() == backup  # nothing renamed
    assert (tmp_path / "raft.db").read_bytes()[:16] == b"SQLite format 3\0"
    os.rename(tmp_path / "raft.db", tmp_path / "raft.db.fresh")  # the fix the error names
    assert reopen(tmp_path) == expected


def test_a_second_migration_keeps_the_first_backup(tmp_path: Path) -> None:
    (tmp_path / "raft.db.migrated").write_bytes(b"an earlier backup")
    expected = _sqlite_dir(tmp_path)
    assert reopen(tmp_path) == expected
    assert (tmp_path / "raft.db.migrated").read_bytes() == b"an earlier backup"
    assert (tmp_path / "raft.db.migrated.1").read_bytes()[:16] == b"SQLite format 3\0"
    assert (tmp_path / "raft.db").read_bytes() == MOVED_MARKER


def test_a_directory_migrated_by_an_older_build_gets_the_marker(tmp_path: Path) -> None:
    expected = _sqlite_dir(tmp_path)
    reopen(tmp_path)
    (tmp_path / "raft.db").unlink()  # this morning's build left no raft.db
    assert reopen(tmp_path) == expected
    assert (tmp_path / "raft.db").read_bytes() == MOVED_MARKER


def test_a_sqlite_log_with_a_gap_is_not_migrated(tmp_path: Path) -> None:
    import sqlite3

    _sqlite_dir(tmp_path)
    with sqlite3.connect(tmp_path / "raft.db") as db:
        db.execute("DELETE FROM log WHERE idx = 25")
    with pytest.raises(StorageError, match="index 26 follows 24"):
        SegmentLogStorage(tmp_path)
    assert (tmp_path / "raft.db").exists()
    assert not (tmp_path / "wal").exists()


def test_the_last_segment_is_preallocated_and_older_ones_end_at_their_data(
    tmp_path: Path,
) -> None:
    s = SegmentLogStorage(tmp_path, segment_size=4096)
    for i in range(1, 120):
        s.save(None, entries(i, i))
    *older, last = segments(tmp_path)
    assert older
    assert all(p.stat().st_size == data_end(p) for p in older)
    assert last.stat().st_size >= data_end(last) + PREALLOCATE // 2
    s.close()
    assert indexes(reopen(tmp_path, segment_size=4096)) == list(range(1, 120))


def test_a_full_disk_while_filling_ahead_fails_the_save_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = SegmentLogStorage(tmp_path)
    s.save(HardState(1, "a", 0), entries(1, 3))
    seg = segments(tmp_path)[-1]
    end = data_end(seg)
    real = os.pwrite

    def full_for_zeros(fd: int, data: bytes, offset: int) -> int:
        if not bytes(data).strip(b"\0"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", full_for_zeros)
    with pytest.raises(StorageUnavailableError, match="disk is full"):
        s.save(None, entries(4, 400, size=1000))  # more than the room filled ahead
    monkeypatch.undo()
    assert data_end(seg) == end  # nothing of the failed save left
    s.save(None, entries(4, 400, size=1000))
    s.close()
    assert indexes(reopen(tmp_path)) == list(range(1, 401))


def test_an_older_segment_not_yet_cut_at_its_data_loads(tmp_path: Path) -> None:
    s = SegmentLogStorage(tmp_path, segment_size=4096)
    for i in range(1, 60):
        s.save(None, entries(i, i))
    s.close()
    older = segments(tmp_path)[0]
    with open(older, "ab") as f:  # the crash came before rotation cut its zeros
        f.write(b"\0" * 8192)
    assert indexes(reopen(tmp_path, segment_size=4096)) == list(range(1, 60))


def test_a_missing_segment_in_the_middle_does_not_load(tmp_path: Path) -> None:
    s = SegmentLogStorage(tmp_path, segment_size=2048)
    for i in range(1, 80):
        s.save(None, entries(i, i))
    s.close()
    middle = segments(tmp_path)[1]
    middle.unlink()
    with pytest.raises(StorageError, match=r"entries 1\.\.\d+ are missing"):
        reopen(tmp_path, segment_size=2048)


def test_a_failed_rotation_changes_nothing_and_the_next_save_rotates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = SegmentLogStorage(tmp_path, segment_size=2048)
    i = 1
    while len(segments(tmp_path)) == 1:
        s.save(None, entries(i, i))
        i += 1
    before = segments(tmp_path)
    real = os.fdatasync
    calls = []

    def fail_the_new_segment(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", fail_the_new_segment)
    with pytest.raises(StorageUnavailableError, match="Input/output error"):
        s.save(None, entries(i, i + 40))  # too big for the last segment: rotates
    monkeypatch.setattr(os, "fdatasync", real)
    assert calls and segments(tmp_path) == before
    s.save(None, entries(i, i + 40))
    s.close()
    assert len(segments(tmp_path)) == len(before) + 1
    assert indexes(reopen(tmp_path, segment_size=2048)) == list(range(1, i + 41))
