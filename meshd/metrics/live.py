"""Live values: metrics read at scrape time rather than pushed as events.

A reader (``LiveReader``) returns ``Live`` values; the agent's readers are in
``meshd.agent.live_metrics``, and ``meshd.metrics.prometheus.Metrics`` turns
them into metric families at every scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["Live", "LiveReader"]


@dataclass(frozen=True)
class Live:
    """One metric read at scrape time: a single value, or values by one label."""

    name: str  # dotted, without prefix: "raft.commit_index"
    help: str
    value: float = 0.0
    label: str = ""  # with ``by``: the label's name
    by: Mapping[str, float] = field(default_factory=dict)
    counter: bool = False


LiveReader = Callable[[], Iterable[Live]]
