"""``meshd top [--window 10s] [--service NAME] [--once] [-n 20]``: the busiest edges, live.

Like ``linkerd viz top``/``stat``: reads ``/v1/internal/ui/mesh-graph`` and
prints one row per edge and subset (busiest first): SOURCE DESTINATION
SUBSET RPS SUCCESS% P50 P99 MTLS, refreshed every 2 seconds until Ctrl-C;
``--once`` prints one table and exits. An edge without subsets shows
``-``; so do the success rate and latencies of an edge that had no request
in the window.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import click

from ..durations import format_duration, parse_duration
from ..errors import DurationError
from .client import AgentClient
from .errors import CLIError, UnexpectedResponse
from .options import agent_options
from .output import table

PATH = "/v1/internal/ui/mesh-graph"
HEADERS = ("SOURCE", "DESTINATION", "SUBSET", "RPS", "SUCCESS%", "P50", "P99", "MTLS")
REFRESH = 2.0
CLEAR = "\x1b[H\x1b[2J"


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}ms" if value < 100 else f"{value:.0f}ms"


def _success(figures: Mapping[str, Any]) -> str:
    if not figures.get("Requests"):
        return "-"
    return f"{100.0 * (1.0 - float(figures.get('ErrorRate') or 0.0)):.2f}"


def _row(edge: Mapping[str, Any], figures: Mapping[str, Any], subset: str) -> list[str]:
    return [
        str(edge.get("Source")),
        str(edge.get("Destination")),
        subset or "-",
        f"{float(figures.get('RequestsPerSecond') or 0.0):.1f}",
        _success(figures),
        _ms(figures.get("P50Ms")),
        _ms(figures.get("P99Ms")),
        "yes" if edge.get("MTLS") else "no",
    ]


def rows(graph: Mapping[str, Any], limit: int) -> list[list[str]]:
    """The table rows of a mesh-graph answer, busiest first, at most ``limit``."""
    out: list[tuple[float, list[str]]] = []
    for edge in graph.get("Edges") or []:
        subsets = edge.get("Subsets") or []
        if not subsets:
            out.append((float(edge.get("RequestsPerSecond") or 0.0), _row(edge, edge, "")))
        for s in subsets:
            out.append((float(s.get("RequestsPerSecond") or 0.0), _row(edge, s, s["Subset"])))
    out.sort(key=lambda item: (-item[0], item[1][0], item[1][1], item[1][2]))
    return [r for _, r in out[:limit]]


def render(graph: Mapping[str, Any], limit: int) -> str:
    """The header line and the table (an idle mesh says so)."""
    title = f"Busiest edges over the last {graph.get('Window')} ({graph.get('GeneratedAt')})"
    found = rows(graph, limit)
    body = table(HEADERS, found) if found else "No traffic in the window."
    return f"{title}\n{body}"


def _fetch(client: AgentClient, window: str, service: str) -> Mapping[str, Any]:
    params = {"window": window, **({"service": service} if service else {})}
    try:
        out = client.request("GET", PATH, params=params).json()
    except UnexpectedResponse as exc:
        raise CLIError(f"Error reading the mesh graph: {exc.body or exc.message}") from None
    if not isinstance(out, Mapping):
        raise CLIError("Error reading the mesh graph: the agent's answer is not an object")
    return out


@click.command("top")
@click.option("--window", default="10s", show_default=True, help="Window (Go duration, 1s-1h).")
@click.option("--service", default="", help="Only edges with this service at one end.")
@click.option("--once", is_flag=True, help="Print one table and exit.")
@click.option("-n", "limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="Rows to show.")  # fmt: skip
@agent_options()
def top(client: AgentClient, window: str, service: str, once: bool, limit: int) -> None:
    """Show the busiest edges of the mesh, refreshed every 2 seconds."""
    try:
        seconds = parse_duration(window)
    except DurationError as exc:
        raise CLIError(f"Error: invalid --window {window!r}: {exc}") from None
    window = format_duration(seconds)
    if once:
        click.echo(render(_fetch(client, window, service), limit))
        return
    try:
        while True:
            text = render(_fetch(client, window, service), limit)
            click.echo(CLEAR + text, nl=True)
            time.sleep(REFRESH)
    except KeyboardInterrupt:
        return
