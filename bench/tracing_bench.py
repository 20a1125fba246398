"""Per-request cost of tracing in the proxy and per-span cost in the agent, in process.

Proxy side (``connect/proxy/l7_tracing.py``), microseconds per request,
best of the rounds: what the L7 handler adds per request, ``client_hop``
(extract, start a span, rewrite the headers) then ``finish``, for a request
with 8 ordinary headers, at 0%, 1% and 100% sampling, and with an incoming
``traceparent`` (the middle of a chain); ``server_hop`` then ``finish`` for
the headers an unsampled client hop forwards (the server side of 99% of
requests at the default 1%); the baseline is copying those
headers once (the least a proxy does with them).

Agent side (``meshd/agent/traces.py``), microseconds per span: keeping it
(store and lint) and encoding it for each collector format in batches of
256 (OTLP protobuf with the official classes, OTLP JSON, Zipkin JSON).

Prints figures and ratios; never asserts.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable

from bench.loadgen.table import machine, print_table, ratio
from connect.proxy.l7_tracing import ProxyTracing
from connect.telemetry.formats import encode_otlp_json, encode_otlp_proto, encode_zipkin
from connect.telemetry.lint import PropagationLint
from connect.telemetry.spans import Span, TraceStore

CALLS = 40_000
HEADERS = [
    (b"host", b"api"),
    (b"user-agent", b"bench/1.0"),
    (b"accept", b"application/json"),
    (b"accept-encoding", b"gzip"),
    (b"content-type", b"application/json"),
    (b"authorization", b"Bearer abcdefghijklmnopqrstuvwxyz"),
    (b"x-forwarded-for", b"10.1.2.3"),
    (b"cookie", b"session=0123456789abcdef"),
]
TRACEPARENT = (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")


def _timed(fn: Callable[[], object], calls: int) -> float:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls * 1e6
    finally:
        gc.enable()


def _proxy_case(
    basis: int, headers: list[tuple[bytes, bytes]], *, server: bool = False
) -> Callable[[], object]:
    tracing = ProxyTracing(None, rng=random.Random(1))
    tracing.settings.default = basis
    hop_of = tracing.server_hop if server else tracing.client_hop

    def one() -> object:
        hop = hop_of("web", "api", b"GET", b"/orders/42?x=1", headers)
        span = tracing.finish(hop, 200)
        tracing.finished.clear()
        return span

    return one


def _forwarded() -> list[tuple[bytes, bytes]]:
    """HEADERS as an unsampled client hop forwards them (trace headers added)."""
    tracing = ProxyTracing(None, rng=random.Random(3))
    tracing.settings.default = 0
    return tracing.client_hop("web", "api", b"GET", b"/orders/42?x=1", HEADERS).headers


def proxy_figures(calls: int, rounds: int) -> dict[str, float]:
    cases: dict[str, Callable[[], object]] = {
        "baseline: copy headers": lambda: [(n.lower(), v) for n, v in HEADERS],
        "trace, 0% sampled": _proxy_case(0, HEADERS),
        "trace, 1% sampled": _proxy_case(100, HEADERS),
        "trace, 100% sampled": _proxy_case(10_000, HEADERS),
        "trace, traceparent in, 100%": _proxy_case(10_000, [*HEADERS, TRACEPARENT]),
        # The server side of the 99%: what an unsampled client hop sends on.
        "server, client's unsampled headers in": _proxy_case(100, _forwarded(), server=True),
    }
    samples: dict[str, list[float]] = {k: [] for k in cases}
    names = list(cases)
    for i in range(rounds):
        for name in names if i % 2 == 0 else reversed(names):
            samples[name].append(_timed(cases[name], calls))
    return {k: min(v) for k, v in samples.items()}


def _spans(n: int) -> list[Span]:
    tracing = ProxyTracing(None, rng=random.Random(2))
    tracing.settings.default = 10_000
    out = []
    for i in range(n):
        hop = tracing.client_hop(f"svc-{i % 7}", "api", b"GET", b"/orders", HEADERS)
        hop.upstream, hop.attempts = "10.0.0.7:21500", 1
        span = tracing.finish(hop, 200)
        assert span is not None  # 100 % sampled
        out.append(span)
    return out


def agent_figures(spans: int, rounds: int) -> dict[str, float]:
    batch = _spans(256)
    many = _spans(spans)
    out: dict[str, list[float]] = {"keep (store + lint)": []}
    encoders = {
        "encode OTLP protobuf": encode_otlp_proto,
        "encode OTLP JSON": encode_otlp_json,
        "encode Zipkin JSON": encode_zipkin,
    }
    out.update({k: [] for k in encoders})
    for _ in range(rounds):
        store, lint = TraceStore(), PropagationLint()
        start = time.perf_counter()
        for span in many:
            store.add(span)
            lint.observe(span)
        out["keep (store + lint)"].append((time.perf_counter() - start) / len(many) * 1e6)
        for name, enc in encoders.items():
            reps = max(1, spans // len(batch))
            start = time.perf_counter()
            for _ in range(reps):
                enc(batch)
            out[name].append((time.perf_counter() - start) / (reps * len(batch)) * 1e6)
    return {k: min(v) for k, v in out.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: few calls, 1 round")
    p.add_argument("--calls", type=int, default=None, help="requests per case and round")
    p.add_argument("--rounds", type=int, default=None)
    args = p.parse_args(argv)
    calls = args.calls or (CALLS // 80 if args.quick else CALLS // 2)
    rounds = args.rounds or (1 if args.quick else 7)
    proxy = proxy_figures(calls, rounds)
    base = proxy["baseline: copy headers"]
    rows = [[name, f"{us:.2f}", ratio(us, base)] for name, us in proxy.items()]
    print_table(
        f"Proxy: tracing cost per request, {calls} requests x {rounds} rounds (best) {machine()}",
        ["case", "us/request", "vs baseline"],
        rows,
    )
    agent = agent_figures(calls // 4, rounds)
    print_table(
        "Agent: cost per span (encoding in batches of 256)",
        ["case", "us/span"],
        [[name, f"{us:.2f}"] for name, us in agent.items()],
    )
    one, hundred = proxy["trace, 1% sampled"], proxy["trace, 100% sampled"]
    print(f"1% sampling adds {one:.1f} us per request, 100% adds {hundred:.1f} us")


if __name__ == "__main__":
    main()
