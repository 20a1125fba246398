"""The agent's GC policy (meshd.agent.gc_policy): young passes freeze their
survivors, so a full pass scans only what is new; parked-watcher churn does
not grow the frozen set; a frozen cycle that became garbage is freed by the
complete pass its growth makes due."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from meshd.agent import gc_policy
from meshd.http import App, ErrorMapping, server
from tests.meshd.http._support import RawClient, echo_router, running
from tests.meshd.inproc import InprocClient, inproc_agent


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cycle collector frees it
        self.pad = [0] * 8


@pytest.fixture
def policy() -> Iterator[gc_policy.GcPolicy]:
    before, thresholds = list(gc.callbacks), gc.get_threshold()
    gc.callbacks[:] = [cb for cb in before if not isinstance(cb, gc_policy.GcPolicy)]
    gc.collect()
    try:
        yield gc_policy.install(growth=0.0, floor=20_000)
    finally:
        gc_policy.uninstall()
        gc.callbacks[:] = before
        gc.set_threshold(*thresholds)
        gc.collect()


def test_a_full_pass_scans_only_what_survived_no_young_pass(
    policy: gc_policy.GcPolicy,
) -> None:
    kept = [Node() for _ in range(20_000)]  # long-lived, with cycles
    gc.collect(1)  # a young pass: they survive it and are frozen
    assert policy.freezes >= 1
    assert len(gc.get_objects(2)) < 1_000  # nothing left for a full pass to scan
    assert gc.get_freeze_count() >= 40_000  # each Node and its list
    del kept


def test_no_young_pass_while_the_collector_is_paused(policy: gc_policy.GcPolicy) -> None:
    """A snapshot pauses the collector while its copy of the store is alive
    (registry/state/frozen.py); the wake-batch young pass respects that."""
    gc.disable()
    try:
        policy.young_pass()
        assert policy.young_passes == 0
    finally:
        gc.enable()
    policy.young_pass()
    assert policy.young_passes == 1


def test_frozen_cycles_dropped_are_freed_by_the_complete_pass_once_due(
    policy: gc_policy.GcPolicy,
) -> None:
    nodes = [Node() for _ in range(20_000)]
    gc.collect(1)  # frozen while alive
    frozen = gc.get_freeze_count()
    del nodes  # cyclic garbage that no young or full pass sees now
    gc.collect()
    assert gc.get_freeze_count() >= frozen - 1_000  # still held: frozen
    # as if the heap had grown just past its bound since the last one
    policy.base = sys.getallocatedblocks() - policy.floor - 1_000
    assert policy.due(busy=False) and not policy.due(busy=True)
    assert policy.complete_pass() >= 40_000
    assert policy.complete_passes == 1
    assert gc.get_freeze_count() < frozen - 30_000
    assert not policy.due(busy=False)  # base is the heap after the pass


async def test_govern_runs_the_due_complete_pass_and_uninstalls_when_cancelled(
    autojump_clock: Any,
) -> None:
    before = list(gc.callbacks)
    gc.callbacks[:] = [cb for cb in before if not isinstance(cb, gc_policy.GcPolicy)]
    try:
        policy = gc_policy.install(growth=0.0, floor=0)
        policy.base = 0  # due at the first check
        async with trio.open_nursery() as nursery:
            nursery.start_soon(policy.govern)
            await trio.sleep(gc_policy.CHECK_INTERVAL * 1.5)
            assert policy.complete_passes == 1
            nursery.cancel_scope.cancel()
        assert not any(isinstance(cb, gc_policy.GcPolicy) for cb in gc.callbacks)
        assert gc.get_freeze_count() == 0
    finally:
        gc_policy.uninstall()
        gc.callbacks[:] = before


def churn(node: str) -> dict[str, Any]:
    # Its own service name: the shared answer cache (meshd/api/common.py) is
    # per process, keyed by path and index, so another in-process test's
    # agent must not see this one's answers.
    return {"Node": node, "Address": "10.0.0.1", "Service": {"Service": "gc-churn", "Port": 80}}


async def _park_then_wake(api: InprocClient, node: str, watchers: int) -> None:
    assert (await api.put("/v1/catalog/register", churn(node))).status == 200
    index = (await api.get("/v1/health/service/gc-churn")).index
    answers: list[int] = []

    async def watch() -> None:
        res = await api.get(f"/v1/health/service/gc-churn?index={index}&wait=60s")
        answers.append(res.status)

    async with trio.open_nursery() as nursery:
        for _ in range(watchers):
            nursery.start_soon(watch)
        await trio.sleep(1)
        gc.collect(1)  # a young pass while they are parked: all of it frozen
        assert (await api.put("/v1/catalog/deregister", {"Node": node})).status == 200
    assert answers == [200] * watchers


async def test_watcher_churn_leaves_no_frozen_garbage(autojump_clock: Any) -> None:
    """Blocking queries parked across a young pass are frozen with it; once
    answered they hold no cycle, so reference counting frees them and the
    frozen set does not grow round after round."""
    async with inproc_agent() as (_agent, api):
        policies = [cb for cb in gc.callbacks if isinstance(cb, gc_policy.GcPolicy)]
        assert len(policies) == 1  # the agent installed it
        counts = []
        for r in range(8):
            await _park_then_wake(api, f"n{r}", 300)
            counts.append(gc.get_freeze_count())
        assert policies[0].freezes >= 8
        assert policies[0].young_passes >= 8  # after the wake batches (after_batches)
        # 300 watchers x ~60 objects: 18,000 a round, 108,000 over six if leaked
        assert max(counts[2:]) - min(counts[2:]) < 6_000, counts
    assert not any(isinstance(cb, gc_policy.GcPolicy) for cb in gc.callbacks)


@pytest.mark.e2e
async def test_closed_http_connections_leave_no_cyclic_garbage() -> None:
    """A closed connection is freed by reference counting: frozen while it
    was open (the policy), a cycle through it would stay until a complete
    pass. Its parser held its bound callbacks: 10,000 watchers reconnecting
    left ~230,000 such objects a time."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # garbage cycles land in gc.garbage
    try:
        async with running(App(echo_router(), errors=ErrorMapping())) as port:
            for _ in range(20):
                client = await RawClient.connect(port)
                assert (await client.request("GET", "/v1/json")).status == 200
                await client.aclose()
        gc.collect()
        leaked = [o for o in gc.garbage if isinstance(o, server._Connection)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.collect()
    assert leaked == []


def test_uninstall_restores_the_thresholds_and_unfreezes_the_cycles_the_frozen_heap_kept() -> None:
    """A process that goes on after its agents stopped (tests with agents in
    process) does not inherit the thresholds, nor a full pass over every
    cycle kept frozen, in the middle of what it runs next."""
    before, thresholds = list(gc.callbacks), gc.get_threshold()
    gc.callbacks[:] = [cb for cb in before if not isinstance(cb, gc_policy.GcPolicy)]
    gc.set_threshold(700, 10, 10)
    try:
        gc_policy.install()
        node = Node()
        gc.collect(1)  # survives a young pass: frozen
        assert gc.get_freeze_count() > 0
        gone = weakref.ref(node)
        del node  # garbage now, but a frozen cycle: kept
        gc.collect()
        assert gone() is not None
        uninstalls = gc_policy.uninstalls
        gc_policy.uninstall()
        assert gc_policy.uninstalls == uninstalls + 1  # tests/conftest.py collects then
        gc.collect()
        assert gone() is None
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc_policy.uninstall()
        gc.callbacks[:] = before
        gc.set_threshold(*thresholds)
