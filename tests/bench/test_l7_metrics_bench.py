"""bench/l7_metrics_bench.py's ``--quick`` run prints a figure for every case."""

from __future__ import annotations

import re

import pytest

from bench import l7_metrics_bench


def test_l7_metrics_bench_prints_each_case(capsys: pytest.CaptureFixture[str]) -> None:
    l7_metrics_bench.main(["--quick"])
    out = capsys.readouterr().out
    for label in (
        "baseline: L7 decision (plain route)",
        "metrics, access logs off",
        "metrics + access log (JSON)",
        "metrics + access log (text)",
        "per-request metrics off",
        "metrics (prometheus-client children)",
        "metrics + graph edges",
        "families' observe only",
        "families' observe only (prometheus-client)",
    ):
        match = re.search(rf"^{re.escape(label)}\s+(\d+\.\d+)\s+\d+\.\d+x$", out, re.M)
        assert match and float(match.group(1)) > 0, out
