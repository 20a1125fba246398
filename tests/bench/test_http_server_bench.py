"""The HTTP-server-alone benchmark runs and prints its per-request figures."""

from __future__ import annotations

import re

import pytest

from bench import http_server_bench


def test_http_server_bench_prints_cpu_per_request_for_1_and_64_connections(
    capsys: pytest.CaptureFixture[str],
) -> None:
    http_server_bench.main(["--quick"])
    out = capsys.readouterr().out
    rows = re.findall(r"(\d+) connection\(s\), PUT -> true: server CPU ([\d.]+) us/request", out)
    assert [conns for conns, _ in rows] == ["1", "64"], out
    assert all(float(cpu) > 0 for _, cpu in rows)
