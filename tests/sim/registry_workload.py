"""The registry FSM under the simulation: the same chaos, real registry commands.

Writes are KV sets (``KVRequest``) and catalog node registrations
(``RegisterRequest`` carrying the value in the node's meta), encoded with
registry's own codec and applied by ``RegistryFSM`` on every simulated
server, through crashes, partitions, snapshots and InstallSnapshot. Reads
go through registry's query functions. Every written value is unique, so
the history is checked with the same KV linearizability model; a write is
lost if the final state's ModifyIndex for its key is older than the index
at which the write was acknowledged.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from registry import queries as q
from registry.commands import KVRequest, RegisterRequest, encode_command
from registry.fsm import RegistryFSM
from tests.sim.linearizability import KV_MODEL, KVInput, KVOutput, Model

KV_KEYS = ("svc/a", "svc/b")
NODE_KEYS = ("node-a", "node-b")


def _is_node(key: str) -> bool:
    return key.startswith("node-")


@dataclass
class RegistryWorkload:
    model: Model[Any, Any, Any] = KV_MODEL
    seq: int = 0

    def next_input(self, client: int, rng: random.Random) -> KVInput:
        key = rng.choice(KV_KEYS + NODE_KEYS)
        if rng.random() < 0.4:
            return KVInput("get", key)
        self.seq += 1
        return KVInput("put", key, f"{client}.{self.seq}")

    def is_read(self, op: KVInput) -> bool:
        return op.op == "get"

    def encode(self, op: KVInput) -> bytes:
        assert op.value is not None
        if _is_node(op.key):
            cmd: Any = RegisterRequest(node=op.key, address="10.0.0.1", node_meta={"v": op.value})
        else:
            cmd = KVRequest(op="set", key=op.key, value=op.value.encode())
        return encode_command(cmd)

    def write_output(self, op: KVInput, result: Any) -> KVOutput:
        return KVOutput(ok=bool(result))

    def read(self, fsm: Any, op: KVInput) -> KVOutput:
        return KVOutput(value=_value(fsm, op.key))

    def observe(self, client: int, op: KVInput, output: KVOutput) -> None:
        pass

    def final_reads(self) -> list[KVInput]:
        return [KVInput("get", key) for key in KV_KEYS + NODE_KEYS]

    def lost_writes(self, fsm: Any, acked: list[tuple[Any, int]]) -> list[str]:
        return [
            f"put({op.key!r}, {op.value!r}) acked at index {index}, but the key was last "
            f"written at index {_modify_index(fsm, op.key)}"
            for op, index in acked
            if _modify_index(fsm, op.key) < index
        ]


def _value(fsm: RegistryFSM, key: str) -> str | None:
    if _is_node(key):
        _, ns = q.catalog_node(fsm.store, None, key)
        return None if ns is None else ns.node.meta.get("v")
    _, entry = q.kv_get(fsm.store, None, key)
    return None if entry is None else entry.value.decode()


def _modify_index(fsm: RegistryFSM, key: str) -> int:
    if _is_node(key):
        _, ns = q.catalog_node(fsm.store, None, key)
        return 0 if ns is None else ns.node.modify_index
    _, entry = q.kv_get(fsm.store, None, key)
    return 0 if entry is None else entry.modify_index
