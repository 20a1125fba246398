"""bench.loadgen.server_logs: what the servers logged during one stretch of
a benchmark, from the marks on (earlier lines do not count)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.loadgen.server_logs import LogMarks

EARLY = "x [WARNING] raft.node: event=raft_loop_stall id=a role=leader stalled_ms=9000 inbox=0\n"
LATER = (
    "x [WARNING] raft.node: event=raft_loop_stall id=a role=leader stalled_ms=450 inbox=0\n"
    "x [WARNING] raft.node: event=raft_loop_stall id=a role=leader stalled_ms=1200 inbox=3\n"
    "x [WARNING] meshd.gc: event=gc_pause generation=2 ms=800 cpu_ms=90 collected=5"
    " uncollectable=0\n"
    "x [INFO] raft.node: event=raft_state id=a role=follower term=3 leader=None why=higher_term"
    " from=b type=VOTE\n"
    "x [INFO] raft.node: event=raft_state id=a role=follower term=2 leader=None why=check_quorum"
    " misses=2\n"
)


def test_a_stretch_counts_only_what_was_logged_after_its_marks(tmp_path: Path) -> None:
    log = tmp_path / "server-1.log"
    log.write_text(EARLY)
    cluster: Any = SimpleNamespace(agents={"server-1": SimpleNamespace(log_file=log)})
    marks = LogMarks(cluster)
    with open(log, "a") as f:
        f.write(LATER)
    out = marks.summary()
    assert out.stall_ms == {"server-1": 1200}
    assert out.longest_stall(["server-1"]) == 1200
    assert out.longest_stall(["server-2"]) == 0
    assert out.longest_gc() == (800, 2, 90)
    assert len(out.changes) == 2
    assert out.first_cause() == "server-1: follower t2 check_quorum misses=2"
