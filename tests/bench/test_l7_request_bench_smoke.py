"""bench/l7_request_bench.py's ``--quick`` run prints its figures (never what they are)."""

from __future__ import annotations

import pytest

from bench import l7_request_bench
from tests.bench.test_bench_smoke import figure_row, run_quick


def test_l7_request_bench_prints_both_sides_and_their_parts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = run_quick(l7_request_bench.main, capsys)
    for label in (
        "client side, whole",
        "  the 90/10 split route instead",
        "  ... and without the attempt machinery",
        "server side, whole",
        "  ... and without metrics",
        "parse wrk's request (llhttp)",
    ):
        [us] = figure_row(out, label, 1)
        assert float(us) > 0
