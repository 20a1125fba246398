"""bench/tracing_bench.py's ``--quick`` run prints its figures (never what they are)."""

from __future__ import annotations

import pytest

from bench import tracing_bench
from tests.bench.test_bench_smoke import figure_row, run_quick


def test_tracing_bench_prints_per_request_and_per_span_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = run_quick(tracing_bench.main, capsys)
    labels = ("baseline: copy headers", "trace, 1% sampled", "trace, 100% sampled")
    for label in (*labels, "keep (store + lint)", "encode OTLP protobuf", "encode Zipkin JSON"):
        [us] = figure_row(out, label, 1)
        assert float(us) > 0
    assert "1% sampling adds" in out
