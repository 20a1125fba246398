"""A leader applies the command its proposer decoded instead of decoding the
log entry again (``Node.apply(data, decoded=...)``); every other server and
every other entry still goes through the bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

import tests.raft.test_node as test_node
from tests.raft.kvfsm import KVFSM, put
from tests.raft.test_node import cluster


class DecodingKVFSM(KVFSM):
    """Records which indexes were applied from a decoded command."""

    def __init__(self) -> None:
        super().__init__()
        self.decoded_at: list[int] = []

    def apply_decoded(self, index: int, command: Any) -> Any:
        self.decoded_at.append(index)
        return self.apply(index, msgpack.packb(command))


async def test_leader_applies_its_proposers_decoded_command_followers_the_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_node, "KVFSM", DecodingKVFSM)
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        cmd = {"op": "put", "key": "k", "value": 1}
        assert await leader.apply(msgpack.packb(cmd), decoded=cmd) is True
        assert await leader.apply(put("plain", 2)) is True  # no decoded form
        idx = await leader.read_barrier()
        with trio.fail_after(5):
            while any(n.applied_index < idx for n in c.nodes.values()):
                await trio.sleep(test_node.TICK)
        fsms = {nid: f for nid, f in c.fsms.items() if isinstance(f, DecodingKVFSM)}
        lead_fsm = fsms[leader.config.id]
        assert len(lead_fsm.decoded_at) == 1
        for nid, fsm in fsms.items():
            assert fsm.data == {"k": 1, "plain": 2}
            if nid != leader.config.id:
                assert fsm.decoded_at == []
