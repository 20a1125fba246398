"""Sampling percentages, parent-based decisions, the tracer and the trace store bounds."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from connect.telemetry.propagation import Incoming, SpanContext, extract, inject
from connect.telemetry.sampling import Sampler, SamplingError, percent_to_basis
from connect.telemetry.spans import (
    HTTP_METHOD,
    RESEND_COUNT,
    RESPONSE_FLAGS,
    SERVER_ADDRESS,
    STATUS_CODE,
    UPSTREAM_INSTANCE,
    URL_PATH,
    Span,
    SpanKind,
    Status,
    Tracer,
    TraceStore,
    http_attributes,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize("percent", [0.01, 0.5, 1.0, 5.0])
def test_sampling_rate_within_a_tenth_of_a_point_over_100k_decisions(percent):
    sampler = Sampler.with_percent(random.Random(percent), percent)
    n = 100_000
    hits = sum(sampler.decide(Incoming()) for _ in range(n))
    assert abs(hits / n * 100 - percent) <= 0.1


@pytest.mark.parametrize("percent", [12.34, 50.0, 99.99])
def test_sampling_rate_high_percentages_within_four_sigma(percent):
    # Over 100,000 independent draws one standard deviation at 50 % is 0.16
    # point, so ±0.1 point cannot hold there; 4 sigma is the honest bound.
    sampler = Sampler.with_percent(random.Random(percent), percent)
    n = 100_000
    hits = sum(sampler.decide(Incoming()) for _ in range(n))
    p = percent / 100
    assert abs(hits / n - p) <= 4 * math.sqrt(p * (1 - p) / n)


def test_sampling_zero_and_hundred_are_exact():
    assert not any(
        Sampler.with_percent(random.Random(1), 0).decide(Incoming()) for _ in range(10_000)
    )
    assert all(
        Sampler.with_percent(random.Random(1), 100).decide(Incoming()) for _ in range(10_000)
    )


def test_sampling_is_deterministic_for_a_seed():
    a = Sampler.with_percent(random.Random(42), 30)
    b = Sampler.with_percent(random.Random(42), 30)
    assert [a.decide(Incoming()) for _ in range(500)] == [b.decide(Incoming()) for _ in range(500)]


def test_default_is_one_percent():
    assert Sampler(random.Random(0)).basis == 100 == percent_to_basis(1.0)


@pytest.mark.parametrize("bad", [-1, 100.01, 12.345, float("nan")])
def test_invalid_percentage_is_a_named_error(bad):
    with pytest.raises(SamplingError, match="sampling percentage"):
        percent_to_basis(bad)


def test_parent_decision_is_honoured_and_force_wins():
    never = Sampler.with_percent(random.Random(0), 0)
    always = Sampler.with_percent(random.Random(0), 100)
    sampled = Incoming(SpanContext(TRACE, "1" * 16, sampled=True))
    unsampled = Incoming(SpanContext(TRACE, "1" * 16, sampled=False))
    assert never.decide(sampled) and not always.decide(unsampled)
    assert not always.decide(extract([("b3", "0")]))
    assert never.decide(extract([("x-meshd-force-trace", "1")]))
    assert never.decide(
        extract([("x-b3-traceid", TRACE), ("x-b3-spanid", "1" * 16), ("x-b3-flags", "1")])
    )
    deferred = extract([("x-b3-traceid", TRACE), ("x-b3-spanid", "1" * 16)])
    assert always.decide(deferred) and not never.decide(deferred)


def _tracer(percent: float = 100) -> Tracer:
    ticks = itertools.count(1_000, 250)
    return Tracer(
        random.Random(3), lambda: next(ticks), Sampler.with_percent(random.Random(3), percent)
    )


def test_server_then_client_span_chain_and_outbound_context():
    tracer = _tracer()
    incoming = extract([("traceparent", f"00-{TRACE}-00f067aa0ba902b7-01"), ("tracestate", "a=1")])
    attrs = http_attributes("get", "/v1/items?x=1", "api.internal:8080")
    server = tracer.start_server(incoming, "web", "GET /v1/items", attrs)
    client = tracer.start_client(server, "web", "GET /v1/items", attrs)
    assert server.trace_id == client.trace_id == TRACE
    assert server.parent_span_id == "00f067aa0ba902b7" and client.parent_span_id == server.span_id
    assert (server.kind, client.kind) == (SpanKind.SERVER, SpanKind.CLIENT)
    assert attrs == {
        HTTP_METHOD: "GET",
        URL_PATH: "/v1/items",
        SERVER_ADDRESS: "api.internal",
        "server.port": 8080,
    }
    out = dict(inject(tracer.outbound(client)))
    assert out["traceparent"] == f"00-{TRACE}-{client.span_id}-01"
    assert out["tracestate"] == "a=1"
    assert out["x-b3-parentspanid"] == server.span_id
    tracer.end(client, status_code=503, flags="UO", upstream="10.0.0.7:8080", retries=2)
    tracer.end(server, status_code=503)
    assert client.attributes[STATUS_CODE] == 503 and client.attributes[RESPONSE_FLAGS] == "UO"
    assert (
        client.attributes[UPSTREAM_INSTANCE] == "10.0.0.7:8080"
        and client.attributes[RESEND_COUNT] == 2
    )
    assert client.status is Status.ERROR and server.status is Status.ERROR
    assert server.end_ns > client.end_ns > client.start_ns > server.start_ns


def test_new_trace_started_when_none_arrives():
    server = _tracer().start_server(extract([]), "web", "GET /")
    assert server.parent_span_id is None and len(server.trace_id) == 32 and server.sampled
    assert not _tracer(0).start_server(extract([]), "web", "GET /").sampled


def _span(trace: int, n: int, *, service="web", start=0, end=10, status=Status.UNSET) -> Span:
    return Span(
        f"{trace:032x}",
        f"{n + 1:016x}",
        None if n == 0 else f"{n:016x}",
        f"op{n}",
        SpanKind.SERVER,
        service,
        start,
        end,
        status=status,
    )


def test_store_bounded_by_traces_evicts_oldest_and_counts():
    store = TraceStore(max_spans=100, max_traces=3)
    for t in range(1, 6):
        for n in range(2):
            store.add(_span(t, n))
    assert len(store) == 3 and store.span_count == 6 and store.dropped_spans == 4
    assert store.get(f"{1:032x}") == [] and len(store.get(f"{5:032x}")) == 2


def test_store_bounded_by_spans():
    store = TraceStore(max_spans=5, max_traces=100)
    for t in range(1, 4):
        for n in range(2):
            store.add(_span(t, n))
    assert store.span_count <= 5 and store.dropped_spans == 2
    assert [s.trace_id for s in store.search()][-1] == f"{2:032x}"


def test_store_search_by_service_status_and_duration():
    store = TraceStore()
    store.add(_span(1, 0, service="web", end=5))
    store.add(_span(1, 1, service="api", start=1, end=50))
    store.add(_span(2, 0, service="web", end=1_000, status=Status.ERROR))
    store.add(_span(3, 0, service="db", end=7))
    assert [s.trace_id[-1] for s in store.search(service="web")] == ["2", "1"]
    assert [s.trace_id[-1] for s in store.search(error=True)] == ["2"]
    assert [s.trace_id[-1] for s in store.search(min_duration_ns=40)] == ["2", "1"]
    one = store.search(service="api")[0]
    assert one.services == ("api", "web") and one.span_count == 2 and one.root_name == "op0"
    assert one.duration_ns == 50
    assert [s.name for s in store.get(f"{1:032x}".upper())] == ["op0", "op1"]
