"""The leader's own log write runs beside replication (thesis §10.2.1): two
followers' acknowledgements commit an entry while the leader's fsync is
still running, instead of waiting behind it on the loop's thread."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from raft.storage import SqliteStorage
from raft.types import Entry, HardState
from tests.raft.kvfsm import put
from tests.raft.test_node import cluster


class SlowStorage(SqliteStorage):
    """SqliteStorage whose log appends take up to 3 s (a very slow disk)
    while ``slow`` is set, until ``release`` is."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.slow = False
        self.release = threading.Event()
        self.stalled = threading.Event()  # an append is waiting for ``release``

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        if self.slow and entries:
            self.stalled.set()
            self.release.wait(3)
        super().save(hard_state, entries)


async def test_two_followers_commit_while_the_leaders_own_write_is_slow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tests.raft.test_node.SqliteStorage", SlowStorage)
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        await leader.apply(put("warm", 1))
        storage = leader.storage
        assert isinstance(storage, SlowStorage)
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


def _stored_last(storage: SqliteStorage) -> int:
    entries = storage.load().entries
    return entries[-1].index if entries else 0
