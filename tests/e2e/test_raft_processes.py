"""Three raft.kvserver processes over real mTLS on loopback with the segmented log:
they elect a leader, commit 10,000 entries, survive kill -9 of the leader,
and a server restarted from disk far behind catches up by snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from tools.raft_cluster import LocalKVCluster, call, find_leader, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def status(c: LocalKVCluster, sid: str) -> dict[str, Any]:
    resp = await call(c.servers[sid].client_addr, {"op": "status"})
    assert resp["ok"], resp
    result: dict[str, Any] = resp["result"]
    return result


async def converge(c: LocalKVCluster, timeout: float = 20) -> dict[str, dict[str, Any]]:
    """Wait until every live server applied the same index with the same digest."""
    with trio.fail_after(timeout):
        while True:
            sts = {sid: await status(c, sid) for sid in c.alive()}
            if len({(s["applied"], s["digest"]) for s in sts.values()}) == 1:
                return sts
            await trio.sleep(0.1)


async def commit(c: LocalKVCluster, leader: str, count: int) -> dict[str, Any]:
    req = {"op": "bench", "proposers": 32, "seconds": 60, "count": count, "size": 64}
    resp = await call(c.servers[leader].client_addr, req, timeout=90)
    assert resp["ok"], resp
    result: dict[str, Any] = resp["result"]
    assert result["commits"] == count, result
    return result


async def test_three_servers_commit_survive_leader_kill_and_catch_up_by_snapshot(
    tmp_path: Path,
) -> None:
    c = LocalKVCluster(
        tmp_path, base_port=17100, snapshot_threshold=2000, trailing_logs=500, log_level="INFO"
    )
    c.start_all()
    try:
        await wait_ready(c, list(c.servers))
        leader = await find_leader(c)
        await commit(c, leader, 10_000)
        sts = await converge(c)
        assert all(s["applied"] >= 10_000 for s in sts.values()), sts

        # kill -9 the leader: the other two elect a new one and accept writes.
        c.kill(leader)
        with trio.fail_after(10):
            new = await find_leader(c)
        assert new != leader
        resp = await call(c.servers[new].client_addr, {"op": "incr", "key": "after-kill"})
        assert resp == {"ok": True, "result": 1}

        # The old leader, far behind after 5,000 more entries, restarts from
        # its log files and catches up by InstallSnapshot.
        await commit(c, new, 5_000)
        c.start(leader, bootstrap=False)
        await wait_ready(c, [leader])
        sts = await converge(c)
        back = sts[leader]
        assert back["snapshots_installed"] >= 1, back
        assert back["applied"] >= 15_001
        assert back["log_offset"] > 10_000, back
        resp = await call(c.servers[leader].client_addr, {"op": "get", "key": "after-kill"})
        assert resp["ok"] is False and resp["leader"] == c.servers[new].raft_addr
    finally:
        c.stop_all()
