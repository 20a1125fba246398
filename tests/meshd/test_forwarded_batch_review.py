"""Issue 18 review of ForwardedBatch (type 90): only the leader builds one,
an inner command that does not decode fails alone, results that expose
indexes never share an entry, and a cluster with a server that cannot
apply type 90 gets no batch entry."""

from __future__ import annotations

from typing import Any, cast

import pytest
import trio

from meshd.agent.members import BATCH_META, batch_capable
from meshd.agent.rpc_rules import rule_for
from meshd.errors import InvalidArgument, MeshdError
from meshd.wire import WriteResult
from registry.batch_split import split_entries
from registry.commands import (
    ACLTokenSet,
    Command,
    ForwardedBatch,
    KVRequest,
    TxnKVOp,
    TxnOp,
    TxnRequest,
    command_type,
    encode_command,
)
from registry.records import ACLToken, Node
from registry.results import ErrorCode, Result, TxnResponse, failed
from tests.meshd.inproc import inproc_agent

GARBAGE_BATCH = encode_command(ForwardedBatch(cmds=(b"\xc1garbage",)))


def _kv(key: str, value: bytes = b"v") -> bytes:
    return encode_command(KVRequest(op="set", key=key, value=value))


def test_the_batch_type_is_read_without_decoding_the_body() -> None:
    assert command_type(GARBAGE_BATCH) == ForwardedBatch.TYPE
    assert command_type(_kv("k")) == KVRequest.TYPE
    # A valid but not canonical encoding of the type (uint8) is seen too.
    assert command_type(b"\x93\xcc\x5a\x01\x90") == ForwardedBatch.TYPE
    assert command_type(b"\xc1") is None and command_type(b"") is None


def test_the_registry_apply_rule_refuses_a_batch_from_outside() -> None:
    check = rule_for("Registry.Apply").check
    assert check is not None
    with pytest.raises(Exception, match="ForwardedBatch is built by the leader only"):
        check(cast(Any, None), {"cmd": GARBAGE_BATCH}, "", None)


async def test_a_batch_from_outside_is_refused_and_never_proposed(autojump_clock: Any) -> None:
    """Registry.Apply (and write_encoded) with a type-90 command whose inner
    bytes are garbage: InvalidArgument naming cmd, nothing reaches the log,
    and the server keeps applying writes."""
    async with inproc_agent() as (agent, api):
        server = agent.server
        assert server is not None
        before = server.node.applied_index
        with pytest.raises(MeshdError) as info:
            await server.call_local("Registry.Apply", {"cmd": GARBAGE_BATCH})
        assert "ForwardedBatch is built by the leader only" in str(info.value)
        with pytest.raises(MeshdError, match="cmd: "):
            await server.call_local("Registry.Apply", {"cmd": b"\xc1"})
        with pytest.raises(InvalidArgument, match="built by the leader only"):
            await server.write_encoded(GARBAGE_BATCH)
        assert server.node.applied_index == before
        assert (await api.put("/v1/kv/after", raw=b"x")).json() is True


async def test_a_txn_never_shares_an_index_a_cas_could_reuse(autojump_clock: Any) -> None:
    """The reviewer's scenario: client A's forwarded /v1/txn sets k, client
    B's plain PUT of k arrives in the same forwarded batch. A's answer names
    k's ModifyIndex; k must not hold B's value at that index, so A's
    ``?cas=<that index>`` fails (it succeeded when both shared one entry)."""
    async with inproc_agent() as (agent, api):
        server = agent.server
        assert server is not None
        txn = TxnRequest(ops=(TxnOp(kv=TxnKVOp(verb="set", key="k", value=b"A")),))
        cmds = [encode_command(txn), _kv("k", b"B")]
        answer = await server.call_local("Registry.ApplyBatch", {"cmds": cmds, "fwd": True})
        a, b = answer["results"]
        assert a["w"]["ok"] is True and b["w"]["ok"] is True
        seen = a["w"]["v"]["Results"][0]["KV"]["ModifyIndex"]
        got = (await api.get("/v1/kv/k")).json()[0]
        assert got["ModifyIndex"] > seen  # B's value sits at a later index
        assert (await api.put(f"/v1/kv/k?cas={seen}", raw=b"A2")).json() is False


def _names(groups: list[list[Command]]) -> list[list[str]]:
    out = []
    for group in groups:
        out.append([c.key if isinstance(c, KVRequest) else type(c).__name__ for c in group])
    return out


def test_entries_are_cut_at_a_rewritten_key_and_around_index_answers() -> None:
    def kv(key: str, op: str = "set") -> KVRequest:
        return KVRequest(op=op, key=key, value=b"v")

    txn = TxnRequest(ops=(TxnOp(kv=TxnKVOp(verb="set", key="t", value=b"v")),))
    token = ACLTokenSet(tokens=(ACLToken(accessor_id="a", secret_id="s"),))
    cmds: list[Command] = [
        kv("a"),
        kv("b"),
        kv("a"),  # a again: new entry
        txn,  # alone
        kv("c"),
        token,  # alone
        kv("d/x"),
        kv("d/", "delete-tree"),  # removes d/x written in this entry: new entry
        kv("d/y"),  # under the tree just removed: new entry
        kv("e"),
    ]
    groups = split_entries(cmds, lambda c: c)
    assert _names(groups) == [
        ["a", "b"],
        ["a"],
        ["TxnRequest"],
        ["c"],
        ["ACLTokenSet"],
        ["d/x"],
        ["d/"],
        ["d/y", "e"],
    ]


def test_batch_support_needs_every_other_voter_to_advertise_it() -> None:
    def node(name: str, node_id: str, fb: bool) -> Node:
        return Node(node=name, id=node_id, meta={BATCH_META: "1"} if fb else {})

    voters = {"me", "s2", "s3"}
    assert batch_capable({"me"}, "me", [])  # a lone server: itself only
    assert batch_capable(voters, "me", [node("b", "s2", True), node("c", "s3", True)])
    assert not batch_capable(voters, "me", [node("b", "s2", True), node("c", "s3", False)])
    assert not batch_capable(voters, "me", [node("b", "s2", True)])  # s3 unknown
    assert not batch_capable(voters, "me", [node("b", "s2", True), node("s3", "other", True)])


async def test_a_voter_without_the_tag_gets_no_batch_entry(autojump_clock: Any) -> None:
    """A leader whose configuration has a voter that does not advertise fb
    (an old server mid-upgrade) proposes one entry per command, never a
    type-90 entry; once that voter's node advertises it, a batch is one
    entry again. This server's member tags show fb=1."""
    async with inproc_agent() as (agent, api):
        server = agent.server
        assert server is not None
        voters = frozenset({server.settings.node_id, "0c1d4c1e-0000-4000-8000-000000000001"})
        server._voter_ids = lambda: voters  # type: ignore[method-assign]
        proposed: list[int | None] = []
        real_apply, real_batch = server.node.apply, server.node.apply_batch

        async def apply(data: bytes, *, decoded: Any = None) -> Any:
            proposed.append(command_type(data))
            return await real_apply(data, decoded=decoded)

        async def apply_batch(batch: Any) -> Any:
            proposed.extend(command_type(d) for d in batch)
            return await real_batch(batch)

        server.node.apply = apply  # type: ignore[method-assign]
        server.node.apply_batch = apply_batch  # type: ignore[method-assign]

        async def forwarded(prefix: str) -> list[int]:
            cmds = [_kv(f"{prefix}/{i}") for i in range(3)]
            answer = await server.call_local("Registry.ApplyBatch", {"cmds": cmds, "fwd": True})
            assert [r["w"]["ok"] for r in answer["results"]] == [True] * 3
            got = (await api.get(f"/v1/kv/{prefix}/?recurse")).json()
            return sorted({e["ModifyIndex"] for e in got})

        await trio.sleep(2)  # past BATCH_CHECK_EVERY: the new voter set is seen
        assert len(await forwarded("old")) == 3
        assert ForwardedBatch.TYPE not in proposed and len(proposed) == 3
        local_batches = server.local_batcher.batches

        async def put(i: int) -> None:  # the leader's own writes, gathered
            assert (await api.put(f"/v1/kv/own/{i}", raw=b"x")).json() is True

        async with trio.open_nursery() as writers:
            for i in range(10):
                writers.start_soon(put, i)
        assert server.local_batcher.batches > local_batches
        assert ForwardedBatch.TYPE not in proposed and len(proposed) == 13
        old = {"Node": "old", "ID": "0c1d4c1e-0000-4000-8000-000000000001", "Address": "127.0.0.2"}
        assert (await api.put("/v1/catalog/register", old)).json() is True

        new = {**old, "NodeMeta": {BATCH_META: "1"}}
        assert (await api.put("/v1/catalog/register", new)).json() is True
        await trio.sleep(2)
        proposed.clear()
        assert len(await forwarded("new")) == 1  # one entry: one index
        assert proposed == [ForwardedBatch.TYPE]
        members = {m["Name"]: m for m in (await api.get("/v1/agent/members")).json()}
        assert members[agent.node_name]["Tags"]["fb"] == "1"


@pytest.mark.parametrize(
    "result",
    [
        Result(True, True),
        Result(False, None),
        failed(ErrorCode.INVALID, "bad key"),
        Result(True, TxnResponse()),
    ],
    ids=["ok", "cas-false", "error", "txn"],
)
def test_a_forwarded_write_is_answered_as_write_result_to_wire(result: Result) -> None:
    assert WriteResult.wire_of(result, 42) == WriteResult.from_result(result, 42).to_wire()
    assert WriteResult.from_wire(WriteResult.wire_of(result, 42)).index == 42
