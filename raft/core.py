"""The sans-I/O Raft core.

A pure state machine: inputs are ``tick()``, ``step(message)``,
``propose(data)``, ``read_index(ctx)`` and the membership and transfer calls;
outputs are collected in a ``Ready`` batch (what to persist, send, apply and
which reads are safe). It reads no clock and does no I/O; randomness comes from
the ``random.Random`` passed in, so a seeded run replays exactly.

Rules implemented here, with the sections of Ongaro's thesis ("Consensus:
Bridging Theory and Practice", 2014) they come from:

* elections with randomized timeouts (§3.4), pre-vote (§9.6), leader
  stickiness — a server that heard from a leader within the election timeout
  ignores vote requests (§4.2.3) — and check-quorum: a leader that has not
  heard from a majority for an election timeout steps down (§6.2);
* log replication with fast backtracking (§5.3), pipelined appends with an
  in-flight window, and commitment only of entries of the leader's own term
  by counting replicas (§3.6.2, Figure 3.7);
* ReadIndex reads (§6.4) and leader-lease reads (§6.4.1);
* single-server membership changes that take effect when appended (§4.1),
  non-voters that are promoted once caught up (§4.2.1), a removed leader
  stepping down once its removal commits (§4.2.2);
* leadership transfer with TimeoutNow (§3.10);
* snapshots and InstallSnapshot (§5.1-5.3).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import codec
from .errors import NotLeaderError, ProposalDroppedError, RaftInvariantError
from .log import RaftLog
from .membership import Membership
from .progress import Progress, ProgressState, committed_index, quorum
from .types import (
    Configuration,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
    SoftState,
    Suffrage,
)

MT = MessageType
TRANSFER_CONTEXT = b"transfer"
# The context of an empty append that only tells a replicating follower the
# new commit index (§3.5). The follower applies it and does not answer: its
# answer would repeat the match the leader already has, and at one write at
# a time these answers were half of all the messages a follower sent (each a
# send, a receive and a step on a loaded loopback). A notice that does not
# match the follower's log is answered (rejected) as any append.
COMMIT_NOTICE = b"commit"


@dataclass(frozen=True)
class CoreConfig:
    """Tunables, in logical ticks and counts."""

    id: str
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    max_inflight: int = 256
    max_entries_bytes: int = 1 << 20
    max_apply_batch: int = 4096
    pre_vote: bool = True
    check_quorum: bool = True
    # Consecutive election timeouts without hearing from a quorum before a
    # leader steps down (check-quorum). One (etcd's choice) made a leader
    # abdicate whenever its followers' processes froze for a second together
    # (a GC pause on a loaded host: issue 18); leases never depend on it.
    check_quorum_misses: int = 2


@dataclass
class InitialState:
    """Durable state loaded by the driver at start."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: SnapshotMeta | None = None
    entries: Sequence[Entry] = ()


@dataclass(frozen=True)
class PeerStatus:
    id: str
    address: str
    suffrage: Suffrage
    match: int
    next: int
    state: str
    ticks_since_ack: int
    # Term of the leader's entry at ``match`` (0 when unknown or compacted):
    # autopilot's LastTerm, which must equal the leader's term to be healthy.
    match_term: int = 0
    # The index a follower that lost its state must reach again before it
    # holds what it once acknowledged (0 when it does).
    regaining: int = 0


@dataclass(frozen=True)
class CoreStatus:
    id: str
    role: Role
    term: int
    leader: str | None
    commit: int
    applied: int
    last_index: int
    configuration: Configuration
    peers: tuple[PeerStatus, ...]


@dataclass
class _PendingRead:
    index: int
    context: bytes
    acks: set[str]


class RaftCore(Membership):
    """One Raft server's consensus state. Not thread-safe; one caller at a time."""

    def __init__(
        self,
        config: CoreConfig,
        rng: random.Random,
        state: InitialState | None = None,
        *,
        bootstrap: Configuration | None = None,
    ) -> None:
        self.cfg = config
        self.id = config.id
        self.rng = rng
        state = state or InitialState()
        snap = state.snapshot
        self.log = RaftLog(snap.index if snap else 0, snap.term if snap else 0, state.entries)
        self.snapshot_meta: SnapshotMeta | None = snap
        hs = state.hard_state
        self.term = hs.term
        self.vote = hs.vote
        if hs.commit:
            self.log.commit_to(hs.commit)
        # Configurations in the log after the snapshot: (index, configuration).
        self._conf_history: list[tuple[int, Configuration]] = []
        for e in self.log.entries:
            if e.kind == EntryKind.CONFIG:
                self._conf_history.append((e.index, codec.decode_configuration(e.data)))
        self.configuration = self._latest_configuration()
        if self.log.last_index() == 0 and bootstrap is not None and snap is None:
            # Every bootstrapping server writes the same configuration at
            # index 1, term 1 (as hashicorp/raft's BootstrapCluster does).
            self.bootstrap(bootstrap)

        self.role = Role.FOLLOWER
        self.leader: str | None = None
        # Why the role or term last changed, for the driver's log line.
        self.why = "start"
        self.now = 0  # ticks since start, only for relative ages
        self.election_elapsed = 0
        self._leader_contact = False  # heard from the leader since the last tick()
        self.quorum_misses = 0  # check-quorum windows in a row without a quorum
        self.heartbeat_elapsed = 0
        self.randomized_timeout = self._new_timeout()
        self.votes: dict[str, bool] = {}
        self.progress: dict[str, Progress] = {}
        self.pending_conf_index = 0
        self.promote_when_caught_up: set[str] = set()
        self.transferee: str | None = None
        self.transfer_elapsed = 0
        self.pending_reads: list[_PendingRead] = []
        self.reads_waiting_commit: list[bytes] = []

        self.msgs: list[Message] = []
        self._commit_notice = False  # followers may be owed the new commit index
        self.read_states: list[ReadState] = []
        self.pending_snapshot: Snapshot | None = None
        # (follower, match it had acknowledged, where its log ends now) for
        # each follower found to have lost its log; the driver logs and clears.
        self.lost_state: list[tuple[str, int, int]] = []
        self._prev_soft = SoftState(self.role, self.leader, self.term)
        self._prev_hard = HardState(hs.term, hs.vote, self.log.commit)
        if self.term != hs.term:
            self._prev_hard = HardState(-1, None, 0)  # bootstrap: force a persist

    # ------------------------------------------------------------------ helpers

    def _new_timeout(self) -> int:
        e = self.cfg.election_ticks
        return e + self.rng.randrange(e)

    def _is_voter(self) -> bool:
        return self.id in self.configuration.voters()

    def _send(self, msg: Message) -> None:
        self.msgs.append(msg)

    def _voters(self) -> frozenset[str]:
        return self.configuration.voters()

    # ------------------------------------------------------------ role changes

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.leader = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.quorum_misses = 0
        self.randomized_timeout = self._new_timeout()
        self.votes = {}
        self.transferee = None
        self.pending_reads = []
        self.reads_waiting_commit = []
        self.progress = {}

    def become_follower(self, term: int, leader: str | None) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader = leader

    def _become_pre_candidate(self) -> None:
        # Pre-vote does not change the term or the vote (§9.6).
        self.votes = {}
        self.role = Role.PRE_CANDIDATE
        self.leader = None
        self.election_elapsed = 0
        self.randomized_timeout = self._new_timeout()

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader = self.id
        last = self.log.last_index()
        for sid in self.configuration.ids():
            self.progress[sid] = Progress(last + 1, self.cfg.max_inflight, self.now)
        if self.id not in self.progress:
            self.progress[self.id] = Progress(last + 1, self.cfg.max_inflight, self.now)
        self.progress[self.id].match = self.log.stable
        self.progress[self.id].become_replicate()
        # A conservative guard: a configuration entry not yet committed blocks
        # further changes until this term's no-op commits.
        self.pending_conf_index = last
        self._append([Entry(last + 1, self.term, EntryKind.NOOP)])
        self._bcast_append()

    # ------------------------------------------------------------------- tick

    def tick(self, count: int = 1) -> None:
        """Advance logical time by ``count`` ticks at once (a driver whose
        loop stalled applies the stall's ticks in one batch, after stepping
        the messages that arrived during it).

        ``now`` always advances by every tick, so leases never outlive real
        time. What a batch changes is when events inside it are deemed to
        have happened: the messages stepped just before it arrived somewhere
        during it, so a leader's check-quorum is evaluated once per batch
        (a second boundary inside the batch would find an empty window
        although the followers answered), and a follower that heard from its
        leader counts the contact at the batch's end (it refuses votes a
        little longer, which only lengthens the leader's lease margin)."""
        contact, self._leader_contact = self._leader_contact, False
        checked = False
        # The liveness timers (a follower's election timeout, a leader's
        # check-quorum) count at most half an election timeout of a stall:
        # the silence a stalled server saw is no evidence against its peers
        # when they were frozen by the same load, so it gives them awake time
        # to be heard before it campaigns or abdicates. Only liveness waits
        # longer: ``now`` (leases) counts every tick, and a server that times
        # out later refuses votes longer, which keeps leases safe.
        live = count if count <= 1 else min(count, max(1, self.cfg.election_ticks // 2))
        for i in range(count):
            self.now += 1
            if self.role == Role.LEADER:
                self.heartbeat_elapsed += 1
                if i < live:
                    checked = self._tick_leader(checked)
            elif i >= live or (contact and count > 1 and self.role == Role.FOLLOWER):
                continue
            else:
                self.election_elapsed += 1
                if self.election_elapsed >= self.randomized_timeout and self._promotable():
                    self.why = f"election_timeout ticks={self.election_elapsed} batch={count}"
                    self.election_elapsed = 0
                    self._campaign(transfer=False)
        if self.role == Role.LEADER and self.heartbeat_elapsed >= self.cfg.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self._bcast_heartbeat()

    def _promotable(self) -> bool:
        return self._is_voter() and self.pending_snapshot is None

    def _tick_leader(self, checked: bool) -> bool:
        """One leader tick of the check-quorum timer; returns whether
        check-quorum ran in this batch."""
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_ticks:
            self.election_elapsed = 0
            if self.cfg.check_quorum and not checked:
                checked = True
                if self._quorum_active():
                    self.quorum_misses = 0
                else:
                    self.quorum_misses += 1
                if self.quorum_misses >= self.cfg.check_quorum_misses:
                    why = f"check_quorum misses={self.quorum_misses}"
                    self.become_follower(self.term, None)  # resets the count
                    self.why = why
                    return checked
            if self.transferee is not None:
                self.transferee = None  # transfer timed out (§3.10)
        return checked

    def _quorum_active(self) -> bool:
        voters = self._voters()
        active = 0
        for sid in voters:
            pr = self.progress.get(sid)
            if sid == self.id or (pr is not None and pr.recent_active):
                active += 1
        for pr in self.progress.values():
            pr.recent_active = False
        return active >= quorum(len(voters)) if voters else False

    def lease_valid(self) -> bool:
        """Whether a majority acknowledged this leader within the lease
        (election timeout minus a tick of margin), so no other leader can
        have been elected since: reads may be served locally (§6.4.1)."""
        if self.role != Role.LEADER or self.transferee is not None:
            return False
        if not self._committed_in_term():
            return False
        voters = self._voters()
        lease = self.cfg.election_ticks - 1
        fresh = sum(
            1
            for sid in voters
            if sid == self.id
            or (sid in self.progress and self.now - self.progress[sid].last_ack_tick < lease)
        )
        return fresh >= quorum(len(voters))

    # --------------------------------------------------------------- elections

    def campaign(self) -> None:
        """Start an election now (with a pre-vote round if enabled), as if the
        election timeout had passed. Ignored by non-voters and leaders."""
        if self.role != Role.LEADER and self._promotable():
            self._campaign(transfer=False)

    def leader_unreachable(self, peer: str) -> bool:
        """The transport saw the leader ``peer``'s connection end (its process
        exited, or its host reset the connection): forget it as leader and its
        lease, so this server grants (pre-)votes now; returns whether ``peer``
        was the leader. The driver then campaigns after a short random delay
        instead of a whole election timeout. Harmless if the leader lives:
        the pre-vote fails while the other servers still hear from it."""
        if self.role != Role.FOLLOWER or self.leader != peer:
            return False
        self.leader = None
        self.election_elapsed = max(self.election_elapsed, self.cfg.election_ticks)
        self.why = f"leader_connection_lost leader={peer}"
        return True

    def _campaign(self, *, transfer: bool) -> None:
        if transfer:
            self.why = "leadership_transfer"
        if self.cfg.pre_vote and not transfer:
            self._become_pre_candidate()
            self._request_votes(MT.PREVOTE, self.term + 1, b"")
        else:
            self._start_election(TRANSFER_CONTEXT if transfer else b"")

    def _start_election(self, context: bytes) -> None:
        self._become_candidate()
        self._request_votes(MT.VOTE, self.term, context)

    def _request_votes(self, vote_type: MessageType, term: int, context: bytes) -> None:
        voters = self._voters()
        self.votes[self.id] = True
        if quorum(len(voters)) <= 1:
            self._won()
            return
        for sid in sorted(voters - {self.id}):
            self._send(
                Message(
                    vote_type,
                    self.id,
                    sid,
                    term,
                    log_term=self.log.last_term(),
                    index=self.log.last_index(),
                    context=context,
                )
            )

    def _won(self) -> None:
        if self.role == Role.PRE_CANDIDATE:
            self._start_election(b"")
        else:
            self._become_leader()

    def _handle_vote_request(self, m: Message) -> None:
        resp = MT.VOTE_RESP if m.type == MT.VOTE else MT.PREVOTE_RESP
        can_vote = (
            self.vote == m.src
            or (self.vote is None and self.leader is None)
            or (m.type == MT.PREVOTE and m.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # A granted pre-vote answers with the proposed term (§9.6).
            self._send(Message(resp, self.id, m.src, m.term))
            if m.type == MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.src
        else:
            self._send(Message(resp, self.id, m.src, self.term, reject=True))

    def _handle_vote_response(self, m: Message) -> None:
        want = MT.PREVOTE_RESP if self.role == Role.PRE_CANDIDATE else MT.VOTE_RESP
        if m.type != want:
            return
        self.votes.setdefault(m.src, not m.reject)
        voters = self._voters()
        granted = sum(1 for sid, v in self.votes.items() if v and sid in voters)
        rejected = sum(1 for sid, v in self.votes.items() if not v and sid in voters)
        if granted >= quorum(len(voters)):
            self._won()
        elif rejected >= quorum(len(voters)):
            self.become_follower(self.term, None)

    # -------------------------------------------------------------------- step

    def step(self, m: Message) -> None:
        """Handle one message from a peer. Never raises for a well-formed message."""
        if m.term > self.term:
            if m.type in (MT.VOTE, MT.PREVOTE):
                # A server that just started may have acknowledged a leader
                # before it restarted, and that acknowledgement may still back
                # the leader's lease: it stays quiet for an election timeout.
                knows_leader = self.leader is not None or self.now < self.cfg.election_ticks
                in_lease = (
                    self.cfg.check_quorum
                    and knows_leader
                    and self.election_elapsed < self.cfg.election_ticks
                )
                if in_lease and m.context != TRANSFER_CONTEXT:
                    return  # leader stickiness (§4.2.3)
            if m.type == MT.PREVOTE or (m.type == MT.PREVOTE_RESP and not m.reject):
                pass  # pre-vote never changes terms
            else:
                leader = m.src if m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP) else None
                self.become_follower(m.term, leader)
                self.why = f"higher_term from={m.src} type={m.type.name}"
        elif m.term < self.term:
            if m.type in (MT.APP, MT.HEARTBEAT):
                # A stale leader learns the new term and steps down; without
                # this, pre-vote plus check-quorum can deadlock (etcd #8501).
                self._send(Message(MT.APP_RESP, self.id, m.src, self.term))
            elif m.type == MT.PREVOTE:
                self._send(Message(MT.PREVOTE_RESP, self.id, m.src, self.term, reject=True))
            return

        if m.type in (MT.VOTE, MT.PREVOTE):
            self._handle_vote_request(m)
        elif self.role == Role.LEADER:
            self._step_leader(m)
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            if m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
                self.become_follower(self.term, m.src)
                self._step_follower(m)
            else:
                self._handle_vote_response(m)
        else:
            self._step_follower(m)

    def _step_follower(self, m: Message) -> None:
        if m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
            self.election_elapsed = 0
            self._leader_contact = True
            self.leader = m.src
        if m.type == MT.APP:
            truncations = self.log.truncations
            self._handle_append(m)
            if self._conf_history_stale(m.entries, self.log.truncations != truncations):
                self._rebuild_conf_history()
        elif m.type == MT.HEARTBEAT:
            self.log.commit_to(m.commit)
            # A heartbeat's commit never exceeds what this server acknowledged,
            # and acknowledged committed entries are never truncated: a log
            # ending before it lost its durable state. Say where it ends, so
            # the leader probes from there (or sends a snapshot).
            last = self.log.last_index()
            lost = m.commit > last
            # Echo the leader's send tick: its lease runs from when it sent this.
            self._send(
                Message(
                    MT.HEARTBEAT_RESP,
                    self.id,
                    m.src,
                    self.term,
                    index=m.index,
                    context=m.context,
                    reject=lost,
                    reject_hint=last if lost else 0,
                )
            )
        elif m.type == MT.SNAP:
            self._handle_snapshot(m)
        elif m.type == MT.TIMEOUT_NOW and self._promotable():
            self._campaign(transfer=True)

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.commit:
            self._send(Message(MT.APP_RESP, self.id, m.src, self.term, index=self.log.commit))
            return
        last_new = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            if m.entries or m.context != COMMIT_NOTICE:
                self._send(Message(MT.APP_RESP, self.id, m.src, self.term, index=last_new))
            return
        hint = self.log.find_conflict_by_term(min(m.index, self.log.last_index()), m.log_term)
        self._send(
            Message(
                MT.APP_RESP,
                self.id,
                m.src,
                self.term,
                index=m.index,
                reject=True,
                reject_hint=hint,
                log_term=self.log.term(hint) or 0,
            )
        )

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        if snap is None:
            return
        meta = snap.meta
        if meta.index <= self.log.commit:
            self._send(Message(MT.APP_RESP, self.id, m.src, self.term, index=self.log.commit))
            return
        if self.log.match_term(meta.index, meta.term):
            # We already hold the entry: just fast-forward the commit index.
            self.log.commit_to(meta.index)
        else:
            self.log.restore(meta.index, meta.term)
            self.snapshot_meta = meta
            self._conf_history = []
            self.pending_snapshot = snap
            self._apply_configuration()
        self._send(Message(MT.APP_RESP, self.id, m.src, self.term, index=self.log.last_index()))

    # ------------------------------------------------------------------ leader

    def _step_leader(self, m: Message) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        if m.type == MT.APP_RESP:
            self._handle_append_response(m, pr)
        elif m.type == MT.HEARTBEAT_RESP:
            pr.last_ack_tick = max(pr.last_ack_tick, m.index)
            if m.reject and m.reject_hint < pr.match and m.index > pr.regressed_tick:
                self._follower_lost_state(m.src, pr, m.reject_hint)
            elif pr.state == ProgressState.REPLICATE and pr.is_paused():
                # The follower is alive but its window is full of appends it
                # may never have received (it restarted): let one more through
                # so a rejection can reset it (etcd's FreeFirstOne).
                pr.inflight.popleft()
            if pr.match < self.log.last_index() or pr.state == ProgressState.PROBE:
                # A follower being probed is probed again on every heartbeat
                # (etcd does the same): an idle leader would otherwise never
                # learn that it matches, and keep it out of REPLICATE.
                pr.probe_sent = False
                self._send_append(m.src)
            elif m.src in self.promote_when_caught_up:
                self._maybe_promote(m.src, pr)
            if m.context:
                self._ack_read(m.context, m.src)

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        if m.reject:
            if (
                pr.state == ProgressState.PROBE
                and m.index == pr.next - 1
                and m.reject_hint < pr.match
            ):
                # An intact follower's hint never falls below its match: the
                # terms of the entries it acknowledged do not exceed the
                # probe's. This one lost its log.
                self._follower_lost_state(m.src, pr, m.reject_hint)
                self._send_append(m.src)
                return
            hint = m.reject_hint
            if m.log_term > 0:
                hint = self.log.find_conflict_by_term(hint, m.log_term)
            if pr.maybe_decr_to(m.index, hint):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.src)
            return
        old_paused = pr.is_paused()
        probe_matched = pr.state == ProgressState.PROBE and m.index == pr.match
        if pr.maybe_update(m.index) or probe_matched:
            if pr.state == ProgressState.PROBE:
                pr.become_replicate()
            elif pr.state == ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
                pr.become_probe()
                pr.become_replicate()
            if self._maybe_commit():
                self._on_commit()
            else:
                self._send_append(m.src, send_empty=False)
                if old_paused and pr.commit_sent < self.log.commit:
                    # A follower that was paused may not know the commit index
                    # yet: told at the end of the round unless entries go first.
                    self._commit_notice = True
            if m.src in self.promote_when_caught_up:
                self._maybe_promote(m.src, pr)
            if m.src == self.transferee and pr.match == self.log.last_index():
                self._send(Message(MT.TIMEOUT_NOW, self.id, m.src, self.term))
        elif pr.next <= self.log.last_index():
            self._send_append(m.src, send_empty=False)

    def _follower_lost_state(self, sid: str, pr: Progress, last: int) -> None:
        """``sid`` reports a log ending at ``last``, before entries it
        acknowledged: it restarted with an empty (or older) data directory.
        Outside Raft's failure model, but an operator's usual repair: probe it
        again from its real end, so it is sent a snapshot when those entries
        are compacted, and autopilot sees it behind until it catches up."""
        self.lost_state.append((sid, pr.match, last))
        pr.regress(last, self.now)

    def _committed_in_term(self) -> bool:
        return self.log.term(self.log.commit) == self.term

    def _maybe_commit(self) -> bool:
        voters = self._voters()
        if not voters:
            return False
        progress = self.progress
        idx = committed_index([progress[sid].match if sid in progress else 0 for sid in voters])
        # Only entries of the current term commit by counting replicas (§3.6.2).
        if idx > self.log.commit and self.log.term(idx) == self.term:
            self.log.commit_to(idx)
            self._on_commit_advanced()
            return True
        return False

    def _on_commit_advanced(self) -> None:
        # A server caught up before its non-voter entry committed is promoted now.
        for sid in sorted(self.promote_when_caught_up):
            if sid in self.progress:
                self._maybe_promote(sid, self.progress[sid])
        if self.reads_waiting_commit and self._committed_in_term():
            waiting, self.reads_waiting_commit = self.reads_waiting_commit, []
            for ctx in waiting:
                self._start_read(ctx)
        conf = self.configuration
        # get(), not ids(): runs on every commit, and ids() builds a frozenset.
        if conf.get(self.id) is None and self.pending_conf_index <= self.log.commit:
            # Our removal is committed: step down (§4.2.2).
            self.become_follower(self.term, None)

    def _append(self, entries: list[Entry]) -> None:
        self.log.append(entries)
        for e in entries:
            if e.kind == EntryKind.CONFIG:
                self._conf_history.append((e.index, codec.decode_configuration(e.data)))
                self.pending_conf_index = e.index
                self._apply_configuration()

    def _bcast_append(self, *, send_empty: bool = True) -> None:
        for sid in sorted(self.progress):
            if sid != self.id:
                self._send_append(sid, send_empty=send_empty)

    def _on_commit(self) -> None:
        # Entries waiting for a follower go out now and carry the new commit
        # index. Followers with nothing waiting are owed an empty append, but
        # only at the end of this round (``ready``): acknowledgements and
        # proposals stepped in the same round usually send them entries
        # anyway, and at 64 connections these notices were 40% of the
        # leader's appends. Still this round, not the next heartbeat a tick
        # later: followers serve reads and wake blocking queries from their
        # own state, so a change must reach it promptly (etcd does the same).
        self._bcast_append(send_empty=False)
        self._commit_notice = True

    def _send_commit_notices(self) -> None:
        self._commit_notice = False
        if self.role != Role.LEADER:
            return
        commit = self.log.commit
        for sid in sorted(self.progress):
            if sid != self.id and self.progress[sid].commit_sent < commit:
                self._send_append(sid, notice=True)

    def _send_append(self, to: str, *, send_empty: bool = True, notice: bool = False) -> None:
        pr = self.progress.get(to)
        if pr is None or pr.is_paused():
            return
        if not send_empty and pr.next == self.log.last_index() + 1:
            # Caught up, nothing to send: what _send_entries would find
            # (the term at the last index is always known), without the
            # lookups. Every acknowledgement asks, for each follower.
            return
        if not self._send_entries(to, pr, send_empty=send_empty, notice=notice):
            return
        # Keep a replicating follower's pipeline full in one step.
        while (
            pr.next <= self.log.last_index()  # usually false: tested first
            and pr.state == ProgressState.REPLICATE
            and not pr.is_paused()
        ):
            self._send_entries(to, pr, send_empty=False)

    def _send_entries(
        self, to: str, pr: Progress, *, send_empty: bool, notice: bool = False
    ) -> bool:
        """One append from ``pr.next`` on (or a snapshot when that was
        compacted); returns whether an append went out. ``notice``: an empty
        one to a replicating follower is a ``COMMIT_NOTICE`` (unanswered, so
        it takes no slot of the in-flight window)."""
        log = self.log
        prev = pr.next - 1
        prev_term = log.term(prev)
        if prev_term is None or prev < log.offset:
            self._send_snapshot(to, pr)
            return False
        last = log.last_index()
        entries = log.slice(pr.next, last + 1, self.cfg.max_entries_bytes) if prev < last else []
        if not entries and not send_empty:
            return False
        notice = notice and not entries and pr.state == ProgressState.REPLICATE
        commit = log.commit
        self._send(
            Message(
                MT.APP,
                self.id,
                to,
                self.term,
                prev_term,  # log_term
                prev,  # index
                tuple(entries),
                commit,
                False,
                0,
                COMMIT_NOTICE if notice else b"",
            )
        )
        pr.commit_sent = commit
        if not notice:
            pr.sent(entries[-1].index if entries else prev)
        return True

    def _send_snapshot(self, to: str, pr: Progress) -> None:
        meta = self.snapshot_meta
        if meta is None:
            raise RaftInvariantError(f"{to} needs compacted entries but there is no snapshot")
        pr.become_snapshot(meta.index)
        # The driver fills in the data from storage and streams it in chunks.
        self._send(Message(MT.SNAP, self.id, to, self.term, snapshot=Snapshot(meta, b"")))

    def _bcast_heartbeat(self, context: bytes = b"") -> None:
        if not context and self.pending_reads:
            context = self.pending_reads[-1].context
        for sid in sorted(self.progress):
            if sid == self.id:
                continue
            pr = self.progress[sid]
            commit = min(pr.match, self.log.commit)
            pr.commit_sent = max(pr.commit_sent, commit)
            self._send(
                Message(
                    MT.HEARTBEAT,
                    self.id,
                    sid,
                    self.term,
                    index=self.now,
                    commit=commit,
                    context=context,
                )
            )

    def report_unreachable(self, peer: str) -> None:
        """The transport could not deliver to ``peer``: stop pipelining to it."""
        pr = self.progress.get(peer)
        if self.role == Role.LEADER and pr and pr.state == ProgressState.REPLICATE:
            pr.become_probe()

    def report_snapshot(self, peer: str, ok: bool) -> None:
        """The snapshot stream to ``peer`` finished (``ok``) or failed."""
        pr = self.progress.get(peer)
        if self.role != Role.LEADER or pr is None or pr.state != ProgressState.SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = 0
        pr.become_probe()
        # Wait for the follower's answer before sending more (etcd does the same).
        pr.probe_sent = True

    # --------------------------------------------------------------- proposals

    def _check_leader(self) -> None:
        if self.role != Role.LEADER:
            leader = self.configuration.get(self.leader) if self.leader else None
            raise NotLeaderError(self.leader, leader.address if leader else None)
        if self.transferee is not None:
            raise ProposalDroppedError(f"leadership transfer to {self.transferee} in progress")

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append a command; returns its (index, term). The command is applied
        once an entry with that index *and* term is committed; if another term's
        entry commits there, it was lost. Raises ``NotLeaderError`` or
        ``ProposalDroppedError``."""
        return self.propose_batch([data])[0]

    def propose_batch(self, items: Sequence[bytes]) -> list[tuple[int, int]]:
        """Append several commands at once (one message per follower)."""
        self._check_leader()
        first = self.log.last_index() + 1
        entries = [Entry(first + i, self.term, EntryKind.NORMAL, d) for i, d in enumerate(items)]
        self._append(entries)
        self._bcast_append()
        return [(e.index, e.term) for e in entries]

    def read_index(self, context: bytes) -> None:
        """Start a linearizable read (§6.4); a ``ReadState`` with ``context``
        appears in a later ``Ready``. Raises ``NotLeaderError``."""
        self._check_leader()
        self._start_read(context)

    def _start_read(self, context: bytes) -> None:
        # Also re-runs reads queued before this term's first commit; those were
        # accepted already, so a transfer started since does not refuse them.
        if not self._committed_in_term():
            self.reads_waiting_commit.append(context)
            return
        voters = self._voters()
        read = _PendingRead(self.log.commit, context, {self.id})
        if len(read.acks & voters) >= quorum(len(voters)):
            self.read_states.append(ReadState(read.index, context))
            return
        self.pending_reads.append(read)
        self._bcast_heartbeat(context)

    def _ack_read(self, context: bytes, src: str) -> None:
        voters = self._voters()
        for i, read in enumerate(self.pending_reads):
            if read.context == context:
                read.acks.add(src)
                if len(read.acks & voters) >= quorum(len(voters)):
                    # A quorum acknowledging this round also confirms earlier ones.
                    for done in self.pending_reads[: i + 1]:
                        self.read_states.append(ReadState(done.index, done.context))
                    del self.pending_reads[: i + 1]
                return

    # -------------------------------------------------------------- snapshots

    def snapshot_meta_at(self, index: int) -> SnapshotMeta:
        """The meta an FSM snapshot taken at applied ``index`` must carry.
        Raises ``RaftInvariantError`` if ``index`` is not applied or is compacted."""
        term = self.log.term(index)
        if term is None or index > self.log.applied:
            raise RaftInvariantError(f"snapshot index {index} not applied or compacted")
        return SnapshotMeta(index, term, self.configuration_at(index))

    def compact(self, index: int, trailing: int) -> SnapshotMeta:
        """A snapshot at applied ``index`` is now durable: offer it to followers
        that fall behind and drop in-memory entries older than ``index -
        trailing``. Returns its meta (equal to ``snapshot_meta_at(index)``)."""
        meta = self.snapshot_meta_at(index)
        self.snapshot_meta = meta
        keep_from = max(index - trailing, self.log.offset)
        self.log.compact(keep_from)
        self._conf_history = [(i, c) for i, c in self._conf_history if i > keep_from]
        return meta

    # --------------------------------------------------------------- ready

    def soft_state(self) -> SoftState:
        return SoftState(self.role, self.leader, self.term)

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.commit)

    def has_ready(self) -> bool:
        # Asked on every pass of the driver's loop: fields read directly
        # (building a SoftState and a HardState to compare cost ~1.5 us).
        if self.msgs or self._commit_notice or self.read_states:
            return True
        log = self.log
        last = log.offset + len(log.entries)
        commit = log.commit
        if (
            self.pending_snapshot is not None
            or log.persisting < last
            or log.applied < (commit if commit < last else last)
        ):
            return True
        return self._soft_changed() or self._hard_changed()

    def _soft_changed(self) -> bool:
        p = self._prev_soft
        return self.term != p.term or self.role != p.role or self.leader != p.leader

    def _hard_changed(self) -> bool:
        p = self._prev_hard
        return self.log.commit != p.commit or self.term != p.term or self.vote != p.vote

    def ready(self) -> Ready:
        """Collect everything the driver must do now (see ``Ready``); the
        committed entries in it count as handed out for application."""
        if self._commit_notice:
            self._send_commit_notices()
        # Built at the end with every field (Ready() makes four lists that
        # would only be replaced).
        soft = hard = None
        if self._soft_changed():
            soft = self._prev_soft = self.soft_state()
        if self._hard_changed():
            hard = self._prev_hard = self.hard_state()
        log = self.log
        entries = log.unstable()
        if entries:
            log.persisting = entries[-1].index
        snapshot, self.pending_snapshot = self.pending_snapshot, None
        messages, self.msgs = self.msgs, []
        committed = log.next_committed(self.cfg.max_apply_batch)
        if committed:
            log.applied_to(committed[-1].index)
        read_states, self.read_states = self.read_states, []
        return Ready(soft, hard, entries, snapshot, messages, committed, read_states)

    def advance(self, rd: Ready, *, persisted: bool = True) -> None:
        """The driver handled ``rd``. With ``persisted=False`` its entries are
        still being written (a leader writing in the background, thesis
        §10.2.1); the driver reports them with ``persisted()`` later."""
        if rd.entries and persisted:
            last = rd.entries[-1]
            self.persisted(last.index, last.term)

    def persisted(self, index: int, term: int) -> None:
        """Entries up to ``index`` (with ``term`` there) are durable. Ignored
        if the log was truncated below them meanwhile."""
        self.log.stable_to(index, term)
        if self.role == Role.LEADER and self.id in self.progress:
            self.progress[self.id].maybe_update(self.log.stable)
            if self._maybe_commit():
                self._on_commit()

    # --------------------------------------------------------------- status

    def status(self) -> CoreStatus:
        peers = []
        for srv in self.configuration.servers:
            pr = self.progress.get(srv.id)
            peers.append(
                PeerStatus(
                    srv.id,
                    srv.address,
                    srv.suffrage,
                    pr.match if pr else 0,
                    pr.next if pr else 0,
                    pr.state.value if pr else "",
                    self.now - pr.last_ack_tick if pr else -1,
                    (self.log.term(pr.match) or 0) if pr and pr.match else 0,
                    pr.lost_upto if pr and pr.match < pr.lost_upto else 0,
                )
            )
        return CoreStatus(
            self.id,
            self.role,
            self.term,
            self.leader,
            self.log.commit,
            self.log.applied,
            self.log.last_index(),
            self.configuration,
            tuple(peers),
        )
