"""Writes through a follower of a real 3-server cluster (in-process agents
over mTLS on loopback) travel in Registry.ApplyBatch calls and land in
order, each with its own result."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import trio

from meshd.errors import NoLeaderError
from registry.commands import KVRequest, encode_command
from tests.meshd.test_api_status_operator import cluster, leader_of, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.e2e
async def test_writes_through_a_follower_are_batched_in_order(tmp_path: Path) -> None:
    async with cluster(tmp_path) as nodes:
        leader = await leader_of(nodes)
        follower = next(n for n in nodes if n.name.startswith("s") and n is not leader)
        server = follower.agent.server
        assert server is not None and not server.is_leader()
        lead = leader.agent.server
        assert lead is not None

        async def every_server_advertises_batches() -> bool:
            r = await leader.api.get("/v1/agent/members")
            fb = [m["Tags"].get("fb") for m in r.json() if m["Tags"]["role"] == "consul"]
            return fb == ["1"] * 3 and lead._batch_entries_ok()

        # A current cluster batches: every voter advertises fb (issue 18 review).
        await wait_for(every_server_advertises_batches, 30)
        batches_before = server.write_batcher.batches

        # 100 concurrent writes through the follower: few calls, each its own answer.
        results: dict[int, bool] = {}

        async def put(i: int) -> None:
            cmd = KVRequest(op="set", key=f"fw/{i:03d}", value=str(i).encode())
            results[i] = (await server.write(cmd)).ok

        async with trio.open_nursery() as writers:
            for i in range(100):
                writers.start_soon(put, i)
        assert results == {i: True for i in range(100)}
        batches = server.write_batcher.batches - batches_before
        assert 1 <= batches < 100, batches

        # A failing CAS fails alone, in the same wave as good writes.
        outcome: dict[str, bool] = {}

        async def cas(name: str, index: int) -> None:
            cmd = KVRequest(op="cas", key="fw/000", value=name.encode(), cas=index)
            outcome[name] = (await server.write(cmd)).ok

        current = (await leader.api.get("/v1/kv/fw/000")).json()[0]["ModifyIndex"]
        async with trio.open_nursery() as writers:
            writers.start_soon(cas, "stale", 1)
            writers.start_soon(cas, "fresh", current)
        assert outcome == {"stale": False, "fresh": True}

        # Over HTTP on the follower: a chain of CAS writes, each on the index
        # the previous one answered, lands in order with the right results.
        index = 0
        for step in range(5):
            r = await follower.api.put(f"/v1/kv/fw/chain?cas={index}", raw=str(step).encode())
            assert r.status == 200 and r.json() is True, (step, r.status)
            got = (await follower.api.get("/v1/kv/fw/chain?consistent")).json()[0]
            assert base64.b64decode(got["Value"]) == str(step).encode()
            index = got["ModifyIndex"]
        r = await follower.api.put("/v1/kv/fw/chain?cas=1", raw=b"late")
        assert r.status == 200 and r.json() is False

        async def on_leader() -> bool:
            r = await leader.api.get("/v1/kv/fw/?recurse")
            if r.status != 200:
                return False
            values = {e["Key"]: base64.b64decode(e["Value"] or "") for e in r.json()}
            want = {f"fw/{i:03d}": str(i).encode() for i in range(1, 100)}
            return values.items() >= want.items() and values["fw/chain"] == b"4"

        await wait_for(on_leader, 15)
        entries = (await leader.api.get("/v1/kv/fw/0?recurse")).json()
        indexes = {e["ModifyIndex"] for e in entries if e["Key"] != "fw/000"}
        assert len(indexes) < 99, len(indexes)  # writes shared batch entries

        # A batch that reaches a server that does not lead is refused whole
        # (the follower then reports "No cluster leader" for each write, as
        # for a single forwarded write), and nothing of it is applied.
        cmd = encode_command(KVRequest(op="set", key="fw/misrouted", value=b"x"))
        with pytest.raises(NoLeaderError):
            await server.call_local("Registry.ApplyBatch", {"cmds": [cmd], "fwd": True})
        assert (await leader.api.get("/v1/kv/fw/misrouted?consistent")).status == 404
