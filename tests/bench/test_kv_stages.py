"""bench/kv_stages.py's reading of the driver's stage lines and of a py-spy profile."""

from __future__ import annotations

from pathlib import Path

from bench.kv_stages import commit_race, joined, raw_samples, stage_lines, top_frames

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


RAW_LEADER = (
    "x event=raft_stages_raw path=http_put samples=start=1000,#index=5,apply=1100;"
    "start=2000,#index=6,apply=2100\n"
)
RAW_FOLLOWER = (
    "x event=raft_stages_raw path=follower_append samples=start=1400,#index=5,acked=1900;"
    "start=9000,#index=9,acked=9100\n"
    "x event=raft_stages_raw path=follower_append samples=start=2600,#index=6,acked=3300\n"
)


def test_followers_stages_join_the_leaders_samples_by_log_index() -> None:
    mine = raw_samples(RAW_LEADER, "http_put", "index")
    assert mine == {5: {"start": 1000, "apply": 1100}, 6: {"start": 2000, "apply": 2100}}
    theirs = raw_samples(RAW_FOLLOWER, "follower_append", "index")
    assert set(theirs) == {5, 6, 9}
    got = joined(mine, theirs, "s1:")  # index 9: no leader sample, left out
    assert got == {"s1:read": 0.5, "s1:acked": 1.1}  # medians of (0.4, 0.6) and (0.9, 1.3) us


def test_commit_race_says_what_each_write_waited_for() -> None:
    leader = {
        5: {"start": 0, "own_save_done": 3000, "ack_read": 3500},  # own fsync last
        6: {"start": 10_000, "own_save_done": 11_000, "ack_read": 12_600},  # ack last
        7: {"start": 20_000, "own_save_done": 21_000},  # no ack read: left out
    }
    followers = [
        {5: {"start": 100, "acked": 2000}, 6: {"start": 10_100, "acked": 12_000}},
        {5: {"start": 200, "acked": 2500}},
    ]
    got = commit_race(leader, followers)
    assert got == {
        "writes": 2,
        "both_ready": 2.5,  # median of 3.0 and 2.0 us
        "ack_read_after": 0.55,  # median of 0.5 and 0.6 us
        "own_fsync_last": 0.5,
    }
    assert commit_race(leader, []) is None
