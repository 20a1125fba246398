"""bench/dns_bench.py prints a figure row for every scenario (never checks the figures)."""

from __future__ import annotations

import re

import pytest

from bench import dns_bench

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

NUM = r"[\d,]+(?:\.\d+)?"


def test_dns_bench_prints_rate_and_latency_per_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    dns_bench.main(["--seconds", "1"])
    out = capsys.readouterr().out
    for scenario in dns_bench.SCENARIOS:
        row = re.search(rf"^\s+{re.escape(scenario.label)}\s+({NUM})\s+({NUM})%", out, re.M)
        assert row, f"no figures for {scenario.label!r} in:\n{out}"
        assert float(row.group(1).replace(",", "")) > 0  # it answered queries
    assert "target: >= 10,000 queries/s" in out
