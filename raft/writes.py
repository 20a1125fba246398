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


class _Future:
    __slots__ = ("_done", "error", "proposed_at", "result")

    def __init__(self) -> None:
        self._done = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.proposed_at = 0.0

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
                        if not await self._write_durably(batch, inline_ok=False):
                            break
                except RaftError as exc:
                    self._fatal = exc
                    log.critical("event=raft_storage_failed id=%s reason=%s", self.config.id, exc)
                    self._fail_all(exc)
                    for w in batch:
                        if w.done is not None:
                            w.done.set()
                    raise

    async def _write_durably(self, batch: list[_Write], *, inline_ok: bool = True) -> bool:
        """Write the backlog, then ``batch``; returns whether all of it is on
        disk. On a failure that can pass, keeps it all as the backlog, refuses
        proposals and steps down (an idle follower's acknowledgements are
        held back by the caller). Before the backoff's retry time, it does
        not even try. Raises ``StorageError`` for any other failure."""
        batch = self._backlog + batch
        self._backlog = []
        if not batch:
            return True
        now = trio.current_time()
        if self._storage.down and not self._storage.backoff.due(now):
            self._backlog = batch
            return False
        try:
            await self._write_batch(batch, inline_ok)
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

    async def _write_batch(self, batch: list[_Write], inline_ok: bool = True) -> None:
        hs: HardState | None = None
        entries: list[Entry] = []

        async def flush() -> None:
            nonlocal hs, entries
            if hs is None and not entries:
                return
            save_hs, save_entries = hs, entries
            self._stage_write(save_entries, "own_save_start")
            # A log append is one small transaction and one fsync (~0.2 ms
            # on an idle disk, several ms on a busy one). A follower's append
            # sits on the commit path whole (its acknowledgement waits for it),
            # and handing it to a worker thread costs more than the write
            # (trio.to_thread: ~0.12 ms for a no-op; a save taking ~0.19 ms
            # inline took ~0.45 ms), so when nothing else is ready to run it
            # is written on the loop's thread. When other tasks are waiting
            # (HTTP and RPC work on a busy server), blocking them for the fsync
            # would cost more: a thread lets them run meanwhile. The leader's
            # own write (``inline_ok`` False: the writer task, §10.2.1) always
            # goes to a thread: while it runs the loop takes the followers'
            # acknowledgements, and two of them commit the entry without it
            # (kv_stages: a follower's ack often arrives while the leader's
            # own fsync is still running).
            if self._in_memory or (
                inline_ok and trio.lowlevel.current_statistics().tasks_runnable == 0
            ):
                self.storage.save(save_hs, save_entries)
                await trio.lowlevel.checkpoint()
            else:
                await trio.to_thread.run_sync(self.storage.save, save_hs, save_entries)
            self._stage_write(save_entries, "own_save_done")
            if save_hs is not None:
                self._hard.persisted = save_hs
            if save_entries:
                last = save_entries[-1]
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
