"""ReadIndexRounds: reads waiting together share one leader round trip."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from meshd.agent.read_index import ReadIndexRounds


class _Leader:
    """A fake leader whose commit index moves on; each fetch takes 10 ms."""

    def __init__(self) -> None:
        self.commit = 0
        self.fetches: list[bool] = []
        self.fail: Exception | None = None

    async def fetch(self, strict: bool) -> int:
        self.fetches.append(strict)
        index = self.commit  # read when the round starts
        await trio.sleep(0.01)
        if self.fail is not None:
            raise self.fail
        return index


async def test_concurrent_reads_share_one_round() -> None:
    leader = _Leader()
    rounds = ReadIndexRounds(leader.fetch)
    got: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rounds.run)
        leader.commit = 7
        async with trio.open_nursery() as readers:
            for _ in range(50):
                readers.start_soon(lambda: _collect(rounds, got, strict=False))
        nursery.cancel_scope.cancel()
    assert got == [7] * 50
    assert leader.fetches == [False]


async def test_a_read_arriving_during_a_round_waits_for_the_next_one() -> None:
    """Its index must reflect writes committed before it arrived."""
    leader = _Leader()
    rounds = ReadIndexRounds(leader.fetch)
    first: list[int] = []
    second: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rounds.run)
        leader.commit = 3
        async with trio.open_nursery() as readers:
            readers.start_soon(lambda: _collect(rounds, first, strict=False))
            await trio.sleep(0.005)  # the first round is in flight
            leader.commit = 4  # a write acknowledged before the second read
            readers.start_soon(lambda: _collect(rounds, second, strict=True))
        nursery.cancel_scope.cancel()
    assert (first, second) == ([3], [4])
    assert leader.fetches == [False, True]  # strict if any waiter of the round is


async def test_a_failed_round_fails_its_waiters_and_the_next_round_runs() -> None:
    leader = _Leader()
    rounds = ReadIndexRounds(leader.fetch)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rounds.run)
        leader.fail = RuntimeError("no leader")
        with pytest.raises(RuntimeError, match="no leader"):
            await rounds.index(strict=False)
        leader.fail = None
        leader.commit = 9
        assert await rounds.index(strict=False) == 9
        nursery.cancel_scope.cancel()


async def _collect(rounds: ReadIndexRounds, out: list[int], *, strict: bool) -> None:
    out.append(await rounds.index(strict=strict))
