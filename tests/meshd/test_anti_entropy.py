"""Anti-entropy's loop under trio's MockClock: when a full sync runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import trio

from meshd.agent.local import LocalState
from meshd.agent.sync import AntiEntropy, NodeInfo
from meshd.agent.wire import ReadOptions, ReadResult, WriteResult
from meshd.defs.definitions import parse_service
from registry.commands import Command


class EmptyCatalog:
    """Servers that accept every write and hold nothing (each pass writes
    again); blocking reads wait out their ``wait``, as with no change."""

    def __init__(self) -> None:
        self.writes = 0

    async def write(self, cmd: Command) -> WriteResult:
        self.writes += 1
        return WriteResult(True, True)

    async def read(self, name: str, args: Mapping[str, Any], opts: ReadOptions) -> ReadResult:
        if opts.index:
            await trio.sleep(opts.wait)
        return ReadResult(None, 1, True, 0.0, "stale")


async def test_trigger_full_runs_a_full_sync_at_once_while_the_loop_is_idle(
    autojump_clock: Any,
) -> None:
    # A join or reload calls trigger_full while the loop waits for local
    # changes; the full pass must not wait for the next interval (60 s).
    local = LocalState("n1", None)
    local.add_service(parse_service({"ID": "web-1", "Name": "web", "Port": 80}, node="n1"))
    backend = EmptyCatalog()
    sync = AntiEntropy(local, backend, NodeInfo("n1", "id-1", "127.0.0.1", "dc1", {}, {}))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sync.run)
        await trio.sleep(5)
        assert sync.syncs == 1  # the first pass, then idle
        first = sync.last_full_sync
        sync.trigger_full()
        await trio.sleep(1)
        assert sync.syncs == 2, "trigger_full waited for the interval"
        assert sync.last_full_sync is not None and first is not None
        assert sync.last_full_sync > first
        nursery.cancel_scope.cancel()


class NodeOnlyCatalog(EmptyCatalog):
    """Servers holding this agent's node (matching) with a serfHealth check
    of ``serf`` status, or none."""

    def __init__(self, serf: str | None) -> None:
        super().__init__()
        self.serf = serf

    async def read(self, name: str, args: Mapping[str, Any], opts: ReadOptions) -> ReadResult:
        if opts.index:
            await trio.sleep(opts.wait)
        if name == "catalog.node":
            node = {"ID": "id-1", "Address": "127.0.0.1", "TaggedAddresses": {}, "Meta": {}}
            return ReadResult({"Node": node, "Services": {}}, 1, True, 0.0, "stale")
        checks = [{"CheckID": "serfHealth", "Status": self.serf}] if self.serf else []
        return ReadResult(checks, 1, True, 0.0, "stale")


async def test_a_critical_serf_health_is_left_to_the_leader_and_a_missing_one_written(
    autojump_clock: Any,
) -> None:
    node = NodeInfo("n1", "id-1", "127.0.0.1", "dc1", {}, {})
    critical = NodeOnlyCatalog("critical")
    assert await AntiEntropy(LocalState("n1", None), critical, node).sync(full=True) == 0
    assert critical.writes == 0  # the next heartbeat makes it passing
    missing = NodeOnlyCatalog(None)
    assert await AntiEntropy(LocalState("n1", None), missing, node).sync(full=True) == 1
