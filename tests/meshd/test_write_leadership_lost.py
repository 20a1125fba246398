"""A write that was in the leader's log when leadership moved may still
commit: it is answered with Consul's "leadership lost while committing log"
(HTTP 500), never sent again (which could apply it twice). A write Raft
certainly did not take is sent again as before."""

from __future__ import annotations

from typing import Any

from meshd.agent.server import LEADERSHIP_LOST
from raft.errors import LeadershipLostError, ProposalDroppedError
from registry.commands import ForwardedBatch, KVRequest, decode_command, encode_command
from tests.meshd.inproc import inproc_agent


async def test_ambiguous_writes_are_answered_not_retried(autojump_clock: Any) -> None:
    async with inproc_agent() as (agent, api):
        server = agent.server
        assert server is not None
        real_apply = server.node.apply
        applies: list[bytes] = []

        async def lost_after_append(data: bytes, **kw: Any) -> Any:
            applies.append(data)
            await real_apply(data, **kw)  # in the log and committed: a retry would apply it twice
            raise LeadershipLostError("leadership lost")

        server.node.apply = lost_after_append  # type: ignore[method-assign]
        resp = await api.put("/v1/kv/amb/k", raw=b"v")
        assert resp.status == 500, resp.text
        assert resp.text == LEADERSHIP_LOST
        assert len(applies) == 1

        # A follower's forwarded batch is one entry: in the log when
        # leadership moved, each of its commands is answered with the same
        # error and none is sent again (create-only CAS: applied once each).
        applies.clear()
        cmds = [
            encode_command(KVRequest(op="cas", key=f"amb/{k}", value=b"v", cas=0)) for k in "ab"
        ]
        answer = await server.call_local("Registry.ApplyBatch", {"cmds": cmds, "fwd": True})
        assert [(r["e"], r["m"]) for r in answer["results"]] == [("Internal", LEADERSHIP_LOST)] * 2
        assert [type(decode_command(d)) for d in applies].count(ForwardedBatch) == 1
        server.node.apply = real_apply  # type: ignore[method-assign]
        for k in "ab":  # it did commit, once
            assert (await api.get(f"/v1/kv/amb/{k}")).status == 200


async def test_a_write_raft_did_not_take_is_sent_again(autojump_clock: Any) -> None:
    async with inproc_agent() as (agent, api):
        server = agent.server
        assert server is not None
        real_apply = server.node.apply
        calls: list[bytes] = []

        async def dropped_once(data: bytes, **kw: Any) -> Any:
            calls.append(data)
            if len(calls) == 1:
                raise ProposalDroppedError("leadership lost before the proposal reached the log")
            return await real_apply(data, **kw)

        server.node.apply = dropped_once  # type: ignore[method-assign]
        resp = await api.put("/v1/kv/again/k?cas=0", raw=b"v")  # create-only: applied once
        assert resp.status == 200 and resp.json() is True
        assert len(calls) == 2
