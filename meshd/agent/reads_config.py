"""The registry reads behind /v1/config (Consul's ``ConfigEntry.Get`` and
``ConfigEntry.List``).

Entries for ``meshd.agent.reads.READS`` in the same shape: ``fn(store, ws,
args) -> (index, json)``. Each registers a watch on the entry (or the kind,
or every entry) so the endpoints can block with ``?index=``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from registry import queries as q
from registry import shapes
from registry.state.store import StateStore
from registry.state.watch import WatchSet

from ..filter import apply_filter

JSON = Any
ReadFn = Callable[[StateStore, WatchSet | None, Mapping[str, Any]], tuple[int, JSON]]


def config_get(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    """One entry as JSON, or None when there is none."""
    idx, entry = q.config_entry_get(store, ws, str(a.get("kind") or ""), str(a.get("name") or ""))
    return idx, None if entry is None else shapes.config_entry_json(entry)


def config_list(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    """Every entry of ``kind`` (or of every kind without one), sorted by kind and name."""
    kind = a.get("kind") or None
    idx, entries = q.config_entry_list(store, ws, kind)
    items = [shapes.config_entry_json(e) for e in entries]
    expr = a.get("filter")
    return idx, apply_filter(items, expr) if expr else items


CONFIG_READS: dict[str, ReadFn] = {"config.get": config_get, "config.list": config_list}
