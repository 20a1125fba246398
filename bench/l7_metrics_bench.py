"""Per-request cost of the mesh's request metrics and access logs, in process.

What the L7 path adds per request for observability (connect/proxy/
l7_metrics.py, access_log.py): ``Reporter.begin`` + ``observe`` (one
counter and three histogram observations on a cached label set), with
access logs off, on with the default JSON line, and on with an Envoy text
format; lines go to /dev/null so the figure is the formatting, not a disk.
Baseline: a plain L7 decision (the 20-route router of l7_cores_bench), the
per-request work the L7 path does anyway. Also, to isolate the metric
families: the same loop with per-request metrics off (``Exchange``, clock
and trio only), with the graph's edge aggregate (l7_stats.py) on as in a
pushing proxy, with prometheus-client's own children (the implementation
``--workers N`` keeps, and the one before request_series.py), and the
families' ``observe`` alone on a fixed label tuple, both ways.
Microseconds per request, best of the rounds. Prints figures and ratios;
never asserts.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable

import trio
from prometheus_client import CollectorRegistry

from bench.l7_cores_bench import table
from bench.loadgen.table import machine, print_table, ratio
from connect.l7.access_logs import AccessLogs
from connect.l7.decide import Decider
from connect.l7.request import Request
from connect.proxy.access_log import AccessLogger
from connect.proxy.l7_metrics import Exchange, Reporter, StandardMetrics
from connect.proxy.l7_stats import EdgeStats
from connect.proxy.metrics import ProxyMetrics

CALLS = 20_000
HEADERS = [(b"host", b"api"), (b"user-agent", b"bench"), (b"x-request-id", b"r-1")]
TEXT = "[%START_TIME%] %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %DURATION%"


class _Resp:
    status = 200
    body = b"x" * 64


async def _handle(ex: Exchange) -> _Resp:
    ex.subset, ex.upstream = "v1", "10.0.0.1:21000"
    return _Resp()


def _standard(fast: bool = True, per_request: bool = True, edges: bool = False) -> StandardMetrics:
    standard = StandardMetrics(CollectorRegistry(), fast)
    standard.per_request = per_request
    standard.edges = EdgeStats() if edges else None
    return standard


def _recording(
    settings: AccessLogs | None, standard: StandardMetrics | None = None
) -> Callable[[int], float]:
    logger = AccessLogger()
    if settings is not None:
        logger.settings.global_ = settings
    reporter = Reporter(standard or ProxyMetrics().standard, "source", "web", logger)

    async def run(calls: int) -> float:
        start = time.perf_counter()
        for i in range(calls):
            ex = reporter.begin("GET", f"/users/{i % 7}", HEADERS, 0, "web", "api")
            await reporter.observe(ex, _handle)
        return time.perf_counter() - start

    return lambda calls: trio.run(run, calls)


def _decide() -> Callable[[int], float]:
    decider, rng = Decider(table("plain")), random.Random(1)

    def run(calls: int) -> float:
        reqs = [Request.build("GET", f"/catch/{i % 7}") for i in range(calls)]
        start = time.perf_counter()
        for r in reqs:
            decider.decide(r, rng=rng)
        return time.perf_counter() - start

    return run


def _observe_only(fast: bool) -> Callable[[int], float]:
    series = _standard(fast).series
    labels = ("source", "web", "api", "v1", "GET", "200", "-", "mutual_tls")

    def run(calls: int) -> float:
        start = time.perf_counter()
        for i in range(calls):
            series.observe(labels, 3.0 + (i & 7), 0, 64)
        return time.perf_counter() - start

    return run


def measure(calls: int, rounds: int) -> dict[str, float]:
    json_line = AccessLogs(enabled=True, type="file", path="/dev/null")
    text_line = AccessLogs(enabled=True, type="file", path="/dev/null", text_format=TEXT)
    cases = {
        "baseline: L7 decision (plain route)": _decide(),
        "per-request metrics off": _recording(None, _standard(per_request=False)),
        "metrics, access logs off": _recording(None),
        "metrics (prometheus-client children)": _recording(None, _standard(fast=False)),
        "metrics + graph edges": _recording(None, _standard(edges=True)),
        "metrics + access log (JSON)": _recording(json_line),
        "metrics + access log (text)": _recording(text_line),
        "families' observe only": _observe_only(True),
        "families' observe only (prometheus-client)": _observe_only(False),
    }
    samples: dict[str, list[float]] = {k: [] for k in cases}
    names = list(cases)
    for i in range(rounds):
        for name in names if i % 2 == 0 else reversed(names):
            gc.collect()
            gc.disable()
            try:
                samples[name].append(cases[name](calls) / calls * 1e6)
            finally:
                gc.enable()
    return {k: min(v) for k, v in samples.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: few calls, 1 round")
    p.add_argument("--rounds", type=int, default=None)
    args = p.parse_args(argv)
    calls = CALLS // 20 if args.quick else CALLS // 2
    rounds = args.rounds or (1 if args.quick else 7)
    figures = measure(calls, rounds)
    base = figures["baseline: L7 decision (plain route)"]
    rows = [[name, f"{us:.2f}", ratio(us, base)] for name, us in figures.items()]
    print_table(
        f"Request metrics and access logs, {calls} requests x {rounds} rounds (best) {machine()}",
        ["case", "us/request", "vs decision"],
        rows,
    )


if __name__ == "__main__":
    main()
