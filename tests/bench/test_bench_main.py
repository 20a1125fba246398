"""``python -m bench NAME... --flags``: names select, flags go to each benchmark."""

from __future__ import annotations

from bench.__main__ import split_args


def test_names_then_flags() -> None:
    assert split_args(["telemetry_bench", "--quick", "--rounds", "3"]) == (
        ["telemetry_bench"],
        ["--quick", "--rounds", "3"],
    )
    assert split_args(["kv_bench", "graph_bench"]) == (["kv_bench", "graph_bench"], [])
    assert split_args([]) == ([], [])
