"""The trio driver: ties the sans-I/O core to storage, transport and the FSM.

One task (``_loop``) owns the core. Everything else — incoming messages,
ticks, proposals, reads, membership calls — is queued for it and picked up
in batches, so many proposals that arrive while the previous batch is being
fsynced go to disk together (group commit) and to followers in one message.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import trio

from .backoff import Backoff, StorageHealth
from .core import COMMIT_NOTICE, CoreConfig, CoreStatus, InitialState, RaftCore
from .errors import (
    LeadershipLostError,
    NotLeaderError,
    ProposalDroppedError,
    RaftError,
    StorageUnavailableError,
)
from .fsm import SnapshotView, SnapshotViewMachine, StateMachine
from .stages import Stages
from .storage import MemoryStorage, Storage
from .types import (
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
    SnapshotMeta,
    SoftState,
    Suffrage,
)
from .writes import DurableWrites, _Future, _Write

log = logging.getLogger("raft.node")
MAX_INBOX = 65536
# Scheduler rounds the loop gives the transport readers after a stall.
_DRAIN_ROUNDS = 8


class TransportLike(Protocol):
    """What the driver needs of ``raft.transport.Transport``."""

    incoming: trio.MemoryReceiveChannel[Message]
    on_snapshot_done: Callable[[str, bool], None] | None
    on_unreachable: Callable[[str], None] | None
    on_message: Callable[[Message], None] | None
    on_peer_lost: Callable[[str], None] | None

    def send(self, msg: Message) -> None: ...
    def set_peer(self, peer_id: str, address: str) -> None: ...
    def remove_peer(self, peer_id: str) -> None: ...


@dataclass(frozen=True)
class NodeConfig:
    id: str
    address: str
    tick_interval: float = 0.1
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    snapshot_threshold: int = 16384
    trailing_logs: int = 10240
    max_inflight: int = 256
    pre_vote: bool = True
    check_quorum: bool = True


@dataclass(frozen=True)
class NodeStatus:
    core: CoreStatus
    applied: int
    last_contact: float | None  # seconds since the leader was last heard; 0 on the leader
    snapshot_index: int
    snapshots_installed: int  # snapshots received from a leader since start


class RaftNode(DurableWrites):
    """A Raft server. Start it with ``await nursery.start(node.run)``."""

    def __init__(
        self,
        config: NodeConfig,
        storage: Storage,
        fsm: StateMachine,
        transport: TransportLike | None = None,
        *,
        rng: random.Random | None = None,
        bootstrap: Configuration | None = None,
    ) -> None:
        self.config = config
        self.storage = storage
        self.fsm = fsm
        # A state machine may apply a proposer's decoded command (see apply).
        self._apply_decoded: Callable[[int, Any], Any] | None = getattr(fsm, "apply_decoded", None)
        self.transport = transport
        self._rng = rng or random.Random()
        self._bootstrap = bootstrap
        self._core: RaftCore | None = None
        self._wake = trio.Event()
        self._inbox: list[Message] = []
        self._ticks = 0
        self._proposals: list[tuple[bytes, _Future]] = []
        self._calls: list[tuple[Callable[[RaftCore], Any], _Future]] = []
        self._pending: dict[int, tuple[int, _Future]] = {}
        self._conf_waiters: list[tuple[int, int, _Future]] = []
        self._read_waiters: list[_Future] = []
        self._read_rounds: dict[bytes, list[_Future]] = {}
        self._read_seq = 0
        self._read_round_at = 0.0  # when the latest ReadIndex round started
        self._read_round_patience = config.tick_interval * config.heartbeat_ticks
        self._reads_ready: list[tuple[int, list[_Future]]] = []
        self._applied_waiters: list[tuple[int, _Future]] = []
        self._applied = 0
        self._snapshot_index = 0
        self._snapshots_installed = 0
        self._snapshotting = False
        self._hard = HardStateWriter(HardState())
        self._soft = SoftState(Role.FOLLOWER, None, 0)
        self._state_changed = trio.Event()
        self._last_contact: float | None = None
        self._peers: dict[str, str] = {}
        self._peers_of: Configuration | None = None  # what _peers was computed from
        self._events: list[tuple[str, Any]] = []
        # Commit notices held back until the proposers they answer have run.
        self._deferred: list[Message] = []
        self._claimed: list[Message] = []  # deferred ones _notice_sender sends next
        self._deferred_wake = trio.Event()
        self.observers: list[Callable[[SoftState], None]] = []
        # Optional instrumentation, set by the application (raft knows no metrics
        # library): seconds from the leader accepting a proposal to its commit,
        # and seconds one entry took in ``fsm.apply``.
        self.on_commit_latency: Callable[[float], None] | None = None
        self.on_apply_latency: Callable[[float], None] | None = None
        self.leader_changes = 0  # times a leader different from the last one became known
        self._nursery: trio.Nursery | None = None
        self._fatal: BaseException | None = None
        self._writes: list[_Write] = []
        # Writes that failed for a reason that can pass (a full disk), retried
        # first, in order, on the schedule ``_storage`` keeps.
        self._backlog: list[_Write] = []
        self._storage = StorageHealth(config.id)
        self._snapshot_backoff = Backoff(1.0, 60.0)
        self._write_wake = trio.Event()
        self._write_lock = trio.Lock()
        self._in_memory = isinstance(storage, MemoryStorage)
        self._inline_after = -math.inf
        self._stages = Stages.from_env()  # None unless a benchmark asks

    # ---------------------------------------------------------------- start

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load durable state, restore the FSM and run until cancelled.

        Calls ``task_status.started()`` once the node is running. Raises
        ``StorageError`` if the durable state cannot be loaded, and
        ``RaftInvariantError`` if the log or FSM turns out to be corrupt.
        Closes the storage on the way out.
        """
        try:
            core = await self._load()
            self._core = core
            if self.transport is not None:
                self.transport.on_snapshot_done = self._on_snapshot_done
                self.transport.on_unreachable = self._on_unreachable
                self.transport.on_message = self._on_message
                self.transport.on_peer_lost = self._on_peer_lost
                if self._stages is not None and hasattr(self.transport, "stamp_reads"):
                    transport: Any = self.transport
                    transport.stamp_reads = True  # bytes-read times (benchmarks)
            self._sync_peers()
            self._campaign_if_alone()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._ticker)
                nursery.start_soon(self._writer)
                nursery.start_soon(self._notice_sender)
                task_status.started()
                await self._loop()
        finally:
            stopped = ProposalDroppedError("raft node stopped")
            self._fail_all(stopped)
            for _, fut in self._applied_waiters:
                fut.fail(stopped)
            # Shielded: a node stops by being cancelled (every agent does), and
            # an await in a cancelled scope raises at once: the storage was
            # never closed (its segment file left open, a second owner of the
            # directory when the server is started again in the process).
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.storage.close)

    async def _load(self) -> RaftCore:
        state = await trio.to_thread.run_sync(self.storage.load)
        snap = None
        if state.snapshot is not None:
            snap = await trio.to_thread.run_sync(self.storage.load_snapshot)
        cfg = self.config
        core = RaftCore(
            CoreConfig(
                id=cfg.id,
                election_ticks=cfg.election_ticks,
                heartbeat_ticks=cfg.heartbeat_ticks,
                max_inflight=cfg.max_inflight,
                pre_vote=cfg.pre_vote,
                check_quorum=cfg.check_quorum,
            ),
            self._rng,
            InitialState(state.hard_state, snap.meta if snap else None, state.entries),
            bootstrap=self._bootstrap,
        )
        if snap is not None:
            self.fsm.restore(snap.data)
            self._applied = self._snapshot_index = snap.meta.index
        self._hard = HardStateWriter(state.hard_state)
        log.info(
            "event=raft_loaded id=%s term=%d commit=%d last=%d snapshot=%d",
            cfg.id,
            state.hard_state.term,
            state.hard_state.commit,
            core.log.last_index(),
            self._snapshot_index,
        )
        return core

    # --------------------------------------------------------- public calls

    @property
    def core(self) -> RaftCore:
        if self._core is None:
            raise RaftError("raft node is not running")
        return self._core

    def is_leader(self) -> bool:
        return self._core is not None and self._core.role == Role.LEADER

    def leader(self) -> tuple[str | None, str | None]:
        """(id, address) of the leader this server believes in, if any."""
        core = self.core
        if core.leader is None:
            return None, None
        srv = core.configuration.get(core.leader)
        return core.leader, srv.address if srv else None

    async def apply(self, data: bytes, *, decoded: Any = None) -> Any:
        """Replicate ``data`` and return the FSM's result for it.

        ``decoded``: what ``data`` decodes to, when the caller has it (it
        encoded it): a state machine with ``apply_decoded`` then applies that
        here instead of decoding ``data`` again. Only this entry's own
        proposal carries it (same index and term), so every other server,
        and this one replaying its log, still decodes the bytes.

        Raises ``NotLeaderError`` (with the leader's id and address) on a
        follower, ``ProposalDroppedError`` during a leadership transfer or
        when leadership was lost before the command reached the log (it was
        not applied), and ``LeadershipLostError`` if leadership was lost
        after it was appended (it may still commit). On cancellation the command stays proposed and
        may still be applied; only the wait is abandoned.
        """
        self._check_running()
        if self.core.role != Role.LEADER:
            leader_id, addr = self.leader()
            raise NotLeaderError(leader_id, addr)
        if self._storage.error is not None:
            raise StorageUnavailableError(
                f"this server cannot persist its raft log ({self._storage.error}); "
                "writes are refused until it can"
            )
        fut = _Future(decoded)
        self._proposals.append((data, fut))
        self._wake.set()
        if (st := self._stages) is None:
            return await fut.wait()
        return await self._staged_apply(st, fut)

    async def _staged_apply(self, st: Stages, fut: _Future) -> Any:
        """``fut.wait()`` timed stage by stage (benchmarks): in the caller's
        request sample when it has one (``stages.CURRENT``), else in one of
        its own (``leader_put``)."""
        outer = st.enter(fut, "apply")
        try:
            return await fut.wait()
        finally:
            st.leave(fut, "leader_put", outer)

    async def apply_batch(self, batch: Sequence[bytes]) -> list[Any]:
        """Propose every command of ``batch`` in one step, in order (one log
        append and one fsync round), and return each one's outcome: the FSM's
        result, or the ``RaftError`` that command failed with (as ``apply``
        would raise it). Raises like ``apply`` when nothing could be proposed
        (not the leader, storage unavailable)."""
        self._check_running()
        if self.core.role != Role.LEADER:
            leader_id, addr = self.leader()
            raise NotLeaderError(leader_id, addr)
        if self._storage.error is not None:
            raise StorageUnavailableError(
                f"this server cannot persist its raft log ({self._storage.error}); "
                "writes are refused until it can"
            )
        futures = [_Future() for _ in batch]
        self._proposals.extend(zip(batch, futures, strict=True))
        self._wake.set()
        # Commands are applied in log order, so the wait for the first one
        # usually ends with all of them done: wait only for those that are
        # not (``_Future.wait`` on a done future still costs a scheduler
        # round each, which for a batch of n meant n - 1 rounds of the
        # whole loaded process before the batch could be answered).
        for fut in futures:
            if not fut.done():
                await fut.wait_done()
        outcomes: list[Any] = []
        for fut in futures:
            if fut.error is None:
                outcomes.append(fut.result)
            elif isinstance(fut.error, RaftError):
                outcomes.append(fut.error)
            else:
                raise fut.error
        return outcomes

    def compact_through(self, index: int) -> None:
        """The FSM state at applied ``index`` replaced what the log before it
        built (a snapshot restore) and is saved as the latest snapshot: drop
        every entry up to ``index``, so a server that needs them is sent that
        snapshot instead of replaying history the restore discarded.

        Raises ``RaftInvariantError`` if ``index`` is not applied (or already
        compacted)."""
        self.core.compact(index, 0)
        self._snapshot_index = max(self._snapshot_index, index)

    async def read_barrier(self, *, allow_lease: bool = False) -> int:
        """Wait until the local FSM reflects every write committed before the
        call (a ReadIndex round, §6.4), and return that index. With
        ``allow_lease`` a leader whose lease holds skips the round (Consul's
        ``default`` consistency). Raises ``NotLeaderError`` on a follower and
        ``LeadershipLostError`` if leadership is lost meanwhile."""
        self._check_running()
        core = self.core
        if core.role != Role.LEADER:
            leader_id, addr = self.leader()
            raise NotLeaderError(leader_id, addr)
        fut = _Future()
        st = self._stages
        outer = None
        if allow_lease and core.lease_valid():
            self._reads_ready.append((core.log.commit, [fut]))
        else:
            self._read_waiters.append(fut)
            if st is not None:
                outer = st.enter(fut, "barrier")
        self._wake.set()
        result: int = await fut.wait()
        if st is not None:
            st.leave(fut, "leader_read", outer)
        return result

    async def wait_applied(self, index: int) -> None:
        """Return once the local FSM has applied ``index`` (a follower serving
        a read after learning the leader's read index). Raises
        ``ProposalDroppedError`` if the node stops first."""
        self._check_running()
        if self._applied >= index:
            await trio.lowlevel.checkpoint()
            return
        fut = _Future()
        self._applied_waiters.append((index, fut))
        await fut.wait()

    async def bootstrap(self, configuration: Configuration) -> None:
        """Bootstrap a server that has no state yet with ``configuration``
        (every founding server must use the same one). Raises
        ``ConfigChangeError`` if it already has state."""
        await self._call(lambda c: c.bootstrap(configuration))
        self._campaign_if_alone()

    def _campaign_soon(self) -> None:
        """The leader's connection dropped (its process is likely gone): stand
        for election after a random fraction of a heartbeat interval rather
        than a whole election timeout, unless a leader turns up meanwhile.
        The randomness keeps the servers that noticed it from splitting the
        vote. A host that vanishes without closing its connections still
        takes the election timeout."""
        if self._nursery is None:
            return
        delay = self._rng.uniform(0, 1.5 * self.config.tick_interval * self.config.heartbeat_ticks)

        async def campaign() -> None:
            await trio.sleep(delay)
            self._calls.append((lambda c: c.campaign() if c.leader is None else None, _Future()))
            self._wake.set()

        log.info(
            "event=raft_leader_connection_lost id=%s campaign_in_ms=%d",
            self.config.id,
            delay * 1000,
        )
        self._nursery.start_soon(campaign)

    def _campaign_if_alone(self) -> None:
        # A single-voter cluster need not wait an election timeout (--dev
        # must be ready in well under a second).
        core = self.core
        if core.configuration.voters() == {self.config.id} and core.role != Role.LEADER:
            self._calls.append((lambda c: c.campaign(), _Future()))
            self._wake.set()

    def learn_peer(self, server_id: str, address: str) -> None:
        """Tell the transport how to reach a server that is not (yet) in this
        server's configuration: a server joining an existing cluster must be
        able to answer the leader before the leader's log tells it who is who."""
        known = server_id in self._peers or server_id == self.config.id
        if self.transport is not None and not known:
            self.transport.set_peer(server_id, address)

    async def add_nonvoter(self, server_id: str, address: str) -> None:
        """Add a non-voting server and wait until the change commits."""
        await self._conf_change(lambda c: c.add_nonvoter(server_id, address))

    async def add_voter(self, server_id: str, address: str, *, timeout: float = 30) -> None:
        """Add a voter (as a non-voter first, promoted once caught up) and wait
        until it votes. Raises ``ConfigChangeError`` or ``TimeoutError``."""
        await self._conf_change(lambda c: c.add_voter(server_id, address))
        with trio.fail_after(timeout):
            while True:
                srv = self.core.configuration.get(server_id)
                if srv is not None and srv.suffrage == Suffrage.VOTER:
                    committed = self.core.configuration_at(self.core.log.commit)
                    cs = committed.get(server_id)
                    if cs is not None and cs.suffrage == Suffrage.VOTER:
                        return
                if self.core.role != Role.LEADER:
                    raise LeadershipLostError("leadership lost while adding a voter")
                await self.wait_state_change(self.config.tick_interval)

    async def remove_server(self, server_id: str) -> None:
        """Remove a server and wait until the change commits (a leader that
        removes itself steps down after that, §4.2.2)."""
        await self._conf_change(lambda c: c.remove_server(server_id))

    async def transfer_leadership(self, target: str | None = None) -> str:
        """Hand leadership to ``target`` (default: the most caught-up voter)
        and wait until this server is no longer leader. Raises
        ``ConfigChangeError`` for a bad target and ``TimeoutError`` if the
        transfer did not happen within an election timeout."""
        chosen: str = await self._call(lambda c: c.transfer_leadership(target))
        limit = self.config.tick_interval * (self.config.election_ticks + 2)
        with trio.fail_after(limit):
            while self.core.role == Role.LEADER:
                await self.wait_state_change(self.config.tick_interval)
        return chosen

    def status(self) -> NodeStatus:
        return NodeStatus(
            self.core.status(),
            self._applied,
            self.last_contact(),
            self._snapshot_index,
            self._snapshots_installed,
        )

    def last_contact(self) -> float | None:
        """Seconds since the leader was last heard from: 0 on the leader,
        None if never (cheap: every API answer reports it)."""
        if self.core.role == Role.LEADER:
            return 0.0
        if self._last_contact is None:
            return None
        return trio.current_time() - self._last_contact

    async def wait_state_change(self, timeout: float = math.inf) -> None:
        """Return when role, leader or term changes, or after ``timeout``."""
        with trio.move_on_after(timeout):
            await self._state_changed.wait()

    async def wait_for_leader(self, timeout: float) -> str:
        """Wait until some leader is known; returns its id. Raises TimeoutError."""
        with trio.fail_after(timeout):
            while self.core.leader is None:
                await self.wait_state_change()
        return self.core.leader

    @property
    def applied_index(self) -> int:
        return self._applied

    # ---------------------------------------------------------- internals

    def _check_running(self) -> None:
        if self._fatal is not None:
            raise RaftError(f"raft node failed: {self._fatal}")
        if self._core is None:
            raise RaftError("raft node is not running")

    async def _call(self, fn: Callable[[RaftCore], Any]) -> Any:
        self._check_running()
        fut = _Future()
        self._calls.append((fn, fut))
        self._wake.set()
        return await fut.wait()

    async def _conf_change(self, fn: Callable[[RaftCore], int]) -> None:
        index: int = await self._call(fn)
        core = self.core
        if index <= core.log.commit:
            return
        fut = _Future()
        self._conf_waiters.append((index, core.term, fut))
        await fut.wait()

    def _on_snapshot_done(self, peer: str, ok: bool) -> None:
        self._events.append(("snapshot", (peer, ok)))
        self._wake.set()

    def _on_peer_lost(self, peer: str) -> None:
        self._events.append(("peer_lost", peer))
        self._wake.set()

    def _on_unreachable(self, peer: str) -> None:
        self._events.append(("unreachable", peer))
        self._wake.set()

    async def _ticker(self) -> None:
        interval = self.config.tick_interval
        deadline = trio.current_time()
        while True:
            deadline += interval
            await trio.sleep_until(deadline)
            # Count the ticks a stall swallowed: the core's clock must not run
            # behind real time, or a leader lease would outlive its duration.
            missed = int((trio.current_time() - deadline) // interval)
            if missed >= 3:  # one line per stall long enough to matter
                log.warning(
                    "event=raft_loop_stall id=%s role=%s stalled_ms=%d inbox=%d",
                    self.config.id,
                    self._soft.role.value,
                    (trio.current_time() - deadline + interval) * 1000,
                    len(self._inbox),
                )
            deadline += missed * interval
            self._ticks += 1 + missed
            self._wake.set()

    def _on_message(self, msg: Message) -> None:
        # Raft tolerates loss: beyond this many unprocessed messages the
        # loop is far behind and new ones are dropped, bounding memory.
        if len(self._inbox) < MAX_INBOX:
            self._inbox.append(msg)
            self._wake.set()
            if self._stages is not None:
                self._stage_message(msg, self._stages)

    def _stage_message(self, msg: Message, st: Stages) -> None:
        """A message delivered (benchmarks): a follower's append sample starts
        when its bytes were read (the transport's ``read_ns``); an
        acknowledgement stamps the leader's writes it covers."""
        read_ns = getattr(self.transport, "read_ns", 0) or None
        if msg.type == MessageType.APP and msg.entries:
            fkey = ("f", msg.entries[-1].index)
            st.begin(fkey, read_ns)
            st.label(fkey, "index", msg.entries[-1].index)
            st.stamp(fkey, "decoded")
        elif msg.type == MessageType.APP_RESP and not msg.reject:
            for index, (_, fut) in self._pending.items():
                if index <= msg.index:
                    st.stamp(fut, "ack_read", read_ns)
                    st.stamp(fut, "first_ack")
        elif msg.type == MessageType.HEARTBEAT and msg.context:
            key = ("h", msg.context)
            st.begin(key, read_ns)
            st.label(key, "round", int.from_bytes(msg.context, "big"))
            st.stamp(key, "decoded")
        elif msg.type == MessageType.HEARTBEAT_RESP and msg.context:
            for fut in self._read_rounds.get(msg.context, ()):
                st.stamp(fut, "hb_ack_read", read_ns)
                st.stamp(fut, "first_heartbeat_ack")

    def _stage_stepped(self, msg: Message, st: Stages) -> None:
        if msg.type == MessageType.APP and msg.entries:
            st.stamp(("f", msg.entries[-1].index), "stepped")
        elif msg.type == MessageType.HEARTBEAT and msg.context:
            st.stamp(("h", msg.context), "stepped")
        elif msg.type == MessageType.APP_RESP and not msg.reject:
            for index, (_, fut) in self._pending.items():
                if index <= msg.index:
                    st.stamp(fut, "ack_stepped")
        elif msg.type == MessageType.HEARTBEAT_RESP and msg.context:
            for fut in self._read_rounds.get(msg.context, ()):
                st.stamp(fut, "hb_ack_stepped")

    async def _loop(self) -> None:
        core = self.core
        while True:
            await self._wake.wait()
            if self._ticks > 1:
                await self._drain_readable()
            self._wake = trio.Event()
            self._feed(core)
            while core.has_ready():
                rd = core.ready()
                persisted = await self._handle_ready(core, rd)
                core.advance(rd, persisted=persisted)
                self._after_advance(core)
                if self._read_waiters and not self._read_rounds:
                    self._start_read_round(core)  # the round they waited for ended
            # Lease reads need no Ready at all: settle them on every pass.
            self._after_advance(core)
            if core.lost_state:
                for peer, acked, last in core.lost_state:
                    log.warning(
                        "event=raft_follower_lost_state id=%s peer=%s acknowledged=%d "
                        "log_ends=%d action=resend_from_log_end_or_snapshot",
                        self.config.id,
                        peer,
                        acked,
                        last,
                    )
                core.lost_state.clear()
            self._sync_peers()
            self._maybe_snapshot(core)

    async def _drain_readable(self) -> None:
        """The loop stalled (several ticks are due at once): let the
        transport's readers take what arrived on their sockets meanwhile, so
        the peers' messages count before the stall's ticks are applied.
        One scheduler round for the I/O poll to see the sockets readable,
        then rounds until two in a row deliver nothing: trio runs a round's
        tasks in either order, so the readers woken by one poll may run
        after this task in that round, and a single quiet round proves
        nothing (that cut short the drain on a loaded server, and a follower
        whose leader had been heard stood for election)."""
        # Bounded in rounds, and in time once the readers had their chance:
        # under a load that makes each round long, heartbeats going out soon
        # matter more than a complete count.
        limit = trio.current_time() + self.config.tick_interval
        quiet = 0
        for round_ in range(_DRAIN_ROUNDS):
            before = len(self._inbox)
            await trio.lowlevel.cancel_shielded_checkpoint()
            if round_ == 0:
                continue  # the readers woken by the poll run in the rounds after
            quiet = quiet + 1 if len(self._inbox) == before else 0
            if quiet >= 2 or (round_ >= 2 and trio.current_time() >= limit):
                return

    def _feed(self, core: RaftCore) -> None:
        # Messages first: after a stall (a burst of HTTP work on this thread)
        # the heartbeats and acknowledgements that arrived during it must
        # count before the stall's ticks do, or a follower whose leader was
        # talking to it all along would start an election and a leader that
        # heard from its quorum would step down. Leases are safe either way:
        # they run from the tick a heartbeat was sent, echoed back.
        inbox, self._inbox = self._inbox, []
        st = self._stages
        for msg in inbox:
            core.step(msg)
            if msg.src == core.leader and core.role == Role.FOLLOWER:
                self._last_contact = trio.current_time()
            if st is not None:
                self._stage_stepped(msg, st)
        ticks, self._ticks = self._ticks, 0
        # Beyond two election timeouts more ticks change nothing (every lease
        # and timer has expired). One batch: the core evaluates check-quorum
        # once over it and sends one heartbeat, not one per swallowed tick.
        if ticks:
            core.tick(min(ticks, 2 * self.config.election_ticks))
        events, self._events = self._events, []
        for kind, arg in events:
            if kind == "snapshot":
                core.report_snapshot(*arg)
            elif kind == "unreachable":
                core.report_unreachable(arg)
            elif kind == "persisted":
                core.persisted(*arg)
            elif kind == "peer_lost":
                # A follower's process may be gone (restarting, perhaps with
                # an empty data dir): stop trusting its pipeline and re-probe.
                core.report_unreachable(arg)
                if core.leader_unreachable(arg):
                    self._campaign_soon()
            elif kind == "snapshot_written":
                self._snapshotting = False
                if arg and arg > self._snapshot_index and core.log.offset < arg <= core.log.applied:
                    core.compact(arg, self.config.trailing_logs)
                    self._snapshot_index = arg
        calls, self._calls = self._calls, []
        for fn, fut in calls:
            try:
                fut.set(fn(core))
            except RaftError as exc:
                fut.fail(exc)
        self._propose(core)
        self._start_read_round(core)

    def _start_read_round(self, core: RaftCore) -> None:
        """One ReadIndex round (§6.4) for every read waiting, while none is in
        flight: reads arriving during a round wait for it to end and share the
        next one, as etcd batches its read-index requests, so 64 concurrent
        readers cost a few heartbeat rounds, not one each. A round in flight
        for a heartbeat interval (its heartbeats lost: the core's periodic
        ones confirm it later) no longer holds the next one back."""
        if not self._read_waiters:
            return
        now = trio.current_time()
        if self._read_rounds and now - self._read_round_at < self._read_round_patience:
            return
        waiters, self._read_waiters = self._read_waiters, []
        self._read_seq += 1
        ctx = self._read_seq.to_bytes(8, "big")
        try:
            core.read_index(ctx)
        except RaftError as exc:
            for fut in waiters:
                fut.fail(exc)
            return
        self._read_rounds[ctx] = waiters
        self._read_round_at = now
        if self._stages is not None:
            for fut in waiters:
                self._stages.stamp(fut, "round_started")
                self._stages.label(fut, "round", self._read_seq)

    def _propose(self, core: RaftCore) -> None:
        if not self._proposals:
            return
        proposals, self._proposals = self._proposals, []
        try:
            placed = core.propose_batch([data for data, _ in proposals])
        except RaftError as exc:
            for _, fut in proposals:
                fut.fail(exc)
            return
        now = trio.current_time()
        for (index, term), (_, fut) in zip(placed, proposals, strict=True):
            fut.proposed_at = now
            self._pending[index] = (term, fut)
            if self._stages is not None:
                self._stages.stamp(fut, "proposed")
                self._stages.label(fut, "index", index)

    async def _handle_ready(self, core: RaftCore, rd: Ready) -> bool:
        """Persist, send, apply; returns whether ``rd.entries`` are durable yet.

        A leader sends its appends first and, when other tasks are waiting
        to run, leaves its own write to the writer task (thesis §10.2.1): it
        counts itself towards commitment only once the writer reports the
        entries persisted. An idle leader writes them here. Everyone else
        waits for the write before sending, since their messages (votes,
        append acknowledgements) promise durability.
        """
        hs = self._hard.for_ready(rd)
        persisted = self._hard.persisted
        background = (
            core.role == Role.LEADER
            and rd.snapshot is None
            and (hs is None or (hs.term, hs.vote) == (persisted.term, persisted.vote))
        )
        durable = False
        st = self._stages
        notices: list[Message] = []
        if background:
            if st is None:
                self._send(self._split_notices(rd, notices))
            else:
                self._staged_send(self._split_notices(rd, notices), rd.entries, st)
            if rd.entries or hs is not None:
                write = _Write(hs, list(rd.entries))
                if self._writes or self._backlog or self._write_lock.locked():
                    self._queue_write(write)  # after the writes before it
                elif self._in_memory or self._inline_write_ok():
                    # Idle: written here, with nothing else to run meanwhile,
                    # rather than by the writer task a scheduler round later.
                    durable = await self._write_now(write)
                else:
                    self._queue_write(write)
        else:
            durable = True
            if rd.entries or hs is not None or rd.snapshot is not None or self._backlog:
                # Written here, after anything still queued, rather than by the
                # writer task, and acknowledged right after the write: no
                # scheduler round on a follower's path while idle.
                if st is not None:
                    self._stage_follower(rd.entries, st, "ready")
                await self._acquire_write_lock()
                try:
                    batch, self._writes = self._writes, []
                    batch.append(_Write(hs, list(rd.entries), rd.snapshot))
                    durable = await self._write_durably(batch, by_loop=True)
                finally:
                    self._write_lock.release()
                self._check_running()
            # Unwritten, its votes and acknowledgements would promise what is
            # not on disk: it says nothing (Raft tolerates the loss) until it is.
            if durable:
                self._send(rd.messages)
                if st is not None:
                    self._stage_follower(rd.entries, st, "acked", end=True)
                    for m in rd.messages:
                        if m.type == MessageType.HEARTBEAT_RESP and m.context:
                            st.end(("h", m.context), "follower_heartbeat", "acked")
        if rd.snapshot is not None:
            self.fsm.restore(rd.snapshot.data)
            self._applied = self._snapshot_index = rd.snapshot.meta.index
            self._snapshots_installed += 1
            self._fail_pending_upto(rd.snapshot.meta.index)
        self._apply(rd)
        if notices:
            self._defer(notices)
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state)
        for rs in rd.read_states:
            waiters = self._read_rounds.pop(rs.context, [])
            self._reads_ready.append((rs.index, waiters))
            if st is not None:
                for fut in waiters:
                    st.stamp(fut, "quorum")
        return durable

    def _split_notices(self, rd: Ready, notices: list[Message]) -> Sequence[Message]:
        """The messages a leader sends before applying ``rd``; moves the
        commit notices (``COMMIT_NOTICE`` empty appends, §3.5: followers
        learn the new commit index) to ``notices`` when this Ready answers a
        local proposer.

        Each send to a follower on loopback costs ~50-150 us of wall time
        (the syscall, and the woken follower taking the CPU), and at one
        connection a commit's Ready holds nothing but the two notices: they
        went out before the apply, so every PUT waited for them. Now they
        go after the proposer's answer: a follower learns the commit two or
        three scheduler rounds later (its reads and blocking queries wait that
        much longer), and with the next append in any case."""
        if self.transport is None or self._nursery is None:
            return rd.messages
        pending = self._pending
        if not any(e.index in pending for e in rd.committed_entries):
            return rd.messages
        send: list[Message] = []
        for msg in rd.messages:
            if msg.type == MessageType.APP and msg.context == COMMIT_NOTICE:
                notices.append(msg)
            else:
                send.append(msg)
        return send

    def _defer(self, notices: list[Message]) -> None:
        self._deferred.extend(notices)
        self._deferred_wake.set()

    async def _notice_sender(self) -> None:
        """Send the deferred commit notices once the proposers the apply
        resumed have run. It claims the notices held back so far: their
        proposers were woken in this scheduler round or before, so they run
        in the next round at the latest, and trio runs a round's tasks in
        either order: the claimed notices go out two rounds later (a PUT's
        handler answers in its step). Notices held back after the claim
        wait for the next one. An append the loop sends a follower
        meanwhile makes its notice redundant (``_send`` drops it)."""
        while True:
            await self._deferred_wake.wait()
            self._deferred_wake = trio.Event()
            self._claimed.extend(self._deferred)
            self._deferred = []
            await trio.lowlevel.checkpoint()
            await trio.lowlevel.checkpoint()
            claimed, self._claimed = self._claimed, []
            self._transmit(claimed)

    def _staged_send(
        self, messages: Sequence[Message], entries: Sequence[Entry], st: Stages
    ) -> None:
        """``_send`` (benchmarks): the time the Ready took, then each message's
        send to the transport (on loopback, a TLS record write that wakes the
        follower) stamped on its own."""
        self._stage_entries(entries, st, "ready")
        for i, msg in enumerate(messages):
            self._send([msg])
            if i < 2:  # one per follower of 3 servers; more only in a few samples
                self._stage_entries(entries, st, f"sent{i + 1}")
                if msg.type == MessageType.HEARTBEAT and msg.context:
                    for fut in self._read_rounds.get(msg.context, ()):
                        st.stamp(fut, f"hb_sent{i + 1}")
        self._stage_entries(entries, st, "sent")

    def _stage_entries(self, entries: Sequence[Entry], st: Stages, stage: str) -> None:
        for e in entries:
            pending = self._pending.get(e.index)
            if pending is not None:
                st.stamp(pending[1], stage)

    def _stage_follower(
        self, entries: Sequence[Entry], st: Stages, stage: str, *, end: bool = False
    ) -> None:
        for e in entries:
            if end:
                st.end(("f", e.index), "follower_append", stage)
            else:
                st.stamp(("f", e.index), stage)

    def _send(self, messages: Sequence[Message]) -> None:
        if self.transport is None:
            return
        if self._claimed or self._deferred:
            # A held-back commit notice to a follower that an append now
            # reaches is redundant: the append carries a commit index at
            # least as new (busy leaders: most of them). So one never
            # arrives after a later append either (harmless, but useless).
            appended = {m.dst for m in messages if m.type == MessageType.APP}
            if appended:
                self._claimed = [m for m in self._claimed if m.dst not in appended]
                self._deferred = [m for m in self._deferred if m.dst not in appended]
        self._transmit(messages)

    def _transmit(self, messages: Sequence[Message]) -> None:
        if self.transport is None:
            return
        for msg in messages:
            if msg.type == MessageType.SNAP and self._nursery is not None:
                self._nursery.start_soon(self._send_snapshot, msg)
            else:
                self.transport.send(msg)

    async def _send_snapshot(self, msg: Message) -> None:
        assert self.transport is not None
        snap = await trio.to_thread.run_sync(self.storage.load_snapshot)
        if snap is None:
            self._on_snapshot_done(msg.dst, False)
            return
        self.transport.send(
            Message(
                MessageType.SNAP,
                msg.src,
                msg.dst,
                msg.term,
                snapshot=Snapshot(snap.meta, snap.data),
            )
        )

    def _apply(self, rd: Ready) -> None:
        on_commit, on_apply = self.on_commit_latency, self.on_apply_latency
        committed_at = trio.current_time() if on_commit is not None else 0.0
        for entry in rd.committed_entries:
            result: Any = None
            pending = self._pending.pop(entry.index, None)
            if entry.kind == EntryKind.NORMAL:
                if self._stages is not None and pending is not None:
                    self._stages.stamp(pending[1], "committed")
                started = trio.current_time() if on_apply is not None else 0.0
                if (
                    pending is not None
                    and pending[1].decoded is not None
                    and pending[0] == entry.term
                    and self._apply_decoded is not None
                ):
                    result = self._apply_decoded(entry.index, pending[1].decoded)
                else:
                    result = self.fsm.apply(entry.index, entry.data)
                if on_apply is not None:
                    on_apply(trio.current_time() - started)
                if self._stages is not None and pending is not None:
                    self._stages.stamp(pending[1], "applied")
            self._applied = entry.index
            if pending is not None:
                term, fut = pending
                if term == entry.term:
                    if on_commit is not None:
                        on_commit(committed_at - fut.proposed_at)
                    fut.set(result)
                else:
                    # Certainly not applied: the index holds another entry for good.
                    fut.fail(ProposalDroppedError("another leader's entry committed in its place"))
            if entry.kind == EntryKind.CONFIG:
                self._resolve_conf(entry.index, entry.term)

    def _resolve_conf(self, index: int, term: int) -> None:
        keep = []
        for want, want_term, fut in self._conf_waiters:
            if want == index:
                if want_term == term:
                    fut.set(None)
                else:
                    fut.fail(LeadershipLostError("configuration change lost"))
            elif want < index:
                fut.fail(LeadershipLostError("configuration change lost"))
            else:
                keep.append((want, want_term, fut))
        self._conf_waiters = keep

    def _after_advance(self, core: RaftCore) -> None:
        if self._applied_waiters:
            applied = self._applied
            if any(index <= applied for index, _ in self._applied_waiters):
                for index, fut in self._applied_waiters:
                    if index <= applied:
                        fut.set(None)
                self._applied_waiters = [w for w in self._applied_waiters if w[0] > applied]
        if self._reads_ready:
            still = []
            for index, waiters in self._reads_ready:
                if index <= self._applied:
                    for fut in waiters:
                        fut.set(index)
                else:
                    still.append((index, waiters))
            self._reads_ready = still

    def _on_soft_state(self, soft: SoftState) -> None:
        was_leader = self._soft.role == Role.LEADER
        if soft.leader is not None and soft.leader != self._soft.leader:
            self.leader_changes += 1
        self._soft = soft
        if was_leader and soft.role != Role.LEADER:
            self._fail_all(LeadershipLostError("leadership lost"))
        if soft.role == Role.FOLLOWER and soft.leader is not None:
            self._last_contact = trio.current_time()
        log.info(
            "event=raft_state id=%s role=%s term=%d leader=%s why=%s",
            self.config.id,
            soft.role.value,
            soft.term,
            soft.leader,
            self.core.why if self._core is not None else "-",
        )
        self._state_changed.set()
        self._state_changed = trio.Event()
        for observer in self.observers:
            observer(soft)

    def _fail_all(self, error: RaftError) -> None:
        self._fail_proposals(error)
        for _, _, fut in self._conf_waiters:
            fut.fail(error)
        self._conf_waiters.clear()
        for waiters in self._read_rounds.values():
            for fut in waiters:
                fut.fail(error)
        self._read_rounds.clear()
        for fut in self._read_waiters:
            fut.fail(error)
        self._read_waiters.clear()
        for _, waiters in self._reads_ready:
            for fut in waiters:
                fut.fail(error)
        self._reads_ready.clear()

    def _fail_proposals(self, error: RaftError) -> None:
        # Leadership lost or the node stopping: a proposal in the log already
        # may still commit under the next leader (the caller must not blindly
        # send it again); one still queued never reached the log, and a retry
        # cannot apply it twice. Storage errors say so in their own text.
        appended, queued = error, error
        if isinstance(error, ProposalDroppedError):
            if not isinstance(error, LeadershipLostError):
                appended = LeadershipLostError(str(error))
            queued = ProposalDroppedError(f"{error} before the proposal reached the log")
        for _, fut in self._pending.values():
            fut.fail(appended)
        self._pending.clear()
        for _, fut in self._proposals:
            fut.fail(queued)
        self._proposals.clear()

    def _fail_pending_upto(self, index: int) -> None:
        for i in [i for i in self._pending if i <= index]:
            _, fut = self._pending.pop(i)
            fut.fail(LeadershipLostError("replaced by a snapshot from the leader"))

    def _sync_peers(self) -> None:
        if self.transport is None or self._core is None:
            return
        conf = self._core.configuration
        if conf is self._peers_of:
            return  # called on every pass of the loop; it rarely changes
        self._peers_of = conf
        want = {s.id: s.address for s in self._core.configuration.servers if s.id != self.config.id}
        if want == self._peers:
            return
        for sid, addr in want.items():
            if self._peers.get(sid) != addr:
                self.transport.set_peer(sid, addr)
        for sid in self._peers.keys() - want.keys():
            self.transport.remove_peer(sid)
        self._peers = want

    def _maybe_snapshot(self, core: RaftCore) -> None:
        """Snapshot the FSM after ``snapshot_threshold`` applied entries; the
        file is written by a background task and the log compacted (keeping
        ``trailing_logs`` for slow followers) once it is durable."""
        if self._applied - self._snapshot_index < self.config.snapshot_threshold:
            return
        if self._snapshotting or self._applied <= core.log.offset or self._nursery is None:
            return
        if self._storage.down or not self._snapshot_backoff.due(trio.current_time()):
            return  # retried later, not on every pass: a full disk stays full a while
        meta = core.snapshot_meta_at(self._applied)
        view: SnapshotView | None = None
        data = b""
        if getattr(self.fsm, "snapshot_view", None) is not None:
            # Only the freeze runs now; serializing runs in steps, below.
            view = cast(SnapshotViewMachine, self.fsm).snapshot_view()
        else:
            data = self.fsm.snapshot()
        self._snapshotting = True
        self._nursery.start_soon(self._write_snapshot, meta, view, data)

    async def _write_snapshot(
        self, meta: SnapshotMeta, view: SnapshotView | None, data: bytes
    ) -> None:
        index = meta.index
        if view is not None:
            for _ in view.steps():
                await trio.lowlevel.checkpoint()  # one step per scheduler round
            data = view.result()
        snapshot = Snapshot(meta, data)
        compact_upto = index - self.config.trailing_logs

        def write() -> None:
            self.storage.save_snapshot(snapshot, compact_upto=compact_upto)

        try:
            await trio.to_thread.run_sync(write)
        except RaftError as exc:
            delay = self._snapshot_backoff.failed(trio.current_time())
            log.error(
                "event=raft_snapshot_failed id=%s index=%d retry_in_s=%.0f reason=%s",
                self.config.id,
                index,
                delay,
                exc,
            )
            self._events.append(("snapshot_written", 0))
        else:
            self._snapshot_backoff.succeeded()
            log.info(
                "event=raft_snapshot id=%s index=%d bytes=%d",
                self.config.id,
                index,
                len(data),
            )
            self._events.append(("snapshot_written", index))
        self._wake.set()
