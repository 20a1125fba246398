"""The KV-PUT-through-the-app benchmark runs and prints its per-PUT figures."""

from __future__ import annotations

import re

import pytest

from bench import kv_app_bench


def test_kv_app_bench_prints_cpu_per_put_for_the_app_and_the_server(
    capsys: pytest.CaptureFixture[str],
) -> None:
    storage = kv_app_bench.Agent._storage
    kv_app_bench.main(["--quick"])
    # It runs its agent on in-memory storage: later agents of this worker
    # (restart tests) must get their data dir back.
    assert kv_app_bench.Agent._storage is storage
    out = capsys.readouterr().out
    rows = re.findall(r"KV PUT (app|server) \(stub write\): CPU ([\d.]+) us/PUT", out)
    assert [name for name, _ in rows] == ["app", "server"], out
    assert all(float(cpu) > 0 for _, cpu in rows)
