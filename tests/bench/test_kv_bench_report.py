"""kv_bench's table: which rows are targets (issue #18: spread puts are one)."""

from __future__ import annotations

import pytest

from bench import kv_bench
from bench.loadgen.wrk import WrkResult


def _row(out: str, label: str) -> str:
    return next(line for line in out.splitlines() if label in line)


def test_spread_puts_are_a_target_row_spread_reads_stay_info(
    capsys: pytest.CaptureFixture[str],
) -> None:
    spread_put, spread_read = kv_bench.FULL[2], kv_bench.FULL[5]
    assert spread_put.spread and spread_put.op == "put"
    assert spread_read.spread and spread_read.op == "read"
    slow, fast = WrkResult(900, 1.0, 1.0, 2.0, 0), WrkResult(1000, 1.0, 1.0, 2.0, 0)
    meshd = {spread_put.label: slow, spread_read.label: slow}
    etcd = {spread_put.label: fast, spread_read.label: fast}
    kv_bench.report([spread_put, spread_read], meshd, etcd, 1.0)
    out = capsys.readouterr().out
    put_row, read_row = _row(out, spread_put.label), _row(out, spread_read.label)
    assert "meshd >= etcd" in put_row and "(info)" not in put_row
    assert "(info)" in read_row and "meshd >= etcd" not in read_row
    assert "MISSED" in put_row and "MISSED" not in read_row
