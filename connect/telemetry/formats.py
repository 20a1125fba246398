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
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
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


def _pb_value(value: AttrValue) -> AnyValue:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=value)


def _pb_attrs(attrs: dict[str, AttrValue]) -> list[KeyValue]:
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    return [KeyValue(key=k, value=_pb_value(v)) for k, v in attrs.items()]


def _pb_span(span: Span) -> PbSpan:
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
    from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus

    pb = PbSpan(
        trace_id=bytes.fromhex(span.trace_id),
        span_id=bytes.fromhex(span.span_id),
        name=span.name,
        kind=span.kind.value,  # type: ignore[arg-type]
        start_time_unix_nano=span.start_ns,
        end_time_unix_nano=span.end_ns or span.start_ns,
        attributes=_pb_attrs(span.attributes),
        status=PbStatus(code=span.status.value, message=span.status_message),  # type: ignore[arg-type]
        flags=1 if span.sampled else 0,  # W3C trace flags (sampled) in the low byte
    )
    if span.parent_span_id:
        pb.parent_span_id = bytes.fromhex(span.parent_span_id)
    if span.tracestate:
        pb.trace_state = ",".join(f"{k}={v}" for k, v in span.tracestate)
    return pb


def otlp_request(spans: Sequence[Span]) -> ExportTraceServiceRequest:
    """The ``ExportTraceServiceRequest`` for ``spans`` (one resource per service)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans

    request = ExportTraceServiceRequest()
    for service, group in _by_service(spans).items():
        request.resource_spans.append(
            ResourceSpans(
                resource=Resource(attributes=_pb_attrs({"service.name": service})),
                scope_spans=[
                    ScopeSpans(
                        scope=InstrumentationScope(name=SCOPE_NAME),
                        spans=[_pb_span(s) for s in group],
                    )
                ],
            )
        )
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
