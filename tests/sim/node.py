"""One simulated server: durable storage that survives crashes, and the driver loop that
handles a ``Ready`` in the order ``raft.types.Ready`` prescribes.

Only what ``Durable.persist`` wrote survives a crash. A crash can also be armed to strike
in the middle of the next ``Ready`` (after persisting, or after sending), which is where a
driver that acknowledges before it persists would lose data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from raft.core import CoreConfig, InitialState, RaftCore
from raft.fsm import StateMachine
from raft.types import (
    Configuration,
    Entry,
    EntryKind,
    HardState,
    HardStateWriter,
    Message,
    MessageType,
    Ready,
    Role,
    Snapshot,
)
from tests.sim.checkers import SafetyMonitor, Violation

# How many Ready batches one input may produce before the driver gives up (a core that
# never quiesces is a bug, and this keeps every loop bounded).
MAX_READY_ROUNDS = 64


def state_digest(state: StateMachine | bytes) -> str:
    """A fingerprint of an FSM's state (or of snapshot bytes). Assumes ``snapshot()`` is
    deterministic: equal states serialize to equal bytes."""
    data = state if isinstance(state, bytes) else state.snapshot()
    return hashlib.blake2b(data, digest_size=8).hexdigest()


@dataclass
class Durable:
    """A server's disk: hard state, log entries (possibly some trailing the snapshot), snapshot.

    Like raft/storage.py, a write of entries truncates at its first index and must not
    leave a gap after the stored log; loading keeps the entries after the snapshot.
    """

    hard: HardState = field(default_factory=HardState)
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None

    def snapshot_index(self) -> int:
        return self.snapshot.meta.index if self.snapshot else 0

    def last_index(self) -> int:
        """The end of the durable history: the log, or the snapshot if that is further (a
        leader writing its log in the background can snapshot past its written log)."""
        return max(self.entries[-1].index if self.entries else 0, self.snapshot_index())

    def has(self, index: int, term: int) -> bool:
        """Whether entry (index, term) is on disk (a snapshot covers committed entries)."""
        if index <= self.snapshot_index():
            return True
        if not self.entries or not self.entries[0].index <= index <= self.entries[-1].index:
            return False
        return self.entries[index - self.entries[0].index].term == term

    def save(self, node: str, hs: HardState | None, entries: list[Entry]) -> None:
        """Entries (truncating at the first one), then hard state: one atomic write."""
        if entries:
            first = entries[0].index
            if not 0 < first <= self.last_index() + 1:
                raise Violation(
                    "ready-contract",
                    f"{node} must write entries from {first} after a durable log ending at "
                    f"{self.last_index()} (snapshot {self.snapshot_index()})",
                )
            for prev, e in itertools.pairwise(entries):
                if e.index != prev.index + 1:
                    raise Violation("ready-contract", f"{node} entries skip {prev.index}")
            if self.entries and first > self.entries[-1].index + 1:
                self.entries = []  # all older entries trail the snapshot the batch follows
            self.entries = [e for e in self.entries if e.index < first] + entries
        if hs is not None:
            self.hard = hs

    def save_received_snapshot(self, node: str, snap: Snapshot) -> None:
        """A snapshot from the leader replaces the whole log (the core restarted it)."""
        if snap.meta.index <= self.snapshot_index():
            raise Violation(
                "ready-contract",
                f"{node} was handed snapshot {snap.meta.index} but holds {self.snapshot_index()}",
            )
        self.snapshot = snap
        self.entries = []

    def save_local_snapshot(self, snap: Snapshot, trailing: int) -> None:
        """A snapshot the server took itself; entries older than ``trailing`` go. An older
        snapshot than the one stored (a leader's arrived meanwhile) is not kept."""
        if snap.meta.index > self.snapshot_index():
            self.snapshot = snap
            self.entries = [e for e in self.entries if e.index > snap.meta.index - trailing]

    def initial(self, node: str) -> InitialState:
        meta = self.snapshot.meta if self.snapshot else None
        after = meta.index if meta else 0
        entries = [e for e in self.entries if e.index > after]
        if entries and entries[0].index != after + 1:
            raise Violation(
                "durable-state",
                f"{node} restarts with a gap: snapshot {after}, log from {entries[0].index}",
            )
        return InitialState(self.hard, meta, entries)


@dataclass
class DriverPolicy:
    """How the driver uses the core (all the ways raft/node.py does, chosen per seed)."""

    snapshot_threshold: int = 30
    trailing: int = 5
    # A leader sends first and writes its own log in the background (thesis §10.2.1).
    background_leader_writes: bool = False
    # Snapshots are written in the background and the log compacted once durable.
    background_snapshots: bool = False
    max_disk_delay: int = 15


@dataclass
class _Write:
    seq: int
    hard_state: HardState | None
    entries: list[Entry]


class Host(Protocol):
    """What a server's driver calls back into (the world)."""

    monitor: SafetyMonitor

    def observe(self, node: SimNode) -> None:
        """Check the safety properties after an input to ``node``."""
        ...

    def schedule(
        self,
        delay: int,
        label: str,
        fn: Callable[..., None],
        *args: Any,
        owner: str | None = None,
    ) -> None:
        """Call ``fn(*args)`` after ``delay``; while ``owner`` is paused, it waits."""
        ...

    def send(self, msg: Message) -> None: ...

    def crash(self, node: SimNode) -> None: ...

    def write_decided(self, op_id: int, node: SimNode, ok: bool, result: Any, index: int) -> None:
        """The entry at the index a write was proposed at was applied on ``node``: ``ok``
        iff it is the proposed entry, ``result`` what the FSM returned."""
        ...

    def read_ready(self, op_id: int, node: SimNode) -> None:
        """``node``'s FSM may now serve the read ``op_id``."""
        ...


class SimNode:
    """A server's durable state plus, while it is up, its volatile core, FSM and waiters."""

    def __init__(
        self,
        sid: str,
        fsm_factory: Callable[[], StateMachine],
        core_config: CoreConfig,
        bootstrap: Configuration | None,
        policy: DriverPolicy,
        rng: random.Random,
    ) -> None:
        self.id = sid
        self.address = f"{sid}:8300"
        self.fsm_factory = fsm_factory
        self.core_config = dataclasses.replace(core_config, id=sid)
        self.bootstrap = bootstrap
        self.policy = policy
        self.rng = rng  # disk latency
        self.durable = Durable()
        self.incarnation = 0
        self.core: RaftCore | None = None
        self.hard = HardStateWriter(self.durable.hard)
        self.fsm: StateMachine = fsm_factory()
        self.applied = 0
        self.last_snapshot = 0
        self.snapshotting = False
        # Background writes not yet on disk, oldest first (lost in a crash).
        self.writes: list[_Write] = []
        self.write_seq = 0
        # index -> [(op id, proposed term)]; (read index, op id); ReadIndex ctx -> op id.
        self.write_waiters: dict[int, list[tuple[int, int]]] = {}
        self.read_waiters: list[tuple[int, int]] = []
        self.read_contexts: dict[bytes, int] = {}
        self.crash_point: str | None = None
        self.snapshots_installed = 0
        self.background_writes = 0
        # A paused process (GC, VM migration) runs nothing until then; ticks it missed.
        self.paused_until = 0
        self.missed_ticks = 0

    @property
    def alive(self) -> bool:
        return self.core is not None

    def start(self, rng: random.Random) -> None:
        """Boot from durable state (first start or restart after a crash)."""
        self.incarnation += 1
        self.core = RaftCore(
            self.core_config, rng, self.durable.initial(self.id), bootstrap=self.bootstrap
        )
        self.hard = HardStateWriter(self.durable.hard)
        self.fsm = self.fsm_factory()
        self.applied = self.last_snapshot = self.durable.snapshot_index()
        if self.durable.snapshot is not None:
            self.fsm.restore(self.durable.snapshot.data)

    def stop(self) -> list[int]:
        """Lose everything volatile; returns the ops that were waiting here."""
        self.core = None
        self.crash_point = None
        self.paused_until = self.missed_ticks = 0
        self.writes = []
        self.snapshotting = False
        ops = [op for waiters in self.write_waiters.values() for op, _ in waiters]
        ops += [op for _, op in self.read_waiters] + list(self.read_contexts.values())
        self.write_waiters, self.read_waiters, self.read_contexts = {}, [], {}
        return sorted(set(ops))

    def drain(self, host: Host) -> None:
        """Handle Ready batches until the core has nothing more to do."""
        for _ in range(MAX_READY_ROUNDS):
            core = self.core
            if core is None:
                return
            host.observe(self)
            if not core.has_ready():
                self._maybe_snapshot(core, host)
                return
            self._handle_ready(core, host)
        raise Violation("ready-contract", f"{self.id} still has work after {MAX_READY_ROUNDS}")

    # -- one Ready ----------------------------------------------------------------------

    def _handle_ready(self, core: RaftCore, host: Host) -> None:
        rd = core.ready()
        host.monitor.observe_entries(self.id, rd.entries)
        durable = self.hard.persisted = self.durable.hard
        hs = self.hard.for_ready(rd)
        background = (
            self.policy.background_leader_writes
            and core.role == Role.LEADER
            and rd.snapshot is None
            and (hs is None or (hs.term, hs.vote) == (durable.term, durable.vote))
        )
        if background:
            self._send_all(rd, host)
            if self.crash_point is not None:
                host.crash(self)  # its own write never happened
                return
            if rd.entries or hs is not None:
                self._queue_write(hs, list(rd.entries), host)
        else:
            # Votes and append acknowledgements promise durability: write first.
            self._flush_writes(host, len(self.writes))
            if rd.snapshot is not None:
                self.durable.save_received_snapshot(self.id, rd.snapshot)
            self._save(hs, list(rd.entries), host)
            if self.crash_point == "after-persist":
                host.crash(self)
                return
            self._send_all(rd, host)
            if self.crash_point == "after-send":
                host.crash(self)
                return
        self._apply_ready(rd, host)
        core.advance(rd, persisted=not background)

    def _send_all(self, rd: Ready, host: Host) -> None:
        for m in rd.messages:
            host.send(self._with_snapshot_data(m))

    def _save(self, hs: HardState | None, entries: list[Entry], host: Host) -> None:
        self.durable.save(self.id, hs, entries)
        if hs is not None:
            host.monitor.observe_hard_state(self.id, hs)

    def _apply_ready(self, rd: Ready, host: Host) -> None:
        if rd.snapshot is not None:
            self.fsm.restore(rd.snapshot.data)
            self.applied = self.last_snapshot = rd.snapshot.meta.index
            self.snapshots_installed += 1
            host.monitor.observe_snapshot(self.id, self.applied, state_digest(self.fsm))
        for e in rd.committed_entries:
            self._apply(e, host)
        for rs in rd.read_states:
            op_id = self.read_contexts.pop(rs.context, None)
            if op_id is not None:
                self.read_waiters.append((rs.index, op_id))
        self.complete_reads(host)

    # -- background log writes (leader only) -------------------------------------------

    def _queue_write(self, hs: HardState | None, entries: list[Entry], host: Host) -> None:
        self.write_seq += 1
        self.writes.append(_Write(self.write_seq, hs, entries))
        self.background_writes += 1
        delay = self.rng.randint(1, self.policy.max_disk_delay)
        label = f"disk {self.id} w{self.write_seq}"
        host.schedule(delay, label, self._write_done, self.incarnation, host, owner=self.id)

    def _write_done(self, incarnation: int, host: Host) -> None:
        if incarnation == self.incarnation and self.core is not None and self.writes:
            self._flush_writes(host, 1)
            self.drain(host)

    def _flush_writes(self, host: Host, count: int) -> None:
        """Write the oldest ``count`` queued batches, in order, then tell the core."""
        done, self.writes = self.writes[:count], self.writes[count:]
        last: Entry | None = None
        for w in done:
            self._save(w.hard_state, w.entries, host)
            last = w.entries[-1] if w.entries else last
        if last is not None:
            # The writer reports back through the driver loop, not mid-Ready.
            label = f"persisted {self.id} {last.index}"
            host.schedule(1, label, self._persisted, self.incarnation, last, host, owner=self.id)

    def _persisted(self, incarnation: int, last: Entry, host: Host) -> None:
        if incarnation == self.incarnation and self.core is not None:
            self.core.persisted(last.index, last.term)
            self.drain(host)

    # -- applying -----------------------------------------------------------------------

    def _with_snapshot_data(self, m: Message) -> Message:
        if m.type != MessageType.SNAP or m.snapshot is None or m.snapshot.data:
            return m
        snap = self.durable.snapshot
        if snap is None or snap.meta != m.snapshot.meta:
            raise Violation(
                "ready-contract",
                f"{self.id} must send snapshot {m.snapshot.meta.index} but stored "
                f"{snap.meta.index if snap else None}",
            )
        return dataclasses.replace(m, snapshot=snap)

    def _apply(self, e: Entry, host: Host) -> None:
        if e.index != self.applied + 1:
            raise Violation(
                "ready-contract", f"{self.id} handed entry {e.index} after applying {self.applied}"
            )
        host.monitor.observe_apply(self.id, e)
        result = self.fsm.apply(e.index, e.data) if e.kind == EntryKind.NORMAL else None
        self.applied = e.index
        for op_id, term in self.write_waiters.pop(e.index, []):
            host.write_decided(op_id, self, e.term == term, result, e.index)

    def complete_reads(self, host: Host) -> None:
        if not self.read_waiters:
            return
        ready = [op for index, op in self.read_waiters if index <= self.applied]
        self.read_waiters = [(i, op) for i, op in self.read_waiters if i > self.applied]
        for op_id in ready:
            host.read_ready(op_id, self)

    # -- snapshots ----------------------------------------------------------------------

    def _maybe_snapshot(self, core: RaftCore, host: Host) -> None:
        p = self.policy
        if self.applied - self.last_snapshot < p.snapshot_threshold or self.snapshotting:
            return
        if self.applied <= core.log.offset:
            return
        snap = Snapshot(core.snapshot_meta_at(self.applied), self.fsm.snapshot())
        host.monitor.observe_snapshot(self.id, self.applied, state_digest(snap.data))
        if not p.background_snapshots:
            self._snapshot_written(self.incarnation, snap, host, drain=False)
            return
        self.snapshotting = True
        delay = self.rng.randint(1, 3 * p.max_disk_delay)
        label = f"snapshot {self.id} {self.applied}"
        host.schedule(
            delay, label, self._snapshot_written, self.incarnation, snap, host, owner=self.id
        )

    def _snapshot_written(
        self, incarnation: int, snap: Snapshot, host: Host, *, drain: bool = True
    ) -> None:
        """The snapshot file is durable: now the log may be compacted."""
        core = self.core
        if incarnation != self.incarnation or core is None:
            return
        self.snapshotting = False
        self.durable.save_local_snapshot(snap, self.policy.trailing)
        index = snap.meta.index
        if core.log.offset < index <= core.log.applied:
            meta = core.compact(index, self.policy.trailing)
            if meta != snap.meta:
                raise Violation("ready-contract", f"{self.id} compact({index}) gave {meta}")
            self.last_snapshot = index
        if drain:
            self.drain(host)
