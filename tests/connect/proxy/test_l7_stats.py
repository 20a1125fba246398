"""The proxy's per-edge aggregate (connect/proxy/l7_stats.py): fed by the
request reporter and the TCP counters, pushed to the agent periodically and
once more on shutdown, failures counted."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from prometheus_client import CollectorRegistry

from connect.proxy import l7_stats
from connect.proxy.errors import AgentUnavailableError
from connect.proxy.l7_metrics import REQUEST_METRICS_ENV, Flag, Reporter, StandardMetrics
from connect.proxy.l7_stats import STATS_PATH, EdgeStats, StatsPusher


def test_reporter_and_tcp_counters_feed_the_aggregate() -> None:
    metrics = StandardMetrics(CollectorRegistry())
    metrics.edges = stats = EdgeStats()
    reporter = Reporter(metrics, "source", "web", clock=iter([0.0, 0.002, 1.0, 1.3]).__next__)
    ok = reporter.begin("GET", "/a?q=1", [], 0, "web", "api")
    ok.subset = "v2"
    reporter.end(ok, 200, 10)
    timed_out = reporter.begin("GET", "/slow", [], 0, "web", "api")
    timed_out.subset = "v2"
    timed_out.flag(Flag.TIMEOUT)
    reporter.end(timed_out, 504, 0)
    tcp = metrics.tcp("destination", "web", "db")
    tcp.opened()
    tcp.bytes(100, 2000)
    edge = stats.edges[("source", "web", "api", "v2", True)]
    assert (edge.requests, edge.errors) == (2, 1)
    assert edge.buckets[2] == 1 and edge.buckets[8] == 1  # 2 ms in (1, 5]; 300 ms in (250, 500]
    conn = stats.edges[("destination", "web", "db", "", True)]
    assert (conn.connections, conn.bytes_received, conn.bytes_sent) == (1, 100, 2000)


def test_repeated_requests_count_as_the_first_and_edges_beyond_the_limit_as_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(l7_stats, "MAX_EDGES", 2)
    metrics = StandardMetrics(CollectorRegistry(), fast=True)
    metrics.edges = stats = EdgeStats()
    reporter = Reporter(metrics, "source", "web", clock=lambda: 0.0)
    for destination, status in [("api", 200), ("api", 503), ("db", 200), ("x", 200)] * 3:
        reporter.end(reporter.begin("get", "/", [], 0, "web", destination), status, 2)
    api = stats.edges[("source", "web", "api", "", True)]
    assert (api.requests, api.errors) == (6, 3)
    assert stats.edges[("source", "web", "db", "", True)].requests == 3
    assert len(stats.edges) == 2 and stats.dropped == 3  # x: every request, not once
    series = metrics.series.series  # type: ignore[union-attr]
    key = ("source", "web", "api", "unknown", "GET", "503", "-", "mutual_tls")
    assert series[key].count == 3 and series[key].resp_sum == 6
    assert sum(s.count for s in series.values()) == 12


def test_request_metrics_switched_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUEST_METRICS_ENV, "0")
    registry = CollectorRegistry()
    metrics = StandardMetrics(registry)
    metrics.edges = stats = EdgeStats()
    reporter = Reporter(metrics, "source", "web")
    reporter.end(reporter.begin("GET", "/", [], 0, "web", "api"), 200, 3)
    counted = [s for m in registry.collect() for s in m.samples if s.name == "meshd_requests_total"]
    assert counted == []
    assert stats.edges == {}


class FlakyAgent:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.fail = True

    async def request(self, method: str, path: str, **kw: Any) -> None:
        assert (method, path) == ("PUT", STATS_PATH)
        if self.fail:
            self.fail = False
            raise AgentUnavailableError("connection refused")
        self.bodies.append(kw["body"])


async def test_pushes_every_interval_and_once_more_on_shutdown(autojump_clock: Any) -> None:
    agent = FlakyAgent()
    stats = EdgeStats()
    pusher = StatsPusher(agent, stats, CollectorRegistry(), interval=5.0)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pusher.run)
        await trio.sleep(11)  # t=5 fails, t=10 lands
        stats.request("source", "web", "api", "", 200, (), 1.0)
        nursery.cancel_scope.cancel()  # shutdown: the last request is pushed
    assert pusher.failed == 1 and pusher.pushed == 2
    assert [len(b["Edges"]) for b in agent.bodies] == [0, 1]
    assert agent.bodies[1]["ID"] == stats.id and agent.bodies[1]["Edges"][0]["Requests"] == 1
