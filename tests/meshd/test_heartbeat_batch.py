"""A follower forwards the heartbeats it receives together (HeartbeatBatcher)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import trio

from meshd.agent.liveness import HeartbeatBatcher
from meshd.errors import NoLeaderError


async def test_heartbeats_within_the_window_are_one_forwarded_call(autojump_clock: Any) -> None:
    calls: list[list[str]] = []

    async def forward(nodes: Sequence[str]) -> Any:
        calls.append(list(nodes))
        await trio.sleep(0.005)  # the round trip to the leader
        return {"ok": True, "ttl": 5.0}

    batcher = HeartbeatBatcher(forward, window=0.02)
    answers: dict[str, Any] = {}

    async def beat(node: str) -> None:
        answers[node] = await batcher.beat(node)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        async with trio.open_nursery() as beats:
            for i in range(200):
                beats.start_soon(beat, f"n{i:03d}")
        # A heartbeat after the batch left goes in the next one.
        await beat("late")
        nursery.cancel_scope.cancel()
    assert len(calls) == 2
    assert calls[0] == [f"n{i:03d}" for i in range(200)]
    assert calls[1] == ["late"]
    assert all(a == {"ok": True, "ttl": 5.0} for a in answers.values())
    assert len(answers) == 201


async def test_a_failed_forward_fails_every_heartbeat_of_its_batch_only(
    autojump_clock: Any,
) -> None:
    fail = [True]

    async def forward(nodes: Sequence[str]) -> Any:
        if fail[0]:
            fail[0] = False
            raise NoLeaderError()
        return {"ok": True}

    batcher = HeartbeatBatcher(forward, window=0.02)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        with pytest.raises(NoLeaderError):
            await batcher.beat("a")
        assert await batcher.beat("a") == {"ok": True}
        nursery.cancel_scope.cancel()
