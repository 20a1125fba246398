"""The driver's durable writes: the writer task that persists Ready batches
(group commit, background leader writes) and what happens when a write
fails because the disk is full — the batch is kept and retried with
backoff while the server refuses proposals and hands leadership away.

A mixin of ``RaftNode`` (raft/node.py); the attributes it uses are declared
below so that it type-checks on its own.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from .backoff import StorageHealth
from .core import RaftCore
from .errors import RaftError, StorageUnavailableError
from .stages import Stages
from .storage import Storage
from .types import Entry, HardState, HardStateWriter, Role, Snapshot

log = logging.getLogger("raft.node")
_DROP_ALL = 1 << 62
# An inline log write (on the loop's thread) that took longer than this means
# a slow or stalled disk: for ``SLOW_DISK_PAUSE`` seconds after it, writes go
# to a worker thread, so that heartbeats and acknowledgements keep flowing
# while the disk is slow (a healthy fsync takes well under a millisecond).
SLOW_INLINE_WRITE = 0.02
SLOW_DISK_PAUSE = 10.0
# A disk whose recent log writes took under this on average (a segment-log
# append and fsync: ~0.1 ms on a healthy quiet disk) is written inline even
# while other tasks are ready to run: handing the write to a worker thread
# and back costs CPU (issue #18's spread puts: ~+39 us per put, spreadfw's
# profile). bench/fwd_cpu --spread at load 3-10, 9 alternated pairs, inline
# vs threads: syscalls per put 7.4 -> 6.7, futex 0.5 -> ~0.05, switches 1.45
# -> 1.15, but fsyncs per put 0.175 -> 0.21 (threads' saves coalesce more)
# and CPU per put within the noise (medians 275 vs 275 us over the 3
# servers). 2 ms (engaging on that loaded machine, fsyncs 1-2 ms) showed no
# clear gain either, so slower disks keep the threads.
# The average follows the last ~8 inline saves only: a save on a worker
# thread is timed with its wait for the GIL after the fsync (up to the 5 ms
# switch interval on a busy loop), which would keep a busy server on threads
# for good; so while the average says slow, every ``PROBE_EVERY``-th write is
# inline again, to time the disk anew.
FAST_SAVE = 0.0005
PROBE_EVERY = 32
_SAVE_AVERAGE_WEIGHT = 0.125

try:  # trio's run context: the length of its run queue costs nothing to read
    from trio._core import _run as _trio_run

    _TRIO_RUN: object = getattr(_trio_run, "GLOBAL_RUN_CONTEXT", None)
except ImportError:  # pragma: no cover - a trio that moved it
    _TRIO_RUN = None


def tasks_runnable() -> int:
    """How many trio tasks are ready to run in this run (this one aside).

    ``trio.lowlevel.current_statistics().tasks_runnable`` says the same but
    also counts the tasks waiting on every registered file descriptor: ~75
    ns per descriptor, 0.15 ms per call at 2,000 connections, and every log
    write on every server asked. Read from trio's run queue directly, with
    the public call as the fallback should a trio release move it."""
    runq = getattr(getattr(_TRIO_RUN, "runner", None), "runq", None)
    if runq is None:
        return trio.lowlevel.current_statistics().tasks_runnable
    return len(runq)


class _Future:
    __slots__ = ("_done", "decoded", "error", "proposed_at", "result")

    def __init__(self, decoded: Any = None) -> None:
        self._done = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.proposed_at = 0.0
        # The proposer's own decoded form of the command (see Node.apply).
        self.decoded = decoded

    def set(self, result: Any) -> None:
        if not self._done.is_set():
            self.result = result
            self._done.set()

    def fail(self, error: BaseException) -> None:
        if not self._done.is_set():
            self.error = error
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    async def wait_done(self) -> None:
        """Until it is set or failed (without raising its error)."""
        await self._done.wait()

    async def wait(self) -> Any:
        await self._done.wait()
        if self.error is not None:
            raise self.error
        return self.result


@dataclass
class _Write:
    """One Ready's durable part, queued for the writer task."""

    hard_state: HardState | None
    entries: list[Entry]
    snapshot: Snapshot | None = None
    done: trio.Event | None = None


class DurableWrites:
    """Persisting Ready batches, and surviving a full disk."""

    config: Any  # NodeConfig
    storage: Storage
    _core: RaftCore | None
    _writes: list[_Write]
    _backlog: list[_Write]
    _storage: StorageHealth
    _write_wake: trio.Event
    _write_lock: trio.Lock
    _wake: trio.Event
    _hard: HardStateWriter
    _events: list[tuple[str, Any]]
    _calls: list[tuple[Callable[[RaftCore], Any], _Future]]
    _in_memory: bool
    _inline_after: float  # trio time before which log writes go to a thread
    # Moving average of the recent log saves' seconds (inf: none timed yet).
    _save_average: float = float("inf")
    _thread_saves = 0  # log saves on worker threads since the last inline one
    _fatal: BaseException | None
    _stages: Stages | None
    _pending: dict[int, tuple[int, _Future]]

    def _fail_all(self, error: RaftError) -> None:
        raise NotImplementedError

    def _fail_proposals(self, error: RaftError) -> None:
        raise NotImplementedError

    def _queue_write(self, write: _Write) -> None:
        self._writes.append(write)
        self._write_wake.set()

    async def _writer(self) -> None:
        """Write queued Ready batches in order; consecutive log writes are
        merged into one ``save`` (one fsync). A write that failed for a
        reason that can pass (a full disk) is retried with backoff until it
        succeeds; any other storage failure is fatal."""
        while True:
            if self._backlog:
                with trio.move_on_at(self._storage.backoff.retry_at):
                    await self._write_wake.wait()
            else:
                await self._write_wake.wait()
            self._write_wake = trio.Event()
            now = trio.current_time()
            while self._writes or (self._backlog and self._storage.backoff.due(now)):
                batch = []
                try:
                    async with self._write_lock:
                        batch, self._writes = self._writes, []
                        if not await self._write_durably(batch):
                            break
                except RaftError as exc:
                    self._fatal = exc
                    log.critical("event=raft_storage_failed id=%s reason=%s", self.config.id, exc)
                    self._fail_all(exc)
                    for w in batch:
                        if w.done is not None:
                            w.done.set()
                    raise

    async def _write_durably(self, batch: list[_Write], *, by_loop: bool = False) -> bool:
        """Write the backlog, then ``batch``; returns whether all of it is on
        disk. On a failure that can pass, keeps it all as the backlog, refuses
        proposals and steps down (an idle follower's acknowledgements are
        held back by the caller). Before the backoff's retry time, it does
        not even try. ``by_loop``: the Raft loop writes, and sends or commits
        right after (no scheduler round after an inline write: the loop
        yields at the end of its pass). Raises ``StorageError`` for any
        other failure."""
        batch = self._backlog + batch
        self._backlog = []
        if not batch:
            return True
        now = trio.current_time()
        if self._storage.down and not self._storage.backoff.due(now):
            self._backlog = batch
            return False
        try:
            await self._write_batch(batch, by_loop)
        except StorageUnavailableError as exc:
            self._backlog = batch
            role = self._core.role.value if self._core else "?"
            self._storage.failed(exc, trio.current_time(), role)
            self._write_wake.set()  # the writer waits for the retry time
            self._fail_proposals(
                StorageUnavailableError(
                    f"this server cannot persist its raft log ({exc}); writes are refused "
                    "until it can (one in flight may still be applied by the cluster)"
                )
            )
            if self._core is not None and self._core.role == Role.LEADER:
                self._calls.append((lambda c: c.step_down(), _Future()))
                self._wake.set()
            return False
        self._storage.recovered(trio.current_time())
        return True

    def _stage_write(self, entries: list[Entry], stage: str) -> None:
        if self._stages is not None:
            for e in entries:
                pending = self._pending.get(e.index)
                if pending is not None:
                    self._stages.stamp(pending[1], stage)
                self._stages.stamp(("f", e.index), stage)  # a follower's append

    def _inline_write_ok(self) -> bool:
        """Whether a log write may block the loop's thread now: no recent
        write showed the disk slow, and either nothing else is ready to run
        or the recent writes were fast (``FAST_SAVE``)."""
        if trio.current_time() < self._inline_after:
            return False
        if self._save_average <= FAST_SAVE or self._thread_saves >= PROBE_EVERY:
            return True
        return tasks_runnable() == 0

    async def _write_now(self, write: _Write) -> bool:
        """The leader's own write, by the loop itself, when no write is queued
        or running (the caller checked); returns whether it is durable, as
        ``_write_durably`` does."""
        self._write_lock.acquire_nowait()
        try:
            return await self._write_durably([write], by_loop=True)
        finally:
            self._write_lock.release()

    async def _acquire_write_lock(self) -> None:
        """Take the write lock; at once (no scheduler round) when it is free."""
        if self._write_lock.locked():
            await self._write_lock.acquire()
        else:
            self._write_lock.acquire_nowait()

    def _timed_save(self, hard_state: HardState | None, entries: list[Entry]) -> float:
        """``storage.save``; returns the seconds it took (on whichever thread)."""
        started = time.perf_counter()
        self.storage.save(hard_state, entries)
        return time.perf_counter() - started

    def _note_save_time(self, took: float, *, inline: bool) -> None:
        """After a log write slower than ``SLOW_INLINE_WRITE`` (inline or on a
        thread: the disk is slow either way), the next ``SLOW_DISK_PAUSE``
        seconds of writes go to a worker thread, so a slow disk holds the
        loop (heartbeats, acknowledgements) for one write, not for each.
        Also keeps the moving average that ``_inline_write_ok`` reads."""
        if inline:
            self._thread_saves = 0
            average = self._save_average
            if average == float("inf"):
                self._save_average = took
            else:
                self._save_average = average + (took - average) * _SAVE_AVERAGE_WEIGHT
        else:
            self._thread_saves += 1
        if took > SLOW_INLINE_WRITE:
            if trio.current_time() >= self._inline_after:
                log.warning(
                    "event=raft_slow_log_write id=%s took_ms=%.0f action=thread_writes "
                    "pause_s=%.0f",
                    self.config.id,
                    took * 1000,
                    SLOW_DISK_PAUSE,
                )
            self._inline_after = trio.current_time() + SLOW_DISK_PAUSE

    async def _write_batch(self, batch: list[_Write], by_loop: bool = False) -> None:
        hs: HardState | None = None
        entries: list[Entry] = []

        async def flush() -> None:
            nonlocal hs, entries
            if hs is None and not entries:
                return
            save_hs, save_entries = hs, entries
            self._stage_write(save_entries, "own_save_start")
            # A log append is one small transaction and one fsync (~0.2 ms
            # on an idle disk, several ms on a busy one), and handing it to a
            # worker thread costs more than the write (trio.to_thread: ~0.12
            # ms for a no-op each way, plus the GIL handover; kv_stages: a
            # leader's own save of ~0.2 ms took 0.75 ms through a thread).
            # So when nothing else is ready to run it is written on the loop's
            # thread. That holds for the leader's own write too (§10.2.1):
            # its AppendEntries are already on the wire (the transport writes
            # an idle connection at once), and a follower's acknowledgement
            # needs the follower's own fsync plus a round trip, so it arrives
            # after the leader's inline fsync anyway and waits in the socket
            # buffer meanwhile (etcd's leader, too, saves its WAL in its raft
            # loop after sending). When other tasks are waiting (HTTP and RPC
            # work on a busy server, many proposers), blocking them for the
            # fsync would cost more: a thread lets them run meanwhile.
            if self._in_memory or self._inline_write_ok():
                if self._in_memory:
                    self.storage.save(save_hs, save_entries)
                else:
                    self._note_save_time(self._timed_save(save_hs, save_entries), inline=True)
                if not by_loop:
                    await trio.lowlevel.checkpoint()
            else:
                took = await trio.to_thread.run_sync(self._timed_save, save_hs, save_entries)
                self._note_save_time(took, inline=False)
            self._stage_write(save_entries, "own_save_done")
            if save_hs is not None:
                self._hard.persisted = save_hs
            if save_entries:
                last = save_entries[-1]
                if by_loop and self._core is not None:
                    # The loop wrote them itself and owns the core: told now.
                    # An event would cost a whole extra pass of the loop per
                    # write (on the leader and every follower), only to
                    # repeat what ``advance(persisted=True)`` reports.
                    self._core.persisted(last.index, last.term)
                else:
                    self._events.append(("persisted", (last.index, last.term)))
                    self._wake.set()
            hs, entries = None, []

        for w in batch:
            if w.snapshot is not None:
                await flush()
                save = functools.partial(
                    self.storage.save_snapshot, w.snapshot, compact_upto=_DROP_ALL
                )
                await trio.to_thread.run_sync(save)
            if w.entries:
                first = w.entries[0].index
                if entries and first <= entries[-1].index:
                    entries = [e for e in entries if e.index < first]
                entries.extend(w.entries)
            if w.hard_state is not None:
                hs = w.hard_state
        await flush()
        for w in batch:
            if w.done is not None:
                w.done.set()
