"""A write that was in the leader's log when leadership moved may still
commit: it is answered with Consul's "leadership lost while committing log"
(HTTP 500), never sent again (which could apply it twice). A write Raft
certainly did not take is sent again as before."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from meshd.agent.server import LEADERSHIP_LOST
from raft.errors import LeadershipLostError, ProposalDroppedError
from registry.commands import KVRequest, encode_command
from tests.meshd.inproc import inproc_agent


async def test_ambiguous_writes_are_answered_not_retried(autojump_clock: Any) -> None:
    async with inproc_agent() as (agent, api):
        server = agent.server
        assert server is not None
        real_apply, real_batch = server.node.apply, server.node.apply_batch
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

        # A follower's forwarded batch: the ambiguous command is answered with
        # the same error, the command Raft never took is retried and applied.
        async def mixed(batch: Sequence[bytes]) -> list[Any]:
            return [LeadershipLostError("leadership lost"), ProposalDroppedError("transfer")]

        server.node.apply_batch = mixed  # type: ignore[method-assign]
        server.node.apply = real_apply  # type: ignore[method-assign]
        cmds = [encode_command(KVRequest(op="set", key=f"amb/{k}", value=b"v")) for k in "ab"]
        answer = await server.call_local("Registry.ApplyBatch", {"cmds": cmds, "fwd": True})
        first, second = answer["results"]
        assert first["e"] == "Internal" and first["m"] == LEADERSHIP_LOST
        assert second["w"]["ok"] is True
        server.node.apply_batch = real_batch  # type: ignore[method-assign]
        assert (await api.get("/v1/kv/amb/a")).status == 404
        assert (await api.get("/v1/kv/amb/b")).status == 200


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
