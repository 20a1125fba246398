"""Simulated clients and the history they record for the linearizability checker.

Each client runs one operation at a time against the server it believes leads, following
``NotLeaderError`` hints. A write is answered when the server it was proposed to applies
the entry at the proposed (index, term); if a different entry lands there, the write
definitely failed and is retried. Reads go through ReadIndex (or, when the profile allows,
a leader lease) and are served from the local FSM once it has applied the read index.

An operation that times out, or whose server crashed, after its command may have reached a
log is indeterminate (``ret=None``). One that certainly never reached a log is left out of
the history: it cannot have had an effect.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol

from raft.errors import NotLeaderError, ProposalDroppedError
from tests.sim.kv import Workload
from tests.sim.linearizability import Operation
from tests.sim.network import TICK
from tests.sim.node import Host, SimNode

# A read attempt that has not become ready in this many ticks is retried elsewhere.
READ_ATTEMPT_TICKS = 8


class ClientHost(Host, Protocol):
    now: int

    def node(self, sid: str) -> SimNode: ...

    def server_ids(self) -> list[str]: ...

    def drain(self, node: SimNode) -> None: ...


@dataclass
class PendingOp:
    op_id: int
    client: int
    input: Any
    call: int
    deadline: int
    proposed: bool = False  # a write reached some log: outcome unknown until decided
    attempt: int = 0


class Clients:
    """All simulated clients of one run."""

    def __init__(
        self,
        host: ClientHost,
        workload: Workload,
        rng: random.Random,
        count: int,
        *,
        timeout_ticks: int,
        lease_reads: bool,
    ) -> None:
        self.host = host
        self.workload = workload
        self.rng = rng
        self.count = count
        self.timeout = timeout_ticks * TICK
        self.lease_reads = lease_reads
        self.history: list[Operation[Any, Any]] = []
        self.acked: list[tuple[Any, int]] = []
        self.pending: dict[int, PendingOp] = {}
        self.guess: dict[int, str | None] = {c: None for c in range(count)}
        self.clock = 0
        self.next_id = 0
        self.stopped = False
        self.stats = {"ok": 0, "indeterminate": 0, "dropped": 0, "lease": 0}

    def tick_clock(self) -> int:
        """History timestamps: strictly increasing, in the order events happened."""
        self.clock += 1
        return self.clock

    def start(self) -> None:
        for c in range(self.count):
            self.host.schedule(self.rng.randint(1, TICK), f"client {c} start", self.next_op, c)

    # -- issuing ----------------------------------------------------------------------

    def next_op(self, client: int) -> None:
        if not self.stopped:
            self.submit(client, self.workload.next_input(client, self.rng))

    def submit(self, client: int, op_input: Any) -> int:
        """Start an operation now; returns its id."""
        self.next_id += 1
        op = PendingOp(
            self.next_id, client, op_input, self.tick_clock(), self.host.now + self.timeout
        )
        self.pending[op.op_id] = op
        self.host.schedule(self.timeout, f"op {op.op_id} deadline", self.expire, op.op_id)
        self.attempt(op.op_id)
        return op.op_id

    def _target(self, client: int) -> str:
        guess = self.guess.get(client)
        return guess if guess is not None else self.rng.choice(self.host.server_ids())

    def attempt(self, op_id: int, attempt: int = -1) -> None:
        op = self.pending.get(op_id)
        if op is None or (attempt >= 0 and attempt != op.attempt) or op.proposed:
            return
        op.attempt += 1
        node = self.host.node(self._target(op.client))
        core = node.core
        if core is None or node.paused_until > self.host.now:
            self.guess[op.client] = None
            self._retry(op, TICK)
            return
        try:
            if self.workload.is_read(op.input):
                self._start_read(op, node)
            else:
                index, term = core.propose(self.workload.encode(op.input))
                op.proposed = True
                node.write_waiters.setdefault(index, []).append((op.op_id, term))
        except NotLeaderError as exc:
            self.guess[op.client] = exc.leader_id
            self._retry(op, 2 if exc.leader_id else TICK)
        except ProposalDroppedError:
            self._retry(op, TICK)
        self.host.drain(node)

    def _start_read(self, op: PendingOp, node: SimNode) -> None:
        core = node.core
        assert core is not None
        if self.lease_reads and self.rng.random() < 0.5 and core.lease_valid():
            self.stats["lease"] += 1
            node.read_waiters.append((core.log.commit, op.op_id))
            node.complete_reads(self.host)
        else:
            ctx = f"r{op.op_id}.{op.attempt}".encode()
            core.read_index(ctx)
            node.read_contexts[ctx] = op.op_id
        # Leadership may be lost before the read is confirmed: try again later.
        self.host.schedule(
            READ_ATTEMPT_TICKS * TICK, f"op {op.op_id} reread", self.attempt, op.op_id, op.attempt
        )

    def _retry(self, op: PendingOp, delay: int) -> None:
        self.host.schedule(delay, f"op {op.op_id} retry", self.attempt, op.op_id, op.attempt)

    # -- answers ----------------------------------------------------------------------

    def write_decided(self, op_id: int, node: SimNode, ok: bool, result: Any, index: int) -> None:
        op = self.pending.get(op_id)
        if op is None:
            return
        if not ok:
            # Another entry took the index: this proposal can never commit. Retry.
            self.guess[op.client] = None
            op.proposed = False
            self._retry(op, 1)
            return
        output = self.workload.write_output(op.input, result)
        if getattr(output, "ok", True):
            self.acked.append((op.input, index))
        self._finish(op, output)

    def read_ready(self, op_id: int, node: SimNode) -> None:
        op = self.pending.get(op_id)
        if op is not None:
            self._finish(op, self.workload.read(node.fsm, op.input))

    def _finish(self, op: PendingOp, output: Any) -> None:
        del self.pending[op.op_id]
        self.stats["ok"] += 1
        self.history.append(Operation(op.client, op.call, self.tick_clock(), op.input, output))
        self.workload.observe(op.client, op.input, output)
        self._think(op.client)

    def lost(self, op_id: int) -> None:
        """The server ``op_id`` waited on crashed."""
        op = self.pending.get(op_id)
        if op is not None and op.proposed:
            self._give_up(op)
        elif op is not None:
            self._retry(op, TICK)

    def expire(self, op_id: int) -> None:
        op = self.pending.get(op_id)
        if op is not None:
            self._give_up(op)

    def _give_up(self, op: PendingOp) -> None:
        del self.pending[op.op_id]
        if op.proposed:
            self.stats["indeterminate"] += 1
            self.history.append(Operation(op.client, op.call, None, op.input, None))
        else:
            self.stats["dropped"] += 1
        self.guess[op.client] = None
        self._think(op.client)

    def _think(self, client: int) -> None:
        if client < self.count:
            delay = self.rng.randint(1, 2 * TICK)
            self.host.schedule(delay, f"client {client} next", self.next_op, client)
