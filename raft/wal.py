"""A segmented append-only Raft log: the storage real servers use.

``SegmentLogStorage`` keeps, under ``<dir>``::

    wal/wal-<seq>-<first index>.log   the log, in segments of ~64 MB
    wal/hardstate                     term, vote, commit (atomic replace)
    snapshots/snapshot-<term>-<index>.snap   as SqliteStorage (SnapshotFiles)

A save is one ``pwrite`` of one frame and one ``fdatasync`` (the sqlite log
cost a transaction: ~2x the time of a raw write + fdatasync). A segment is
(integers big-endian)::

    magic b"MESHWAL1" | u32 version
    frame*: magic d5 1a 4c 46 | u32 payload length | u32 crc32(rest of
            header + payload) | u64 first index | u32 count | u64 commit
            | u64 compacted through
            payload: count x (u64 term | u8 kind | u32 data length | data)

One frame per save, so a save is atomic: a crash leaves the last frame whole
or torn, never half of its entries. Replaying frames in order rebuilds the
log: a frame whose first index is at or below the log's end replaces the
suffix from there (a follower's conflicting entries; nothing is ever
truncated in place, so entries already acknowledged cannot be lost by a
crash in the middle of a truncation), ``compacted through`` drops entries up
to it (a snapshot from the leader that replaces the history).

Term and vote change rarely and are written to ``hardstate`` (temp file,
fsync, rename, fsync dir) before the save returns. The commit index changes
with nearly every save: it rides in the frame header (the newest of the
two wins at load); it is volatile Raft state and a lower one is safe anyway.

At open the last segment's torn tail (a crash during a save) is cut off, as
etcd and raft-wal do. Damage anywhere else — an older segment, or a bad
frame followed by more data or by a valid frame (found by its magic, in
case the damage hit a length; one inside the torn frame's own extent counts
only if the torn frame's checksum says that is where it really ends, since
a stored value may hold a frame's bytes) — is an error naming the file and offset: the
entries it holds may have been acknowledged and must not vanish silently.
The last segment is preallocated ahead of its data: zeros end a segment's
data (rotation cuts the old one at its data, but a crash may come first).
A log that lost entries anyway does not load: they are missing between the
snapshot and the rest of the log.

A directory that still holds the sqlite log (``raft.db``) is migrated on
first open: the log is written to ``wal.tmp/``, which is renamed to ``wal/``
once durable, and only then ``raft.db`` is renamed to ``raft.db.migrated``
(``.migrated.<n>`` if that exists) and replaced by a short text file
(MOVED_MARKER) that an older build fails to open instead of starting with an
empty log; ``wal/MIGRATING`` marks those last steps as unfinished. A live
sqlite ``raft.db`` next to ``wal/`` otherwise is an error (SqliteStorage
refuses a directory with ``wal/``).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import struct
import threading
import zlib
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from . import codec
from .codec import CodecError
from .errors import StorageError
from .storage import (
    PersistentState,
    SnapshotFiles,
    SqliteStorage,
    _check_append,
    _check_recovered,
    _fsync_dir,
    _history_end,
    _kv,
    _storage_error,
)
from .types import Entry, EntryKind, HardState, Snapshot

logger = logging.getLogger("raft.storage")

SEGMENT_MAGIC = b"MESHWAL1"
SEGMENT_VERSION = 1
SEGMENT_SIZE = 64 * 2**20
# The last segment is filled with zeros this far ahead of its data: an
# fdatasync after overwriting written blocks commits no file system metadata
# (an append must commit the new size, and blocks from posix_fallocate must
# be converted from unwritten: a journal commit either way, slow when three
# servers and everything else on the disk sync at once: 64-connection PUTs
# 2,862 (fallocate) vs 3,911/s (zeros), sqlite 4,039). The zeros after the
# data end a segment; the chunk is small so a full disk is noticed soon.
PREALLOCATE = 2**18
MIGRATION_FRAME = 4 * 2**20  # bytes of entries per frame when migrating from sqlite

_SEG_HEADER = struct.Struct(">8sI")
# magic, length, crc, first, count, commit, compacted through
_FRAME = struct.Struct(">4sIIQIQQ")
_FRAME_MAGIC = b"\xd5\x1a\x4c\x46"  # lets a scan find the frames after a bad one
_CRC_FROM = 12  # the crc covers the header from here on, and the payload
_ENTRY = struct.Struct(">QBI")  # term, kind, data length
_HS_HEADER = struct.Struct(">4sI")  # magic, crc32 of the encoded hard state
_HS_MAGIC = b"MHS1"
_SEG_NAME = re.compile(r"^wal-(\d+)-(\d+)\.log$")
_MAX_U64 = 2**64 - 1
_KINDS = frozenset(int(k) for k in EntryKind)


@dataclass
class _Frame:
    first: int
    commit: int
    compact: int
    entries: list[Entry]


@dataclass
class _Segment:
    seq: int
    path: Path
    max_index: int = 0  # the highest entry index any frame of it wrote (0: none)


@dataclass
class _Replay:
    """What replaying every segment gives."""

    entries: list[Entry] = field(default_factory=list)
    commit: int = 0

    def apply(self, frame: _Frame) -> None:
        log = self.entries
        if frame.compact and log:
            del log[: max(frame.compact - log[0].index + 1, 0)]
        if frame.entries:
            first = frame.first
            if log and first <= log[-1].index:
                del log[max(first - log[0].index, 0) :]
            elif log and first > log[-1].index + 1:
                log.clear()  # appended after a snapshot ahead of the log
            log.extend(frame.entries)
        self.commit = max(self.commit, frame.commit)


def _io_error(message: str, exc: OSError) -> StorageError:
    """``_storage_error``, saying "disk is full" (as sqlite did) when it is."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        message += ": disk is full"
    return _storage_error(message, exc)


def encode_frame(entries: Sequence[Entry], commit: int, compact: int = 0) -> bytes:
    """One frame holding ``entries`` (contiguous) and the commit index."""
    parts: list[bytes] = []
    for e in entries:
        parts.append(_ENTRY.pack(e.term, int(e.kind), len(e.data)))
        parts.append(e.data)
    payload = b"".join(parts)
    first = entries[0].index if entries else 0
    tail = _FRAME.pack(_FRAME_MAGIC, 0, 0, first, len(entries), commit, compact)[_CRC_FROM:]
    crc = zlib.crc32(payload, zlib.crc32(tail))
    return struct.pack(">4sII", _FRAME_MAGIC, len(payload), crc) + tail + payload


def _decode_entries(payload: bytes, first: int, count: int) -> list[Entry]:
    out: list[Entry] = []
    pos, size = 0, len(payload)
    for i in range(count):
        if pos + _ENTRY.size > size:
            raise ValueError(f"entry {i + 1} of {count} runs past the frame")
        term, kind, length = _ENTRY.unpack_from(payload, pos)
        pos += _ENTRY.size
        if kind not in _KINDS or pos + length > size:
            raise ValueError(f"entry {i + 1} of {count} is malformed")
        out.append(Entry(first + i, term, EntryKind(kind), payload[pos : pos + length]))
        pos += length
    if pos != size:
        raise ValueError(f"{size - pos} stray bytes after {count} entries")
    return out


def _read_frame(raw: bytes, off: int) -> tuple[_Frame | None, int, str]:
    """(frame, end offset, "") or (None, claimed end, what is wrong)."""
    if len(raw) - off < _FRAME.size:
        return None, len(raw) + 1, "truncated frame header"
    magic, length, crc, first, count, commit, compact = _FRAME.unpack_from(raw, off)
    end = off + _FRAME.size + length
    if magic != _FRAME_MAGIC:
        return None, end, "bad frame magic"
    if end > len(raw):
        return None, end, "frame runs past the end of the file"
    payload = raw[off + _FRAME.size : end]
    if zlib.crc32(payload, zlib.crc32(raw[off + _CRC_FROM : off + _FRAME.size])) != crc:
        return None, end, "checksum mismatch"
    if count and first == 0:
        return None, end, "entries without a first index"
    try:
        entries = _decode_entries(payload, first, count)
    except ValueError as exc:
        return None, end, str(exc)
    return _Frame(first, commit, compact, entries), end, ""


def _zeros_from(raw: bytes, off: int) -> bool:
    """Whether every byte of ``raw`` from ``off`` on is zero."""
    return off >= len(raw) or raw.count(0, off) == len(raw) - off


def _frame_after(raw: bytes, off: int) -> int:
    """Offset of the first whole, valid frame after ``off`` (-1 if none)."""
    pos = raw.find(_FRAME_MAGIC, off + 1)
    while pos >= 0:
        if _read_frame(raw, pos)[0] is not None:
            return pos
        pos = raw.find(_FRAME_MAGIC, pos + 1)
    return -1


def _is_torn(raw: bytes, off: int, claimed_end: int) -> bool:
    """Whether a bad frame at ``off`` is what a crash in the middle of the last
    write leaves: nothing was written after the end it claims (or its header
    is still zeros: data blocks written out of order), and no valid frame
    follows (a damaged length could claim an end past them).

    A header with the frame magic and nothing after its claimed end: a valid
    frame inside that extent may be its own data (a stored value can hold a
    frame's bytes), or the next frame if the length was damaged. The checksum
    covers all but magic and length, so it tells which: with the length that
    the frame found implies, the bad frame would check out."""
    header = raw[off : off + _FRAME.size]
    if not (_zeros_from(raw, claimed_end) or not header.strip(b"\0")):
        return False
    pos = _frame_after(raw, off)
    if pos < 0:
        return True
    if header[: len(_FRAME_MAGIC)] != _FRAME_MAGIC or len(header) < _FRAME.size:
        return False  # no length to trust
    crc = _FRAME.unpack_from(raw, off)[2]
    while pos >= 0:
        if pos >= claimed_end or zlib.crc32(raw[off + _CRC_FROM : pos]) == crc:
            return False  # a whole frame with a damaged length, then more frames
        pos = _frame_after(raw, pos)
    return True


def scan_segment(path: Path, raw: bytes, *, last: bool) -> tuple[list[_Frame], int]:
    """Frames of one segment and where its valid data ends.

    Raises:
        StorageError: a bad header, or a bad frame that is not the torn tail
            of the last segment (the message names the file and offset).
    """
    where = f"raft log segment {path}"
    if len(raw) < _SEG_HEADER.size or not raw[: _SEG_HEADER.size].strip(b"\0"):
        if last:  # created, crashed before its header was durable
            return [], 0
        raise StorageError(f"{where} is corrupt at offset 0: truncated segment header")
    magic, version = _SEG_HEADER.unpack_from(raw)
    if magic != SEGMENT_MAGIC or version != SEGMENT_VERSION:
        raise StorageError(
            f"{where} is corrupt at offset 0: bad magic {magic!r} or version {version}"
        )
    frames: list[_Frame] = []
    off = _SEG_HEADER.size
    while off < len(raw):
        frame, end, problem = _read_frame(raw, off)
        if frame is None:
            if _zeros_from(raw, off):
                return frames, off  # preallocated, or cut at rotation before a crash
            if last and _is_torn(raw, off, end):
                logger.warning(
                    "event=wal_torn_tail file=%s offset=%d dropped_bytes=%d reason=%s",
                    _kv(path),
                    off,
                    len(raw) - off,
                    _kv(problem),
                )
                return frames, off
            raise StorageError(
                f"{where} is corrupt at offset {off}: {problem} (not a torn write at the "
                "end of the log: acknowledged entries may be lost)"
            )
        frames.append(frame)
        off = end
    return frames, off


def _segment_files(directory: Path) -> list[_Segment]:
    named = ((_SEG_NAME.match(p.name), p) for p in directory.iterdir())
    return sorted((_Segment(int(m[1]), p) for m, p in named if m), key=lambda s: s.seq)


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _write_file_durably(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (temp, fsync, rename, fsync dir)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def read_hard_state(path: Path) -> HardState:
    """The hard state in ``path``; HardState() if there is none.

    Raises:
        StorageError: the file is unreadable or corrupt.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return HardState()
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    body = raw[_HS_HEADER.size :]
    if len(raw) < _HS_HEADER.size or _HS_HEADER.unpack_from(raw) != (_HS_MAGIC, zlib.crc32(body)):
        raise StorageError(f"{path} is corrupt: bad header or checksum")
    try:
        return codec.decode_hard_state(body)
    except (CodecError, ValueError) as exc:
        raise StorageError(f"{path} is corrupt: {exc}") from exc


def write_hard_state(path: Path, hs: HardState) -> None:
    """Durably replace ``path`` with ``hs``. Raises OSError."""
    body = codec.encode_hard_state(hs)
    _write_file_durably(path, _HS_HEADER.pack(_HS_MAGIC, zlib.crc32(body)) + body)


class _SegmentWriter:
    """The segment files of one directory: replay, append, rotate, delete.
    Not thread-safe: the storage holds its lock around every call."""

    def __init__(self, directory: Path, segment_size: int, preallocate: int = PREALLOCATE) -> None:
        self.dir = directory
        self.segment_size = segment_size
        self.preallocate = preallocate
        self.segments: list[_Segment] = []
        self._fd = -1
        self._offset = 0  # where the next frame goes in the last segment
        self._size = 0  # of the last segment's file (its data, then zeros)
        self._dirty = False  # a failed write may have left bytes after _offset

    def replay(self) -> _Replay:
        """Read every segment, cut off a torn tail, open the last for appends.

        Raises:
            StorageError: a corrupt segment (not a torn tail), or an OS error.
        """
        self.close()
        replay = _Replay()
        segments = _segment_files(self.dir)
        for seg in segments:
            raw = seg.path.read_bytes()
            frames, end = scan_segment(seg.path, raw, last=seg is segments[-1])
            for frame in frames:
                replay.apply(frame)
                if frame.entries:
                    seg.max_index = max(seg.max_index, frame.entries[-1].index)
            if seg is segments[-1]:
                self._open_last(seg, end, len(raw), _zeros_from(raw, end))
        self.segments = segments
        if not segments:
            self._new_segment(1)
        return replay

    def _open_last(self, seg: _Segment, end: int, size: int, clean: bool) -> None:
        self._fd = os.open(seg.path, os.O_WRONLY | os.O_CLOEXEC)
        self._offset, self._size = end, size
        if end == 0:  # no durable header yet: write it
            self._offset = _SEG_HEADER.size
            self._reset_tail()
            _write_all(self._fd, _SEG_HEADER.pack(SEGMENT_MAGIC, SEGMENT_VERSION), 0)
            os.fdatasync(self._fd)
        elif not clean:  # a torn frame: zeros again, or a shorter frame would end in its bytes
            self._reset_tail()

    def _reset_tail(self) -> None:
        """Cut the last segment at ``_offset``, extend it with zeros again and
        fdatasync: once a rotation makes it an older segment, bytes of a
        failed write still on disk after a crash would be "corrupt"."""
        os.ftruncate(self._fd, self._offset)
        self._size = self._offset
        with suppress(OSError):  # a full disk: the next write will say so
            self._extend(self._size + self.preallocate)
        os.fdatasync(self._fd)

    def _extend(self, size: int) -> None:
        """Fill the last segment with zeros up to ``size``. Raises OSError
        (then the file is cut back to its old size)."""
        if size <= self._size or not self.preallocate:
            return
        try:
            _write_all(self._fd, bytes(size - self._size), self._size)
        except OSError:
            with suppress(OSError):
                os.ftruncate(self._fd, self._size)  # part of it may have been written
            raise
        self._size = size

    def _new_segment(self, first_index: int) -> None:
        """Start the next segment: durable (header, directory entry) before
        anything goes into it; on failure it is removed and nothing changed.
        The old one is then cut at its data (only space: zeros end any
        segment's data)."""
        seq = self.segments[-1].seq + 1 if self.segments else 1
        path = self.dir / f"wal-{seq:016d}-{first_index:020d}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        old = (self._fd, self._offset, self._size)
        self._fd, self._offset, self._size = fd, _SEG_HEADER.size, 0
        try:
            _write_all(fd, _SEG_HEADER.pack(SEGMENT_MAGIC, SEGMENT_VERSION), 0)
            self._size = _SEG_HEADER.size
            with suppress(OSError):  # a full disk: the first write will say so
                self._extend(_SEG_HEADER.size + self.preallocate)
            os.fdatasync(fd)
            _fsync_dir(self.dir)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            self._fd, self._offset, self._size = old
            raise
        self.segments.append(_Segment(seq, path))
        self._dirty = False
        if old[0] >= 0:
            with suppress(OSError):
                os.ftruncate(old[0], old[1])
            os.close(old[0])

    def append(self, frame: bytes, first_index: int, last_index: int) -> None:
        """Write ``frame`` and fdatasync it, in a new segment if this one is
        full. On failure the segment is cut back to before the frame.

        Raises:
            OSError: the write, the sync or the rotation failed.
        """
        if self._dirty:
            self._reset_tail()
            self._dirty = False
        if self._offset + len(frame) > self.segment_size and self._offset > _SEG_HEADER.size:
            self._new_segment(first_index)
        end = self._offset + len(frame)
        try:
            if end > self._size:
                self._extend(max(end, self._size + self.preallocate))
            _write_all(self._fd, frame, self._offset)
            os.fdatasync(self._fd)
        except BaseException:
            self._dirty = True
            with suppress(OSError):  # else retried before the next write
                self._reset_tail()
                self._dirty = False
            raise
        self._offset = end
        self._size = max(self._size, end)
        if last_index:
            seg = self.segments[-1]
            seg.max_index = max(seg.max_index, last_index)

    def delete_through(self, index: int) -> None:
        """Delete the oldest segments (never the last) whose every entry is at
        or below ``index``. Failures are logged: this is only space."""
        doomed: list[_Segment] = []
        for seg in self.segments[:-1]:
            if seg.max_index > index:
                break  # only a prefix: a later segment may rewrite its entries
            doomed.append(seg)
        for seg in doomed:
            try:
                seg.path.unlink()
            except OSError as exc:
                logger.warning("event=wal_segment_delete_failed file=%s reason=%s", seg.path, exc)
                return
            self.segments.remove(seg)
        if doomed:
            try:
                _fsync_dir(self.dir)
            except OSError as exc:
                logger.warning("event=wal_segment_delete_failed reason=%s", _kv(exc))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _frames_of(entries: Sequence[Entry], limit: int) -> Iterable[list[Entry]]:
    """``entries`` in runs of about ``limit`` bytes of data."""
    run: list[Entry] = []
    size = 0
    for e in entries:
        run.append(e)
        size += len(e.data) + _ENTRY.size
        if size >= limit:
            yield run
            run, size = [], 0
    if run:
        yield run


_SQLITE_FILES = ("raft.db", "raft.db-wal", "raft.db-shm")
# What raft.db holds after a migration: not a sqlite database, so that an
# older build (which only looks at raft.db) fails to open it instead of
# starting with an empty log next to the snapshots.
MOVED_MARKER = b"meshd: this raft log moved to wal/ (raft.db.migrated* is the old sqlite log)\n"
# In wal/ from the migration until raft.db is renamed away and the marker written.
_MIGRATING = "MIGRATING"


def _is_marker(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(MOVED_MARKER) + 1) == MOVED_MARKER


def _backup_suffix(directory: Path) -> str:
    """``.migrated``, or ``.migrated.<n>`` if a backup of that name exists."""
    n = 0
    while True:
        suffix = ".migrated" if n == 0 else f".migrated.{n}"
        if not any((directory / (name + suffix)).exists() for name in _SQLITE_FILES):
            return suffix
        n += 1


def _rename_sqlite_away(directory: Path) -> None:
    """After a migration: raft.db (and its -wal/-shm files) -> *.migrated
    (never over an earlier backup), then raft.db = MOVED_MARKER."""
    db = directory / "raft.db"
    if db.exists() and not _is_marker(db):
        suffix = _backup_suffix(directory)
        for name in _SQLITE_FILES:
            path = directory / name
            if path.exists():
                os.rename(path, path.with_name(name + suffix))
        _fsync_dir(directory)
        logger.info(
            "event=raft_log_migrated dir=%s from=sqlite to=segments backup=%s",
            _kv(directory),
            _kv("raft.db" + suffix),
        )
    if not db.exists():
        _write_file_durably(db, MOVED_MARKER)


def _finish_migration(directory: Path) -> None:
    _rename_sqlite_away(directory)
    (directory / "wal" / _MIGRATING).unlink(missing_ok=True)
    _fsync_dir(directory / "wal")


def migrate_sqlite(directory: Path, segment_size: int = SEGMENT_SIZE) -> None:
    """Copy the sqlite log and hard state of ``directory`` to ``wal/``,
    crash-safely: written to ``wal.tmp/``, renamed once durable, and only
    then ``raft.db`` renamed away. Snapshot files stay where they are.

    Raises:
        StorageError: the sqlite log cannot be read or has a gap.
    """
    tmp = directory / "wal.tmp"
    shutil.rmtree(tmp, ignore_errors=True)  # a migration a crash interrupted
    old = SqliteStorage(directory)
    try:
        hard_state, entries = old.export()
    finally:
        old.close()
    tmp.mkdir()
    _write_file_durably(tmp / _MIGRATING, b"")
    write_hard_state(tmp / "hardstate", hard_state)
    writer = _SegmentWriter(tmp, segment_size)
    try:
        writer.replay()
        for run in _frames_of(entries, MIGRATION_FRAME):
            frame = encode_frame(run, hard_state.commit)
            writer.append(frame, run[0].index, run[-1].index)
    finally:
        writer.close()
    os.replace(tmp, directory / "wal")
    _fsync_dir(directory)
    _finish_migration(directory)


class SegmentLogStorage:
    """Log in segment files under ``<directory>/wal/``, hard state in
    ``wal/hardstate``, snapshots as files in ``<directory>/snapshots/``
    (see the module docstring). One instance owns the directory.

    Raises:
        StorageError: the directory cannot be opened, a segment is corrupt
            (other than a torn tail), or migrating an old sqlite log failed.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        retain_snapshots: int = 2,
        segment_size: int = SEGMENT_SIZE,
    ) -> None:
        self._dir = Path(directory)
        self._snaps = SnapshotFiles(self._dir / "snapshots", retain_snapshots)
        self._wal_dir = self._dir / "wal"
        self._hs_path = self._wal_dir / "hardstate"
        self._lock = threading.RLock()
        self._closed = False
        self._segments = _SegmentWriter(self._wal_dir, segment_size)
        try:
            self._snaps.open(self._dir)
            self._open_wal_dir(segment_size)
            self._hard, self._commit, self._snap_index = HardState(), 0, 0
            self._last: int | None = None
            # Kept for the first load, unless a write comes first.
            self._fresh: _Replay | None = self._replay()
        except OSError as exc:
            self._segments.close()
            raise StorageError(f"cannot open raft storage in {self._dir}: {exc}") from exc
        except BaseException:
            self._segments.close()
            raise

    def _open_wal_dir(self, segment_size: int) -> None:
        db = self._dir / "raft.db"
        if self._wal_dir.is_dir():
            if (self._wal_dir / _MIGRATING).exists():  # crashed at its very end
                _finish_migration(self._dir)
            elif db.exists() and not _is_marker(db):
                raise StorageError(
                    f"{self._dir} holds both the segmented raft log (wal/) and a sqlite "
                    "raft.db written after the migration (MESHD_RAFT_LOG=sqlite or an older "
                    "meshd): refusing to pick one; move raft.db away to keep wal/"
                )
            elif not db.exists():  # migrated by an older build: make older ones fail
                _write_file_durably(db, MOVED_MARKER)
        elif db.exists():
            migrate_sqlite(self._dir, segment_size)
        else:
            self._wal_dir.mkdir()
            _fsync_dir(self._dir)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("storage is closed")

    def load(self) -> PersistentState:
        """Return the hard state, the latest valid snapshot's meta and the log
        after it. Corrupt snapshot files are logged and skipped; a torn tail
        of the last segment is cut off.

        Raises:
            StorageError: closed, a corrupt segment or hard state file, or
                snapshot + log do not form one history without a gap.
        """
        with self._lock:
            self._check_open()
            snapshot, corrupt_index = self._snaps.latest_valid()
            replay, self._fresh = self._fresh, None
            if replay is None:
                replay = self._replay()
            hard = HardState(self._hard.term, self._hard.vote, self._commit)
        meta = snapshot.meta if snapshot is not None else None
        after = meta.index if meta is not None else 0
        entries = replay.entries
        if entries and entries[0].index <= after:
            entries = entries[min(after - entries[0].index + 1, len(entries)) :]
        try:
            _check_recovered(entries, meta, corrupt_index)
        except StorageError as exc:
            raise StorageError(f"{self._dir}: {exc}") from None
        return PersistentState(hard, meta, entries)

    def _replay(self) -> _Replay:
        """Re-read the hard state and every segment; update what saves use."""
        try:
            self._hard = read_hard_state(self._hs_path)
            replay = self._segments.replay()
        except OSError as exc:
            raise StorageError(f"cannot load raft state from {self._wal_dir}: {exc}") from exc
        self._commit = max(self._hard.commit, replay.commit)
        self._last = replay.entries[-1].index if replay.entries else None
        self._snap_index = self._snaps.newest_index()
        return replay

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        """Durably append ``entries`` (replacing stored entries from
        ``entries[0].index`` on) and store ``hard_state`` unless it is None:
        one write and one fdatasync, plus a hard state file replace when the
        term or the vote changed.

        Raises:
            StorageError: closed, OS failure (cause chained), or the entries
                are not contiguous or would leave a gap after the log.
        """
        batch = list(entries)
        with self._lock:
            self._check_open()
            if not batch and hard_state is None:
                return
            self._fresh = None
            _check_append(batch, _history_end(self._last, self._snap_index))
            try:
                self._save_locked(hard_state, batch)
            except OSError as exc:
                raise _io_error(f"save of {self._wal_dir} failed", exc) from exc

    def _save_locked(self, hard_state: HardState | None, batch: list[Entry]) -> None:
        commit = self._commit
        if hard_state is not None:
            if (hard_state.term, hard_state.vote) != (self._hard.term, self._hard.vote):
                write_hard_state(self._hs_path, hard_state)
                self._hard = hard_state
                if not batch:
                    self._commit = hard_state.commit
                    return
            commit = hard_state.commit
        if batch or commit != self._commit:
            first = batch[0].index if batch else 0
            last = batch[-1].index if batch else 0
            self._segments.append(encode_frame(batch, commit), first, last)
            self._commit = commit
            if batch:
                self._last = last

    def save_snapshot(self, snapshot: Snapshot, *, compact_upto: int) -> None:
        """Durably write ``snapshot``, then drop log entries with index <=
        ``compact_upto`` (never past the oldest retained snapshot when below
        the snapshot's index: see ``SnapshotFiles.compact_floor``): whole
        segments are deleted, and a frame records a compaction that cuts
        into the live log (a snapshot from the leader). Older snapshot files
        beyond ``retain_snapshots`` are deleted last.

        Raises:
            StorageError: closed, or OS failure (cause chained). If the file
                was not made durable the log is left untouched.
        """
        with self._lock:
            self._check_open()
        try:
            path = self._snaps.write(snapshot)
        except OSError as exc:
            raise _storage_error(f"cannot write snapshot to {self._snaps.dir}", exc) from exc
        index = snapshot.meta.index
        with self._lock:
            self._check_open()
            self._fresh = None
            self._snap_index = max(self._snap_index, index)
            upto = min(self._snaps.compact_floor(path, compact_upto, index), _MAX_U64)
            try:
                if upto > index and self._last is not None:
                    self._segments.append(encode_frame([], self._commit, upto), 0, 0)
                    if self._last <= upto:
                        self._last = None
            except OSError as exc:
                raise _io_error(f"log compaction of {self._wal_dir} failed", exc) from exc
            self._segments.delete_through(upto)
            self._snaps.prune(keep=path)

    def load_snapshot(self) -> Snapshot | None:
        """Return the latest snapshot that verifies, with its data, or None.

        Raises:
            StorageError: closed, or the snapshot directory cannot be listed.
        """
        with self._lock:
            self._check_open()
            return self._snaps.latest_valid()[0]

    def close(self) -> None:
        """Close the open segment; idempotent. Later calls raise StorageError."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._segments.close()


def open_durable_storage(directory: str | os.PathLike[str]) -> SegmentLogStorage | SqliteStorage:
    """The storage real servers use: ``SegmentLogStorage``, or the old
    ``SqliteStorage`` when ``MESHD_RAFT_LOG=sqlite`` is set (only to compare
    the two in benchmarks on a fresh data dir: a migrated dir has no sqlite log).

    Raises:
        StorageError: as the storage's constructor.
    """
    if os.environ.get("MESHD_RAFT_LOG", "segments") == "sqlite":
        return SqliteStorage(directory)
    return SegmentLogStorage(directory)
