"""The proxy's compact per-edge aggregate, pushed to its agent for the mesh graph.

Next to its Prometheus series the proxy keeps, per (reporter, source,
destination, subset, mTLS), cumulative counters: requests, errors, the
duration histogram in ``DURATION_BUCKETS_MS`` (per-bucket counts, the last
one ``+Inf``) and its sum; TCP listeners add connections and bytes on the
same key (subset empty). ``Reporter.end`` and ``TcpReport`` feed it
(l7_metrics.py) with one dict update per request: nothing here blocks a
request or allocates per request beyond the first one of an edge.

``StatsPusher`` sends the whole aggregate every ``PUSH_INTERVAL`` seconds
(``MESHD_PROXY_STATS_INTERVAL`` overrides it, for tests) and once more when
it is cancelled (shutdown) to ``PUT /v1/internal/telemetry/proxy-stats``:
``{ID, StartedAt, Time, BucketsMs, Edges: [...]}``. The counters are
cumulative since ``StartedAt`` under a random per-process ``ID``, so the
agent computes window deltas itself and a restarted proxy is a new series;
a lost push loses nothing but freshness. Failed pushes are counted in
``meshd_proxy_stats_push_failures_total``; edges beyond ``MAX_EDGES`` are
not tracked and counted in ``meshd_proxy_stats_edges_dropped_total``.

An error is a 5xx answer, no answer (status 0), or a request the proxy
failed itself: Envoy's response flags in ``ERROR_FLAGS``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio
from prometheus_client import CollectorRegistry, Counter

from .agent_client import AgentClient
from .errors import AgentError
from .l7_metrics import DURATION_BUCKETS_MS, count_request
from .logfmt import emit

STATS_PATH = "/v1/internal/telemetry/proxy-stats"
PUSH_INTERVAL = 5.0
INTERVAL_ENV = "MESHD_PROXY_STATS_INTERVAL"
PUSH_TIMEOUT = 5.0
MAX_EDGES = 4096
# Envoy flags of requests the proxy itself failed (timeout, overflow, connect
# failure, reset, retries exhausted, no route, no healthy upstream).
ERROR_FLAGS = frozenset({"UT", "UO", "UF", "UR", "URX", "NR", "UH"})
# Same buckets as meshd_request_duration_milliseconds.
BUCKETS_MS = DURATION_BUCKETS_MS

EdgeKey = tuple[str, str, str, str, bool]  # reporter, source, destination, subset, mtls


class EdgeFigures(Protocol):
    """An edge's counters: the proxy's cumulative ones, or an agent's window of them."""

    @property
    def requests(self) -> int: ...
    @property
    def errors(self) -> int: ...
    @property
    def buckets(self) -> Iterable[int]: ...
    @property
    def duration_sum_ms(self) -> float: ...
    @property
    def connections(self) -> int: ...
    @property
    def bytes_received(self) -> int: ...
    @property
    def bytes_sent(self) -> int: ...


def edge_json(key: EdgeKey, c: EdgeFigures) -> dict[str, Any]:
    """One edge in the push body's wire form (and in the agents' answers to each other)."""
    return {
        "Reporter": key[0],
        "Source": key[1],
        "Destination": key[2],
        "Subset": key[3],
        "MTLS": key[4],
        "Requests": c.requests,
        "Errors": c.errors,
        "Buckets": list(c.buckets),
        "DurationSumMs": c.duration_sum_ms,
        "Connections": c.connections,
        "BytesReceived": c.bytes_received,
        "BytesSent": c.bytes_sent,
    }


def is_error(status: int, flags: Iterable[str]) -> bool:
    """Whether a request answered ``status`` with ``flags`` counts as an error."""
    return status >= 500 or status <= 0 or not ERROR_FLAGS.isdisjoint(flags)


@dataclass(slots=True)
class EdgeCounts:
    requests: int = 0
    errors: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_MS) + 1))
    duration_sum_ms: float = 0.0
    connections: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0


class EdgeStats:
    """The cumulative per-edge counters of one proxy process."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self.id = uuid.uuid4().hex
        self.wall = wall
        self.started_at = wall()
        self.edges: dict[EdgeKey, EdgeCounts] = {}
        self.dropped = 0  # requests/connections of edges beyond MAX_EDGES

    def _edge(self, key: EdgeKey) -> EdgeCounts | None:
        found = self.edges.get(key)
        if found is None:
            if len(self.edges) >= MAX_EDGES:
                self.dropped += 1
                return None
            found = self.edges[key] = EdgeCounts()
        return found

    def request(
        self,
        reporter: str,
        source: str,
        destination: str,
        subset: str,
        status: int,
        flags: Iterable[str],
        duration_ms: float,
        mtls: bool = True,
    ) -> None:
        """Count one finished request on its edge."""
        edge = self._edge((reporter, source, destination, subset, mtls))
        if edge is None:
            return
        count_request(edge, is_error(status, flags), duration_ms)

    def request_edge(
        self, reporter: str, source: str, destination: str, subset: str, mtls: bool = True
    ) -> EdgeCounts | None:
        """The edge ``request`` counts these labels' requests on, for a
        caller that counts many on it with ``count_request``; None beyond
        ``MAX_EDGES`` (nothing counted: ``request`` counts each drop)."""
        key = (reporter, source, destination, subset, mtls)
        if key not in self.edges and len(self.edges) >= MAX_EDGES:
            return None
        return self._edge(key)

    def tcp(
        self,
        reporter: str,
        source: str,
        destination: str,
        opened: int = 0,
        received: int = 0,
        sent: int = 0,
        mtls: bool = True,
    ) -> None:
        """Count a TCP connection opened and/or bytes on its edge."""
        edge = self._edge((reporter, source, destination, "", mtls))
        if edge is None:
            return
        edge.connections += opened
        edge.bytes_received += received
        edge.bytes_sent += sent

    def snapshot(self) -> dict[str, Any]:
        """The push body: every edge's cumulative counters."""
        edges = [edge_json(k, c) for k, c in self.edges.items()]
        return {
            "ID": self.id,
            "StartedAt": self.started_at,
            "Time": self.wall(),
            "BucketsMs": list(BUCKETS_MS),
            "Edges": edges,
        }


def push_interval() -> float:
    """``PUSH_INTERVAL``, or ``MESHD_PROXY_STATS_INTERVAL`` when set to a positive number."""
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    try:
        value = float(raw) if raw else PUSH_INTERVAL
    except ValueError:
        return PUSH_INTERVAL
    return value if value > 0 else PUSH_INTERVAL


class StatsPusher:
    """Pushes ``stats`` to the local agent periodically and on shutdown."""

    def __init__(
        self,
        client: AgentClient,
        stats: EdgeStats,
        registry: CollectorRegistry | None = None,
        interval: float | None = None,
    ) -> None:
        self.client = client
        self.stats = stats
        self.interval = push_interval() if interval is None else interval
        self.failures = Counter(
            "meshd_proxy_stats_push_failures",
            "Pushes of the per-edge aggregate the agent did not take.",
            registry=registry,
        )
        self.edges_dropped = Counter(
            "meshd_proxy_stats_edges_dropped",
            "Requests and connections not aggregated: too many edges.",
            registry=registry,
        )
        self._reported_drops = 0
        self.pushed = 0
        self.failed = 0

    async def push(self) -> bool:
        """One push; False (and counted) when the agent did not take it."""
        if self.stats.dropped > self._reported_drops:
            self.edges_dropped.inc(self.stats.dropped - self._reported_drops)
            self._reported_drops = self.stats.dropped
        try:
            await self.client.request(
                "PUT", STATS_PATH, body=self.stats.snapshot(), timeout=PUSH_TIMEOUT
            )
        except AgentError as exc:
            self.failures.inc()
            self.failed += 1
            if self.failed in (1, 10) or self.failed % 100 == 0:  # not one line per push
                emit(30, "stats_push_failed", reason=str(exc), failures=self.failed)
            return False
        self.pushed += 1
        return True

    async def run(self) -> None:
        """Push every ``interval`` until cancelled, then once more (bounded by
        ``PUSH_TIMEOUT``) so the last requests reach the agent."""
        try:
            while True:
                await trio.sleep(self.interval)
                await self.push()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(PUSH_TIMEOUT):
                await self.push()
