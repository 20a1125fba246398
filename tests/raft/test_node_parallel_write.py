"""The leader's own log write (thesis §10.2.1): an idle leader writes on the
loop's thread (cheaper than a worker thread's round trip), but once a write
showed its disk slow, writes run beside replication on a worker thread, and
two followers' acknowledgements commit an entry while the leader's fsync is
still running instead of waiting behind it on the loop's thread."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from raft import writes as raft_writes
from raft.node import NodeConfig, RaftNode
from raft.types import Configuration, Entry, HardState, Server
from raft.wal import SegmentLogStorage
from raft.writes import SLOW_INLINE_WRITE
from tests.raft.kvfsm import KVFSM, put
from tests.raft.test_node import cluster


class SlowStorage(SegmentLogStorage):
    """SegmentLogStorage whose log appends take up to 3 s (a very slow disk)
    while ``slow`` is set, until ``release`` is."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.slow = False
        self.delay = 0.0  # seconds every log append takes
        self.release = threading.Event()
        self.stalled = threading.Event()  # an append is waiting for ``release``

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        if entries:
            time.sleep(self.delay)
        if self.slow and entries:
            self.stalled.set()
            self.release.wait(3)
        super().save(hard_state, entries)


async def test_two_followers_commit_while_the_leaders_own_write_is_slow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tests.raft.test_node.SegmentLogStorage", SlowStorage)
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        await leader.apply(put("warm", 1))
        storage = leader.storage
        assert isinstance(storage, SlowStorage)
        # One write slower than SLOW_INLINE_WRITE shows the disk slow: the
        # writes after it go to a worker thread.
        storage.delay = SLOW_INLINE_WRITE * 2
        await leader.apply(put("slow-disk", 1))
        storage.delay = 0.0
        storage.slow = True
        with trio.fail_after(2):  # well before the stalled write gives up
            await leader.apply(put("k", 2))
        # Committed and applied by the leader while its own append has not
        # finished: it is waiting for ``release`` (or its worker thread has
        # not even started it yet, on a loaded machine).
        with trio.fail_after(2):
            while not storage.stalled.is_set():
                await trio.sleep(0.01)
        assert not storage.release.is_set()
        storage.slow = False
        storage.release.set()
        with trio.fail_after(5):
            while leader.core.log.last_index() > _stored_last(storage):
                await trio.sleep(0.01)


def _stored_last(storage: SegmentLogStorage) -> int:
    entries = storage.load().entries
    return entries[-1].index if entries else 0


class ThreadRecordingStorage(SegmentLogStorage):
    """SegmentLogStorage that records which thread ran each log append, each
    taking at least ``delay`` seconds."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.delay = 0.0
        self.threads: list[int] = []

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        if entries:
            self.threads.append(threading.get_ident())
            time.sleep(self.delay)
        super().save(hard_state, entries)


@asynccontextmanager
async def lone_leader(tmp: Path) -> AsyncIterator[tuple[RaftNode, ThreadRecordingStorage]]:
    """A one-server cluster on ``ThreadRecordingStorage``, leader and past
    its first write."""
    storage = ThreadRecordingStorage(tmp)
    conf = Configuration((Server("a", "a:1"),))
    node = RaftNode(NodeConfig("a", "a:1", tick_interval=0.5), storage, KVFSM(), bootstrap=conf)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await node.wait_for_leader(2)
        await node.apply(put("warm", 0))
        yield node, storage
        nursery.cancel_scope.cancel()


async def test_idle_leader_writes_inline_until_one_write_is_slow(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An idle leader writes its own log on the loop's thread (a worker
    # thread's round trip costs more than the fsync); one write slower than
    # SLOW_INLINE_WRITE sends the writes after it to a worker thread, so a
    # slow disk does not hold the loop (heartbeats, acknowledgements) again.
    # Until the deliberately slow write, no real fsync may count as slow (on
    # a loaded machine one can take over 20 ms and rightly move the writes
    # after it to a thread, which is not what the first half checks).
    monkeypatch.setattr(raft_writes, "SLOW_INLINE_WRITE", 60.0)
    main = threading.get_ident()
    async with lone_leader(tmp_path) as (node, storage):
        storage.threads.clear()
        for i in range(5):
            await node.apply(put("k", i))
        # The ticker (every 0.5 s) is the only other task that could be
        # runnable at the moment of a write; all but a rare one are inline.
        assert storage.threads.count(main) >= 4, storage.threads
        monkeypatch.setattr(raft_writes, "SLOW_INLINE_WRITE", SLOW_INLINE_WRITE)
        storage.delay = SLOW_INLINE_WRITE * 2
        await node.apply(put("slow", 1))
        assert storage.threads[-1] == main  # this one still inline: it was not known slow
        storage.delay = 0.0
        storage.threads.clear()
        for i in range(3):
            await node.apply(put("after", i))
        assert storage.threads and main not in storage.threads, storage.threads
        assert "event=raft_slow_log_write id=a" in caplog.text


async def test_tasks_runnable_reads_trios_run_queue_not_every_descriptor() -> None:
    """The inline-write check counts what trio would run next, as
    ``current_statistics`` does, without walking every registered socket."""
    base = raft_writes.tasks_runnable()
    assert base == trio.lowlevel.current_statistics().tasks_runnable
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(trio.sleep, 0)  # queued, not run yet
        assert raft_writes.tasks_runnable() == base + 3
        assert raft_writes.tasks_runnable() == trio.lowlevel.current_statistics().tasks_runnable


async def test_busy_leader_writes_inline_while_its_saves_are_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue #18: with other tasks ready to run (HTTP work on a busy server),
    # a disk whose recent saves averaged under FAST_SAVE is still written on
    # the loop's thread (a worker thread's round trip costs more CPU than the
    # write holds the tasks up); once the average is over it, writes go to a
    # worker thread while the tasks run. FAST_SAVE is set either side of
    # every real save here (fsyncs on a loaded machine vary too much).
    monkeypatch.setattr(raft_writes, "SLOW_INLINE_WRITE", 60.0)
    monkeypatch.setattr(raft_writes, "FAST_SAVE", 60.0)
    main = threading.get_ident()
    async with lone_leader(tmp_path) as (node, storage):
        # Other tasks ready at every write (which of them trio has queued at
        # that instant depends on the order it runs a batch in).
        monkeypatch.setattr(raft_writes, "tasks_runnable", lambda: 4)
        storage.threads.clear()
        for i in range(5):
            await node.apply(put("fast", i))
        assert storage.threads and set(storage.threads) == {main}, storage.threads
        monkeypatch.setattr(raft_writes, "FAST_SAVE", 1e-9)
        storage.threads.clear()
        for i in range(5):
            await node.apply(put("slower", i))
        assert storage.threads and main not in storage.threads, storage.threads


def test_save_average_follows_inline_saves_and_probes_after_thread_saves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(raft_writes, "tasks_runnable", lambda: 4)  # a busy loop
    writes = raft_writes.DurableWrites()
    assert writes._save_average == float("inf")  # none timed: not known fast
    writes._inline_after = -1.0

    async def main() -> None:
        assert not writes._inline_write_ok()
        writes._note_save_time(0.0001, inline=True)
        assert writes._save_average == pytest.approx(0.0001)
        assert writes._inline_write_ok()
        for _ in range(40):  # a disk that became slow: the average follows
            writes._note_save_time(0.004, inline=True)
        assert writes._save_average > raft_writes.FAST_SAVE
        assert not writes._inline_write_ok()
        # Saves on a worker thread (timed with their wait for the GIL) leave
        # the average alone; every PROBE_EVERY-th write is inline to retime.
        slow = writes._save_average
        for _ in range(raft_writes.PROBE_EVERY - 1):
            writes._note_save_time(0.0001, inline=False)
            assert not writes._inline_write_ok()
        assert writes._save_average == slow
        writes._note_save_time(0.0001, inline=False)
        assert writes._inline_write_ok()
        writes._note_save_time(0.0001, inline=True)  # the probe: fast again
        assert writes._save_average < slow and writes._thread_saves == 0

    trio.run(main)
