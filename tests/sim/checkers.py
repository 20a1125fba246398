"""Raft safety properties (Raft paper, Figure 3) checked while a simulation runs.

The monitor sees every server's persisted state, role changes and applied entries, and
raises ``Violation`` the moment a property breaks, so the failing seed stops close to the
cause:

* election safety: at most one leader per term;
* log matching: two logs holding an entry with the same index and term hold the same
  entries up to it (checked as "one entry per (index, term)" on every persist, and
  pairwise over whole logs periodically);
* leader completeness: an entry applied anywhere is in the log of every leader of a later
  term when it takes office (or inside its snapshot);
* state machine safety: no two servers apply different entries at one index, and two
  snapshots at one index hold the same state;
* durability of commitment: when a leader advances its commit index, every newly committed
  entry is on the disks of a quorum of its voters (a leader writing its own log in the
  background must not count itself early);
* durable state sanity: a server's persisted term never goes down, its vote never changes
  within a term, and it never persists a log with a gap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from raft.log import RaftLog
from raft.progress import quorum
from raft.types import Entry, HardState, Role


class Violation(Exception):
    """A property broke; ``prop`` names it (as printed in the run summary)."""

    def __init__(self, prop: str, detail: str) -> None:
        super().__init__(f"{prop}: {detail}")
        self.prop = prop
        self.detail = detail


@dataclass(frozen=True)
class LogView:
    """A log as the checker sees it: entries after ``offset`` (whose term is known)."""

    offset: int
    offset_term: int
    entries: tuple[Entry, ...]

    @classmethod
    def of(cls, log: RaftLog) -> LogView:
        return cls(log.offset, log.offset_term, tuple(log.entries))

    def last_index(self) -> int:
        return self.offset + len(self.entries)

    def entry(self, index: int) -> Entry | None:
        if index <= self.offset or index > self.last_index():
            return None
        return self.entries[index - self.offset - 1]


def _fmt(e: Entry | None) -> str:
    return "none" if e is None else f"{e.term}/{e.index} {e.kind.name} {e.data[:40]!r}"


class SafetyMonitor:
    """Accumulates what every server did and checks it against the Raft invariants."""

    def __init__(self) -> None:
        self.leaders: dict[int, str] = {}
        self.by_index_term: dict[tuple[int, int], Entry] = {}
        self.applied: dict[int, Entry] = {}
        self.max_applied = 0
        self.hard: dict[str, HardState] = {}
        self.snapshot_digests: dict[int, tuple[str, str]] = {}
        self.elections = 0
        self.leader_commit: dict[tuple[str, int], int] = {}

    # -- election safety and leader completeness --------------------------------------

    def observe_role(self, node: str, role: Role, term: int, log: RaftLog) -> None:
        """Called after every input to a server."""
        if role != Role.LEADER:
            return
        holder = self.leaders.get(term)
        if holder == node:
            return
        if holder is not None:
            raise Violation("election-safety", f"{holder} and {node} both lead term {term}")
        self.leaders[term] = node
        self.elections += 1
        self._check_completeness(node, term, log)

    def _check_completeness(self, node: str, term: int, log: RaftLog) -> None:
        if self.max_applied > log.last_index():
            raise Violation(
                "leader-completeness",
                f"{node} leads term {term} with last index {log.last_index()}, but index "
                f"{self.max_applied} was already applied",
            )
        if log.offset in self.applied and self.applied[log.offset].term != log.offset_term:
            raise Violation(
                "leader-completeness",
                f"{node} leads term {term} with a snapshot at {log.offset_term}/{log.offset}, "
                f"but {_fmt(self.applied[log.offset])} was applied there",
            )
        for index in range(log.offset + 1, self.max_applied + 1):
            done = self.applied.get(index)
            if done is not None and log.term(index) != done.term:
                have = log.entry(index)
                raise Violation(
                    "leader-completeness",
                    f"{node} leads term {term} without applied entry {_fmt(done)} "
                    f"(its log has {_fmt(have)})",
                )

    def observe_leader_commit(
        self,
        node: str,
        term: int,
        log: RaftLog,
        voters: frozenset[str],
        durable_has: Callable[[str, int, int], bool],
    ) -> None:
        """Called after every input to a leader: entries it newly committed must be
        durable on a quorum of ``voters`` (``durable_has(server, index, term)``)."""
        key = (node, term)
        checked = self.leader_commit.setdefault(key, log.commit)
        if log.commit <= checked:
            return
        self.leader_commit[key] = log.commit
        for index in range(max(checked, log.offset) + 1, log.commit + 1):
            e_term = log.term(index)
            assert e_term is not None
            holders = sorted(s for s in voters if durable_has(s, index, e_term))
            if len(holders) < quorum(len(voters)):
                raise Violation(
                    "durable-commit",
                    f"{node} (term {term}) committed {e_term}/{index} but only {holders} of "
                    f"voters {sorted(voters)} have it on disk",
                )

    # -- persisted state ---------------------------------------------------------------

    def observe_hard_state(self, node: str, hs: HardState) -> None:
        prev = self.hard.get(node)
        self.hard[node] = hs
        if prev is None:
            return
        if hs.term < prev.term:
            raise Violation("durable-state", f"{node} persisted term {hs.term} after {prev.term}")
        if hs.term == prev.term and prev.vote is not None and hs.vote != prev.vote:
            raise Violation(
                "durable-state",
                f"{node} changed its vote in term {hs.term} from {prev.vote} to {hs.vote}",
            )

    def observe_entries(self, node: str, entries: list[Entry]) -> None:
        """Entries a server persisted: one entry per (index, term) cluster-wide."""
        for e in entries:
            seen = self.by_index_term.setdefault((e.index, e.term), e)
            if seen != e:
                raise Violation(
                    "log-matching",
                    f"{node} persisted {_fmt(e)} but {_fmt(seen)} exists at the same index/term",
                )

    # -- state machine safety ----------------------------------------------------------

    def observe_apply(self, node: str, e: Entry) -> None:
        seen = self.applied.setdefault(e.index, e)
        if seen != e:
            raise Violation(
                "state-machine-safety",
                f"{node} applied {_fmt(e)} at index {e.index} where {_fmt(seen)} was applied",
            )
        self.max_applied = max(self.max_applied, e.index)

    def observe_snapshot(self, node: str, index: int, digest: str) -> None:
        """A server took or installed a snapshot of FSM state ``digest`` at ``index``."""
        seen = self.snapshot_digests.setdefault(index, (node, digest))
        if seen[1] != digest:
            raise Violation(
                "state-machine-safety",
                f"snapshots at index {index} differ: {seen[0]} has {seen[1]}, {node} has {digest}",
            )

    # -- log matching over whole logs --------------------------------------------------

    def check_log_matching(self, logs: Mapping[str, LogView], what: str = "logs") -> None:
        """If two logs agree on the term at some index, they agree on every entry up to it."""
        ids = sorted(logs)
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                self._check_pair(a, logs[a], b, logs[b], what)

    def _check_pair(self, a: str, la: LogView, b: str, lb: LogView, what: str) -> None:
        lo = max(la.offset, lb.offset) + 1
        hi = min(la.last_index(), lb.last_index())
        agree = 0
        for index in range(hi, lo - 1, -1):
            ea, eb = la.entry(index), lb.entry(index)
            if ea is not None and eb is not None and ea.term == eb.term:
                agree = index
                break
        for index in range(lo, agree + 1):
            ea, eb = la.entry(index), lb.entry(index)
            if ea != eb:
                raise Violation(
                    "log-matching",
                    f"{what} of {a} and {b} agree on the term at {agree} but differ at "
                    f"{index}: {_fmt(ea)} vs {_fmt(eb)}",
                )
