"""Corrupt data on a server of a real 3-server cluster (issue 13, item 14).

A corrupt newest snapshot falls back to the previous one and the log after
it, with meshd's defaults' ratio of trailing logs to snapshot threshold
(trailing < threshold); a corrupt frame in the middle of the Raft log
(raft/wal.py) stops the server with one line naming the segment file, the
offset and the recovery command, and running that command
brings the server back, caught up by a snapshot from the leader.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.fault_cluster import fault_cluster, kv_keys, put, stop, wait_for_cluster
from tools.local_cluster import LocalAgentCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEYS = 160
WANT = {f"c/k{i:03d}" for i in range(KEYS)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalAgentCluster, str]]:
    # Trailing logs (10) far below the snapshot threshold (50), as the
    # defaults are (10,240 < 16,384).
    c = fault_cluster(
        tmp_path_factory.mktemp("corrupt"),
        "127.0.62",
        extra={"raft_snapshot_threshold": 50, "raft_trailing_logs": 10},
    )
    c.start_all()
    try:
        leader = wait_for_cluster(c)
        for i in range(KEYS):
            assert put(c, leader, f"c/k{i:03d}", f"v{i}") == 200
        for name in c.agents:
            c.wait_until(lambda n=name: kv_keys(c, n, "c/") == WANT, 20, f"keys on {name}")
        yield c, leader
    finally:
        c.stop_all()


def snapshot_files(c: LocalAgentCluster, name: str) -> list[Path]:
    files = (c.agents[name].data_dir / "raft" / "snapshots").glob("snapshot-*.snap")
    return sorted(files, key=lambda p: int(p.stem.rsplit("-", 1)[1]))


def loaded_line(c: LocalAgentCluster, name: str) -> dict[str, int]:
    lines = [ln for ln in c.logs(name).splitlines() if "event=raft_loaded" in ln]
    return {k: int(v) for k, v in re.findall(r"(commit|last|snapshot)=(\d+)", lines[-1])}


def test_corrupt_newest_snapshot_falls_back_to_the_previous_one_and_the_log(
    cluster: tuple[LocalAgentCluster, str],
) -> None:
    c, leader = cluster
    follower = sorted(n for n in c.agents if n != leader)[0]
    stop(c, follower)
    older, newest = snapshot_files(c, follower)[-2:]
    raw = bytearray(newest.read_bytes())
    raw[-1] ^= 0xFF
    newest.write_bytes(bytes(raw))
    c.start(follower)
    c.wait_until(lambda: kv_keys(c, follower, "c/") == WANT, 20, "keys on the restarted follower")
    logs = c.logs(follower)
    assert f"event=snapshot_corrupt file={newest}" in logs
    assert "action=fallback_to_previous" in logs
    # Rebuilt from its own disk: the older snapshot plus the log after it
    # reach past the corrupt one, and the leader had nothing to resend.
    loaded = loaded_line(c, follower)
    older_index, newest_index = (int(p.stem.rsplit("-", 1)[1]) for p in (older, newest))
    assert loaded["snapshot"] == older_index
    assert loaded["last"] >= newest_index
    assert "event=raft_follower_lost_state" not in c.logs(leader)


def test_a_corrupt_raft_log_refuses_in_one_line_and_its_recovery_command_works(
    cluster: tuple[LocalAgentCluster, str],
) -> None:
    c, leader = cluster
    follower = sorted(n for n in c.agents if n != leader)[-1]
    stop(c, follower)
    seg = sorted((c.agents[follower].data_dir / "raft" / "wal").glob("wal-*.log"))[-1]
    assert seg.stat().st_size > 4096  # frames after the damage: not a torn tail
    with open(seg, "r+b") as f:
        f.seek(64)  # inside the segment's first frames
        f.write(b"\xde\xad\xbe\xef" * 16)
    log_file = c.agents[follower].log_file
    assert log_file is not None
    before = len(c.logs(follower))
    c.start(follower)
    proc = c.agents[follower].proc
    assert proc is not None
    assert proc.wait(timeout=60) == 1
    output = c.logs(follower)[before:]
    assert "Traceback" not in output
    [line] = [ln for ln in output.splitlines() if ln.startswith("Error: ")]
    assert re.search(rf"{re.escape(str(seg))} is corrupt at offset \d+: ", line), line
    command = re.search(r"`(mv [^`]+)`", line)
    assert command is not None, line
    subprocess.run(shlex.split(command[1]), check=True)

    c.start(follower)
    c.wait_until(lambda: kv_keys(c, follower, "c/") == WANT, 20, "keys on the recovered follower")
    assert "event=raft_follower_lost_state" in c.logs(leader)
    assert put(c, follower, "c/after", "x") == 200
    c.wait_until(lambda: "c/after" in kv_keys(c, leader, "c/"), 10, "a write through it")
