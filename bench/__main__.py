"""``make bench``: run every benchmark in bench/ and print its figures."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from pathlib import Path


def main() -> int:
    names = sorted(
        m.name
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name.endswith("_bench")
    )
    only = sys.argv[1:]
    failed = 0
    for name in names:
        if only and name not in only:
            continue
        print(f"\n=== bench/{name}.py ===", flush=True)
        try:
            importlib.import_module(f"bench.{name}").main([])
        except Exception:
            failed += 1
            traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
