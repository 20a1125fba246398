"""``make bench``: run every benchmark in bench/ and print its figures.

``python -m bench [NAME...] [--flag...]`` runs only the named benchmarks;
the arguments from the first one starting with ``-`` on go to each of them
(``python -m bench telemetry_bench --quick``)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from pathlib import Path


def split_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """The benchmark names, then the flags passed to each of them."""
    for i, arg in enumerate(argv):
        if arg.startswith("-"):
            return argv[:i], argv[i:]
    return argv, []


def main(argv: list[str] | None = None) -> int:
    names = sorted(
        m.name
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name.endswith("_bench")
    )
    only, flags = split_args(sys.argv[1:] if argv is None else argv)
    failed = 0
    for name in names:
        if only and name not in only:
            continue
        print(f"\n=== bench/{name}.py ===", flush=True)
        try:
            importlib.import_module(f"bench.{name}").main(list(flags))
        except Exception:
            failed += 1
            traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
