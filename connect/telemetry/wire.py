"""Spans as plain JSON objects: what a proxy sends its agent and the agent's API answers (pure).

One span is ``{"TraceID", "SpanID", "ParentSpanID", "Name", "Kind"
("SERVER"|"CLIENT"), "Service", "StartNs", "EndNs", "Attributes" (string
keys, str/int/float/bool values), "Status" ("UNSET"|"OK"|"ERROR"),
"StatusMessage", "Debug"}`` (Consul's CamelCase keys). ``span_from_json``
validates what arrives from the network and raises ``SpanFormatError``
naming the field; nothing is half-read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .spans import AttrValue, Span, SpanKind, Status

_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
MAX_NAME = 512
MAX_ATTRIBUTES = 64
MAX_ATTR_VALUE = 2048


class SpanFormatError(ValueError):
    """A span object that cannot be read; ``field`` names the bad key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def span_to_json(span: Span) -> dict[str, Any]:
    """``span`` as a JSON-ready object."""
    return {
        "TraceID": span.trace_id,
        "SpanID": span.span_id,
        "ParentSpanID": span.parent_span_id or "",
        "Name": span.name,
        "Kind": span.kind.name,
        "Service": span.service,
        "StartNs": span.start_ns,
        "EndNs": span.end_ns,
        "DurationNs": span.duration_ns,
        "Attributes": dict(span.attributes),
        "Status": span.status.name,
        "StatusMessage": span.status_message,
        "Debug": span.debug,
    }


def _str(obj: Mapping[str, Any], key: str, *, required: bool = True, limit: int = MAX_NAME) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise SpanFormatError(key, "must be a string")
    if required and not value:
        raise SpanFormatError(key, "is required")
    if len(value) > limit:
        raise SpanFormatError(key, f"longer than {limit} characters")
    return value


def _hex(obj: Mapping[str, Any], key: str, pattern: re.Pattern[str], *, required: bool) -> str:
    value = _str(obj, key, required=required).lower()
    if value and (not pattern.fullmatch(value) or not value.strip("0")):
        raise SpanFormatError(key, f"must be {pattern.pattern[-3:-1]} non-zero hex digits")
    return value


def _time(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 63:
        raise SpanFormatError(key, "must be a non-negative integer (nanoseconds)")
    return value


def _attributes(raw: Any) -> dict[str, AttrValue]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or len(raw) > MAX_ATTRIBUTES:
        raise SpanFormatError("Attributes", f"must be an object of at most {MAX_ATTRIBUTES} keys")
    out: dict[str, AttrValue] = {}
    for key, value in raw.items():
        if not isinstance(value, str | int | float | bool) or len(str(value)) > MAX_ATTR_VALUE:
            raise SpanFormatError(f"Attributes.{key}", "must be a short string, number or boolean")
        out[str(key)] = value
    return out


def span_from_json(obj: Any) -> Span:
    """A ``Span`` from one JSON object; raises ``SpanFormatError`` naming the field."""
    if not isinstance(obj, Mapping):
        raise SpanFormatError("span", "must be an object")
    kind = _str(obj, "Kind")
    status = _str(obj, "Status", required=False) or "UNSET"
    if kind not in SpanKind.__members__:
        raise SpanFormatError("Kind", "must be SERVER or CLIENT")
    if status not in Status.__members__:
        raise SpanFormatError("Status", "must be UNSET, OK or ERROR")
    start, end = _time(obj, "StartNs"), _time(obj, "EndNs")
    if end and end < start:
        raise SpanFormatError("EndNs", "is before StartNs")
    debug = obj.get("Debug", False)
    if not isinstance(debug, bool):
        raise SpanFormatError("Debug", "must be true or false")
    return Span(
        trace_id=_hex(obj, "TraceID", _HEX32, required=True),
        span_id=_hex(obj, "SpanID", _HEX16, required=True),
        parent_span_id=_hex(obj, "ParentSpanID", _HEX16, required=False) or None,
        name=_str(obj, "Name"),
        kind=SpanKind[kind],
        service=_str(obj, "Service"),
        start_ns=start,
        end_ns=end,
        attributes=_attributes(obj.get("Attributes")),
        status=Status[status],
        status_message=_str(obj, "StatusMessage", required=False),
        debug=debug,
    )
