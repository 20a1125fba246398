"""The registry benchmark runs end to end at --quick size and prints its figures."""

from __future__ import annotations

import re

import pytest

from bench.registry_bench import main


def test_quick_bench_prints_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick"]) == 0
    out = capsys.readouterr().out
    for figure in (
        "load (FSM apply",
        "peak RSS",
        "health query",
        "wake 200 blocked readers",
        "snapshot size",
        "restore time",
        "restored == original",
        "loop stall in snapshot, frozen view, in steps",
    ):
        assert figure in out
    assert "target" in out
    assert re.search(r"restored == original\s+True", out)


def test_kv_apply_bench_prints_cpu_per_apply(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import kv_apply_bench

    assert kv_apply_bench.main(["--n", "1000", "--runs", "1", "--watchers", "50"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "watchers=" in line]
    assert len(rows) == 4
    for row in rows:
        assert re.search(r"set +\d+\.\d+ us +cas +\d+\.\d+ us +delete +\d+\.\d+ us", row), row
