"""bench/kv_stages.py's reading of the driver's stage lines and of a py-spy profile."""

from __future__ import annotations

from pathlib import Path

from bench.kv_stages import stage_lines, top_frames

LOG = """\
x event=raft_stages path=leader_put n=50 proposed=900 resumed=9000
x event=raft_stages path=leader_put n=50 proposed=40 committed=1000 resumed=1100
x event=raft_stages path=leader_put n=150 proposed=60 committed=1400 resumed=1500
x event=raft_stages path=leader_read n=10 round_started=30 quorum=400
"""


def test_stage_lines_weigh_each_line_by_its_samples_and_skip_the_warm_up() -> None:
    got = stage_lines(LOG, skip=1)
    assert got["leader_put"] == {"proposed": 55.0, "committed": 1300.0, "resumed": 1400.0}
    assert got["leader_read"] == {"round_started": 30.0, "quorum": 400.0}  # reads: no warm-up


def test_top_frames_rank_what_runs_below_the_trio_loop(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    raw.write_text(
        "main (m.py:1);unrolled_run (trio/_run.py:5);loop (node.py:9);save (storage.py:3) 6\n"
        "main (m.py:1);unrolled_run (trio/_run.py:5);loop (node.py:9) 2\n"
        "main (m.py:1);unrolled_run (trio/_run.py:5) 2\n"
    )
    ranked = top_frames(raw)
    assert ranked == [("loop node.py", 80.0, 20.0), ("save storage.py", 60.0, 60.0)]
