"""The tiny KV state machine the simulation replicates, and the client workload for it.

Commands are JSON objects (sorted keys, so every server applies identical bytes):
``{"op": "put", "k": key, "v": value}`` or ``{"op": "cas", "k": key, "v": value,
"e": expected}``. Gets never enter the log: they are served from the local FSM after a
ReadIndex round (or within a leader lease).

The FSM remembers, for every key, the log index of its last write, so the end of a run can
tell whether an acknowledged write was overwritten (fine) or lost (a bug).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Protocol

from tests.sim.linearizability import KV_MODEL, KVInput, KVOutput, Model

KEYS = ("a", "b", "c", "d")


class KVFSM:
    """A dict of key -> (value, index of the write that set it)."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[str, int]] = {}

    def apply(self, index: int, data: bytes) -> bool:
        """Apply a put or cas; returns whether it wrote (a put always does)."""
        cmd = json.loads(data)
        key = cmd["k"]
        if cmd["op"] == "cas":
            current = self.data.get(key)
            if (current[0] if current else None) != cmd["e"]:
                return False
        elif cmd["op"] != "put":
            raise ValueError(f"unknown KV command {cmd!r}")
        self.data[key] = (cmd["v"], index)
        return True

    def get(self, key: str) -> str | None:
        current = self.data.get(key)
        return current[0] if current else None

    def write_index(self, key: str) -> int:
        current = self.data.get(key)
        return current[1] if current else 0

    def snapshot(self) -> bytes:
        return json.dumps(sorted(self.data.items())).encode()

    def restore(self, data: bytes) -> None:
        self.data = {k: (v, i) for k, (v, i) in json.loads(data)}


class Workload(Protocol):
    """The client side of a replicated service: which operations clients issue, how they
    become log commands or local reads, and the sequential model their history is checked
    against. A second FSM plugs in with its own Workload."""

    model: Model[Any, Any, Any]

    def next_input(self, client: int, rng: random.Random) -> Any:
        """The next operation a client issues."""
        ...

    def is_read(self, op: Any) -> bool: ...

    def encode(self, op: Any) -> bytes:
        """The log command of a write."""
        ...

    def write_output(self, op: Any, result: Any) -> Any:
        """The client-visible answer of a write the FSM applied with ``result``."""
        ...

    def read(self, fsm: Any, op: Any) -> Any:
        """Serve a read from a local FSM that is known to be up to date."""
        ...

    def observe(self, client: int, op: Any, output: Any) -> None:
        """A client saw ``output`` (to make later operations meaningful, e.g. CAS)."""
        ...

    def final_reads(self) -> list[Any]:
        """Reads issued once the cluster healed, to see every surviving write."""
        ...

    def lost_writes(self, fsm: Any, acked: list[tuple[Any, int]]) -> list[str]:
        """Acknowledged writes (input, log index) that the final ``fsm`` no longer reflects."""
        ...


@dataclass
class KVWorkload:
    """put/get/cas over a handful of keys; every written value is unique, so a read names
    exactly the write it saw."""

    model: Model[Any, Any, Any] = KV_MODEL
    seq: int = 0

    def __post_init__(self) -> None:
        self.last_seen: dict[tuple[int, str], str | None] = {}

    def next_input(self, client: int, rng: random.Random) -> KVInput:
        key = rng.choice(KEYS)
        roll = rng.random()
        if roll < 0.4:
            return KVInput("get", key)
        self.seq += 1
        value = f"{client}.{self.seq}"
        if roll < 0.75:
            return KVInput("put", key, value)
        return KVInput("cas", key, value, self.last_seen.get((client, key)))

    def is_read(self, op: KVInput) -> bool:
        return op.op == "get"

    def encode(self, op: KVInput) -> bytes:
        cmd: dict[str, Any] = {"op": op.op, "k": op.key, "v": op.value}
        if op.op == "cas":
            cmd["e"] = op.expected
        return json.dumps(cmd, sort_keys=True).encode()

    def write_output(self, op: KVInput, result: Any) -> KVOutput:
        return KVOutput(ok=bool(result))

    def read(self, fsm: Any, op: KVInput) -> KVOutput:
        assert isinstance(fsm, KVFSM)
        return KVOutput(value=fsm.get(op.key))

    def observe(self, client: int, op: KVInput, output: KVOutput) -> None:
        if op.op == "get":
            self.last_seen[(client, op.key)] = output.value
        elif output.ok:
            self.last_seen[(client, op.key)] = op.value

    def final_reads(self) -> list[KVInput]:
        return [KVInput("get", key) for key in KEYS]

    def lost_writes(self, fsm: Any, acked: list[tuple[Any, int]]) -> list[str]:
        assert isinstance(fsm, KVFSM)
        return [
            f"{op.op}({op.key!r}, {op.value!r}) acked at index {index}, but the key was last "
            f"written at index {fsm.write_index(op.key)}"
            for op, index in acked
            if fsm.write_index(op.key) < index
        ]
