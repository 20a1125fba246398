"""A follower restarted with an empty raft directory (issue 13, item 12).

The leader still holds the match index the follower acknowledged before its
data went away. It must notice that the follower's log now ends at 0, send
it a snapshot and the log after it, and autopilot must not call the server
healthy until then; before the fix it served 404 for every key as an
authoritative stale read until the next leader change.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.fault_cluster import (
    autopilot_healthy,
    fault_cluster,
    kv_keys,
    kv_keys_or_none,
    put,
    stop,
    wait_for_cluster,
    wipe_raft_dir,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEYS = 150


def test_wiped_follower_is_sent_a_snapshot_and_is_unhealthy_until_caught_up(
    tmp_path: Path,
) -> None:
    # Snapshots every 50 entries, 10 kept in memory: the follower's entries
    # are compacted on the leader, so only a snapshot can bring it back.
    c = fault_cluster(
        tmp_path, "127.0.61", extra={"raft_snapshot_threshold": 50, "raft_trailing_logs": 10}
    )
    c.start_all()
    try:
        leader = wait_for_cluster(c)
        for i in range(KEYS):
            assert put(c, leader, f"wipe/k{i:03d}", f"v{i}") == 200
        want = {f"wipe/k{i:03d}" for i in range(KEYS)}
        follower = next(n for n in c.alive() if n != leader)
        c.wait_until(lambda: kv_keys(c, follower, "wipe/") == want, 20, "keys on the follower")
        c.wait_until(lambda: autopilot_healthy(c, leader, follower), 20, "follower healthy")

        stop(c, follower)
        wipe_raft_dir(c, follower)
        started = time.monotonic()
        c.start(follower)
        # Health first, then the follower's keys: once its API answers, a
        # health answer of True must never come before it holds every key.
        samples: list[tuple[float, bool | None, bool | None]] = []

        def caught_up() -> bool:
            healthy = autopilot_healthy(c, leader, follower)
            keys = kv_keys_or_none(c, follower, "wipe/")
            samples.append(
                (time.monotonic() - started, healthy, None if keys is None else keys == want)
            )
            return bool(healthy and keys == want)

        c.wait_until(caught_up, 30, "the wiped follower caught up and healthy")
        took = next(t for t, _, has in samples if has)
        answering = next(t for t, _, has in samples if has is not None)
        print(f"wiped follower: API up {answering:.1f}s, every key {took:.1f}s after restart")
        bad = [s for s in samples if s[1] and s[2] is False]
        assert not bad, f"autopilot called the follower healthy without its data: {bad[:3]}"
        assert any(h is False for _, h, _ in samples), samples[:5]
        assert took < 10, f"caught up only after {took:.1f}s"
        # Default (leader-lease) reads on it are answered, not held.
        status, body, _ = c.get(follower, "/v1/kv/wipe/k007?raw", timeout=5)
        assert (status, body) == (200, "v7")
        assert "event=raft_follower_lost_state" in c.logs(leader)
        assert "event=raft_snapshot" in c.logs(leader)
    finally:
        c.stop_all()
