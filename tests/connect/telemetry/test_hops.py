"""A request through several proxies: headers carry one trace with a parent chain."""

from __future__ import annotations

import itertools
import random

from connect.telemetry.propagation import Format, extract
from connect.telemetry.sampling import Sampler
from connect.telemetry.spans import REQUEST_ID, Span, SpanKind, Tracer, TraceStore


def _tracer(seed: int, percent: float = 100) -> Tracer:
    ticks = itertools.count(seed * 1_000_000, 1_000)
    return Tracer(
        random.Random(seed), lambda: next(ticks), Sampler.with_percent(random.Random(seed), percent)
    )


def _hop(tracer: Tracer, kind: SpanKind, service: str, headers):
    incoming = extract(headers)
    start = tracer.start_server if kind is SpanKind.SERVER else tracer.start_client
    span = start(incoming, service, "GET /", None)
    return span, tracer.forward_headers(span, headers)


def test_web_api_db_chain_has_correct_parents_and_one_request_id():
    headers = [(b"host", b"web"), (b"accept", b"*/*")]
    spans: list[Span] = []
    for seed, (kind, service) in enumerate(
        [
            (SpanKind.SERVER, "web"),
            (SpanKind.CLIENT, "web"),
            (SpanKind.SERVER, "api"),
            (SpanKind.CLIENT, "api"),
            (SpanKind.SERVER, "db"),
            (SpanKind.CLIENT, "db"),
        ]
    ):
        span, headers = _hop(_tracer(seed + 1), kind, service, headers)
        spans.append(span)
    assert len({s.trace_id for s in spans}) == 1
    assert spans[0].parent_span_id is None
    for parent, child in itertools.pairwise(spans):
        assert child.parent_span_id == parent.span_id
    assert len({s.attributes[REQUEST_ID] for s in spans}) == 1
    names = [n for n, _ in headers]
    assert names.count(b"x-request-id") == 1 and names.count(b"traceparent") == 1
    assert (b"host", b"web") in headers
    store = TraceStore()
    for span in spans:
        store.add(span)
    (summary,) = store.search(service="api")
    assert summary.span_count == 6 and summary.services == ("api", "db", "web")


def test_unsampled_decision_propagates_and_is_kept_downstream():
    span, headers = _hop(_tracer(1, percent=0), SpanKind.CLIENT, "web", [])
    assert not span.sampled
    assert dict(headers)[b"x-b3-sampled"] == b"0"
    assert dict(headers)[b"traceparent"].endswith(b"-00")
    downstream, _ = _hop(_tracer(2, percent=100), SpanKind.SERVER, "api", headers)
    assert not downstream.sampled and downstream.parent_span_id == span.span_id


def test_forward_headers_can_write_w3c_only_and_keeps_existing_request_id():
    tracer = _tracer(3)
    headers = [("X-Request-Id", "abc"), ("b3", "0"), ("X-B3-Sampled", "0")]
    span = tracer.start_client(extract(headers), "web", "GET /")
    out = tracer.forward_headers(span, headers, Format.W3C)
    assert [n for n, _ in out] == [b"X-Request-Id", b"traceparent"]
    assert span.attributes[REQUEST_ID] == "abc" and not span.sampled  # b3: 0 denies
