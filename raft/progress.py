"""What the leader knows about each follower's log, and quorum arithmetic.

Follows etcd-io/raft's tracker: a follower is probed one message at a time
until its match index is known, then replicated to with a pipeline of up to
``max_inflight`` unacknowledged messages, or sent a snapshot when the entries
it needs were compacted.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Progress:
    __slots__ = (
        "commit_sent",
        "inflight",
        "last_ack_tick",
        "lost_upto",
        "match",
        "max_inflight",
        "next",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "regressed_tick",
        "state",
    )

    def __init__(self, next_index: int, max_inflight: int, now: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.recent_active = False
        self.last_ack_tick = now
        # The tick of the last ``regress``: a report from a heartbeat sent
        # before it is stale (a duplicate) and must not reset progress again.
        self.regressed_tick = -1
        # What the follower had acknowledged before it lost its state (0
        # when it never did): until ``match`` reaches it again the follower
        # does not hold everything it once held, though it may trail the
        # leader by less than autopilot's max_trailing_logs.
        self.lost_upto = 0
        self.max_inflight = max_inflight
        # Last index of each unacknowledged append message, oldest first.
        self.inflight: deque[int] = deque()
        # The highest commit index sent to this follower (in an append or a
        # heartbeat): a commit notice is owed only while it lags the leader's.
        self.commit_sent = 0

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.pending_snapshot = 0
        self.probe_sent = False
        self.inflight.clear()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.pending_snapshot = 0
        self.inflight.clear()

    def become_snapshot(self, index: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.pending_snapshot = index
        self.inflight.clear()

    def regress(self, last_index: int, now: int) -> None:
        """The follower's log ends at ``last_index``, below what it once
        acknowledged: it lost its durable state (restarted with an empty or
        older data directory). Probe it again from there; if those entries
        are compacted, that probe becomes a snapshot."""
        self.lost_upto = max(self.lost_upto, self.match)
        self.match = last_index
        self.next = last_index + 1
        self.state = ProgressState.PROBE
        self.pending_snapshot = 0
        self.probe_sent = False
        self.inflight.clear()
        self.regressed_tick = now

    def maybe_update(self, index: int) -> bool:
        """An acknowledgement up to ``index``; whether it moved ``match``."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()
        return updated

    def maybe_decr_to(self, rejected: int, hint: int) -> bool:
        """A rejection of the append at ``rejected``; whether ``next`` moved back.
        Stale rejections (of messages sent before a later success) are ignored."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, hint + 1), self.match + 1, 1)
        self.probe_sent = False
        return True

    def sent(self, last_index: int) -> None:
        """An append ending at ``last_index`` was sent."""
        if self.state == ProgressState.REPLICATE:
            if last_index >= self.next:
                self.next = last_index + 1
            self.inflight.append(last_index)
        else:
            self.probe_sent = True

    def is_paused(self) -> bool:
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return len(self.inflight) >= self.max_inflight
        return True


def quorum(n: int) -> int:
    return n // 2 + 1


def committed_index(matches: Iterable[int]) -> int:
    """The highest index that a majority of the given match indexes reach."""
    ordered = sorted(matches, reverse=True)
    if not ordered:
        return 0
    return ordered[quorum(len(ordered)) - 1]
