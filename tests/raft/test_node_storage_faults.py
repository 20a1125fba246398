"""The trio driver when its disk fills up (issue 13, item 13): a server
whose log writes fail stays up, refuses writes, hands leadership away,
backs off its retries and catches up by itself once space returns.

The fault is injected here (a storage whose writes fail like a full disk);
tests/e2e/test_full_disk.py fills a real tmpfs under a real cluster.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from raft.errors import NotLeaderError, ProposalDroppedError, StorageUnavailableError
from raft.node import NodeConfig, RaftNode
from raft.types import Configuration, Entry, HardState, Role, Server, Snapshot
from raft.wal import SegmentLogStorage
from tests.raft.kvfsm import KVFSM, put
from tests.raft.local_net import LocalNetwork
from tests.raft.test_node import TICK, cluster


class FillableStorage(SegmentLogStorage):
    """SegmentLogStorage whose writes fail as on a full disk while ``full``."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.full = False
        self.snapshot_full = False
        self.failed_writes = 0
        self.snapshot_attempts = 0

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        if self.full and (hard_state is not None or entries):
            self.failed_writes += 1
            raise StorageUnavailableError("save failed: database or disk is full")
        super().save(hard_state, entries)

    def save_snapshot(self, snapshot: Snapshot, *, compact_upto: int) -> None:
        self.snapshot_attempts += 1
        if self.full or self.snapshot_full:
            raise StorageUnavailableError("cannot write snapshot: [Errno 28] No space left")
        super().save_snapshot(snapshot, compact_upto=compact_upto)


async def wait_for(predicate: object, timeout: float = 5) -> None:
    with trio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]
            await trio.sleep(TICK)


async def test_a_leader_that_cannot_persist_steps_down_stays_up_and_catches_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tests.raft.test_node.SegmentLogStorage", FillableStorage)
    async with cluster(tmp_path) as c:
        old = await c.leader()
        for i in range(5):
            await old.apply(put(f"k{i}", i))
        storage = old.storage
        assert isinstance(storage, FillableStorage)
        storage.full = True
        # Refused with an error (the write in flight when the disk filled
        # loses its leader), never held.
        with pytest.raises((StorageUnavailableError, NotLeaderError, ProposalDroppedError)):
            with trio.fail_after(5):
                for i in range(5, 20):
                    await old.apply(put(f"k{i}", i))
        await wait_for(lambda: not old.is_leader(), 5)
        new = await c.leader()
        assert new is not old
        acked = {}
        for i in range(20, 30):
            await new.apply(put(f"k{i}", i))
            acked[f"k{i}"] = i
        assert old.core.role == Role.FOLLOWER  # up, as a follower
        attempts = storage.failed_writes
        await trio.sleep(1)
        assert storage.failed_writes - attempts <= 15  # backed off, not a tight loop
        storage.full = False
        fsm = c.fsms[old.config.id]
        await wait_for(lambda: all(fsm.data.get(k) == v for k, v in acked.items()), 10)
        await wait_for(lambda: not old._storage.down, 10)
        # What it holds is on its disk too.
        state = storage.load()
        assert max(e.index for e in state.entries) >= new.core.log.commit - 1


async def test_a_lone_server_refuses_writes_while_full_and_recovers(tmp_path: Path) -> None:
    storage = FillableStorage(tmp_path / "a")
    conf = Configuration((Server("a", "a:1"),))
    fsm = KVFSM()
    node = RaftNode(
        NodeConfig("a", "a:1", tick_interval=TICK),
        storage,
        fsm,
        LocalNetwork().transport("a"),
        rng=random.Random(1),
        bootstrap=conf,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await node.wait_for_leader(2)
        assert await node.apply(put("a", 1)) is True
        storage.full = True
        with trio.fail_after(5):
            with pytest.raises(StorageUnavailableError, match="disk is full"):
                await node.apply(put("lost?", 1))
            with pytest.raises(StorageUnavailableError, match="writes are refused"):
                await node.apply(put("b", 2))
        assert node.is_leader()  # no one to hand over to; still serving reads
        assert await node.read_barrier() >= 1
        storage.full = False
        with trio.fail_after(10):
            while True:
                try:
                    assert await node.apply(put("b", 2)) is True
                    break
                except StorageUnavailableError:
                    await trio.sleep(0.05)
        assert fsm.data["a"] == 1 and fsm.data["b"] == 2
        nursery.cancel_scope.cancel()
    state = SegmentLogStorage(tmp_path / "a").load()
    assert state.hard_state.term >= 1 and len(state.entries) >= 3


@pytest.mark.slow
async def test_failed_snapshots_are_retried_with_backoff_not_on_every_pass(
    tmp_path: Path,
) -> None:
    storage = FillableStorage(tmp_path / "a")
    storage.snapshot_full = True
    conf = Configuration((Server("a", "a:1"),))
    node = RaftNode(
        NodeConfig("a", "a:1", tick_interval=TICK, snapshot_threshold=5),
        storage,
        KVFSM(),
        LocalNetwork().transport("a"),
        rng=random.Random(1),
        bootstrap=conf,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await node.wait_for_leader(2)
        for i in range(40):
            await node.apply(put(f"k{i}", i))
        await trio.sleep(2.5)
        # Tries at 0, 1 and 3 s (doubling): not one per loop pass.
        assert 1 <= storage.snapshot_attempts <= 3
        storage.snapshot_full = False
        await trio.sleep(2.5)
        assert node.status().snapshot_index >= 40
        nursery.cancel_scope.cancel()
