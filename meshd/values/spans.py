"""The bodies local proxies send with their spans, and a trace's API path.

``PUT /v1/internal/traces/spans`` carries ``{"Spans": [...], "Breaks": [...]}``;
``parse_spans``/``parse_breaks`` turn it into spans and propagation breaks,
raising ``SpanFormatError`` naming the field. Shared by the API handlers and
the agent's traces (meshd.agent.traces).
"""

from __future__ import annotations

from typing import Any

from connect.proxy.agent_client import path_segment
from connect.telemetry.spans import Span
from connect.telemetry.wire import SpanFormatError, span_from_json

MAX_SPANS_PER_PUT = 4096


def parse_spans(body: Any) -> list[Span]:
    """The spans of a ``{"Spans": [...]}`` body; raises ``SpanFormatError`` naming the field."""
    raw = body.get("Spans") if isinstance(body, dict) else None
    if not isinstance(raw, list):
        raise SpanFormatError("Spans", "must be a list of spans")
    if len(raw) > MAX_SPANS_PER_PUT:
        raise SpanFormatError("Spans", f"at most {MAX_SPANS_PER_PUT} spans per request")
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(span_from_json(item))
        except SpanFormatError as exc:
            raise SpanFormatError(f"Spans[{i}].{exc.field}", exc.message) from None
    return out


def parse_breaks(body: Any) -> list[tuple[str, str, int]]:
    """The optional ``Breaks`` of a spans body: ``[{"Service", "Upstream", "Count"}]``."""
    raw = body.get("Breaks", []) if isinstance(body, dict) else []
    if not isinstance(raw, list) or len(raw) > MAX_SPANS_PER_PUT:
        raise SpanFormatError("Breaks", "must be a list of {Service, Upstream, Count}")
    out = []
    for i, item in enumerate(raw):
        ok = isinstance(item, dict) and isinstance(item.get("Service"), str) and item["Service"]
        count = item.get("Count") if isinstance(item, dict) else None
        if not ok or not isinstance(item.get("Upstream", ""), str):
            raise SpanFormatError(f"Breaks[{i}]", "needs a Service and an Upstream name")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise SpanFormatError(f"Breaks[{i}].Count", "must be a non-negative integer")
        out.append((str(item["Service"]), str(item.get("Upstream", "")), count))
    return out


def trace_path(trace_id: str) -> str:
    return f"/v1/internal/traces/{path_segment(trace_id)}"
