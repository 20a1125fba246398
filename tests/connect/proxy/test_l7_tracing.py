"""The proxy's per-request tracing (l7_tracing): headers forwarded, spans, sampling settings."""

from __future__ import annotations

import json
import random
from functools import partial
from typing import Any

import h11
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from connect.l7.decode import ValidationError
from connect.l7.entries import parse_entry
from connect.l7.entries_defaults import SAMPLING_KEY
from connect.proxy.agent_client import AgentClient
from connect.proxy.l7_tracing import ProxyTracing, SamplingSettings, _fresh, local_reply_flags
from connect.telemetry.propagation import (
    Incoming,
    extract,
    new_request_id,
    new_span_id,
    new_trace_id,
)
from connect.telemetry.sampling import Sampler
from connect.telemetry.spans import (
    RESEND_COUNT,
    RESPONSE_FLAGS,
    STATUS_CODE,
    UPSTREAM_INSTANCE,
    SpanKind,
    Status,
    Tracer,
    http_attributes,
)
from connect.telemetry.wire import span_from_json, span_to_json
from tests.meshd.harness import free_port

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def _tracing(percent_basis: int | None = None) -> ProxyTracing:
    ticks = iter(range(1_000, 10**9, 1_000))
    t = ProxyTracing(None, rng=random.Random(7), clock_ns=lambda: next(ticks))
    if percent_basis is not None:
        t.settings.default = percent_basis
    return t


def _hdrs(hop_headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in hop_headers}


def test_client_hop_continues_a_w3c_trace_and_replaces_every_trace_header() -> None:
    t = _tracing()
    incoming = [
        (b"Host", b"api"),
        (b"traceparent", f"00-{TRACE}-{PARENT}-01".encode()),
        (b"tracestate", b"vendor=x"),
        (b"b3", b"stale-header"),
    ]
    hop = t.client_hop("web", "api", b"GET", b"/items?x=1", incoming)
    span = hop.span
    assert (span.trace_id, span.parent_span_id, span.kind) == (TRACE, PARENT, SpanKind.CLIENT)
    assert span.sampled and span.name == "GET /items"
    out = _hdrs(hop.headers)
    assert out["traceparent"] == f"00-{TRACE}-{span.span_id}-01"
    assert out["tracestate"] == "vendor=x"
    assert out["b3"] == f"{TRACE}-{span.span_id}-1-{PARENT}"
    assert out["x-b3-spanid"] == span.span_id and out["x-b3-parentspanid"] == PARENT
    assert len(out["x-request-id"]) == 36  # added when absent
    assert [k for k, _ in hop.headers].count(b"b3") == 1


def test_b3_multi_parent_and_request_id_are_kept() -> None:
    t = _tracing()
    incoming = [
        (b"x-b3-traceid", PARENT.encode()),  # 64-bit: padded to 128
        (b"x-b3-spanid", b"a" * 16),
        (b"x-b3-sampled", b"1"),
        (b"x-request-id", b"req-1"),
    ]
    hop = t.client_hop("web", "api", b"POST", b"/", incoming)
    assert hop.span.trace_id == "0" * 16 + PARENT and hop.span.parent_span_id == "a" * 16
    out = _hdrs(hop.headers)
    assert out["x-request-id"] == "req-1"
    assert [k for k, _ in hop.headers].count(b"x-request-id") == 1


def test_no_context_starts_a_trace_at_the_percentage_and_the_force_header_wins() -> None:
    never = _tracing(percent_basis=0)
    hop = never.client_hop("web", "api", b"GET", b"/", [])
    assert hop.span.parent_span_id is None and not hop.span.sampled
    assert _hdrs(hop.headers)["traceparent"].endswith("-00")
    forced = never.client_hop("web", "api", b"GET", b"/", [(b"x-meshd-force-trace", b"1")])
    assert forced.span.sampled
    envoy = never.client_hop("web", "api", b"GET", b"/", [(b"x-envoy-force-trace", b"true")])
    assert envoy.span.sampled
    always = _tracing(percent_basis=10_000)
    assert all(always.client_hop("w", "a", b"GET", b"/", []).span.sampled for _ in range(20))


def test_finish_records_status_flags_upstream_and_retries() -> None:
    t = _tracing(percent_basis=10_000)
    hop = t.client_hop("web", "api", b"GET", b"/", [])
    hop.upstream, hop.attempts = "10.0.0.7:21500", 3
    span = t.finish(hop, 503, [("x-envoy-overloaded", "true")])
    assert span.attributes[STATUS_CODE] == 503
    assert span.attributes[RESPONSE_FLAGS] == "UO"
    assert span.attributes[UPSTREAM_INSTANCE] == "10.0.0.7:21500"
    assert span.attributes[RESEND_COUNT] == 2
    assert span.status is Status.ERROR and span.end_ns > span.start_ns
    assert t.finished == [span]
    upstream_503 = t.client_hop("web", "api", b"GET", b"/", [])
    upstream_503.from_upstream = True
    assert RESPONSE_FLAGS not in t.finish(upstream_503, 503).attributes
    assert local_reply_flags(504, []) == "UT"


def test_sampling_settings_service_defaults_win_over_proxy_defaults() -> None:
    s = SamplingSettings()
    assert s.basis("web") == 100  # 1 % by default
    s.set_proxy_defaults([{"Name": "global", "Config": {"tracing_sampling_percentage": 12.5}}])
    s.set_service_defaults([{"Name": "web", "TracingSamplingPercentage": 0.01}])
    assert (s.basis("web"), s.basis("api")) == (1, 1250)
    s.set_proxy_defaults([])
    assert s.basis("api") == 100


def test_span_json_round_trip() -> None:
    t = _tracing(percent_basis=10_000)
    span = t.finish(t.server_hop("api", "web", b"GET", b"/x", []), 200)
    back = span_from_json(span_to_json(span))
    assert (back.trace_id, back.span_id, back.kind, back.attributes) == (
        span.trace_id,
        span.span_id,
        SpanKind.SERVER,
        span.attributes,
    )


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        (
            {"Kind": "service-defaults", "Name": "web", "TracingSamplingPercentage": 100.5},
            "TracingSamplingPercentage",
        ),
        (
            {"Kind": "service-defaults", "Name": "web", "TracingSamplingPercentage": "5"},
            "TracingSamplingPercentage",
        ),
        (
            {"Kind": "proxy-defaults", "Name": "global", "Config": {SAMPLING_KEY: 0.001}},
            "Config.tracing_sampling_percentage",
        ),
    ],
)
def test_sampling_percentage_is_validated_when_written(entry: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_entry(entry)
    assert field in str(info.value)


def test_valid_sampling_percentages_are_kept() -> None:
    sd = parse_entry({"Kind": "service-defaults", "Name": "w", "TracingSamplingPercentage": 0.01})
    assert sd.to_json()["TracingSamplingPercentage"] == 0.01
    pd = parse_entry({"Kind": "proxy-defaults", "Name": "global", "Config": {SAMPLING_KEY: 100}})
    assert pd.to_json()["Config"] == {SAMPLING_KEY: 100}


def _sampled_span(t: ProxyTracing) -> Any:
    return t.finish(t.client_hop("web", "api", b"GET", b"/", [(b"x-meshd-force-trace", b"1")]), 200)


async def _fake_agent(bodies: list[Any], nursery: trio.Nursery) -> int:
    async def serve(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        bodies.append(json.loads(body))
        out = conn.send(h11.Response(status_code=200, headers=[("content-length", "2")]))
        await stream.send_all(out + conn.send(h11.Data(data=b"{}")) + conn.send(h11.EndOfMessage()))
        await stream.aclose()

    listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


async def test_the_sink_posts_sampled_spans_to_the_agent_in_batches(autojump_clock: Any) -> None:
    bodies: list[Any] = []
    async with trio.open_nursery() as nursery:
        port = await _fake_agent(bodies, nursery)
        t = ProxyTracing(AgentClient("127.0.0.1", port))
        assert t.sink is not None
        spans = [_sampled_span(t) for _ in range(3)]
        t.finish(t.client_hop("web", "api", b"GET", b"/", [(b"b3", b"0")]), 200)  # unsampled
        nursery.start_soon(t.sink.run)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert [s["SpanID"] for b in bodies for s in b["Spans"]] == [s.span_id for s in spans]
    assert t.dropped._value.get() == 0


async def test_the_sink_never_blocks_and_counts_what_it_drops(autojump_clock: Any) -> None:
    t = ProxyTracing(AgentClient("127.0.0.1", free_port()))  # nobody listens: agent down
    assert t.sink is not None
    for _ in range(t.sink.batcher.max_queue + 5):
        _sampled_span(t)  # synchronous: returns at once even with the queue full
    assert t.dropped._value.get() == 5
    with trio.move_on_after(30):
        await t.sink.run()
    assert len(t.sink.batcher) == 0 and t.sink.sent == 0
    assert t.dropped._value.get() == t.sink.batcher.max_queue + 5


def test_an_outbound_call_starting_a_trace_while_serving_a_traced_request_is_counted() -> None:
    t = _tracing(percent_basis=0)  # counted on unsampled traffic too
    traced = [(b"traceparent", f"00-{TRACE}-{PARENT}-00".encode())]
    inbound = t.server_hop("legacy", "web", b"GET", b"/", traced)
    t.client_hop("legacy", "db", b"GET", b"/", [])  # headers not forwarded
    forwarded = t.client_hop("legacy", "db", b"GET", b"/", inbound.headers)
    assert forwarded.span.trace_id == TRACE
    t.client_hop("web", "db", b"GET", b"/", [])  # another service: not serving anything
    assert t.breaks == {("legacy", "db"): 1}
    t.finish(inbound, 200)
    t.client_hop("legacy", "db", b"GET", b"/", [])  # a background call, after the request
    untraced = t.server_hop("legacy", "web", b"GET", b"/", [])
    t.client_hop("legacy", "db", b"GET", b"/", [])  # inbound had no trace to forward
    t.release(untraced)
    assert t.breaks == {("legacy", "db"): 1} and t.inflight == {}


# The hop builds a span only when sampled; its ids, headers and (sampled)
# span must be those the tracer's own path gives, drawn from the same rng.
_TRACE_VARIANTS = [
    (b"traceparent", f"00-{TRACE}-{PARENT}-01".encode()),
    (b"traceparent", f"00-{TRACE}-{PARENT}-00".encode()),
    (b"traceparent", b"00-zz-bad-01"),
    (b"traceparent", f"00-{TRACE.upper()}-{PARENT}-01".encode()),
    (b"traceparent", f" 00-{TRACE}-{PARENT}-03 ".encode()),
    (b"traceparent", f"00-{'0' * 32}-{PARENT}-01".encode()),
    (b"traceparent", f"01-{TRACE}-{PARENT}-00-future".encode()),
    (b"Tracestate", b"vendor=x,other=y"),
    (b"b3", f"{TRACE}-{PARENT}-1-{'b' * 16}".encode()),
    (b"b3", f"{TRACE}-{PARENT}-0".encode()),
    (b"b3", b"0"),
    (b"b3", b"d"),
    (b"X-B3-TraceId", PARENT.encode()),
    (b"x-b3-spanid", b"c" * 16),
    (b"x-b3-sampled", b"0"),
    (b"x-b3-flags", b"1"),
    (b"x-request-id", b"req-7"),
    (b"x-meshd-force-trace", b"1"),
    (b"x-envoy-force-trace", b"true"),
    (b"host", b"api"),
    ("Accept", "text/plain"),
]


@settings(max_examples=300, deadline=None)
@given(
    headers=st.lists(st.sampled_from(_TRACE_VARIANTS), max_size=6),
    basis=st.sampled_from([0, 100, 5_000, 10_000]),
    server=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_a_hop_matches_the_tracers_own_span_and_headers(
    headers: list[tuple[Any, Any]], basis: int, server: bool, seed: int
) -> None:
    t = ProxyTracing(None, rng=random.Random(seed), clock_ns=lambda: 5)
    t.settings.default = basis
    hop = (t.server_hop if server else t.client_hop)("api", "web", b"GET", b"/a?q=1", headers)
    rng = random.Random(seed)
    tracer = Tracer(rng, lambda: 5, Sampler(rng, basis))
    attrs = {**http_attributes("GET", "/a?q=1", ""), "peer.service": "web"}
    start = tracer.start_server if server else tracer.start_client
    want = start(extract(headers), "api", "GET /a", attrs)
    assert hop.headers == tracer.forward_headers(want, headers)
    got = hop.span
    if not want.sampled:
        got.start_ns = want.start_ns  # an unsampled hop's span has no times
    assert got == want and hop.sampled == want.sampled
    assert hop.trace_id == want.trace_id
    finished = t.finish(hop, 200)
    assert (finished is not None) == want.sampled and len(t.finished) == int(want.sampled)


def test_a_new_traces_draws_at_once_are_the_tracers_one_by_one() -> None:
    # _fresh's one getrandbits(384) must give new_trace_id, new_span_id,
    # Sampler.decide (random()'s float arithmetic) and new_request_id exactly,
    # and leave the rng where they leave it (seeded runs stay reproducible).
    for seed in range(300):
        for basis in (0, 1, 100, 5_000, 9_999, 10_000):
            got_rng, want_rng = random.Random(seed), random.Random(seed)
            got = _fresh(got_rng, basis)
            want = (
                new_trace_id(want_rng),
                new_span_id(want_rng),
                Sampler(want_rng, basis).decide(Incoming()),
                new_request_id(want_rng),
            )
            assert got == want and got_rng.getstate() == want_rng.getstate()
