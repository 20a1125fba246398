"""A deterministic discrete-event simulation of a meshd Raft cluster.

Time is an integer (``network.TICK`` units per Raft tick); every event sits in one heap
ordered by (time, sequence number). One ``random.Random(seed)`` decides everything, and
servers' generators are drawn from it, so a seed replays exactly; a hash of the event trace
proves it.

A run boots 3 or 5 servers (plus one spare that can be added), lets clients work while a
nemesis injects the seed's faults (partitions, crashes, membership changes, leadership
transfers) over an unreliable network, then heals everything and requires the cluster to
converge. ``checkers.SafetyMonitor`` checks the Raft invariants throughout; the end of the
run checks convergence, that no acknowledged write was lost, and linearizability.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raft.core import CoreConfig
from raft.errors import RaftError
from raft.fsm import StateMachine
from raft.types import Configuration, Message, MessageType, Role, Server
from tests.sim.checkers import LogView, SafetyMonitor, Violation
from tests.sim.clients import Clients
from tests.sim.kv import KVFSM, KVWorkload, Workload
from tests.sim.linearizability import check
from tests.sim.nemesis import Nemesis
from tests.sim.network import TICK, FaultProfile, Network
from tests.sim.node import DriverPolicy, SimNode, state_digest

# Hard cap on events per run, so a message storm cannot hang CI.
MAX_EVENTS = 2_000_000
LOG_CHECK_EVERY_TICKS = 25


@dataclass(frozen=True)
class SimConfig:
    """One run. ``nodes=0`` draws 3 or 5 from the seed; ``profile=None`` draws the faults."""

    seed: int
    nodes: int = 0
    chaos_ticks: int = 400
    settle_ticks: int = 300
    election_ticks: int = 10
    op_timeout_ticks: int = 30
    driver: DriverPolicy | None = None  # None: drawn from the seed
    profile: FaultProfile | None = None
    trace: bool = False
    # The replicated state machine and the client workload that drives and checks it
    # (KVFSM here; tests/sim/registry_workload.py runs registry.fsm.RegistryFSM).
    fsm_factory: Callable[[], StateMachine] = KVFSM
    workload_factory: Callable[[], Workload] = KVWorkload


@dataclass
class SimResult:
    seed: int
    nodes: int
    profile: str
    prop: str | None = None
    detail: str = ""
    trace_hash: str = ""
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.prop is None


class World:
    """The cluster, its network, clients and nemesis, and the event loop driving them."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.n = cfg.nodes or self.rng.choice([3, 5])
        self.profile = cfg.profile or FaultProfile.draw(self.rng)
        self.net = Network(self.profile, random.Random(self.rng.getrandbits(64)))
        self.monitor = SafetyMonitor()
        self.now = 0
        self.settling = False
        self._heap: list[tuple[int, int, str, str | None, Callable[..., None], tuple[Any, ...]]]
        self._heap = []
        self._seq = 0
        self._trace = hashlib.blake2b(digest_size=16)
        self.stats: dict[str, int] = {}
        self.members = [f"n{i}" for i in range(1, self.n + 1)]
        self.ids = [*self.members, f"n{self.n + 1}"]  # the last one is a blank spare
        core_cfg = CoreConfig(
            id="",
            election_ticks=cfg.election_ticks,
            max_inflight=self.rng.choice([2, 8, 256]),
            max_entries_bytes=self.rng.choice([200, 1 << 20]),
            pre_vote=self.rng.random() < 0.8,
        )
        self.driver = cfg.driver or DriverPolicy(
            snapshot_threshold=self.rng.choice([20, 30, 50]),
            trailing=self.rng.choice([2, 5, 10]),
            background_leader_writes=self.rng.random() < 0.5,
            background_snapshots=self.rng.random() < 0.5,
        )
        boot = Configuration(tuple(Server(sid, f"{sid}:8300") for sid in self.members))
        self.nodes = {
            sid: SimNode(
                sid,
                cfg.fsm_factory,
                core_cfg,
                boot if sid in self.members else None,
                self.driver,
                random.Random(self.rng.getrandbits(64)),
            )
            for sid in self.ids
        }
        self.workload = cfg.workload_factory()
        self.clients = Clients(
            self,
            self.workload,
            random.Random(self.rng.getrandbits(64)),
            self.rng.randint(3, 5),
            timeout_ticks=cfg.op_timeout_ticks,
            lease_reads=self.profile.lease_reads,
        )
        self.nemesis = Nemesis(self, random.Random(self.rng.getrandbits(64)))

    # -- event loop -------------------------------------------------------------------

    def schedule(
        self,
        delay: int,
        label: str,
        fn: Callable[..., None],
        *args: Any,
        owner: str | None = None,
    ) -> None:
        self._push(self.now + max(1, delay), label, owner, fn, args)

    def _push(
        self,
        time: int,
        label: str,
        owner: str | None,
        fn: Callable[..., None],
        args: tuple[Any, ...],
    ) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (time, self._seq, label, owner, fn, args))

    def run_until(self, end: int, stop: Callable[[], bool] | None = None) -> bool:
        """Process events up to time ``end``; returns True if ``stop()`` became true
        (checked once per tick) before that."""
        next_check = self.now
        while self._heap and self._heap[0][0] <= end:
            if stop is not None and self._heap[0][0] >= next_check:
                if stop():
                    return True
                next_check = self._heap[0][0] + TICK
            time, _, label, owner, fn, args = heapq.heappop(self._heap)
            self.now = time
            if owner is not None and self.nodes[owner].paused_until > time:
                self._push(self.nodes[owner].paused_until, label, owner, fn, args)
                continue
            self.count("events")
            if self.stats["events"] > MAX_EVENTS:
                raise Violation("harness", f"more than {MAX_EVENTS} events")
            line = f"{time} {label}"
            self._trace.update(line.encode() + b"\n")
            if self.cfg.trace:
                print(line)
            fn(*args)
        self.now = max(self.now, end)
        return stop is not None and stop()

    def count(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n

    # -- servers ----------------------------------------------------------------------

    def node(self, sid: str) -> SimNode:
        return self.nodes[sid]

    def server_ids(self) -> list[str]:
        return self.ids

    def drain(self, node: SimNode) -> None:
        node.drain(self)

    def observe(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        self.monitor.observe_role(node.id, core.role, core.term, core.log)
        if core.role == Role.LEADER:
            self.monitor.observe_leader_commit(
                node.id, core.term, core.log, core.configuration.voters(), self._durable_has
            )

    def _durable_has(self, sid: str, index: int, term: int) -> bool:
        return self.nodes[sid].durable.has(index, term)

    def leader(self) -> SimNode | None:
        """The live server that leads the highest term, if any."""
        best: SimNode | None = None
        for sid in self.ids:
            core = self.nodes[sid].core
            if core is None or core.role != Role.LEADER:
                continue
            if best is None or core.term > (best.core.term if best.core else -1):
                best = self.nodes[sid]
        return best

    def start_node(self, node: SimNode) -> None:
        node.start(random.Random(self.rng.getrandbits(64)))
        self.drain(node)

    def crash(self, node: SimNode) -> None:
        if not node.alive:
            return
        self.count("crashes")
        for op_id in node.stop():
            self.clients.lost(op_id)
        down = self.nemesis.rng.randint(3, 40) * TICK
        if self.settling:
            down = TICK
        self.schedule(down, f"restart {node.id}", self.restart, node.id)

    def restart(self, sid: str) -> None:
        node = self.nodes[sid]
        if not node.alive:
            self.count("restarts")
            self.start_node(node)

    def _tick(self, sid: str) -> None:
        node = self.nodes[sid]
        if node.core is not None and node.paused_until > self.now:
            node.missed_ticks += 1
        elif node.core is not None:
            node.core.tick()
            self.drain(node)
        self.schedule(TICK, f"tick {sid}", self._tick, sid)

    def pause(self, node: SimNode, ticks: int) -> None:
        """Freeze ``node`` (state kept, nothing runs) for ``ticks``."""
        if node.alive and node.paused_until <= self.now:
            node.paused_until = self.now + ticks * TICK
            self.count("pauses")
            self.schedule(
                ticks * TICK, f"resume {node.id}", self._resume, node.id, node.incarnation
            )

    def _resume(self, sid: str, incarnation: int) -> None:
        # Scheduled before anything deferred to this instant: the process sees the time
        # that passed (all missed ticks) before the messages that queued up.
        node = self.nodes[sid]
        if node.core is None or node.incarnation != incarnation:
            return
        node.paused_until = 0
        missed, node.missed_ticks = node.missed_ticks, 0
        for _ in range(missed):
            node.core.tick()
        self.drain(node)

    # -- network ----------------------------------------------------------------------

    def send(self, msg: Message) -> None:
        self.count("messages")
        if msg.dst not in self.nodes:
            return
        if not self.net.connected(msg.src, msg.dst) or not self.nodes[msg.dst].alive:
            # The transport notices a refused connection and tells the core.
            label = f"unreachable {msg.src}>{msg.dst}"
            self.schedule(TICK, label, self._unreachable, msg, owner=msg.src)
            return
        label = _describe(msg)
        delays = self.net.delays()
        for delay in delays:
            self.schedule(delay, label, self._deliver, msg, owner=msg.dst)
        if not delays:
            self.count("lost")
            if msg.type == MessageType.SNAP:
                label = f"snap failed {label}"
                self.schedule(2 * TICK, label, self._snap_report, msg, False, owner=msg.src)
        if len(delays) > 1:
            self.count("duplicated")

    def _deliver(self, msg: Message) -> None:
        dst = self.nodes[msg.dst]
        core = dst.core
        if core is None or not self.net.connected(msg.src, msg.dst):
            if msg.type == MessageType.SNAP:
                label = f"snap failed {_describe(msg)}"
                self.schedule(TICK, label, self._snap_report, msg, False, owner=msg.src)
            return
        core.step(msg)
        self.drain(dst)
        if msg.type == MessageType.SNAP:
            self.count("snapshots-delivered")
            label = f"snap done {_describe(msg)}"
            self.schedule(1, label, self._snap_report, msg, True, owner=msg.src)

    def _snap_report(self, msg: Message, ok: bool) -> None:
        src = self.nodes[msg.src]
        if src.core is not None and src.core.term == msg.term:
            src.core.report_snapshot(msg.dst, ok)
            self.drain(src)

    def _unreachable(self, msg: Message) -> None:
        src = self.nodes[msg.src]
        if src.core is not None:
            if msg.type == MessageType.SNAP:
                src.core.report_snapshot(msg.dst, False)
            src.core.report_unreachable(msg.dst)
            self.drain(src)

    # -- client callbacks -------------------------------------------------------------

    def write_decided(self, op_id: int, node: SimNode, ok: bool, result: Any, index: int) -> None:
        self.clients.write_decided(op_id, node, ok, result, index)

    def read_ready(self, op_id: int, node: SimNode) -> None:
        self.clients.read_ready(op_id, node)

    # -- the run ----------------------------------------------------------------------

    def run(self) -> SimResult:
        d = self.driver
        driver = f" snapshot={d.snapshot_threshold}/{d.trailing}"
        driver += " bg-leader-writes" if d.background_leader_writes else ""
        driver += " bg-snapshots" if d.background_snapshots else ""
        result = SimResult(self.cfg.seed, self.n, self.profile.describe() + driver)
        try:
            self._chaos()
            self._settle()
            self._final_checks()
        except Violation as v:
            result.prop, result.detail = v.prop, v.detail
        except RaftError as exc:
            result.prop, result.detail = "core-error", f"{type(exc).__name__}: {exc}{_where(exc)}"
        except Exception as exc:  # a harness bug: still report the seed, do not stop the batch
            result.prop, result.detail = "exception", f"{type(exc).__name__}: {exc}{_where(exc)}"
        for sid in self.ids:
            self.count("snapshots-installed", self.nodes[sid].snapshots_installed)
            self.count("background-writes", self.nodes[sid].background_writes)
        self.count("elections", self.monitor.elections)
        self.count("terms", max(self.monitor.leaders, default=0))
        for name, n in self.clients.stats.items():
            self.count(f"ops-{name}", n)
        result.trace_hash = self._trace.hexdigest()
        result.stats = dict(sorted(self.stats.items()))
        return result

    def _chaos(self) -> None:
        for sid in self.ids:
            self.start_node(self.nodes[sid])
            self.schedule(self.rng.randint(1, TICK), f"tick {sid}", self._tick, sid)
        self.schedule(LOG_CHECK_EVERY_TICKS * TICK, "check logs", self._periodic_check)
        self.clients.start()
        self.nemesis.start()
        self.run_until(self.cfg.chaos_ticks * TICK)

    def _periodic_check(self) -> None:
        self.check_logs()
        self.schedule(LOG_CHECK_EVERY_TICKS * TICK, "check logs", self._periodic_check)

    def check_logs(self) -> None:
        live = {sid: LogView.of(n.core.log) for sid, n in self.nodes.items() if n.core}
        self.monitor.check_log_matching(live, "in-memory logs")

    def _settle(self) -> None:
        """Heal, restart, stop the clients; the cluster must then converge."""
        self.settling = True
        self.clients.stopped = True
        self.net.heal()
        self.net.calm = True
        for sid in self.ids:
            self.restart(sid)
        limit = self.now + self.cfg.settle_ticks * TICK
        if not self.run_until(limit, lambda: not self.clients.pending and self._converged()):
            raise Violation("liveness", f"no convergence after healing: {self._why_not()}")
        final = [self.clients.submit(self.clients.count, op) for op in self.workload.final_reads()]
        limit = self.now + self.cfg.settle_ticks * TICK
        if not self.run_until(limit, lambda: not any(i in self.clients.pending for i in final)):
            raise Violation("liveness", "final reads did not complete after healing")
        answered = sum(1 for op in self.clients.history if op.client == self.clients.count)
        if answered != len(final):
            raise Violation("liveness", f"only {answered}/{len(final)} final reads answered")

    def _converged(self) -> bool:
        return self._why_not() == ""

    def _why_not(self) -> str:
        """Why the cluster has not converged yet ("" once it has)."""
        lead = self.leader()
        if lead is None or lead.core is None:
            return "no leader"
        core = lead.core
        commit = core.log.commit
        if core.log.term(commit) != core.term or core.log.last_index() != commit:
            return f"leader {lead.id} has not committed its log ({commit}/{core.log.last_index()})"
        for sid in sorted(core.configuration.ids()):
            node = self.nodes[sid]
            if node.core is None:
                return f"{sid} is down"
            if node.core.leader != lead.id or node.core.term != core.term:
                return f"{sid} follows {node.core.leader} in term {node.core.term}"
            if node.applied != commit:
                return f"{sid} applied {node.applied} of {commit}"
            if state_digest(node.fsm) != state_digest(lead.fsm):
                raise Violation(
                    "convergence",
                    f"{sid} and {lead.id} applied up to {commit} but their states differ",
                )
        return ""

    def _final_checks(self) -> None:
        self.check_logs()
        durable = {}
        for sid, node in self.nodes.items():
            snap = node.durable.snapshot
            off, off_term = (snap.meta.index, snap.meta.term) if snap else (0, 0)
            entries = tuple(e for e in node.durable.entries if e.index > off)
            durable[sid] = LogView(off, off_term, entries)
        self.monitor.check_log_matching(durable, "durable logs")
        lead = self.leader()
        assert lead is not None
        lost = self.workload.lost_writes(lead.fsm, self.clients.acked)
        if lost:
            raise Violation("acked-write-lost", f"{len(lost)} lost, e.g. {lost[0]}")
        verdict = check(self.clients.history, self.workload.model, timeout_s=20.0)
        if verdict.ok is None:
            raise Violation("linearizability-unknown", verdict.explanation)
        if not verdict.ok:
            raise Violation("linearizability", verdict.explanation)
        self._trace.update(f"history {len(self.clients.history)} {state_digest(lead.fsm)}".encode())


def _where(exc: BaseException) -> str:
    """Where ``exc`` was raised: the file and line, and the last few calls leading there."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame.f_code, tb.tb_lineno))
        tb = tb.tb_next
    if not frames:
        return ""
    code, line = frames[-1]
    path = "/".join(code.co_filename.rsplit("/", 2)[-2:])
    calls = " > ".join(c.co_name for c, _ in frames[-4:])
    return f" at {path}:{line} ({calls})"


def _describe(m: Message) -> str:
    s = f"{m.type.name} {m.src}>{m.dst} t{m.term} i{m.index} c{m.commit}"
    if m.entries:
        s += f" e{m.entries[0].index}-{m.entries[-1].index}"
    return s + (" R" if m.reject else "")


def run_seed(seed: int, **overrides: Any) -> SimResult:
    """Run one seed with ``SimConfig`` defaults (or ``overrides``)."""
    return World(SimConfig(seed=seed, **overrides)).run()
