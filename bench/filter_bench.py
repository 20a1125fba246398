"""Filter benchmark: ``?filter=`` over 10,000 catalog rows, and a regex that
makes a backtracking engine run for minutes.

Run ``python -m bench.filter_bench``. Prints figures next to their targets
and a plain-Python comprehension over the same rows as the baseline
(measured in the same run); never asserts. The figures used to be wall-time
assertions in tests/meshd/test_filter.py.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from typing import Any

from meshd.filter import apply_filter, compile_filter

ROWS = 10_000
EXPRESSION = (
    "NodeMeta.os == linux and ServiceTags contains canary and ServicePort == 8080 and not "
    'Checks.Status != passing and (Node matches "^web-" or ServiceMeta.version == "2.0")'
)


def rows(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "Node": f"{rng.choice(['web', 'db', 'cache'])}-{i}",
            "NodeMeta": {"os": rng.choice(["linux", "darwin"]), "rack": f"r{i % 8}"},
            "ServiceName": "web",
            "ServiceTags": rng.sample(["primary", "canary", "v1", "v2", "blue"], 2),
            "ServiceMeta": {"version": rng.choice(["1.0", "1.1", "2.0"])},
            "ServicePort": rng.choice([8080, 8443]),
            "Checks": [{"Status": rng.choice(["passing"] * 4 + ["critical"])} for _ in range(2)],
        }
        for i in range(n)
    ]


def _baseline(item: dict[str, Any]) -> bool:
    return bool(
        item["NodeMeta"]["os"] == "linux"
        and "canary" in item["ServiceTags"]
        and item["ServicePort"] == 8080
        and all(c["Status"] == "passing" for c in item["Checks"])
        and (item["Node"].startswith("web-") or item["ServiceMeta"]["version"] == "2.0")
    )


def _best_of(repeat: int, fn: Any) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its figures; returns the exit status (always 0)."""
    parser = argparse.ArgumentParser(prog="python -m bench.filter_bench")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    items = rows(ROWS)
    keep = compile_filter(EXPRESSION)
    filtered = _best_of(args.repeat, lambda: [i for i in items if keep(i)])
    baseline = _best_of(args.repeat, lambda: [i for i in items if _baseline(i)])
    print(
        f"filter {ROWS} rows: {filtered * 1000:.1f} ms (target < 100 ms); "
        f"plain Python {baseline * 1000:.1f} ms; ratio {filtered / baseline:.1f}x"
    )
    evil = [{"Node": "a" * 40 + "!"}]
    regex = _best_of(args.repeat, lambda: apply_filter(evil, 'Node matches "(a+)+$"'))
    print(f'regex "(a+)+$" on 41 chars: {regex * 1000:.2f} ms (target < 1000 ms; RE2, linear)')
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
