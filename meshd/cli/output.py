"""How commands print: aligned columns (like Consul's ``columnize``), key/value
blocks, and JSON.

Cells are rendered Go-style: booleans as ``true``/``false``, None as an
empty cell. Columns are separated by two spaces and lines carry no trailing
blanks, so the output is easy to read and to ``awk``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import click

__all__ = ["cell", "echo_json", "echo_pairs", "echo_table", "pairs", "table"]

GAP = "  "


def cell(value: Any) -> str:
    """One value as a table cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={cell(v)}" for k, v in sorted(value.items()))
    if isinstance(value, list | tuple):
        return ",".join(cell(v) for v in value)
    return " ".join(str(value).splitlines())


def table(headers: Sequence[str] | None, rows: Iterable[Sequence[Any]]) -> str:
    """Rows as left-aligned columns under ``headers`` (None: no header line)."""
    lines = [[cell(v) for v in row] for row in rows]
    if headers is not None:
        lines.insert(0, list(headers))
    if not lines:
        return ""
    widths: list[int] = []
    for line in lines:
        for i, text in enumerate(line):
            if i == len(widths):
                widths.append(0)
            widths[i] = max(widths[i], len(text))
    out = []
    for line in lines:
        padded = [text.ljust(widths[i]) for i, text in enumerate(line)]
        out.append(GAP.join(padded).rstrip())
    return "\n".join(out)


def echo_table(headers: Sequence[str] | None, rows: Iterable[Sequence[Any]]) -> None:
    """Print ``table(headers, rows)``; prints nothing for no rows and no header."""
    text = table(headers, rows)
    if text:
        click.echo(text)


def pairs(items: Iterable[tuple[str, Any]]) -> str:
    """``key  value`` lines with the values aligned (Consul's ``kv get -detailed``)."""
    return table(None, items)


def echo_pairs(items: Iterable[tuple[str, Any]]) -> None:
    """Print ``pairs(items)``."""
    text = pairs(items)
    if text:
        click.echo(text)


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON with sorted keys."""
    click.echo(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))
