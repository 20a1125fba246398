"""The runner against real local servers and processes, on the real clock,
but for the hung-check race, which runs on trio's autojump clock (the
servers live in the test's trio run, so fake time still sees real sockets):
its 100 ms spacing assertions failed on a loaded machine."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
import trio

from meshd.agent.local import LocalState
from meshd.checks.base import CRITICAL, PASSING, WARNING
from meshd.checks.runner import CheckRunner

from .fakes import NODE, add_check, status
from .servers import start_http, wait_for

pytestmark = pytest.mark.e2e


class NoJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


class RecordingLocal(LocalState):
    """Local state that logs every status written to it."""

    def __init__(self) -> None:
        super().__init__(NODE, None)
        self.history: list[tuple[str, str, str]] = []

    def update_check(self, check_id: str, status: str, output: str) -> bool:
        self.history.append(("set", check_id, status))
        return super().update_check(check_id, status, output)


def runner_for(local: LocalState, **kw: Any) -> CheckRunner:
    return CheckRunner(local, rng=NoJitter(), min_interval=0.01, **kw)


async def test_a_hanging_http_check_times_out_without_delaying_a_fast_one(
    nursery: trio.Nursery, autojump_clock: Any
) -> None:
    server = await start_http(nursery)
    local = LocalState(NODE, None)
    add_check(
        local,
        ID="hang",
        HTTP=server.url("/hang"),
        Interval="10s",
        Timeout="600ms",
        Status="passing",
    )
    add_check(local, ID="fast", HTTP=server.url("/ok"), Interval="100ms")
    times: list[tuple[float, str]] = []

    def on_result(kind: str, st: str, duration: float) -> None:
        # the hung probe reports once, at ~0.6 s, after a long duration
        times.append((trio.current_time(), "hang" if duration > 0.5 else "fast"))

    runner = runner_for(local, on_result=on_result)
    async with trio.open_nursery() as inner:
        start = trio.current_time()
        await inner.start(runner.run)
        await wait_for(lambda: status(local, "hang")[0] == CRITICAL)
        hung_for = trio.current_time() - start
        await trio.sleep(1.5 - hung_for)
        inner.cancel_scope.cancel()
    assert 0.6 <= hung_for < 1.2
    _st, output = status(local, "hang")
    assert "Client.Timeout exceeded" in output
    assert status(local, "fast") == (
        PASSING,
        f"HTTP GET {server.url('/ok')}: 200 OK Output: all good",
    )
    fast = [t for t, kind in times if kind == "fast"]
    assert len(fast) >= 10 and len(times) == len(fast) + 1
    gaps = [b - a for a, b in itertools.pairwise(fast)]
    assert max(gaps) < 0.4, gaps  # a fast check held up by the hung one would wait 0.6 s


async def test_http_status_transitions_with_failures_before_critical(
    nursery: trio.Nursery,
) -> None:
    server = await start_http(nursery)
    local = RecordingLocal()
    add_check(
        local,
        ID="web",
        HTTP=server.url("/toggle"),
        Interval="50ms",
        FailuresBeforeCritical=3,
        Status="passing",
    )
    runner = runner_for(
        local, on_result=lambda kind, st, d: local.history.append(("result", kind, st))
    )
    async with trio.open_nursery() as inner:
        await inner.start(runner.run)
        await wait_for(lambda: status(local, "web")[1].endswith("200 OK Output: toggled"))
        mark = len(local.history)
        server.toggle_status = 500
        await wait_for(lambda: status(local, "web")[0] == CRITICAL)
        after_fail = local.history[mark:]
        server.toggle_status = 429
        await wait_for(lambda: status(local, "web")[0] == WARNING)
        server.toggle_status = 201
        await wait_for(lambda: status(local, "web")[0] == PASSING)
        inner.cancel_scope.cancel()
    # the first 500 result on: two failures record nothing, the third sets critical
    first = next(i for i, e in enumerate(after_fail) if e == ("result", "http", CRITICAL))
    assert after_fail[first : first + 4] == [
        ("result", "http", CRITICAL),
        ("result", "http", CRITICAL),
        ("result", "http", CRITICAL),
        ("set", "web", CRITICAL),
    ]
    assert ("set", "web", CRITICAL) not in after_fail[:first]


async def test_script_check_through_the_runner() -> None:
    local = LocalState(NODE, None)
    add_check(local, ID="s", Args=["sh", "-c", "echo hi; exit 1"], Interval="1s")
    async with trio.open_nursery() as nursery:
        await nursery.start(runner_for(local, enable_script_checks=True).run)
        await wait_for(lambda: status(local, "s")[0] != CRITICAL)
        nursery.cancel_scope.cancel()
    assert status(local, "s") == (WARNING, "hi\n")


async def test_tcp_check_follows_a_listener_going_away() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    local = LocalState(NODE, None)
    add_check(local, ID="t", TCP=f"127.0.0.1:{port}", Interval="50ms")
    async with trio.open_nursery() as nursery:
        await nursery.start(runner_for(local).run)
        await wait_for(lambda: status(local, "t")[0] == PASSING)
        await listeners[0].aclose()
        await wait_for(lambda: status(local, "t")[0] == CRITICAL)
        nursery.cancel_scope.cancel()
    assert status(local, "t")[1] == f"dial tcp 127.0.0.1:{port}: connect: connection refused"
