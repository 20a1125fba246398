"""The compact figure tables every benchmark prints."""

from __future__ import annotations

import os
from collections.abc import Sequence


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print ``rows`` under ``header`` with aligned columns (first column left,
    the others right-aligned), preceded by ``title``."""
    cells = [list(header), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def fmt(row: Sequence[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    print(title)
    print(fmt(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(fmt(r))
    print(flush=True)


def ms(seconds: float | None) -> str:
    """Seconds as milliseconds for a table cell ('-' when not measured)."""
    if seconds is None:
        return "-"
    value = seconds * 1000
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def ratio(num: float | None, den: float | None) -> str:
    """``num/den`` as '1.23x' ('-' when either is missing or den is 0)."""
    if num is None or den is None or den == 0:
        return "-"
    return f"{num / den:.2f}x"


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "MISSED")


def machine() -> str:
    """CPUs and load average: the context every figure needs on a shared host."""
    one, five, _ = os.getloadavg()
    return f"[{os.cpu_count()} CPUs, load average {one:.2f} (1 min) {five:.2f} (5 min)]"
