"""Blocking queries (Consul semantics) with trio's autojump clock: no real waiting."""

from __future__ import annotations

import functools
import itertools
import random

import pytest
import trio

from registry import queries
from registry.blocking import MAX_WAIT, wait_for_change
from registry.commands import KVRequest
from registry.state.watch import WatchRegistry, WatchSet

from .builders import Log, reg, svc


def _web(log: Log):  # type: ignore[no-untyped-def]
    return lambda ws: queries.health_service_nodes(log.store, ws, "web")


async def test_min_index_zero_returns_at_once(log: Log, autojump_clock: trio.abc.Clock) -> None:
    log.ok(reg("n1", svc("web")))
    start = trio.current_time()
    idx, rows = await wait_for_change(_web(log), 0, 60, rng=random.Random(1))
    assert (idx, len(rows)) == (1, 1) and trio.current_time() == start


async def test_wakes_when_the_service_changes(log: Log, autojump_clock: trio.abc.Clock) -> None:
    log.ok(reg("n1", svc("web")))
    got: list[int] = []

    async def reader() -> None:
        idx, _ = await wait_for_change(_web(log), 1, 300, rng=random.Random(1))
        got.append(idx)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.sleep(5)
        log.ok(reg("n2", svc("db")))  # another service: must not wake it
        await trio.sleep(5)
        assert got == []
        log.ok(reg("n2", svc("web")))
    assert got == [3]
    assert trio.current_time() < 20


async def test_times_out_with_jitter_and_unchanged_index(
    log: Log, autojump_clock: trio.abc.Clock
) -> None:
    log.ok(reg("n1", svc("web")))
    start = trio.current_time()
    idx, _ = await wait_for_change(_web(log), 1, 16, rng=random.Random(7))
    waited = trio.current_time() - start
    assert idx == 1
    assert 16 <= waited <= 17  # at most timeout/16 of jitter


async def test_timeout_is_capped_at_ten_minutes(log: Log, autojump_clock: trio.abc.Clock) -> None:
    start = trio.current_time()
    await wait_for_change(
        lambda ws: queries.kv_get(log.store, ws, "k"), 1, 3600, rng=random.Random(0)
    )
    assert trio.current_time() - start <= MAX_WAIT * (1 + 1 / 16)


async def test_index_behind_min_index_returns_at_once(
    log: Log, autojump_clock: trio.abc.Clock
) -> None:
    log.ok(KVRequest(op="set", key="k", value=b"1"))
    start = trio.current_time()
    idx, _ = await wait_for_change(
        lambda ws: queries.kv_get(log.store, ws, "k"), 50, 300, rng=random.Random(0)
    )
    assert idx == 1 and trio.current_time() == start


async def test_restore_wakes_every_reader(log: Log, autojump_clock: trio.abc.Clock) -> None:
    log.ok(KVRequest(op="set", key="k", value=b"1"))
    snap = log.fsm.snapshot()
    log.ok(KVRequest(op="set", key="k", value=b"2"))
    got: list[int] = []

    async def reader() -> None:
        idx, _ = await wait_for_change(
            lambda ws: queries.kv_get(log.store, ws, "k"), 2, 300, rng=random.Random(0)
        )
        got.append(idx)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.sleep(1)
        log.fsm.restore(snap)  # state went back to index 1: the reader must reset
    assert got == [1]
    assert trio.current_time() < 5


async def test_spurious_wake_keeps_waiting(log: Log, autojump_clock: trio.abc.Clock) -> None:
    log.ok(KVRequest(op="set", key="k", value=b"1"))
    fired_store = log.store

    def query(ws: WatchSet) -> tuple[int, None]:
        fired_store.watch(ws, ("kv", "k"))
        return 1, None

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(wait_for_change, rng=random.Random(0)), query, 1, 100)
        await trio.sleep(1)
        log.ok(KVRequest(op="set", key="k", value=b"2"))  # fires, but the index stays 1
    assert trio.current_time() - start >= 100


async def test_cancellation_unregisters(log: Log, autojump_clock: trio.abc.Clock) -> None:
    log.ok(reg("n1", svc("web")))
    with trio.move_on_after(5):
        await wait_for_change(_web(log), 1, 300, rng=random.Random(0))
    assert not log.store.watches.has("service:web")


async def test_watch_fired_before_registering_answers_without_parking(
    log: Log, autojump_clock: trio.abc.Clock
) -> None:
    registry = WatchRegistry()
    stale = registry.get("k")
    registry.fire(["k"])  # as if a write slipped in between the read and the wait
    calls: list[int] = []

    def query(ws: WatchSet) -> tuple[int, None]:
        calls.append(1)
        ws.add(stale if len(calls) == 1 else registry.get("k"))
        return len(calls), None

    start = trio.current_time()
    idx, _ = await wait_for_change(query, 1, 300, rng=random.Random(0))
    assert (idx, len(calls)) == (2, 2)
    assert trio.current_time() == start


async def test_a_burst_of_blocking_queries_starts_in_bounded_rounds(
    autojump_clock: trio.abc.Clock,
) -> None:
    """2,000 clients re-asking at once do not all run their first read in the
    same scheduler round (it would hold the loop, and Raft, for all of them):
    a probe task running once per round sees at most two batches in between."""
    from registry.blocking import WAKE_BATCH

    calls = 0

    def query(ws: WatchSet) -> tuple[int, None]:
        nonlocal calls
        calls += 1
        return 5, None

    samples = [0]

    async def probe() -> None:
        while calls < 2000:
            samples.append(calls)
            await trio.lowlevel.checkpoint()
        samples.append(calls)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe)
        for i in range(2000):
            nursery.start_soon(
                functools.partial(wait_for_change, query, 5, 10, rng=random.Random(i))
            )
        with trio.fail_after(5):
            while calls < 2000:
                await trio.sleep(0.001)
        nursery.cancel_scope.cancel()
    steps = [b - a for a, b in itertools.pairwise(samples)]
    assert max(steps) <= 2 * WAKE_BATCH, steps
    assert len([s for s in steps if s]) >= 2000 // (2 * WAKE_BATCH)


def test_the_wake_batch_shrinks_after_a_long_round_and_grows_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a loaded machine every answer costs more: a round that ran 10x over
    the budget lets a tenth as many through next time (never fewer than
    MIN_BATCH), and quick rounds grow the batch back to WAKE_BATCH."""
    from registry import blocking
    from registry.blocking import MIN_BATCH, ROUND_BUDGET, WAKE_BATCH, _Timers

    # A still clock: on the real one, the test's own process losing its core
    # for over ROUND_BUDGET between two lines made a "quick" round a long one.
    now = 1000.0
    monkeypatch.setattr(blocking.time, "perf_counter", lambda: now)
    timers = _Timers()
    timers.released_at = now - 10 * ROUND_BUDGET
    timers._adapt()
    assert MIN_BATCH <= timers.batch <= WAKE_BATCH // 10
    timers.released_at = now - 1000 * ROUND_BUDGET
    timers._adapt()
    assert timers.batch == MIN_BATCH
    grown = []
    for _ in range(40):
        timers.released_at = now - ROUND_BUDGET / 4
        timers._adapt()
        grown.append(timers.batch)
    assert grown[0] > MIN_BATCH and timers.batch == WAKE_BATCH, grown


async def test_after_batches_hooks_run_once_per_round_that_ran_a_batch(
    log: Log, autojump_clock: trio.abc.Clock
) -> None:
    """1,000 readers woken by one write run in a few batches; a hook given
    to ``after_batches`` runs after each of them (the agent's young GC pass),
    and not while nothing is woken; ``seconds_since_batch`` then counts from
    the last batch."""
    from registry.blocking import WAKE_BATCH, after_batches, seconds_since_batch

    log.ok(reg("n1", svc("web")))
    rounds: list[int] = []
    answered: list[int] = []
    remove = after_batches(lambda: rounds.append(len(answered)))

    async def reader() -> None:
        idx, _ = await wait_for_change(_web(log), 1, 300, rng=random.Random(1))
        answered.append(idx)

    try:
        async with trio.open_nursery() as nursery:
            for _ in range(1000):
                nursery.start_soon(reader)
            await trio.sleep(5)
            parked = len(rounds)  # starting the readers went through admit() batches
            await trio.sleep(50)
            assert len(rounds) == parked  # nothing woken: no hook
            log.ok(reg("n2", svc("web")))
        assert len(answered) == 1000
        woken = rounds[parked:]
        assert 1000 // WAKE_BATCH <= len(woken) <= 1000 // 16 + 2, woken
        # the last runs once its batch was scheduled: most of it has answered
        assert woken == sorted(woken) and woken[-1] >= 1000 - WAKE_BATCH, woken
        assert 0 <= seconds_since_batch() < 5
    finally:
        remove()
    rounds.clear()
    log.ok(reg("n3", svc("web")))
    assert rounds == []  # removed
