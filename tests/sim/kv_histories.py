"""Generated KV histories for the linearizability checker's tests and
bench/linearizability_bench.py: linearizable by construction (each operation
takes effect on a real sequential store between its call and its return),
and the same with one read corrupted, which must be rejected."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from tests.sim.linearizability import KVInput, KVOperation, KVOutput, Operation

NEVER_WRITTEN = "never-written"


def random_input(rng: random.Random, keys: Sequence[str], values: Sequence[str]) -> KVInput:
    key = rng.choice(keys)
    kind = rng.choice(["put", "get", "get", "cas"])
    if kind == "put":
        return KVInput("put", key, rng.choice(values))
    if kind == "get":
        return KVInput("get", key)
    return KVInput("cas", key, rng.choice(values), rng.choice([None, *values]))


def apply(store: dict[str, str | None], op: KVInput) -> KVOutput:
    """The sequential KV store the generated histories come from (independent of the model)."""
    current = store.get(op.key)
    if op.op == "put":
        store[op.key] = op.value
        return KVOutput(ok=True)
    if op.op == "get":
        return KVOutput(value=current)
    if current == op.expected:
        store[op.key] = op.value
        return KVOutput(ok=True)
    return KVOutput(ok=False)


@dataclass
class Pending:
    call: int
    input: KVInput
    output: KVOutput | None = None  # set once the operation took effect


def generate_history(
    rng: random.Random,
    n_ops: int,
    keys: Sequence[str],
    clients: int,
    p_indeterminate: float = 0.05,
) -> list[KVOperation]:
    """A linearizable history: each operation takes effect on a real sequential store at a
    random instant between its call and its return, interleaved with the other clients.
    Some operations lose their response; some of those never take effect at all."""
    values = [str(v) for v in range(4)]
    store: dict[str, str | None] = {}
    clock = itertools.count(1)
    pending: dict[int, Pending] = {}
    orphans: list[KVInput] = []  # abandoned before taking effect; may still take effect
    history: list[KVOperation] = []
    issued = 0
    while issued < n_ops or pending:
        if orphans and rng.random() < 0.05:
            apply(store, orphans.pop(rng.randrange(len(orphans))))
        client = rng.randrange(clients)
        op = pending.get(client)
        if op is None:
            if issued < n_ops:
                pending[client] = Pending(next(clock), random_input(rng, keys, values))
                issued += 1
        elif rng.random() < p_indeterminate:
            if op.output is None and rng.random() < 0.5:
                orphans.append(op.input)
            history.append(Operation(client, op.call, None, op.input, None))
            del pending[client]
        elif op.output is None:
            op.output = apply(store, op.input)
        else:
            history.append(Operation(client, op.call, next(clock), op.input, op.output))
            del pending[client]
    return history


def corrupt_one_get(rng: random.Random, history: list[KVOperation]) -> list[KVOperation] | None:
    reads = [i for i, op in enumerate(history) if op.input.op == "get" and op.ret is not None]
    if not reads:
        return None
    i = rng.choice(reads)
    corrupted = list(history)
    corrupted[i] = replace(history[i], output=KVOutput(value=NEVER_WRITTEN))
    return corrupted
