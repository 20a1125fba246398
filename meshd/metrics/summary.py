"""Consul's /v1/agent/metrics JSON shapes (go-metrics ``MetricsSummary``),
computed from prometheus-client metric families."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from prometheus_client.metrics_core import Metric


def _aggregate(
    name: str, labels: Mapping[str, str], count: float, total: float, age: float
) -> dict[str, Any]:
    return {
        "Name": name,
        "Count": int(count),
        "Rate": total / age,
        "Sum": float(total),
        "Min": 0.0,
        "Max": 0.0,
        "Mean": total / count if count else 0.0,
        "Stddev": 0.0,
        "Labels": dict(labels),
    }


def counter_json(name: str, labels: Mapping[str, str], value: float, age: float) -> dict[str, Any]:
    out = _aggregate(name, labels, value, value, age)
    if value:  # as if every increment were 1, which holds for all but agent.sync.writes
        out["Min"] = out["Max"] = 1.0
    return out


def histogram_json(name: str, family: Metric, age: float) -> list[dict[str, Any]]:
    series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for s in family.samples:
        labels = {k: v for k, v in s.labels.items() if k != "le"}
        entry = series.setdefault(
            tuple(sorted(labels.items())), {"labels": labels, "buckets": [], "count": 0, "sum": 0}
        )
        if s.name.endswith("_bucket"):
            entry["buckets"].append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_count"):
            entry["count"] = s.value
        elif s.name.endswith("_sum"):
            entry["sum"] = s.value
    out = []
    for entry in series.values():
        count, total = entry["count"], entry["sum"]
        item = _aggregate(name, entry["labels"], count, total, age)
        if count:
            item.update(_bucket_spread(sorted(entry["buckets"]), total / count))
        out.append(item)
    return out


def _bucket_spread(buckets: list[tuple[float, float]], mean: float) -> dict[str, float]:
    """Min, Max and Stddev estimated from cumulative buckets [(le, count)]."""
    finite = [le for le, _ in buckets if math.isfinite(le)]
    lows: list[float] = []
    highs: list[float] = []
    squares = 0.0
    lower, seen = 0.0, 0.0
    for le, cumulative in buckets:
        upper = le if math.isfinite(le) else (finite[-1] if finite else lower)
        n = cumulative - seen
        if n > 0:
            lows.append(lower)
            highs.append(upper)
            squares += n * ((lower + upper) / 2 - mean) ** 2
        lower, seen = upper, cumulative
    if not lows:
        return {}
    return {"Min": lows[0], "Max": highs[-1], "Stddev": math.sqrt(squares / seen)}
