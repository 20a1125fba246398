"""Issue 18 review of ForwardedBatch (type 90): only the leader builds one,
an inner command that does not decode fails alone, results that expose
indexes never share an entry, and a cluster with a server that cannot
apply type 90 gets no batch entry."""

from __future__ import annotations

from typing import Any, cast

import pytest

from meshd.agent.rpc_rules import rule_for
from meshd.errors import InvalidArgument, MeshdError
from registry.commands import ForwardedBatch, KVRequest, command_type, encode_command
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
