"""The core-only benchmark runs and prints its per-write figures."""

from __future__ import annotations

import re

import pytest

from bench import raft_core_bench


def test_raft_core_bench_prints_cpu_per_write(capsys: pytest.CaptureFixture[str]) -> None:
    raft_core_bench.main(["--quick"])
    out = capsys.readouterr().out
    m = re.search(r"core ([\d.]+) us/write, core\+codec ([\d.]+) us/write", out)
    assert m, out
    assert float(m[1]) > 0 and float(m[2]) > 0
