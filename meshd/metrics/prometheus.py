"""Agent metrics, the Prometheus implementation of ``Recorder``: one
prometheus-client registry per agent, served at /v1/agent/metrics.

Every agent owns a ``Metrics`` with its own ``CollectorRegistry`` (never the
process-wide default one: tests run many agents in one process). Names are
Consul's, dotted, under ``telemetry.metrics_prefix``: ``raft.commit_index``
is ``meshd.raft.commit_index`` in the JSON document and
``meshd_raft_commit_index`` in the Prometheus text.

Two kinds of metric live here:

- **events**, pushed as they happen through the ``Recorder`` methods
  (``http_request``, ``rpc_request``, ``blocking_query``, ``dns_query``,
  ``anti_entropy_sync``, ``check_result``, ``liveness_change``,
  ``raft_commit``, ``raft_apply``). ``Recorder`` itself records nothing and
  is the default wherever no agent's ``Metrics`` was passed in;
- **live values** (Raft term and indexes, role, catalog counts by health,
  the agent's own services and checks), read from the agent at scrape time
  by a collector, so nothing has to push them.

Wiring: ``agent.metrics`` is the agent's ``Metrics`` (``agent_metrics`` in
``meshd.agent.live_metrics`` creates it on first use, with the agent's live
readers). ``meshd.api.routes.build_app`` records every HTTP request and
blocking query and calls ``live_metrics.instrument(metrics, agent)``, which
hands the same object to the Raft node (``on_commit_latency``,
``on_apply_latency``), the RPC server and anti-entropy. ``DNSHandler``,
``RPCServer`` and ``AntiEntropy`` also take ``metrics=`` when built; the
checks runner calls ``check_result`` and the leader's liveness tracking
``liveness_change``.

Metric catalogue (prefix omitted; counters get ``_total`` in Prometheus)::

    http.requests{route,method,code}              counter
    http.request_duration_seconds{route,method}   histogram
    rpc.requests{method,result}                   counter (result: ok or the error code)
    rpc.request_duration_seconds{method}          histogram
    rpc.queries_blocking{via}                     gauge   (http: GET ?index>0; rpc: methods
                                                           registered blocking=True)
    dns.queries{qtype,rcode}                      counter
    agent.sync.runs{kind,result}                  counter (kind: full, changes)
    agent.sync.duration_seconds{kind}             histogram
    agent.sync.writes                             counter
    checks.runs{kind,status}                      counter
    checks.run_duration_seconds{kind}             histogram
    liveness.changes{status}                      counter
    raft.commit_time_seconds                      histogram (leader: proposal -> committed)
    raft.fsm_apply_seconds                        histogram (one FSM apply)
    raft.leader_changes                           counter (live)
    raft.state{state} raft.leader raft.term raft.commit_index raft.applied_index
    raft.last_log_index raft.last_snapshot_index raft.fsm_pending raft.peers
    raft.last_contact_seconds raft.snapshots_installed
    catalog.nodes catalog.services catalog.service_instances
    catalog.nodes_by_health{status} catalog.service_instances_by_health{status}
    catalog.checks{status} liveness.nodes{status}
    agent.services agent.checks agent.checks.critical
    runtime.uptime_seconds runtime.tasks runtime.max_rss_bytes
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..dns.wire_labels import dns_qtype, dns_rcode
from .live import LiveReader
from .recorder import Recorder
from .summary import counter_json, histogram_json

if TYPE_CHECKING:
    from raft.node import RaftNode

__all__ = ["PROMETHEUS_CONTENT_TYPE", "Metrics"]

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# ``_created`` series (one per counter and histogram child) double the text
# and mean nothing to Consul users. The switch is process-wide; meshd is the
# process.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

_HTTP_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"})

# Buckets in seconds. HTTP and RPC include blocking queries (up to 10 minutes).
_REQUEST_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
)  # fmt: skip
_COMMIT_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
)  # fmt: skip
_APPLY_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.1,
)  # fmt: skip
_TASK_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics(Recorder):
    """One agent's metrics: event counters and histograms plus the live values
    ``live`` returns at every scrape, all in ``self.registry``.

    ``clock`` (monotonic seconds) dates the registry, for the JSON ``Rate``.
    """

    def __init__(
        self,
        prefix: str = "meshd",
        live: LiveReader | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.prefix = prefix
        self.registry = CollectorRegistry()
        self._clock = clock
        self._created = clock()
        self._json_names: dict[str, str] = {}  # Prometheus family name -> dotted name
        self._http: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._rpc: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._dns: dict[tuple[str, str], Any] = {}
        self._define_events()
        if live is not None:
            self.registry.register(_LiveCollector(self, live))

    def _define_events(self) -> None:
        self.http_requests = self._counter(
            "http.requests", "HTTP requests answered.", ("route", "method", "code")
        )
        self.http_duration = self._histogram(
            "http.request_duration_seconds",
            "Seconds to answer an HTTP request (blocking queries included).",
            ("route", "method"),
            _REQUEST_BUCKETS,
        )
        self.rpc_requests = self._counter(
            "rpc.requests", "RPC requests served.", ("method", "result")
        )
        self.rpc_duration = self._histogram(
            "rpc.request_duration_seconds",
            "Seconds to serve an RPC request.",
            ("method",),
            _REQUEST_BUCKETS,
        )
        self.queries_blocking = self._gauge(
            "rpc.queries_blocking", "Blocking queries waiting now.", ("via",)
        )
        for via in ("http", "rpc"):
            self.queries_blocking.labels(via)  # both series exist from the start
        self.dns_queries = self._counter("dns.queries", "DNS queries answered.", ("qtype", "rcode"))
        self.sync_runs = self._counter(
            "agent.sync.runs", "Anti-entropy passes.", ("kind", "result")
        )
        self.sync_duration = self._histogram(
            "agent.sync.duration_seconds",
            "Seconds one anti-entropy pass took.",
            ("kind",),
            _TASK_BUCKETS,
        )
        self.sync_writes = self._counter(
            "agent.sync.writes", "Catalog writes made by anti-entropy.", ()
        )
        self.check_runs = self._counter(
            "checks.runs", "Health check runs by kind and result.", ("kind", "status")
        )
        self.check_duration = self._histogram(
            "checks.run_duration_seconds",
            "Seconds one health check run took.",
            ("kind",),
            _TASK_BUCKETS,
        )
        self.liveness_changes = self._counter(
            "liveness.changes", "Node liveness verdicts that changed.", ("status",)
        )
        self.raft_commit_time = self._histogram(
            "raft.commit_time_seconds",
            "Seconds from the leader accepting a proposal to its commit.",
            (),
            _COMMIT_BUCKETS,
        )
        self.raft_fsm_apply = self._histogram(
            "raft.fsm_apply_seconds",
            "Seconds one log entry took to apply to the FSM.",
            (),
            _APPLY_BUCKETS,
        )

    # ----------------------------------------------------------- naming

    def prom_name(self, dotted: str) -> str:
        """The Prometheus name of ``dotted`` (remembered for the JSON document)."""
        name = f"{self.prefix}.{dotted}".replace(".", "_").replace("-", "_")
        self._json_names[name] = f"{self.prefix}.{dotted}"
        return name

    def _counter(self, dotted: str, doc: str, labels: Sequence[str]) -> Counter:
        return Counter(self.prom_name(dotted), doc, labels, registry=self.registry)

    def _gauge(self, dotted: str, doc: str, labels: Sequence[str]) -> Gauge:
        return Gauge(self.prom_name(dotted), doc, labels, registry=self.registry)

    def _histogram(
        self, dotted: str, doc: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> Histogram:
        name = self.prom_name(dotted)
        return Histogram(name, doc, labels, registry=self.registry, buckets=buckets)

    # ----------------------------------------------------------- events

    def http_request(self, route: str | None, method: str, code: int, seconds: float) -> None:
        key = (route or "unrouted", method if method in _HTTP_METHODS else "other", code)
        children = self._http.get(key)
        if children is None:
            children = (
                self.http_requests.labels(key[0], key[1], str(code)),
                self.http_duration.labels(key[0], key[1]),
            )
            self._http[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def rpc_request(self, method: str, result: str, seconds: float) -> None:
        key = (method, result)
        children = self._rpc.get(key)
        if children is None:
            children = (self.rpc_requests.labels(method, result), self.rpc_duration.labels(method))
            self._rpc[key] = children
        children[0].inc()
        children[1].observe(seconds)

    @contextlib.contextmanager
    def blocking_query(self, via: str) -> Iterator[None]:
        gauge = self.queries_blocking.labels(via)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    def dns_query(self, query: bytes, reply: bytes | None) -> None:
        key = (dns_qtype(query), dns_rcode(reply))
        child = self._dns.get(key)
        if child is None:
            child = self._dns[key] = self.dns_queries.labels(*key)
        child.inc()

    def anti_entropy_sync(self, *, full: bool, ok: bool, seconds: float, writes: int) -> None:
        kind = "full" if full else "changes"
        self.sync_runs.labels(kind, "ok" if ok else "error").inc()
        self.sync_duration.labels(kind).observe(seconds)
        if writes:
            self.sync_writes.inc(writes)

    def check_result(self, kind: str, status: str, seconds: float) -> None:
        self.check_runs.labels(kind, status).inc()
        self.check_duration.labels(kind).observe(seconds)

    def liveness_change(self, node: str, status: str) -> None:
        self.liveness_changes.labels(status).inc()

    def raft_commit(self, seconds: float) -> None:
        self.raft_commit_time.observe(seconds)

    def raft_apply(self, seconds: float) -> None:
        self.raft_fsm_apply.observe(seconds)

    # ----------------------------------------------------------- wiring

    def instrument_raft(self, node: RaftNode) -> None:
        """Receive ``node``'s commit and apply latencies from now on."""
        node.on_commit_latency = self.raft_commit
        node.on_apply_latency = self.raft_apply

    # ---------------------------------------------------------- exposing

    def prometheus_text(self) -> bytes:
        """The registry in the Prometheus text format 0.0.4."""
        return prometheus_client.generate_latest(self.registry)

    def summary(self, now: float) -> dict[str, Any]:
        """Consul's /v1/agent/metrics document (go-metrics ``MetricsSummary``)
        from the same registry; ``now`` (epoch seconds) is its ``Timestamp``.

        Counters are cumulative since the agent started (go-metrics reports
        one interval); ``Rate`` is per second over that time. Samples are
        the histograms, in seconds; their ``Min``/``Max`` are bucket bounds
        and ``Stddev`` is estimated from bucket midpoints.
        """
        age = max(self._clock() - self._created, 1e-9)
        gauges: list[dict[str, Any]] = []
        counters: list[dict[str, Any]] = []
        samples: list[dict[str, Any]] = []
        for family in self.registry.collect():
            name = self._json_names.get(family.name, family.name)
            if family.type == "gauge":
                gauges += [
                    {"Name": name, "Value": float(s.value), "Labels": dict(s.labels)}
                    for s in family.samples
                ]
            elif family.type == "counter":
                counters += [
                    counter_json(name, s.labels, s.value, age)
                    for s in family.samples
                    if s.name.endswith("_total")
                ]
            elif family.type == "histogram":
                samples += histogram_json(name, family, age)
        stamp = datetime.fromtimestamp(int(now), UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")
        return {
            "Timestamp": stamp,
            "Gauges": gauges,
            "Points": [],
            "Counters": counters,
            "Samples": samples,
        }


class _LiveCollector(Collector):
    """Turns what ``read`` returns at scrape time into metric families."""

    def __init__(self, metrics: Metrics, read: LiveReader) -> None:
        self._metrics = metrics
        self._read = read

    def describe(self) -> list[Metric]:
        return []  # names are known only at scrape time; nothing to check for clashes

    def collect(self) -> Iterator[Metric]:
        for live in self._read():
            name = self._metrics.prom_name(live.name)
            labels = [live.label] if live.label else None
            family: CounterMetricFamily | GaugeMetricFamily
            if live.counter:
                family = CounterMetricFamily(name, live.help, labels=labels)
            else:
                family = GaugeMetricFamily(name, live.help, labels=labels)
            if live.label:
                for value, number in live.by.items():
                    family.add_metric([value], number)
            else:
                family.add_metric([], live.value)
            yield family
