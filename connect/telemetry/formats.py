"""Span encodings for collectors: OTLP protobuf, OTLP JSON and Zipkin v2 JSON (pure).

OTLP (opentelemetry-proto ``ExportTraceServiceRequest``): spans grouped by
service into one ``ResourceSpans`` each with the ``service.name`` resource
attribute. The protobuf uses the official generated classes; the JSON
mapping follows the OTLP spec's exceptions to proto3 JSON (ids as hex, not
base64; 64-bit integers as decimal strings; enums as integers).

Zipkin v2: a JSON array of spans, times in microseconds, tags as strings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from .spans import AttrValue, Span, Status

if TYPE_CHECKING:  # the protobuf classes are imported on first use (about 5 MB RSS)
    from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

SCOPE_NAME = "meshd.proxy"


class Encoding(Enum):
    """A collector wire format, with its path and content type."""

    OTLP_PROTO = ("/v1/traces", "application/x-protobuf")
    OTLP_JSON = ("/v1/traces", "application/json")
    ZIPKIN = ("/api/v2/spans", "application/json")

    @property
    def path(self) -> str:
        """The collector's path for this format."""
        return self.value[0]

    @property
    def content_type(self) -> str:
        """The request's ``Content-Type``."""
        return self.value[1]


def _by_service(spans: Iterable[Span]) -> dict[str, list[Span]]:
    groups: dict[str, list[Span]] = {}
    for span in spans:
        groups.setdefault(span.service, []).append(span)
    return groups


def _pb_attrs(
    target: RepeatedCompositeFieldContainer[KeyValue], attrs: dict[str, AttrValue]
) -> None:
    # Filled in place with add(): building messages and appending copies them.
    for key, value in attrs.items():
        kv = target.add(key=key)
        if isinstance(value, bool):
            kv.value.bool_value = value
        elif isinstance(value, int):
            kv.value.int_value = value
        elif isinstance(value, float):
            kv.value.double_value = value
        else:
            kv.value.string_value = value


def _pb_span(pb: PbSpan, span: Span) -> None:
    pb.trace_id = bytes.fromhex(span.trace_id)
    pb.span_id = bytes.fromhex(span.span_id)
    pb.name = span.name
    pb.kind = span.kind.value  # type: ignore[assignment]
    pb.start_time_unix_nano = span.start_ns
    pb.end_time_unix_nano = span.end_ns or span.start_ns
    pb.flags = 1 if span.sampled else 0  # W3C trace flags (sampled) in the low byte
    _pb_attrs(pb.attributes, span.attributes)
    pb.status.code = span.status.value  # type: ignore[assignment]
    if span.status_message:
        pb.status.message = span.status_message
    if span.parent_span_id:
        pb.parent_span_id = bytes.fromhex(span.parent_span_id)
    if span.tracestate:
        pb.trace_state = ",".join(f"{k}={v}" for k, v in span.tracestate)


def otlp_request(spans: Sequence[Span]) -> ExportTraceServiceRequest:
    """The ``ExportTraceServiceRequest`` for ``spans`` (one resource per service)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    for service, group in _by_service(spans).items():
        resource_spans = request.resource_spans.add()
        _pb_attrs(resource_spans.resource.attributes, {"service.name": service})
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = SCOPE_NAME
        for span in group:
            _pb_span(scope_spans.spans.add(), span)
    return request


def encode_otlp_proto(spans: Sequence[Span]) -> bytes:
    """OTLP/HTTP protobuf body."""
    return bytes(otlp_request(spans).SerializeToString())


def _json_value(value: AttrValue) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": value}


def _json_attrs(attrs: dict[str, AttrValue]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _json_value(v)} for k, v in attrs.items()]


def _json_span(span: Span) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": span.name,
        "kind": span.kind.value,
        "startTimeUnixNano": str(span.start_ns),
        "endTimeUnixNano": str(span.end_ns or span.start_ns),
        "attributes": _json_attrs(span.attributes),
        "status": {"code": span.status.value},
    }
    if span.parent_span_id:
        out["parentSpanId"] = span.parent_span_id
    if span.status_message:
        out["status"]["message"] = span.status_message
    if span.tracestate:
        out["traceState"] = ",".join(f"{k}={v}" for k, v in span.tracestate)
    return out


def encode_otlp_json(spans: Sequence[Span]) -> bytes:
    """OTLP/HTTP JSON body."""
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": _json_attrs({"service.name": service})},
                "scopeSpans": [
                    {"scope": {"name": SCOPE_NAME}, "spans": [_json_span(s) for s in group]}
                ],
            }
            for service, group in _by_service(spans).items()
        ]
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _zipkin_span(span: Span) -> dict[str, Any]:
    attrs = span.attributes.items()
    tags = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in attrs}
    if span.status is Status.ERROR:
        tags["error"] = span.status_message or "true"
    out: dict[str, Any] = {
        "traceId": span.trace_id,
        "id": span.span_id,
        "name": span.name,
        "kind": span.kind.name,
        "timestamp": span.start_ns // 1000,
        "duration": max(1, span.duration_ns // 1000),
        "localEndpoint": {"serviceName": span.service},
        "tags": tags,
    }
    if span.parent_span_id:
        out["parentId"] = span.parent_span_id
    if span.debug:
        out["debug"] = True
    return out


def encode_zipkin(spans: Sequence[Span]) -> bytes:
    """Zipkin v2 JSON body (a list of spans)."""
    return json.dumps([_zipkin_span(s) for s in spans], separators=(",", ":")).encode()


ENCODERS = {
    Encoding.OTLP_PROTO: encode_otlp_proto,
    Encoding.OTLP_JSON: encode_otlp_json,
    Encoding.ZIPKIN: encode_zipkin,
}
