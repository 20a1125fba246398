"""The in-process driver benchmark runs and prints its per-write figures."""

from __future__ import annotations

import re

import pytest

from bench import raft_driver_bench


def test_raft_driver_bench_prints_cpu_steps_and_messages_per_write(
    capsys: pytest.CaptureFixture[str],
) -> None:
    raft_driver_bench.main(["--quick"])
    out = capsys.readouterr().out
    m = re.search(
        r"CPU (\d+) us/write .* leader ([\d.]+), follower ([\d.]+); messages ([\d.]+)/write", out
    )
    assert m, out
    assert int(m[1]) > 0
    # An append to each follower and one answer from each, plus a commit
    # notice to each unless the next append carried the commit first (8 when
    # followers answered notices too).
    assert 4.0 <= float(m[4]) <= 6.5
