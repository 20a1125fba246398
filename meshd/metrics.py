"""Agent metrics: one prometheus-client registry per agent, served at /v1/agent/metrics.

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

Wiring: ``agent.metrics`` is the agent's ``Metrics`` (``agent_metrics``
creates it on first use). ``meshd.api.routes.build_app`` records every HTTP
request and blocking query and calls ``Metrics.instrument(agent)``, which
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
import math
import resource
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from typing import TYPE_CHECKING, Any

import prometheus_client
import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from raft.errors import RaftError
from raft.types import Role
from registry.state.health import aggregated_status

if TYPE_CHECKING:
    from raft.node import RaftNode
    from registry.records import HealthCheck
    from registry.state.store import StateStore

    from .agent.agent import Agent

__all__ = [
    "NO_METRICS",
    "PROMETHEUS_CONTENT_TYPE",
    "CatalogCounts",
    "Live",
    "Metrics",
    "Recorder",
    "agent_metrics",
]

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# ``_created`` series (one per counter and histogram child) double the text
# and mean nothing to Consul users. The switch is process-wide; meshd is the
# process.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

_HTTP_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"})
_HEALTH = ("passing", "warning", "critical")
_LIVENESS = ("alive", "failed", "left")
# Bounded label values: a client may send any 16-bit qtype.
_QTYPES = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    35: "NAPTR",
    255: "ANY",
}
_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}

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


class Recorder:
    """The events meshd records. This base class records nothing: it is the
    default wherever no agent's ``Metrics`` was passed (unit tests, tools).
    No method raises or blocks; all are cheap enough for hot paths."""

    def http_request(self, route: str | None, method: str, code: int, seconds: float) -> None:
        """One HTTP request answered (``route`` is the route name, None when none matched)."""

    def rpc_request(self, method: str, result: str, seconds: float) -> None:
        """One RPC request answered; ``result`` is "ok" or the RPC error code."""

    def blocking_query(self, via: str) -> contextlib.AbstractContextManager[None]:
        """Context manager held while one blocking query (via "http" or "rpc") waits."""
        return contextlib.nullcontext()

    def dns_query(self, query: bytes, reply: bytes | None) -> None:
        """One DNS query answered with ``reply`` (None: nothing was sent)."""

    def anti_entropy_sync(self, *, full: bool, ok: bool, seconds: float, writes: int) -> None:
        """One anti-entropy pass finished (``ok`` False: it failed and will retry)."""

    def check_result(self, kind: str, status: str, seconds: float) -> None:
        """One health check ran: ``kind`` as in ``meshd/checks`` ("http", "tcp", "ttl",
        ...), ``status`` "passing", "warning" or "critical", ``seconds`` the run's length."""

    def liveness_change(self, node: str, status: str) -> None:
        """The leader judged ``node`` to be ``status`` ("alive", "failed", "left"),
        a change from its previous verdict. ``node`` is not a label (unbounded)."""

    def raft_commit(self, seconds: float) -> None:
        """A proposal committed ``seconds`` after the leader accepted it."""

    def raft_apply(self, seconds: float) -> None:
        """One log entry took ``seconds`` to apply to the FSM."""


NO_METRICS = Recorder()


@dataclass(frozen=True)
class Live:
    """One metric read at scrape time: a single value, or values by one label."""

    name: str  # dotted, without prefix: "raft.commit_index"
    help: str
    value: float = 0.0
    label: str = ""  # with ``by``: the label's name
    by: Mapping[str, float] = field(default_factory=dict)
    counter: bool = False


LiveReader = Callable[[], Iterable[Live]]


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

    @classmethod
    def for_agent(cls, agent: Agent) -> Metrics:
        """The metrics of ``agent``: its prefix, and live values read from it at
        scrape time (so it may be created before the agent runs)."""
        return cls(agent.config.telemetry.metrics_prefix, agent_reader(agent))

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

    def instrument(self, agent: Agent) -> None:
        """Record the events of what ``agent`` already runs: its Raft node, RPC
        server and anti-entropy. Idempotent; call it once they exist."""
        server = agent.server
        if server is not None:
            self.instrument_raft(server.node)
            server.rpc.metrics = self
        if agent.sync is not None:
            agent.sync.metrics = self

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
                    _counter_json(name, s.labels, s.value, age)
                    for s in family.samples
                    if s.name.endswith("_total")
                ]
            elif family.type == "histogram":
                samples += _histogram_json(name, family, age)
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


# ------------------------------------------------------------ JSON shapes


def _aggregate(
    name: str, labels: Mapping[str, str], count: float, total: float, age: float
) -> dict[str, Any]:
    return {
        "Name": name,
        "Count": int(count),
        "Rate": total / age,
        "Sum": float(total),
        "Min": 0.0,
        "Max": 0.0,
        "Mean": total / count if count else 0.0,
        "Stddev": 0.0,
        "Labels": dict(labels),
    }


def _counter_json(name: str, labels: Mapping[str, str], value: float, age: float) -> dict[str, Any]:
    out = _aggregate(name, labels, value, value, age)
    if value:  # as if every increment were 1, which holds for all but agent.sync.writes
        out["Min"] = out["Max"] = 1.0
    return out


def _histogram_json(name: str, family: Metric, age: float) -> list[dict[str, Any]]:
    series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for s in family.samples:
        labels = {k: v for k, v in s.labels.items() if k != "le"}
        entry = series.setdefault(
            tuple(sorted(labels.items())), {"labels": labels, "buckets": [], "count": 0, "sum": 0}
        )
        if s.name.endswith("_bucket"):
            entry["buckets"].append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_count"):
            entry["count"] = s.value
        elif s.name.endswith("_sum"):
            entry["sum"] = s.value
    out = []
    for entry in series.values():
        count, total = entry["count"], entry["sum"]
        item = _aggregate(name, entry["labels"], count, total, age)
        if count:
            item.update(_bucket_spread(sorted(entry["buckets"]), total / count))
        out.append(item)
    return out


def _bucket_spread(buckets: list[tuple[float, float]], mean: float) -> dict[str, float]:
    """Min, Max and Stddev estimated from cumulative buckets [(le, count)]."""
    finite = [le for le, _ in buckets if math.isfinite(le)]
    lows: list[float] = []
    highs: list[float] = []
    squares = 0.0
    lower, seen = 0.0, 0.0
    for le, cumulative in buckets:
        upper = le if math.isfinite(le) else (finite[-1] if finite else lower)
        n = cumulative - seen
        if n > 0:
            lows.append(lower)
            highs.append(upper)
            squares += n * ((lower + upper) / 2 - mean) ** 2
        lower, seen = upper, cumulative
    if not lows:
        return {}
    return {"Min": lows[0], "Max": highs[-1], "Stddev": math.sqrt(squares / seen)}


# ------------------------------------------------------------------ DNS


def dns_qtype(query: bytes) -> str:
    """The first question's type, from the wire, without parsing the message."""
    n = len(query)
    if n < 12 or query[4:6] == b"\0\0":
        return "none"
    i = 12
    while i < n:
        length = query[i]
        if length == 0:
            i += 1
            break
        if length >= 0xC0:  # a compression pointer ends the name
            i += 2
            break
        i += 1 + length
    else:
        return "malformed"
    if i + 2 > n:
        return "malformed"
    return _QTYPES.get(int.from_bytes(query[i : i + 2], "big"), "other")


def dns_rcode(reply: bytes | None) -> str:
    """The reply's RCODE name ("dropped" when nothing was sent)."""
    if reply is None:
        return "dropped"
    if len(reply) < 4:
        return "malformed"
    return _RCODES.get(reply[3] & 0x0F, "other")


# ------------------------------------------------------- live: the agent


def agent_metrics(agent: Agent) -> Metrics:
    """``agent.metrics``, created and set on first use if the agent has none."""
    metrics = getattr(agent, "metrics", None)
    if not isinstance(metrics, Metrics):
        metrics = Metrics.for_agent(agent)
        # Until Agent.__init__ creates it, the attribute is added here.
        setattr(agent, "metrics", metrics)  # noqa: B010
    return metrics


def agent_reader(agent: Agent) -> LiveReader:
    """What ``agent`` reports at every scrape: its own state, and on a server
    Raft's and the catalog's."""
    catalog = CatalogCounts()

    def read() -> list[Live]:
        out = agent_live(agent)
        server = agent.server
        if server is not None:
            out += raft_live(server.node)
            out += catalog.read(server.store)
        return out

    return read


def agent_live(agent: Agent) -> list[Live]:
    """The agent's local services and checks and the process's runtime."""
    local = agent.local
    critical = sum(1 for c in local.checks.values() if c.check.status == "critical")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = [
        Live("agent.services", "Services registered with this agent.", len(local.services)),
        Live("agent.checks", "Checks registered with this agent.", len(local.checks)),
        Live("agent.checks.critical", "Local checks that are critical.", critical),
        Live("runtime.uptime_seconds", "Seconds since start.", time.time() - agent.started_at),
        Live("runtime.max_rss_bytes", "Peak resident memory of the agent process.", rss),
    ]
    try:
        tasks = trio.lowlevel.current_statistics().tasks_living
    except RuntimeError:  # read outside trio (a test calling summary() directly)
        return out
    return [*out, Live("runtime.tasks", "Live trio tasks.", tasks)]


def raft_live(node: RaftNode) -> list[Live]:
    """Raft's role, term and indexes; nothing while the node is not running."""
    try:
        st = node.status()
    except RaftError:
        return []
    core = st.core
    role = core.role
    out = [
        Live(
            "raft.state",
            "1 for the Raft role this server is in, 0 for the others.",
            label="state",
            by={r.value: float(r == role) for r in Role},
        ),
        Live("raft.leader", "1 on the Raft leader.", float(role == Role.LEADER)),
        Live("raft.term", "Current Raft term.", core.term),
        Live("raft.commit_index", "Highest Raft index known committed.", core.commit),
        Live("raft.applied_index", "Highest Raft index applied to the registry.", st.applied),
        Live("raft.last_log_index", "Last index in this server's Raft log.", core.last_index),
        Live("raft.last_snapshot_index", "Index of the last Raft snapshot.", st.snapshot_index),
        Live("raft.fsm_pending", "Committed entries not yet applied.", core.commit - st.applied),
        Live("raft.peers", "Servers in the Raft configuration.", len(core.configuration.servers)),
        Live(
            "raft.leader_changes",
            "Times this server saw a new leader.",
            node.leader_changes,
            counter=True,
        ),
        Live(
            "raft.snapshots_installed",
            "Snapshots installed from a leader.",
            st.snapshots_installed,
            counter=True,
        ),
    ]
    if st.last_contact is not None:
        contact = "Seconds since the leader was last heard (0 on the leader)."
        out.append(Live("raft.last_contact_seconds", contact, st.last_contact))
    return out


class CatalogCounts:
    """Catalog gauges, recounted only when the catalog or liveness tables changed
    (a count walks every node, instance and check)."""

    def __init__(self) -> None:
        self._key: tuple[int, int] | None = None
        self._counts: list[Live] = []

    def read(self, store: StateStore) -> list[Live]:
        key = (id(store), store.index_of("nodes", "services", "checks", "liveness"))
        if key != self._key:
            self._counts = catalog_live(store)
            self._key = key
        return self._counts


def catalog_live(store: StateStore) -> list[Live]:
    """Nodes, services, instances (by health) and checks (by status) in ``store``."""
    cat = store.catalog
    by_service: Mapping[Any, Mapping[Any, HealthCheck]] = cat.checks.index_map("service")
    empty: Mapping[Any, HealthCheck] = {}
    nodes = dict.fromkeys(_HEALTH, 0.0)
    for node in cat.nodes.values():
        nodes[aggregated_status(by_service.get((node.node, ""), empty).values())] += 1
    instances = dict.fromkeys(_HEALTH, 0.0)
    for svc in cat.services.values():
        checks = chain(
            by_service.get((svc.node, ""), empty).values(),
            by_service.get((svc.node, svc.id), empty).values(),
        )
        instances[aggregated_status(checks)] += 1
    checks_by = dict.fromkeys(_HEALTH, 0.0)
    for status, bucket in cat.checks.index_map("status").items():
        checks_by[str(status)] = float(len(bucket))
    liveness = dict.fromkeys(_LIVENESS, 0.0)
    for record in store.liveness.records.values():
        liveness[record.status] = liveness.get(record.status, 0.0) + 1
    return [
        Live("catalog.nodes", "Nodes in the catalog.", len(cat.nodes)),
        Live(
            "catalog.services", "Service names in the catalog.", len(cat.services.index_map("name"))
        ),
        Live("catalog.service_instances", "Service instances in the catalog.", len(cat.services)),
        Live(
            "catalog.nodes_by_health",
            "Nodes by the worst status of their node checks.",
            label="status",
            by=nodes,
        ),
        Live(
            "catalog.service_instances_by_health",
            "Service instances by the worst status of their node's and their own checks.",
            label="status",
            by=instances,
        ),
        Live("catalog.checks", "Health checks by status.", label="status", by=checks_by),
        Live(
            "liveness.nodes", "Nodes by the leader's liveness verdict.", label="status", by=liveness
        ),
    ]
