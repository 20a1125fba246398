"""CPU microseconds per request of the L7 proxy's own work, in process, without sockets.

The proxy benchmark's L7 rows (bench/proxy_bench.py) measure whole pairs
under wrk, which on a shared 2-core machine swing with every other process.
This one runs the two L7 handlers (``L7OutboundHandler.handle``, the client
side; ``L7Inbound._traced``, the server side) on one plain ``GET /`` each, the
upstream exchange replaced by a canned nginx answer, and times them with the
process's CPU clock (best of the rounds): what the proxy's Python costs per
request, apart from the socket I/O, the TLS records and the scheduler's waits.

The split row is the client side of proxy_bench's ``l7 split`` path (a
90/10 ``service-splitter`` over two subsets): what a split costs over the
plain route. The other rows remove one part at a time, so the differences
say what each part costs: tracing (span, trace headers in and out; the 1%
default sampling), the metrics (``Reporter.observe``), the attempt machinery (retry state, per-try
deadline, outlier report) and the routing decision. Also the parsing and
serialisation of one request and one response (http1.py). Prints figures;
never asserts.
"""

from __future__ import annotations

import argparse
import gc
import time
import types
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from bench.loadgen.table import machine, print_table
from connect.intentions import Intention
from connect.l7.chain import compile_chain
from connect.l7.chain_validate import EntrySet
from connect.l7.entries import parse_entry
from connect.proxy.balancer import Endpoint
from connect.proxy.http1 import ParsedRequest, RequestReader, end_to_end, request_bytes
from connect.proxy.http_pool import UpstreamResponse, serialize
from connect.proxy.l7_inbound import L7Inbound
from connect.proxy.l7_metrics import Exchange, Reporter
from connect.proxy.l7_outbound import L7OutboundHandler, L7Upstream
from connect.proxy.l7_tracing import ProxyTracing
from connect.proxy.metrics import ProxyMetrics

NGINX = UpstreamResponse(
    200,
    [
        ("server", "nginx/1.22.1"),
        ("date", "Sat, 05 Dec 2026 02:00:00 GMT"),
        ("content-type", "text/plain"),
        ("content-length", "2"),
        ("connection", "keep-alive"),
    ],
    b"ok",
)
WRK_HEADERS = [(b"host", b"127.0.0.1:20000")]  # all wrk sends with GET /
WRK_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:20000\r\n\r\n"
SOURCE = types.SimpleNamespace(service="web", namespace="default")


async def _canned(
    endpoint: str, method: str, target: str, headers: Any, body: bytes, deadline: float = 0.0
) -> Any:
    return NGINX


async def _unobserved(ex: Exchange, handle: Callable[[Exchange], Awaitable[Any]]) -> Any:
    return await handle(ex)


SPLIT_ENTRIES = [
    {
        "Kind": "service-resolver",
        "Name": "api",
        "DefaultSubset": "v1",
        "Subsets": {v: {"Filter": 'Service.Meta.version == "v1"'} for v in ("v1", "v2")},
    },
    {
        "Kind": "service-splitter",
        "Name": "api",
        "Splits": [{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}],
    },
]


def outbound(split: bool = False) -> L7OutboundHandler:
    """web's upstream listener for an ``http`` api with one instance; with
    ``split``, proxy_bench's 90/10 splitter over two subsets of it."""
    up = L7Upstream("web", "api")
    raw = [{"Kind": "service-defaults", "Name": "api", "Protocol": "http"}]
    entries = [parse_entry(e) for e in raw + (SPLIT_ENTRIES if split else [])]
    chain = compile_chain("api", EntrySet.of(entries), "dc1", "consul").to_json()
    up.set_chain(chain)
    for target in chain["Targets"]:
        up.set_endpoints(target, [Endpoint("127.0.0.1", 21000)])
    metrics = ProxyMetrics()
    l4: Any = types.SimpleNamespace(metrics=metrics)
    handler = L7OutboundHandler(None, up, l4, Reporter(metrics.standard, "source", "web"))  # type: ignore[arg-type]
    handler.pool.request = _canned  # type: ignore[method-assign]
    handler.tracing = ProxyTracing(None)
    return handler


def inbound() -> L7Inbound:
    """api's sidecar inbound, the app at 127.0.0.1:8080; as in proxy_bench,
    an (L4) intention allows web (default deny)."""
    svc = L7Inbound("api", ProxyMetrics())
    svc.set_table(
        [
            Intention(
                id="ixn-web-api",
                source_name="web",
                destination_name="api",
                precedence=9,
                action="allow",
            )
        ]
    )
    svc.pool.request = _canned  # type: ignore[method-assign]
    svc.tracing = ProxyTracing(None)
    spec = types.SimpleNamespace(local_address="127.0.0.1", local_port=8080)
    svc._listener = types.SimpleNamespace(spec=spec)  # type: ignore[assignment]
    return svc


async def _best(one: Callable[[], Awaitable[object]], calls: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        start = time.process_time()
        for _ in range(calls):
            await one()
        best = min(best, (time.process_time() - start) / calls * 1e6)
    return best


def _best_sync(one: Callable[[], object], calls: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(calls):
            one()
        best = min(best, (time.process_time() - start) / calls * 1e6)
    return best


async def outbound_rows(calls: int, rounds: int) -> list[tuple[str, float]]:
    rows = []

    async def measure(label: str, handler: L7OutboundHandler) -> None:
        async def one() -> object:
            event = ParsedRequest(b"GET", b"/", list(WRK_HEADERS))
            resp = await handler.handle(event, b"")
            if handler.tracing is not None:
                handler.tracing.finished.clear()
            return serialize(resp, event)

        rows.append((label, await _best(one, calls, rounds)))

    handler = outbound()
    await measure("client side, whole", handler)
    await measure("  the 90/10 split route instead", outbound(split=True))
    handler.tracing = None
    await measure("  without tracing", handler)
    handler.reporter.observe = _unobserved  # type: ignore[method-assign]
    await measure("  ... and without metrics", handler)

    async def no_attempts(*args: Any) -> UpstreamResponse:
        return NGINX

    handler._attempts = no_attempts  # type: ignore[method-assign]
    await measure("  ... and without the attempt machinery", handler)
    return rows


async def inbound_rows(calls: int, rounds: int) -> list[tuple[str, float]]:
    client = ProxyTracing(None).client_hop("web", "api", b"GET", b"/", WRK_HEADERS)
    forwarded = client.headers  # what the client side sends on: trace headers added
    rows = []

    async def measure(label: str, svc: L7Inbound) -> None:
        async def one() -> object:
            event = ParsedRequest(b"GET", b"/", list(forwarded))
            resp = await svc._traced(event, SOURCE, b"")  # type: ignore[arg-type]
            if svc.tracing is not None:
                svc.tracing.finished.clear()
            return serialize(resp, event)

        rows.append((label, await _best(one, calls, rounds)))

    svc = inbound()
    await measure("server side, whole", svc)
    svc.tracing = None
    await measure("  without tracing", svc)
    svc.reporter.observe = _unobserved  # type: ignore[method-assign]
    await measure("  ... and without metrics", svc)
    return rows


def framing_rows(calls: int, rounds: int) -> list[tuple[str, float]]:
    reader = RequestReader(None)  # type: ignore[arg-type]

    def parse() -> object:
        reader.feed(WRK_REQUEST)
        return reader.parsed()

    event = parse()
    assert event is not None
    headers = [(k.decode(), v.decode()) for k, v in WRK_HEADERS]
    return [
        ("parse wrk's request (llhttp)", _best_sync(parse, calls, rounds)),
        ("serialize nginx's answer", _best_sync(lambda: serialize(NGINX, event), calls, rounds)),
        (
            "serialize the forwarded request",
            _best_sync(lambda: request_bytes("GET", "/", end_to_end(headers), b""), calls, rounds),
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: few calls, 1 round")
    p.add_argument("--calls", type=int, default=None, help="requests per row and round")
    p.add_argument("--rounds", type=int, default=None)
    args = p.parse_args(argv)
    calls = args.calls or (300 if args.quick else 20_000)
    rounds = args.rounds or (1 if args.quick else 5)

    async def run() -> list[tuple[str, float]]:
        return [*await outbound_rows(calls, rounds), *await inbound_rows(calls, rounds)]

    rows = trio.run(run) + framing_rows(calls, rounds)
    print_table(
        f"L7 proxy CPU per request without sockets, {calls} requests x {rounds} rounds (best) "
        + machine(),
        ["case", "us/request"],
        [[label, f"{us:.1f}"] for label, us in rows],
    )


if __name__ == "__main__":
    main()
