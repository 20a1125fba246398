"""Issue 18 review of ForwardedBatch (type 90): only the leader builds one,
an inner command that does not decode fails alone, results that expose
indexes never share an entry, and a cluster with a server that cannot
apply type 90 gets no batch entry."""

from __future__ import annotations

from typing import Any, cast

import pytest

from meshd.agent.rpc_rules import rule_for
from meshd.errors import InvalidArgument, MeshdError
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
from registry.records import ACLToken
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
