"""Where the suite's time goes: per-file totals from a pytest JUnit XML file.

    .venv/bin/python -m pytest -q --junitxml=/tmp/run.xml
    .venv/bin/python -m tools.pytest_file_times /tmp/run.xml [--top 40]

Prints one line per test file, slowest first: the file's summed test time
(setup and teardown included, as JUnit records them), its test count and
its slowest test. Under pytest-xdist the sums are per-test CPU-side wall
times added up, not the run's wall time.
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path


def module_of(classname: str) -> str:
    """``tests.e2e.test_x.TestY`` -> ``tests/e2e/test_x.py``."""
    parts = classname.split(".")
    for i, part in enumerate(parts):
        if part.startswith("test_"):
            return "/".join(parts[: i + 1]) + ".py"
    return "/".join(parts) + ".py"


def file_times(xml_file: Path) -> list[tuple[str, float, int, float, str]]:
    """(file, total s, tests, slowest s, slowest test name), slowest file first."""
    total: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    slowest: dict[str, tuple[float, str]] = {}
    for case in ET.parse(xml_file).getroot().iter("testcase"):
        module = module_of(case.get("classname", ""))
        seconds = float(case.get("time", "0") or 0)
        total[module] += seconds
        count[module] += 1
        if seconds >= slowest.get(module, (-1.0, ""))[0]:
            slowest[module] = (seconds, case.get("name", ""))
    rows = [(m, total[m], count[m], *slowest[m]) for m in total]
    return sorted(rows, key=lambda row: -row[1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("xml", type=Path, help="a --junitxml file")
    p.add_argument("--top", type=int, default=40, help="files to print (default 40)")
    args = p.parse_args(argv)
    rows = file_times(args.xml)
    grand = sum(row[1] for row in rows)
    print(f"{'seconds':>8} {'share':>6} {'tests':>5}  file  (slowest test)")
    for module, seconds, tests, top_s, top_name in rows[: args.top]:
        share = 100 * seconds / grand if grand else 0.0
        print(f"{seconds:8.1f} {share:5.1f}% {tests:5d}  {module}  ({top_name} {top_s:.1f}s)")
    print(f"{grand:8.1f} total over {sum(r[2] for r in rows)} tests in {len(rows)} files")


if __name__ == "__main__":
    main()
