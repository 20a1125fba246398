"""What the servers' own logs say about one stretch of a benchmark: their
longest event-loop stalls (``event=raft_loop_stall``), garbage-collector
pauses (``event=gc_pause``) and Raft role changes with the core's reason
(``event=raft_state ... why=``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tools.local_cluster import LocalAgentCluster

_STALL = re.compile(r"event=raft_loop_stall id=\S+ role=(\w+) stalled_ms=(\d+)")
_GC = re.compile(r"event=gc_pause generation=(\d+) ms=(\d+)(?: cpu_ms=(\d+))?")
_STATE = re.compile(r"event=raft_state id=\S+ role=(\w+) term=(\d+) leader=\S+ why=(.*)$")


@dataclass
class LogSummary:
    """Per server name: longest loop stall (ms) and GC pause (wall ms,
    generation, CPU ms), and every role change as ``name: role term why``."""

    stall_ms: dict[str, int] = field(default_factory=dict)
    gc_ms: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)

    def longest_stall(self, names: list[str]) -> int:
        return max((self.stall_ms.get(n, 0) for n in names), default=0)

    def longest_gc(self) -> tuple[int, int, int]:
        return max(self.gc_ms.values(), default=(0, 0, 0))

    def first_cause(self) -> str:
        """The first role change a timer caused (a campaign or a leader's
        check-quorum), else the first change."""
        for change in self.changes:
            if any(k in change for k in ("election_timeout", "check_quorum", "connection_lost")):
                return change
        return self.changes[0] if self.changes else ""


class LogMarks:
    """Where each server's log ended when the stretch began."""

    def __init__(self, cluster: LocalAgentCluster) -> None:
        self.cluster = cluster
        self.offsets = {
            name: a.log_file.stat().st_size if a.log_file and a.log_file.exists() else 0
            for name, a in cluster.agents.items()
        }

    def summary(self) -> LogSummary:
        """Parse what every server logged since the marks were taken."""
        out = LogSummary()
        for name, a in self.cluster.agents.items():
            if a.log_file is None or not a.log_file.exists():
                continue
            with open(a.log_file, "rb") as f:
                f.seek(self.offsets.get(name, 0))
                text = f.read().decode(errors="replace")
            for line in text.splitlines():
                if m := _STALL.search(line):
                    out.stall_ms[name] = max(out.stall_ms.get(name, 0), int(m[2]))
                elif m := _GC.search(line):
                    pause = (int(m[2]), int(m[1]), int(m[3] or 0))
                    out.gc_ms[name] = max(out.gc_ms.get(name, (0, 0, 0)), pause)
                elif m := _STATE.search(line):
                    out.changes.append(f"{name}: {m[1]} t{m[2]} {m[3].strip()}")
        return out
