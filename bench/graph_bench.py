"""The mesh graph: API answer time at 100 services and 300 edges, and what the
per-edge aggregate costs the proxy per request.

Agent side: a real ``--dev`` agent in this process (HTTP on a free port)
with 100 registered services (a TTL check each, ``version`` meta) and 100
synthetic proxies pushing ``PUT /v1/internal/telemetry/proxy-stats`` (one per
service: its 3 upstream edges on the source side, split over subsets v1/v2,
and its inbound edges on the destination side: 300 edges, 900 series),
two snapshots each. Then ``GET /v1/internal/ui/mesh-graph?window=60s``
(whole mesh) and ``&service=`` (one service's edges) over HTTP: median and
p95 of the answer time, and the push ingest time.

Proxy side (``connect/proxy/l7_stats.py``): microseconds per request of
``Reporter.end`` (Prometheus series) without the aggregate, and with it.

Prints figures; never asserts.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from bench.loadgen.table import machine, print_table, ratio
from bench.proxy_backend import free_port
from connect.proxy.agent_client import AgentClient
from connect.proxy.l7_metrics import Reporter, StandardMetrics
from connect.proxy.l7_stats import EdgeStats
from meshd.agent.agent import Agent
from meshd.config import load_config

SERVICES, FANOUT = 100, 3
CALLS = 200_000


def _name(i: int) -> str:
    return f"svc-{i % SERVICES:03d}"


def _proxies(scale: int) -> list[EdgeStats]:
    """One aggregate per service: its outbound and inbound edges, ``scale``
    requests per edge and subset."""
    stats = [EdgeStats() for _ in range(SERVICES)]
    for i in range(SERVICES):
        for k in range(1, FANOUT + 1):
            src, dst = _name(i), _name(i + k)
            for n in range(scale):
                subset = "v2" if n % 10 == 0 else "v1"
                status = 503 if n % 50 == 0 else 200
                stats[i].request("source", src, dst, subset, status, (), 2.0 + n % 40)
                stats[(i + k) % SERVICES].request(
                    "destination", src, dst, "", status, (), 1.5 + n % 40
                )
    return stats


async def _register(client: AgentClient) -> None:
    for i in range(SERVICES):
        svc = {
            "Name": _name(i),
            "ID": _name(i),
            "Port": 8000 + i,
            "Meta": {"version": "v1"},
            "Check": {"TTL": "600s", "Status": "passing"},
        }
        await client.request("PUT", "/v1/agent/service/register", body=svc)


async def _timed(client: AgentClient, path: str, calls: int) -> tuple[list[float], Any]:
    times, body = [], None
    for _ in range(calls):
        start = time.perf_counter()
        resp = await client.request("GET", path, timeout=60)
        times.append(time.perf_counter() - start)
        body = resp.json()
    return times, body


async def agent_figures(calls: int, scale: int) -> dict[str, Any]:
    flags = {"http_port": free_port(), "dns_port": -1, "server_port": free_port(), "node": "bench"}
    config, _ = load_config([], [], flags, dev=True)
    agent = Agent(config)
    out: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        host, port = agent.http_addresses[0]
        client = AgentClient(host, port)
        await _register(client)
        proxies = _proxies(scale)
        pushes = []
        for _round in range(2):
            for stats in proxies:
                start = time.perf_counter()
                await client.request("PUT", "/v1/internal/telemetry/proxy-stats",
                                     body=stats.snapshot())  # fmt: skip
                pushes.append(time.perf_counter() - start)
            for stats in proxies:  # more traffic before the second snapshot
                for key in list(stats.edges):
                    stats.request(*key[:4], 200, (), 3.0)
            await trio.sleep(0.5)
        out["push"] = pushes
        out["graph"], body = await _timed(client, "/v1/internal/ui/mesh-graph?window=60s", calls)
        out["edges"], out["nodes"] = len(body["Edges"]), len(body["Nodes"])
        one = "/v1/internal/ui/mesh-graph?window=60s&service=svc-042"
        out["service"], _ = await _timed(client, one, calls)
        await client.aclose()
        nursery.cancel_scope.cancel()
    return out


def _reporter_cost(calls: int, with_edges: bool) -> float:
    metrics = StandardMetrics(CollectorRegistry())
    if with_edges:
        metrics.edges = EdgeStats()
    reporter = Reporter(metrics, "source", "web")
    ex = reporter.begin("GET", "/orders/1", [], 0, "web", "api")
    ex.subset = "v1"
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            reporter.end(ex, 200, 120)
        return (time.perf_counter() - start) / calls * 1e6
    finally:
        gc.enable()


def _aggregate_cost(calls: int) -> float:
    stats = EdgeStats()
    flags: set[str] = set()
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            stats.request("source", "web", "api", "v1", 200, flags, 3.2)
        return (time.perf_counter() - start) / calls * 1e6
    finally:
        gc.enable()


PROM, WITH, ALONE = "Reporter.end, Prometheus only", "with the aggregate", "the aggregate alone"


def proxy_figures(calls: int, rounds: int) -> dict[str, float]:
    out: dict[str, list[float]] = {PROM: [], WITH: [], ALONE: []}
    for i in range(rounds):
        order = [False, True] if i % 2 == 0 else [True, False]
        for with_edges in order:
            out[WITH if with_edges else PROM].append(_reporter_cost(calls, with_edges))
        out[ALONE].append(_aggregate_cost(calls))
    return {k: min(v) for k, v in out.items()}


def _ms(values: list[float], q: float) -> str:
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.1f}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: few calls, 1 round")
    args = p.parse_args(argv)
    calls, rounds = (3, 1) if args.quick else (20, 5)
    agent = trio.run(agent_figures, calls, 2 if args.quick else 20)
    rows = [
        [f"mesh-graph, whole mesh ({agent['nodes']} nodes, {agent['edges']} edges)",
         f"{statistics.median(agent['graph']) * 1000:.1f}", _ms(agent["graph"], 0.95)],
        ["mesh-graph, service=svc-042", f"{statistics.median(agent['service']) * 1000:.1f}",
         _ms(agent["service"], 0.95)],
        ["proxy-stats push (9 series)", f"{statistics.median(agent['push']) * 1000:.2f}",
         _ms(agent["push"], 0.95)],
    ]  # fmt: skip
    print_table(
        f"Agent: mesh graph answer time over HTTP, {calls} calls {machine()}",
        ["case", "median ms", "p95 ms"],
        rows,
    )
    n = CALLS // 50 if args.quick else CALLS
    proxy = proxy_figures(n, rounds)
    base = proxy[PROM]
    print_table(
        f"Proxy: per-request cost, {n} requests x {rounds} rounds (best)",
        ["case", "us/request", "vs Prometheus only"],
        [[k, f"{v:.2f}", ratio(v, base)] for k, v in proxy.items()],
    )
    print(
        f"the aggregate costs {proxy[ALONE]:.2f} us per request on its own "
        f"({proxy[WITH] - base:+.2f} us measured inside Reporter.end)"
    )


if __name__ == "__main__":
    main()
