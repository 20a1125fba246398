"""W3C Trace Context and B3 extract/inject (spec examples, invalid inputs, round trips)."""

from __future__ import annotations

import random
import re
import uuid

import pytest

from connect.telemetry.propagation import (
    Format,
    SpanContext,
    ensure_request_id,
    extract,
    extract_collected,
    inject,
    inject_all_bytes,
    new_request_id,
    new_span_id,
    new_trace_id,
    parse_b3_single,
    parse_traceparent,
    parse_tracestate,
    without_trace_headers,
)

SPEC_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPEC_PARENT = "00f067aa0ba902b7"
SPEC_TP = f"00-{SPEC_TRACE}-{SPEC_PARENT}-01"


def test_w3c_spec_example_parses_sampled():
    ctx = parse_traceparent(SPEC_TP)
    assert ctx == SpanContext(SPEC_TRACE, SPEC_PARENT, sampled=True)
    assert parse_traceparent(f"00-{SPEC_TRACE}-{SPEC_PARENT}-00").sampled is False


@pytest.mark.parametrize(
    "value",
    [
        f"ff-{SPEC_TRACE}-{SPEC_PARENT}-01",  # version ff forbidden
        f"00-{'0' * 32}-{SPEC_PARENT}-01",  # all-zero trace id
        f"00-{SPEC_TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"00-{SPEC_TRACE.upper()}-{SPEC_PARENT}-01",  # uppercase hex
        f"00-{SPEC_TRACE}-{SPEC_PARENT}-0g",  # bad flags
        f"00-{SPEC_TRACE[:-1]}-{SPEC_PARENT}-01",  # short trace id
        f"00-{SPEC_TRACE}-{SPEC_PARENT}-01-extra",  # version 00 has 4 fields
        f"0-{SPEC_TRACE}-{SPEC_PARENT}-01",
        "garbage",
        "",
    ],
)
def test_w3c_invalid_traceparent_is_ignored(value):
    assert parse_traceparent(value) is None
    incoming = extract([("traceparent", value), ("tracestate", "a=1")])
    assert incoming.context is None


def test_w3c_future_version_parses_first_four_fields():
    ctx = parse_traceparent(f"01-{SPEC_TRACE}-{SPEC_PARENT}-01-what-the-future")
    assert ctx is not None and ctx.trace_id == SPEC_TRACE and ctx.sampled


def test_tracestate_lines_combine_in_order_and_survive_round_trip():
    incoming = extract(
        [
            ("TraceParent", SPEC_TP),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("tracestate", "rojo=00f067aa0ba902b7, vendor@sys=x"),
        ]
    )
    assert incoming.context is not None
    assert incoming.context.tracestate == (
        ("congo", "t61rcWkgMzE"),
        ("rojo", "00f067aa0ba902b7"),
        ("vendor@sys", "x"),
    )
    out = dict(inject(incoming.context, Format.W3C))
    assert out["tracestate"] == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7,vendor@sys=x"
    assert out["traceparent"] == SPEC_TP


@pytest.mark.parametrize("value", ["UPPER=1", "a=1,a=2", "a", "a=b=c d\x01", "1a=x"])
def test_invalid_tracestate_is_dropped_but_traceparent_kept(value):
    assert parse_tracestate([value]) is None
    incoming = extract([("traceparent", SPEC_TP), ("tracestate", value)])
    assert incoming.context is not None and incoming.context.tracestate == ()


def test_tracestate_over_32_members_is_invalid():
    assert parse_tracestate([",".join(f"k{i}=v" for i in range(33))]) is None
    assert len(parse_tracestate([",".join(f"k{i}=v" for i in range(32))]) or ()) == 32


def test_b3_single_full_and_short_forms():
    ctx = parse_b3_single(f"{SPEC_TRACE}-{SPEC_PARENT}-1-05e3ac9a4f6e3b90")
    assert ctx == SpanContext(SPEC_TRACE, SPEC_PARENT, True, False, "05e3ac9a4f6e3b90")
    short = parse_b3_single(f"a3ce929d0e0e4736-{SPEC_PARENT}")
    assert isinstance(short, SpanContext)
    assert short.trace_id == "0" * 16 + "a3ce929d0e0e4736" and short.sampled is None
    debug = parse_b3_single(f"{SPEC_TRACE}-{SPEC_PARENT}-d")
    assert isinstance(debug, SpanContext) and debug.debug and debug.sampled
    assert parse_b3_single("0") is False
    assert parse_b3_single(f"{SPEC_TRACE}-{SPEC_PARENT}-x") is None
    assert parse_b3_single(f"{SPEC_TRACE}-{'0' * 16}-1") is None


def test_b3_single_deny_without_ids():
    incoming = extract([("b3", "0")])
    assert incoming.deny and incoming.context is None


def test_b3_multi_header_with_64_bit_trace_id_and_parent():
    incoming = extract(
        [
            ("X-B3-TraceId", "463AC35C9F6413AD"),
            ("X-B3-SpanId", "a2fb4a1d1a96d312"),
            ("X-B3-ParentSpanId", "0020000000000001"),
            ("X-B3-Sampled", "1"),
        ]
    )
    assert incoming.context == SpanContext(
        "0000000000000000463ac35c9f6413ad", "a2fb4a1d1a96d312", True, False, "0020000000000001"
    )
    assert incoming.formats == Format.B3_MULTI


def test_b3_multi_flags_debug_forces_and_missing_sampled_defers():
    debug = extract(
        [("x-b3-traceid", SPEC_TRACE), ("x-b3-spanid", SPEC_PARENT), ("x-b3-flags", "1")]
    )
    assert debug.force and debug.context is not None and debug.context.sampled is True
    defer = extract([("x-b3-traceid", SPEC_TRACE), ("x-b3-spanid", SPEC_PARENT)])
    assert defer.context is not None and defer.context.sampled is None and not defer.force


def test_single_b3_wins_over_multi_and_w3c_wins_over_b3():
    other = "1" * 32
    incoming = extract(
        [
            ("b3", f"{other}-{SPEC_PARENT}-1"),
            ("x-b3-traceid", SPEC_TRACE),
            ("x-b3-spanid", "2" * 16),
        ]
    )
    assert incoming.context is not None and incoming.context.trace_id == other
    both = extract([("traceparent", SPEC_TP), ("b3", f"{other}-{SPEC_PARENT}-1")])
    assert both.context is not None and both.context.trace_id == SPEC_TRACE
    assert both.formats == Format.W3C | Format.B3_SINGLE


def test_bytes_headers_from_h11_are_accepted():
    incoming = extract([(b"traceparent", SPEC_TP.encode()), (b"x-request-id", b"abc")])
    assert incoming.context is not None and incoming.request_id == "abc"


def test_force_header_sets_force():
    assert extract([("X-Meshd-Force-Trace", "1")]).force
    assert not extract([("x-meshd-force-trace", "0")]).force


@pytest.mark.parametrize("fmt", [Format.W3C, Format.B3_SINGLE, Format.B3_MULTI])
@pytest.mark.parametrize("sampled", [True, False])
def test_inject_then_extract_round_trips(fmt, sampled):
    rng = random.Random(7)
    ctx = SpanContext(new_trace_id(rng), new_span_id(rng), sampled, False, new_span_id(rng))
    back = extract(inject(ctx, fmt)).context
    assert back is not None
    assert (back.trace_id, back.span_id, back.sampled) == (ctx.trace_id, ctx.span_id, sampled)
    if fmt is not Format.W3C:  # W3C has no parent field
        assert back.parent_span_id == ctx.parent_span_id


def test_inject_debug_writes_b3_flags_and_d():
    ctx = SpanContext(SPEC_TRACE, SPEC_PARENT, True, True)
    out = dict(inject(ctx))
    assert out["b3"] == f"{SPEC_TRACE}-{SPEC_PARENT}-d"
    assert out["x-b3-flags"] == "1" and "x-b3-sampled" not in out
    assert out["traceparent"].endswith("-01")


def test_without_trace_headers_strips_every_format():
    headers = [("Host", "x"), ("B3", "0"), ("X-B3-TraceId", "1"), ("traceparent", "t")]
    assert without_trace_headers(headers) == [("Host", "x")]


def test_request_id_generated_only_when_absent_and_deterministic():
    rid, added = ensure_request_id(extract([]), random.Random(1))
    assert added and re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", rid
    )
    assert ensure_request_id(extract([]), random.Random(1))[0] == rid
    assert ensure_request_id(extract([("x-request-id", "keep")]), random.Random(1)) == (
        "keep",
        False,
    )


@pytest.mark.parametrize(
    ("sampled", "debug", "parent", "state"),
    [
        (False, False, None, ()),
        (True, False, SPEC_PARENT, (("congo", "t61rcWkgMzE"),)),
        (None, True, None, ()),
        (True, True, SPEC_PARENT, (("a", "1"), ("b", "2"))),
    ],
)
def test_inject_all_bytes_is_inject_of_every_format_in_bytes(sampled, debug, parent, state):
    ctx = SpanContext(SPEC_TRACE, "b7ad6b7169203331", sampled, debug, parent, state)
    expected = [(n.encode(), v.encode("latin-1")) for n, v in inject(ctx)]
    assert inject_all_bytes(SPEC_TRACE, "b7ad6b7169203331", sampled, debug, parent, state) == (
        expected
    )


def test_extract_without_formats_skips_only_what_formats_needs():
    both = {"traceparent": [SPEC_TP], "b3": [f"{SPEC_TRACE}-{SPEC_PARENT}-d"]}
    full, lean = extract_collected(both), extract_collected(both, formats=False)
    assert full.formats == Format.W3C | Format.B3_SINGLE and lean.formats == Format.W3C
    assert (lean.context, lean.force, lean.deny) == (full.context, full.force, full.deny)
    only_b3 = {"b3": ["0"], "x-b3-traceid": [SPEC_TRACE], "x-b3-spanid": [SPEC_PARENT]}
    assert extract_collected(only_b3, formats=False) == extract_collected(only_b3)


def test_ids_are_the_hex_of_the_rng_draws_and_the_request_id_a_uuid4() -> None:
    ids, draws = random.Random(11), random.Random(11)
    for _ in range(200):
        assert new_trace_id(ids) == f"{draws.getrandbits(128):032x}"
        assert new_span_id(ids) == f"{draws.getrandbits(64):016x}"
        assert new_request_id(ids) == str(uuid.UUID(int=draws.getrandbits(128), version=4))
