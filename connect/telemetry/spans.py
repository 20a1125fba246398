"""Span records, the per-hop tracer and a bounded store of recent traces (pure).

Attribute names follow the OpenTelemetry HTTP semantic conventions
(``http.request.method``, ``url.path``, ``http.response.status_code``,
``server.address``, ``http.request.resend_count`` for retries) plus a few
``meshd.*`` ones (response flags such as ``UT``/``UO``/``UH``, the upstream
instance). A 5xx, or a response flag, gives the span status ERROR, as
Envoy sets the ``error`` tag on 5xx.

Per request the proxy's L7 path does (see ``forward_headers``)::

    incoming = extract(request_headers)
    span = tracer.start_server(incoming, service, "GET /path", http_attributes(...))
    #   (outbound listener: tracer.start_client(incoming, service, ...))
    upstream_headers = tracer.forward_headers(span, request_headers)
    ...
    tracer.end(span, status_code=503, flags="UO", upstream="10.0.0.7:8080", retries=1)
    exporter.record(span)       # unsampled spans are ignored
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum

from .propagation import (
    REQUEST_ID_HEADER,
    Format,
    Header,
    Incoming,
    SpanContext,
    ensure_request_id,
    inject,
    new_span_id,
    new_trace_id,
    without_trace_headers,
)
from .sampling import Sampler

AttrValue = str | int | float | bool

# OpenTelemetry HTTP semantic conventions (stable, v1.23+).
HTTP_METHOD = "http.request.method"
URL_PATH = "url.path"
STATUS_CODE = "http.response.status_code"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
RESEND_COUNT = "http.request.resend_count"
# meshd-specific.
RESPONSE_FLAGS = "meshd.response_flags"
UPSTREAM_INSTANCE = "meshd.upstream_instance"
REQUEST_ID = "meshd.request_id"


class SpanKind(Enum):
    """OTLP ``Span.SpanKind`` numbers; Zipkin uses the names."""

    SERVER = 2
    CLIENT = 3


class Status(Enum):
    """OTLP ``Status.StatusCode`` numbers."""

    UNSET = 0
    OK = 1
    ERROR = 2


@dataclass(slots=True)
class Span:
    """One finished (or running, ``end_ns == 0``) span."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: SpanKind
    service: str
    start_ns: int
    end_ns: int = 0
    attributes: dict[str, AttrValue] = field(default_factory=dict)
    status: Status = Status.UNSET
    status_message: str = ""
    sampled: bool = True
    debug: bool = False
    tracestate: tuple[tuple[str, str], ...] = ()

    @property
    def duration_ns(self) -> int:
        """End minus start (0 while running)."""
        return max(0, self.end_ns - self.start_ns) if self.end_ns else 0


@dataclass(slots=True)
class Tracer:
    """Makes spans for one proxy: ids from ``rng``, times from ``clock_ns``."""

    rng: random.Random
    clock_ns: Callable[[], int]
    sampler: Sampler

    def start_server(
        self,
        parent: Incoming | Span,
        service: str,
        name: str,
        attributes: dict[str, AttrValue] | None = None,
    ) -> Span:
        """The SERVER span of an inbound listener (the destination side of a hop)."""
        return self._start(SpanKind.SERVER, parent, service, name, attributes)

    def start_client(
        self,
        parent: Incoming | Span,
        service: str,
        name: str,
        attributes: dict[str, AttrValue] | None = None,
    ) -> Span:
        """The CLIENT span of an outbound listener (the source side of a hop)."""
        return self._start(SpanKind.CLIENT, parent, service, name, attributes)

    def _start(
        self,
        kind: SpanKind,
        parent: Incoming | Span,
        service: str,
        name: str,
        attributes: dict[str, AttrValue] | None,
    ) -> Span:
        """A span, child of ``parent`` (the request's extracted context, or a span).

        Starts a new trace when nothing valid arrived; the sampling decision
        (``span.sampled``) is the sampler's, parent-based. The request id is
        the incoming ``x-request-id`` or a fresh one from ``rng``.
        """
        if isinstance(parent, Span):
            parent = child_of(parent)
        ctx = parent.context
        span = Span(
            trace_id=ctx.trace_id if ctx else new_trace_id(self.rng),
            span_id=new_span_id(self.rng),
            parent_span_id=ctx.span_id if ctx else None,
            name=name,
            kind=kind,
            service=service,
            start_ns=self.clock_ns(),
            attributes=dict(attributes or {}),
            sampled=self.sampler.decide(parent),
            debug=parent.force,
            tracestate=ctx.tracestate if ctx else (),
        )
        span.attributes[REQUEST_ID] = ensure_request_id(parent, self.rng)[0]
        return span

    def outbound(self, span: Span) -> SpanContext:
        """The context to ``inject`` on the request ``span`` forwards."""
        return SpanContext(
            span.trace_id,
            span.span_id,
            span.sampled,
            span.debug,
            span.parent_span_id,
            span.tracestate,
        )

    def forward_headers(
        self, span: Span, headers: Iterable[Header], formats: Format = Format.ALL
    ) -> list[tuple[bytes, bytes]]:
        """The headers to send on: old trace headers replaced by ``span``'s context.

        Adds ``x-request-id`` when the request had none. Every name and value
        comes back as bytes (what h11 and httptools write).
        """
        out: list[tuple[bytes, bytes]] = []
        has_request_id = False
        for name, value in without_trace_headers(headers):
            bname = name.encode("latin-1") if isinstance(name, str) else name
            has_request_id = has_request_id or bname.lower() == REQUEST_ID_HEADER.encode()
            out.append((bname, value.encode("latin-1") if isinstance(value, str) else value))
        for name, value in inject(self.outbound(span), formats):
            out.append((name.encode(), value.encode("latin-1")))
        if not has_request_id:
            rid = str(span.attributes.get(REQUEST_ID, ""))
            out.append((REQUEST_ID_HEADER.encode(), rid.encode("latin-1")))
        return out

    def end(
        self,
        span: Span,
        *,
        status_code: int | None = None,
        flags: str = "",
        upstream: str = "",
        retries: int = 0,
    ) -> Span:
        """Finish ``span`` now, with the response's attributes and status."""
        span.end_ns = max(self.clock_ns(), span.start_ns)
        if status_code is not None:
            span.attributes[STATUS_CODE] = status_code
        if flags:
            span.attributes[RESPONSE_FLAGS] = flags
        if upstream:
            span.attributes[UPSTREAM_INSTANCE] = upstream
        if retries:
            span.attributes[RESEND_COUNT] = retries
        if (status_code is not None and status_code >= 500) or flags:
            span.status = Status.ERROR
            span.status_message = flags or f"HTTP {status_code}"
        return span


def child_of(span: Span) -> Incoming:
    """``span`` as the parent of a span made in the same proxy."""
    ctx = SpanContext(
        span.trace_id, span.span_id, span.sampled, span.debug, span.parent_span_id, span.tracestate
    )
    rid = span.attributes.get(REQUEST_ID)
    return Incoming(ctx, force=span.debug, request_id=str(rid) if rid else None)


def http_attributes(method: str, path: str, authority: str) -> dict[str, AttrValue]:
    """Request attributes by the OTel HTTP conventions (query string left out)."""
    attrs: dict[str, AttrValue] = {HTTP_METHOD: method.upper(), URL_PATH: path.split("?", 1)[0]}
    if authority:
        host, sep, port = authority.rpartition(":")
        if sep and port.isdigit() and "]" not in port:
            attrs[SERVER_ADDRESS] = host.strip("[]")
            attrs[SERVER_PORT] = int(port)
        else:
            attrs[SERVER_ADDRESS] = authority
    return attrs


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """One trace in a search answer."""

    trace_id: str
    services: tuple[str, ...]
    root_name: str
    start_ns: int
    duration_ns: int
    span_count: int
    error: bool


class TraceStore:
    """Recent traces in memory, bounded by spans and by traces.

    When either bound is exceeded the oldest trace (by first arrival) is
    evicted whole; ``dropped_spans`` counts the spans lost that way.
    """

    def __init__(self, max_spans: int = 10_000, max_traces: int = 1_000) -> None:
        if max_spans < 1 or max_traces < 1:
            raise ValueError("max_spans and max_traces must be at least 1")
        self.max_spans = max_spans
        self.max_traces = max_traces
        self.dropped_spans = 0
        self._traces: OrderedDict[str, list[Span]] = OrderedDict()
        self._span_count = 0

    def __len__(self) -> int:
        return len(self._traces)

    @property
    def span_count(self) -> int:
        """Spans held now."""
        return self._span_count

    def add(self, span: Span) -> None:
        """Keep ``span``; evict the oldest traces while over a bound."""
        self._traces.setdefault(span.trace_id, []).append(span)
        self._span_count += 1
        while len(self._traces) > self.max_traces or self._span_count > self.max_spans:
            _, evicted = self._traces.popitem(last=False)
            self._span_count -= len(evicted)
            self.dropped_spans += len(evicted)

    def get(self, trace_id: str) -> list[Span]:
        """The spans of one trace ordered by start time ([] when unknown)."""
        return sorted(self._traces.get(trace_id.lower(), []), key=lambda s: s.start_ns)

    def _summaries(self) -> Iterator[TraceSummary]:
        for trace_id, spans in reversed(self._traces.items()):
            start = min(s.start_ns for s in spans)
            end = max(s.end_ns or s.start_ns for s in spans)
            root = next((s for s in spans if s.parent_span_id is None), None)
            root = root or min(spans, key=lambda s: s.start_ns)
            yield TraceSummary(
                trace_id,
                tuple(sorted({s.service for s in spans})),
                root.name,
                start,
                end - start,
                len(spans),
                any(s.status is Status.ERROR for s in spans),
            )

    def search(
        self,
        *,
        service: str | None = None,
        error: bool | None = None,
        min_duration_ns: int = 0,
        limit: int = 20,
    ) -> list[TraceSummary]:
        """Newest first: traces touching ``service``, with/without errors, at least this long."""
        found: list[TraceSummary] = []
        for summary in self._summaries():
            if service is not None and service not in summary.services:
                continue
            if error is not None and summary.error != error:
                continue
            if summary.duration_ns < min_duration_ns:
                continue
            found.append(summary)
            if len(found) >= limit:
                break
        return found
