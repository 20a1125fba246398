"""Linearizability checker benchmark (tests/sim/linearizability.py): how long
``check`` takes on generated KV histories, linearizable and with one read
corrupted.

Run ``python -m bench.linearizability_bench``. Prints each figure next to its
old target and, as the baseline measured in the same run, how long generating
the same histories took (a linear pass over a real sequential store); never
asserts. The figures used to be wall-time assertions in
tests/sim/test_linearizability.py, which now checks the verdicts and a
deterministic bound on search work instead.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from tests.sim.kv_histories import corrupt_one_get, generate_history
from tests.sim.linearizability import KVOperation, check


def _best_of(repeat: int, fn: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def _small_histories(count: int) -> list[tuple[list[KVOperation], list[KVOperation] | None]]:
    out = []
    for seed in range(count):
        rng = random.Random(seed)
        history = generate_history(rng, rng.randint(5, 60), ["a", "b", "c"], clients=5)
        out.append((history, corrupt_one_get(rng, history)))
    return out


def _check_all(pairs: list[tuple[list[KVOperation], list[KVOperation] | None]]) -> None:
    for history, corrupted in pairs:
        check(history)
        if corrupted is not None:
            check(corrupted)


def _big_history(ops: int) -> list[KVOperation]:
    keys = [f"k{i}" for i in range(10)]
    return generate_history(random.Random(2000), ops, keys, clients=5, p_indeterminate=0.02)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its figures; returns the exit status (always 0)."""
    parser = argparse.ArgumentParser(prog="python -m bench.linearizability_bench")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--histories", type=int, default=200, help="small histories checked")
    parser.add_argument("--ops", type=int, default=2000, help="operations in the big history")
    args = parser.parse_args(argv)

    generate = _best_of(args.repeat, lambda: _small_histories(args.histories))
    pairs = _small_histories(args.histories)
    checked = _best_of(args.repeat, lambda: _check_all(pairs))
    print(
        f"check {args.histories} histories of 5-60 ops (+ corrupted): {checked * 1000:.1f} ms "
        f"(target < 5000 ms for 200); generating them {generate * 1000:.1f} ms; "
        f"ratio {checked / generate:.1f}x"
    )

    generate = _best_of(args.repeat, lambda: _big_history(args.ops))
    history = _big_history(args.ops)
    corrupted = corrupt_one_get(random.Random(1), history) or history
    ok = _best_of(args.repeat, lambda: check(history))
    bad = _best_of(args.repeat, lambda: check(corrupted))
    print(
        f"check {args.ops} ops on 10 keys from 5 clients: {ok * 1000:.1f} ms linearizable, "
        f"{bad * 1000:.1f} ms corrupted (target < 2000 ms each for 2000); "
        f"generating it {generate * 1000:.1f} ms; ratio {ok / generate:.1f}x"
    )
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
