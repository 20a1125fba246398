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


def test_every_benchmark_takes_the_flags_make_bench_passes() -> None:
    # ``make bench`` calls main(flags) on every *_bench module.
    import importlib
    import inspect
    import pkgutil
    from pathlib import Path

    import bench

    names = [m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.endswith("_bench")]
    assert len(names) > 20 and Path(bench.__path__[0]).is_dir()
    for name in names:
        main = importlib.import_module(f"bench.{name}").main
        inspect.signature(main).bind([])  # raises TypeError if it takes no argument
