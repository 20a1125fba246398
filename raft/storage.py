"""Durable Raft storage: hard state, log and snapshots.

Raft §5 (Figure 2): term, vote and log are on stable storage before a server
answers an RPC; the driver calls ``save`` once per ``Ready``, so that costs one
transaction and one fsync (group commit). Plain blocking code: the trio driver
calls it through ``trio.to_thread.run_sync``, one call at a time.

``SqliteStorage`` keeps log, hard state and format version in ``<dir>/raft.db``
(sqlite, journal_mode=WAL, synchronous=FULL) and the newest ``retain_snapshots``
snapshots in ``<dir>/snapshots/snapshot-<term>-<index>.snap``, laid out as
(integers big-endian)::

    magic b"MESHSNAP" | u16 version | u32 header length | u32 crc32(header)
    header: msgpack map {"meta": codec.meta_to_obj(meta), "size": len(data),
                         "sha256": sha256(data)}
    data
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import logging
import os
import re
import sqlite3
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from . import codec
from .codec import CodecError
from .errors import SnapshotCorruptError, StorageError, StorageUnavailableError
from .types import Entry, EntryKind, HardState, Snapshot, SnapshotMeta

logger = logging.getLogger("raft.storage")

FORMAT_VERSION = 1
PAGE_SIZE = 1024  # of a new raft.db (sqlite's default: 4096)
SNAPSHOT_MAGIC = b"MESHSNAP"
SNAPSHOT_VERSION = 1

_PREFIX = struct.Struct(">8sHII")  # magic, version, header length, crc32 of header
_SNAP_NAME = re.compile(r"^snapshot-(\d+)-(\d+)\.snap$")
_TMP_SUFFIX = ".tmp"
_MAX_SQLITE_INT = 2**63 - 1  # "drop the whole log" callers may pass anything larger


@dataclass
class PersistentState:
    """What a server recovers at start-up."""

    hard_state: HardState  # HardState() if nothing stored
    snapshot: SnapshotMeta | None  # meta of the latest valid snapshot
    entries: list[Entry]  # index > snapshot.index (or all), ascending, contiguous


class Storage(Protocol):
    """Durable storage used by the Raft driver (see ``types.Ready`` for the order)."""

    def load(self) -> PersistentState: ...

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None: ...

    def save_snapshot(self, snapshot: Snapshot, *, compact_upto: int) -> None: ...

    def load_snapshot(self) -> Snapshot | None: ...

    def close(self) -> None: ...


_TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})


def _storage_error(message: str, exc: BaseException) -> StorageError:
    """``StorageUnavailableError`` when ``exc`` can pass (a full disk, an I/O
    error), else ``StorageError`` (a corrupt file, a bug)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    transient = name == "SQLITE_FULL" or name.startswith("SQLITE_IOERR")
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        transient = True
    cls = StorageUnavailableError if transient else StorageError
    return cls(f"{message}: {exc}")


def _kv(value: object) -> str:
    """Render one value of a key=value log line, quoted if it needs to be."""
    text = str(value)
    if not text or any(c in text for c in ' "=\n'):
        return json.dumps(text)
    return text


def _first_hole(entries: Sequence[Entry]) -> tuple[int, int] | None:
    """(previous index, next index) of the first break in ``entries``, if any."""
    for prev, cur in itertools.pairwise(entries):
        if cur.index != prev.index + 1:
            return prev.index, cur.index
    return None


def _history_end(log_last: int | None, snapshot_index: int) -> int | None:
    """Where stored history ends: a snapshot can be ahead of the log (a leader
    snapshots what it applied before its own write of those entries landed)."""
    if log_last is None and snapshot_index == 0:
        return None
    return max(log_last or 0, snapshot_index)


def _check_append(entries: Sequence[Entry], last_index: int | None) -> None:
    """Refuse a batch with a hole, or one that would leave a hole after the log."""
    if hole := _first_hole(entries):
        raise StorageError(f"entries to save are not contiguous: {hole[1]} follows {hole[0]}")
    if entries and last_index is not None and entries[0].index > last_index + 1:
        raise StorageError(
            f"append would leave a gap: log ends at {last_index}, "
            f"entries start at {entries[0].index}"
        )


def _check_recovered(
    entries: Sequence[Entry], snapshot: SnapshotMeta | None, corrupt_index: int
) -> None:
    """Check that snapshot + entries form one contiguous history reaching at
    least ``corrupt_index`` (the newest snapshot file that failed to verify).

    Raises:
        StorageError: the stored state cannot be rebuilt.
    """
    base = snapshot.index if snapshot is not None else 0
    what = f"the latest valid snapshot ends at {base}" if snapshot else "there is no valid snapshot"
    if entries and entries[0].index != base + 1:
        raise StorageError(
            f"raft log starts at index {entries[0].index} but {what}: entries "
            f"{base + 1}..{entries[0].index - 1} are missing and the state cannot be "
            "rebuilt; restore this server from a snapshot of a healthy peer"
        )
    if hole := _first_hole(entries):
        raise StorageError(
            f"raft log has a gap: index {hole[1]} follows {hole[0]}; the state cannot be rebuilt"
        )
    last = entries[-1].index if entries else base
    if last < corrupt_index:
        raise StorageError(
            f"the newest snapshot (index {corrupt_index}) is corrupt and {what} with the "
            f"log reaching only index {last}: the state cannot be rebuilt; restore this "
            "server from a snapshot of a healthy peer"
        )


class _CorruptSnapshotFile(SnapshotCorruptError):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"snapshot file {path} is corrupt: {reason}")
        self.path = path
        self.reason = reason


def _decode_snapshot(path: Path, raw: bytes) -> Snapshot:
    def corrupt(reason: str) -> _CorruptSnapshotFile:
        return _CorruptSnapshotFile(path, reason)

    if len(raw) < _PREFIX.size:
        raise corrupt(f"truncated: {len(raw)} bytes, shorter than the fixed header")
    magic, version, header_len, header_crc = _PREFIX.unpack_from(raw)
    if magic != SNAPSHOT_MAGIC:
        raise corrupt(f"bad magic {magic!r}")
    if version != SNAPSHOT_VERSION:
        raise corrupt(f"unsupported snapshot format version {version}")
    data_start = _PREFIX.size + header_len
    if len(raw) < data_start:
        raise corrupt("truncated inside the header")
    header_bytes = raw[_PREFIX.size : data_start]
    if zlib.crc32(header_bytes) != header_crc:
        raise corrupt("header checksum mismatch")
    try:
        header = codec.unpack(header_bytes)
        meta = codec.meta_from_obj(header["meta"])
        size = int(header["size"])
        digest = bytes(header["sha256"])
    except (CodecError, KeyError, TypeError, ValueError) as exc:
        raise corrupt(f"undecodable header: {exc}") from exc
    data = raw[data_start:]
    if len(data) != size:
        raise corrupt(f"expected {size} data bytes, found {len(data)}")
    if hashlib.sha256(data).digest() != digest:
        raise corrupt("data checksum (sha256) mismatch")
    return Snapshot(meta, data)


def read_snapshot_file(path: str | os.PathLike[str]) -> Snapshot:
    """Read and verify one snapshot file.

    Raises:
        SnapshotCorruptError: the file cannot be read, is truncated, has a bad
            header, or its data does not match the recorded SHA-256.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise _CorruptSnapshotFile(p, f"unreadable: {exc}") from exc
    return _decode_snapshot(p, raw)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SnapshotFiles:
    """The snapshot files of one storage directory (``<dir>/snapshots``),
    shared by every durable storage: write (temp file, fsync, rename, fsync
    dir), verify, fall back past corrupt files, prune to ``retain``."""

    def __init__(self, directory: Path, retain: int) -> None:
        if retain < 1:
            raise ValueError("retain_snapshots must be at least 1")
        self.dir = directory
        self.retain = retain

    def open(self, parent: Path) -> None:
        """Create the directory (fsyncing ``parent`` if new) and remove temp
        files a crash left behind. Raises OSError."""
        created = not self.dir.is_dir()
        self.dir.mkdir(parents=True, exist_ok=True)
        if created:
            _fsync_dir(parent)
        # A crash between writing and renaming a snapshot leaves a temp file.
        for path in self.dir.iterdir():
            if path.name.endswith(_TMP_SUFFIX):
                path.unlink()
                logger.info("event=snapshot_tmp_removed file=%s", _kv(path))

    def newest_index(self) -> int:
        """Index of the newest snapshot file by name (0 if none); cheap, unverified."""
        files = self.files()
        return files[-1][0] if files else 0

    def files(self) -> list[tuple[int, int, Path]]:
        """(index, term, path) of every snapshot file, oldest first."""
        named = ((_SNAP_NAME.match(p.name), p) for p in self.dir.iterdir())
        return sorted((int(m[2]), int(m[1]), p) for m, p in named if m)

    def latest_valid(self) -> tuple[Snapshot | None, int]:
        """Return the newest snapshot that verifies and the index of the newest
        corrupt file newer than it (0 if none), logging each corrupt file."""
        try:
            files = self.files()
        except OSError as exc:
            raise StorageError(f"cannot list {self.dir}: {exc}") from exc
        corrupt_index = 0
        for index, _term, path in reversed(files):
            try:
                return read_snapshot_file(path), corrupt_index
            except _CorruptSnapshotFile as exc:
                logger.warning(
                    "event=snapshot_corrupt file=%s reason=%s action=fallback_to_previous",
                    _kv(path),
                    _kv(exc.reason),
                )
                corrupt_index = max(corrupt_index, index)
        return None, corrupt_index

    def write(self, snapshot: Snapshot) -> Path:
        """Durably write ``snapshot``; returns its path. Raises OSError."""
        meta = snapshot.meta
        final = self.dir / f"snapshot-{meta.term}-{meta.index}.snap"
        tmp = final.with_name(final.name + _TMP_SUFFIX)
        data, sha = snapshot.data, hashlib.sha256(snapshot.data).digest()
        header = codec.pack({"meta": codec.meta_to_obj(meta), "size": len(data), "sha256": sha})
        prefix = _PREFIX.pack(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, len(header), zlib.crc32(header))
        try:
            with open(tmp, "wb") as f:
                f.write(prefix)
                f.write(header)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)  # atomic rename over any file with the same name
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.dir)
        return final

    def compact_floor(self, newest: Path, compact_upto: int, snapshot_index: int) -> int:
        """How far the log may be compacted after writing ``newest``.

        A ``compact_upto`` below the snapshot's index (trailing logs kept for
        slow followers) never passes the oldest retained snapshot but
        ``newest`` (0 — keep it all — when there is none), so that if
        ``newest`` turns out corrupt that snapshot plus the log rebuild the
        state. One at or beyond it (a snapshot from the leader, a restore)
        replaces the history and is returned as is."""
        if compact_upto >= snapshot_index:
            return compact_upto
        try:
            files = self.files()
        except OSError as exc:
            raise StorageError(f"cannot list {self.dir}: {exc}") from exc
        older = [index for index, _t, path in files[-self.retain :] if path != newest]
        return min(compact_upto, min(older, default=0))

    def prune(self, keep: Path) -> None:
        """Delete snapshot files beyond ``retain`` (never ``keep``); failures
        are logged, the new snapshot is durable and this is only space."""
        try:
            files = self.files()
            doomed = [path for _i, _t, path in files[: -self.retain] if path != keep]
            for path in doomed:
                try:
                    path.unlink()
                except OSError as exc:
                    logger.warning(
                        "event=snapshot_prune_failed file=%s reason=%s", _kv(path), _kv(exc)
                    )
            if doomed:
                _fsync_dir(self.dir)
        except OSError as exc:
            logger.warning("event=snapshot_prune_failed reason=%s", _kv(exc))


class MemoryStorage:
    """Storage with the same semantics as ``SqliteStorage`` but nothing on disk
    (tests and ``--dev``). ``close`` makes every later call raise StorageError."""

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot: Snapshot | None = None
        self._entries: list[Entry] = []  # contiguous, ascending
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("storage is closed")

    def load(self) -> PersistentState:
        """Return the stored state. Raises StorageError if closed."""
        self._check_open()
        meta = self._snapshot.meta if self._snapshot is not None else None
        after = meta.index if meta is not None else 0
        entries = [e for e in self._entries if e.index > after]
        _check_recovered(entries, meta, 0)
        return PersistentState(self._hard_state, meta, entries)

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        """Truncate stored entries at or after ``entries[0].index``, append
        ``entries`` and replace the hard state unless it is None.

        Raises:
            StorageError: closed, or ``entries`` would leave a gap in the log.
        """
        self._check_open()
        batch = list(entries)
        snap_index = self._snapshot.meta.index if self._snapshot is not None else 0
        _check_append(
            batch, _history_end(self._entries[-1].index if self._entries else None, snap_index)
        )
        if batch:
            if self._entries:
                del self._entries[max(batch[0].index - self._entries[0].index, 0) :]
            self._entries.extend(batch)
        if hard_state is not None:
            self._hard_state = hard_state

    def save_snapshot(self, snapshot: Snapshot, *, compact_upto: int) -> None:
        """Keep ``snapshot`` as the latest one and drop entries <= ``compact_upto``.

        Raises:
            StorageError: the storage is closed.
        """
        self._check_open()
        self._snapshot = snapshot
        self._entries = [e for e in self._entries if e.index > compact_upto]

    def load_snapshot(self) -> Snapshot | None:
        """Return the latest snapshot, or None. Raises StorageError if closed."""
        self._check_open()
        return self._snapshot

    def close(self) -> None:
        """Mark the storage closed; idempotent."""
        self._closed = True


class SqliteStorage:
    """Log and hard state in ``<directory>/raft.db``, snapshots as files in
    ``<directory>/snapshots/``. One instance owns the directory.

    Raises:
        StorageError: the directory or database cannot be opened, it holds
            an unknown format version, or the directory holds the segmented
            log (``wal/``) instead.
    """

    def __init__(self, directory: str | os.PathLike[str], *, retain_snapshots: int = 2) -> None:
        self._dir = Path(directory)
        self._snaps = SnapshotFiles(self._dir / "snapshots", retain_snapshots)
        self._db = self._dir / "raft.db"
        self._lock = threading.RLock()
        self._closed = False
        # Where stored history ends, known after the first save and kept up to
        # date by this object (the only writer); None until then. Saves are on
        # the commit path: no query or directory listing to find it each time.
        self._end: tuple[int | None, int] | None = None  # (log last, snapshot index)
        if (self._dir / "wal").is_dir():  # raft/wal.py's log: this one would start empty
            raise StorageError(
                f"{self._dir} holds the segmented raft log (wal/), not a sqlite one: "
                "unset MESHD_RAFT_LOG=sqlite (the sqlite log from before the migration "
                "is raft.db.migrated)"
            )
        try:
            self._snaps.open(self._dir)
            self._conn = sqlite3.connect(
                self._dir / "raft.db", isolation_level=None, check_same_thread=False
            )
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot open raft storage in {self._dir}: {exc}") from exc
        try:
            self._init_db()
        except BaseException:
            self._conn.close()
            raise

    def _init_db(self) -> None:
        try:
            # Each commit writes every page it touched to the WAL as a whole
            # frame: with 1 KiB pages an append of one small entry writes
            # ~1 KiB instead of ~4 KiB before its fsync (a commit on a busy
            # disk: ~0.6 -> ~0.47 ms median here). Only a new, empty database
            # takes it; an existing one keeps its page size.
            self._conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageError(f"sqlite refused journal_mode=WAL (got {mode!r})")
            self._conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot configure {self._db}: {exc}") from exc
        with self._transaction("initialise database") as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS log ("
                "idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, "
                "kind INTEGER NOT NULL, data BLOB NOT NULL)"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)"
            )
            row = conn.execute("SELECT value FROM kv WHERE key = 'format_version'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO kv (key, value) VALUES ('format_version', ?)",
                    (str(FORMAT_VERSION).encode(),),
                )
            elif bytes(row[0]) != str(FORMAT_VERSION).encode():
                raise StorageError(
                    f"{self._dir / 'raft.db'} has format version {bytes(row[0])!r}, "
                    f"this build reads version {FORMAT_VERSION}"
                )

    def _live_conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StorageError("storage is closed")
        return self._conn

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One sqlite transaction; with WAL + synchronous=FULL its COMMIT is one fsync."""
        with self._lock:
            conn = self._live_conn()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    # Also after a failed COMMIT (a full disk): sqlite keeps
                    # the transaction open, and the next BEGIN would fail.
                    if conn.in_transaction:
                        with suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, OSError) as exc:
                raise _storage_error(f"{what} of {self._db} failed", exc) from exc

    def load(self) -> PersistentState:
        """Return the hard state, the latest valid snapshot's meta and the log
        after it. Corrupt snapshot files are logged and skipped.

        Raises:
            StorageError: closed, unreadable database, or snapshot + log do not
                form one history without a gap (e.g. the newest snapshot is
                corrupt and the log was compacted past the previous one).
        """
        self._end = None
        with self._lock:
            conn = self._live_conn()
            snapshot, corrupt_index = self._snaps.latest_valid()
            meta = snapshot.meta if snapshot is not None else None
            after = meta.index if meta is not None else 0
            try:
                row = conn.execute("SELECT value FROM kv WHERE key = 'hard_state'").fetchone()
                hard_state = codec.decode_hard_state(bytes(row[0])) if row else HardState()
                rows = conn.execute(
                    "SELECT idx, term, kind, data FROM log WHERE idx > ? ORDER BY idx", (after,)
                ).fetchall()
                entries = [Entry(i, t, EntryKind(k), bytes(d)) for i, t, k, d in rows]
            except (sqlite3.Error, CodecError, ValueError) as exc:
                raise StorageError(f"cannot load raft state from {self._db}: {exc}") from exc
        try:
            _check_recovered(entries, meta, corrupt_index)
        except StorageError as exc:
            raise StorageError(f"{self._dir}: {exc}") from None
        return PersistentState(hard_state, meta, entries)

    def export(self) -> tuple[HardState, list[Entry]]:
        """The stored hard state and every log row (to migrate to another format).

        Raises:
            StorageError: closed, unreadable database, or a gap in the log.
        """
        with self._lock:
            conn = self._live_conn()
            try:
                row = conn.execute("SELECT value FROM kv WHERE key = 'hard_state'").fetchone()
                hard_state = codec.decode_hard_state(bytes(row[0])) if row else HardState()
                rows = conn.execute("SELECT idx, term, kind, data FROM log ORDER BY idx").fetchall()
                entries = [Entry(i, t, EntryKind(k), bytes(d)) for i, t, k, d in rows]
            except (sqlite3.Error, CodecError, ValueError) as exc:
                raise StorageError(f"cannot read raft state from {self._db}: {exc}") from exc
        if hole := _first_hole(entries):
            raise StorageError(f"{self._db}: raft log has a gap: index {hole[1]} follows {hole[0]}")
        return hard_state, entries

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        """In one transaction (one fsync): delete stored entries with index >=
        ``entries[0].index``, insert ``entries`` and store ``hard_state``
        unless it is None. Does nothing if there is nothing to save.

        Raises:
            StorageError: closed, sqlite/OS failure (cause chained), or the
                entries are not contiguous or would leave a gap after the log.
        """
        batch = list(entries)
        if not batch and hard_state is None:
            self._live_conn()
            return
        rows = [(e.index, e.term, int(e.kind), e.data) for e in batch]
        end: tuple[int | None, int] = (None, 0)
        with self._lock:  # re-entered by _transaction; covers the cache update too
            with self._transaction("save") as conn:
                if batch:
                    if self._end is not None:
                        end = self._end
                    else:
                        last = conn.execute("SELECT MAX(idx) FROM log").fetchone()[0]
                        end = (last, self._snaps.newest_index())
                    self._end = None  # unknown until this transaction commits
                    _check_append(batch, _history_end(*end))
                    if end[0] is not None and batch[0].index <= end[0]:
                        conn.execute("DELETE FROM log WHERE idx >= ?", (batch[0].index,))
                    conn.executemany(
                        "INSERT INTO log (idx, term, kind, data) VALUES (?, ?, ?, ?)", rows
                    )
                if hard_state is not None:
                    conn.execute(
                        "INSERT OR REPLACE INTO kv (key, value) VALUES ('hard_state', ?)",
                        (codec.encode_hard_state(hard_state),),
                    )
            if batch:
                self._end = (batch[-1].index, end[1])

    def save_snapshot(self, snapshot: Snapshot, *, compact_upto: int) -> None:
        """Durably write ``snapshot`` (temp file, fsync, rename, fsync dir),
        then delete log entries with index <= ``compact_upto`` and finally
        older snapshot files beyond ``retain_snapshots``.

        A ``compact_upto`` below the snapshot's index (trailing logs kept for
        slow followers) never compacts past the oldest retained snapshot: if
        this file is found corrupt at the next start, that snapshot and the
        log after it rebuild the state. A ``compact_upto`` at or beyond it (a
        snapshot received from the leader, or a restore) replaces the history
        and drops the log through it.

        Raises:
            StorageError: closed, or sqlite/OS failure (cause chained). If the
                file was not made durable the log is left untouched.
        """
        self._live_conn()
        # The file is written outside the lock so that log saves (the commit
        # path) are not held up by a large snapshot; only compaction and
        # pruning touch shared state.
        try:
            path = self._snaps.write(snapshot)
        except OSError as exc:
            raise _storage_error(f"cannot write snapshot to {self._snaps.dir}", exc) from exc
        with self._lock:
            self._end = None  # the log and the snapshot index change
            upto = self._snaps.compact_floor(path, compact_upto, snapshot.meta.index)
            with self._transaction("log compaction") as conn:
                conn.execute("DELETE FROM log WHERE idx <= ?", (min(upto, _MAX_SQLITE_INT),))
            self._snaps.prune(keep=path)

    def load_snapshot(self) -> Snapshot | None:
        """Return the latest snapshot that verifies, with its data, or None.
        Corrupt newer files are logged (event=snapshot_corrupt) and skipped.

        Raises:
            StorageError: closed, or the snapshot directory cannot be listed.
        """
        with self._lock:
            self._live_conn()
            return self._snaps.latest_valid()[0]

    def close(self) -> None:
        """Close the database; idempotent. Later calls raise StorageError."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
