"""Per-request and per-connection metrics of the mesh (Istio's standard metrics).

Every HTTP request the proxy handles is reported once by the proxy that
handles it: ``reporter="source"`` on the caller's side (the L7 upstream
listener), ``reporter="destination"`` on the callee's side (the inbound
listener), like Istio (istio.io, reference/config/metrics):

* ``meshd_requests_total`` (counter) and ``meshd_request_duration_milliseconds``
  (histogram, Istio's buckets), ``meshd_request_bytes`` and
  ``meshd_response_bytes`` (histograms: percentiles of sizes, and their
  ``_sum`` is the byte total a counter would give) with the labels
  ``REQUEST_LABELS``;
* TCP listeners: ``meshd_tcp_connections_opened_total`` /
  ``meshd_tcp_connections_closed_total``, ``meshd_tcp_sent_bytes_total`` (to
  the accepted side) / ``meshd_tcp_received_bytes_total`` with ``TCP_LABELS``;
* the L7 cores' own counters: retries, outlier ejections, circuit-breaker
  overflows and injected faults (mirror copies are counted where they are
  sent, ``meshd_proxy_mirror_requests_total``).

Cardinality: every label value comes from a bounded set. Services and
subsets are catalog names; the method is folded into ``METHOD_CLASSES``;
``response_code`` is a status (at most ~60 in practice); ``response_flags``
a sorted, comma-joined set of Envoy short codes; paths, query strings,
addresses and instance IDs never become labels (they go to access logs).

``Exchange`` is one request's record; the driver calls
``Reporter.observe`` once per request and the handler marks flags and the
upstream instance on the record as it decides.

Switch: ``MESHD_PROXY_REQUEST_METRICS=0`` (or ``false``/``off``) in the
proxy's environment, read once when it starts, turns the per-request
families and the graph's edge aggregate off (the TCP families, the L7
cores' counters and access logs stay); it exists as the telemetry-off
baseline of bench/telemetry_bench.py.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter

from connect.l7.retry import Failure, Verdict

from .request_series import ClientSeries, RequestSeries, multiprocess_mode

if TYPE_CHECKING:
    from .l7_stats import EdgeCounts, EdgeStats

# Istio's default buckets for istio_request_duration_milliseconds.
DURATION_BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
# Istio's byte-size buckets (powers of ten up to 100 MB).
BYTES_BUCKETS = (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000)
METHOD_CLASSES = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
OTHER_METHOD = "other"
UNKNOWN = "unknown"
MUTUAL_TLS = "mutual_tls"
NO_FLAGS = "-"

REQUEST_LABELS = (
    "reporter",
    "source_service",
    "destination_service",
    "destination_subset",
    "request_method",
    "response_code",
    "response_flags",
    "connection_security_policy",
)
TCP_LABELS = ("reporter", "source_service", "destination_service", "connection_security_policy")
EDGE_LABELS = ("source_service", "destination_service")
REQUEST_METRICS_ENV = "MESHD_PROXY_REQUEST_METRICS"
HOT_LABELS = 1024  # label sets Reporter keeps looked up


def request_metrics_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """False when ``REQUEST_METRICS_ENV`` is ``0``, ``false``, ``no`` or ``off``."""
    raw = (os.environ if environ is None else environ).get(REQUEST_METRICS_ENV, "")
    return raw.strip().lower() not in ("0", "false", "no", "off")


class Flag:
    """Envoy's ``%RESPONSE_FLAGS%`` short codes (envoy access_log usage.rst)."""

    TIMEOUT = "UT"  # upstream request timeout (route or per-try)
    OVERFLOW = "UO"  # circuit breaker overflow
    NO_HEALTHY_UPSTREAM = "UH"
    NO_ROUTE = "NR"
    FAULT_ABORT = "FI"
    FAULT_DELAY = "DI"
    CONNECT_FAILURE = "UF"
    UPSTREAM_RESET = "UR"
    RETRY_LIMIT = "URX"
    # Envoy has no flag for an RBAC denial (it sets response code details
    # ``rbac_access_denied_matched_policy``); meshd reports ``RBAC`` here.
    RBAC_DENIED = "RBAC"


def method_class(method: str) -> str:
    """The method's label value: one of ``METHOD_CLASSES`` or ``other``."""
    upper = method.upper()
    return upper if upper in METHOD_CLASSES else OTHER_METHOD


def flags_label(flags: set[str]) -> str:
    return ",".join(sorted(flags)) if flags else NO_FLAGS


def count_request(edge: EdgeCounts, error: bool, duration_ms: float) -> None:
    """One finished request on a graph ``edge`` (l7_stats.py; ``error``:
    ``is_error`` of it)."""
    edge.requests += 1
    if error:
        edge.errors += 1
    edge.buckets[bisect_left(DURATION_BUCKETS_MS, duration_ms)] += 1
    edge.duration_sum_ms += duration_ms


class StandardMetrics:
    """The metric families above, registered in the proxy's registry."""

    def __init__(self, registry: CollectorRegistry, fast: bool | None = None) -> None:
        """``fast``: the plain-object series (default: unless prometheus-client
        is in multiprocess mode)."""
        r = registry
        # The four per-request families (request_series.py): plain objects
        # exported at scrape time, or prometheus-client's own metrics where
        # its multiprocess files (--workers N) must carry them.
        self.series: RequestSeries | ClientSeries
        if fast if fast is not None else not multiprocess_mode():
            self.series = RequestSeries(REQUEST_LABELS, DURATION_BUCKETS_MS, BYTES_BUCKETS)
            r.register(self.series)
        else:
            self.series = ClientSeries(r, REQUEST_LABELS, DURATION_BUCKETS_MS, BYTES_BUCKETS)
        self.per_request = request_metrics_enabled()  # read once, at the proxy's start
        # The mesh graph's per-edge aggregate (l7_stats.py), when the proxy pushes one.
        self.edges: EdgeStats | None = None
        self._tcp(r)
        self._resilience(r)

    def _tcp(self, r: CollectorRegistry) -> None:
        self.tcp_opened = Counter(
            "meshd_tcp_connections_opened", "TCP connections opened.", TCP_LABELS, registry=r
        )
        self.tcp_closed = Counter(
            "meshd_tcp_connections_closed", "TCP connections closed.", TCP_LABELS, registry=r
        )
        self.tcp_sent = Counter(
            "meshd_tcp_sent_bytes", "Bytes sent to the accepted side.", TCP_LABELS, registry=r
        )
        self.tcp_received = Counter(
            "meshd_tcp_received_bytes",
            "Bytes received from the accepted side.",
            TCP_LABELS,
            registry=r,
        )

    def _resilience(self, r: CollectorRegistry) -> None:
        self.retries = Counter(
            "meshd_retries", "Retry attempts sent upstream.", EDGE_LABELS, registry=r
        )
        self.ejections = Counter(
            "meshd_outlier_ejections",
            "Upstream instances ejected by outlier detection.",
            EDGE_LABELS,
            registry=r,
        )
        self.overflows = Counter(
            "meshd_circuit_breaker_overflows",
            "Requests refused by the circuit breaker (503 x-envoy-overloaded).",
            EDGE_LABELS,
            registry=r,
        )
        self.faults = Counter(
            "meshd_faults_injected",
            "Faults injected (kind abort or delay).",
            (*EDGE_LABELS, "kind"),
            registry=r,
        )

    def tcp(self, reporter: str, source: str, destination: str) -> TcpReport:
        """A bound recorder for one TCP connection's labels."""
        labels = (reporter, source or UNKNOWN, destination or UNKNOWN, MUTUAL_TLS)
        return TcpReport(self, labels)


@dataclass(slots=True)
class TcpReport:
    metrics: StandardMetrics
    labels: tuple[str, str, str, str]

    def opened(self) -> None:
        self.metrics.tcp_opened.labels(*self.labels).inc()
        if self.metrics.edges is not None:
            self.metrics.edges.tcp(self.labels[0], self.labels[1], self.labels[2], opened=1)

    def closed(self) -> None:
        self.metrics.tcp_closed.labels(*self.labels).inc()

    def bytes(self, received: int, sent: int) -> None:
        if received:
            self.metrics.tcp_received.labels(*self.labels).inc(received)
        if sent:
            self.metrics.tcp_sent.labels(*self.labels).inc(sent)
        if self.metrics.edges is not None and (received or sent):
            labels = self.labels
            self.metrics.edges.tcp(labels[0], labels[1], labels[2], received=received, sent=sent)


@dataclass(slots=True)
class Exchange:
    """One request as the proxy handled it (metrics labels and access log fields)."""

    reporter: str
    source: str
    destination: str
    method: str
    path: str
    headers: list[tuple[bytes, bytes]]
    request_bytes: int
    start: float  # monotonic seconds (trio clock)
    started_at: float  # wall-clock seconds, for the access log only
    subset: str = ""
    upstream: str = ""
    flags: set[str] = field(default_factory=set)
    retries: int = 0
    trace_id: str = ""
    status: int = 0
    response_bytes: int = 0
    duration_ms: float = 0.0

    def flag(self, code: str) -> None:
        self.flags.add(code)

    def labels(self) -> tuple[str, ...]:
        return (
            self.reporter,
            self.source or UNKNOWN,
            self.destination or UNKNOWN,
            self.subset or UNKNOWN,
            method_class(self.method),
            str(self.status),
            flags_label(self.flags),
            MUTUAL_TLS,
        )


class Response(Protocol):
    @property
    def status(self) -> int: ...
    @property
    def body(self) -> bytes: ...


R = TypeVar("R", bound=Response)


class AccessSink(Protocol):
    """Where finished exchanges are logged (access_log.py)."""

    def log(self, service: str, exchange: Exchange) -> None: ...


class Reporter:
    """Records the requests of one listener: ``reporter`` is ``source`` or
    ``destination``, ``service`` the local service whose access-log
    settings apply."""

    def __init__(
        self,
        metrics: StandardMetrics,
        reporter: str,
        service: str,
        access: AccessSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self.reporter = reporter
        self.service = service
        self.access = access
        self.clock = clock
        self.wall = wall
        # (reporter, source, destination, subset, method, status) of unflagged
        # requests -> (labels, edge): what _count looks up per request, once.
        self._hot: dict[tuple[str, str, str, str, str, int], tuple[tuple[str, ...], Any]] = {}
        self._hot_edges: EdgeStats | None = None

    def begin(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        request_bytes: int,
        source: str,
        destination: str,
    ) -> Exchange:
        # Positional, in the fields' order (keywords cost more per request).
        return Exchange(
            self.reporter,
            source,
            destination,
            method,
            target.partition("?")[0],
            headers,
            request_bytes,
            self.clock(),
            self.wall(),
        )

    def end(self, ex: Exchange, status: int, response_bytes: int) -> None:
        """Count ``ex`` (answered ``status`` with a ``response_bytes`` body)
        and log it when access logs are on; never raises on a sink error."""
        ex.status = status
        ex.response_bytes = response_bytes
        ex.duration_ms = max(0.0, (self.clock() - ex.start) * 1000.0)
        if self.metrics.per_request:
            self._count(ex, status, response_bytes)
        if self.access is not None:
            self.access.log(self.service, ex)

    def _count(self, ex: Exchange, status: int, response_bytes: int) -> None:
        edges = self.metrics.edges
        if edges is not self._hot_edges:  # (set once, when the proxy pushes its graph)
            self._hot, self._hot_edges = {}, edges
        if not ex.flags:  # nearly every request: its labels and edge looked up once
            key = (ex.reporter, ex.source, ex.destination, ex.subset, ex.method, status)
            hot = self._hot.get(key)
            if hot is None:
                hot = self._hot_entry(key, ex, edges)
            if hot is not None:
                labels, edge = hot
                self.metrics.series.observe(
                    labels, ex.duration_ms, ex.request_bytes, response_bytes
                )
                if edge is not None:  # l7_stats.is_error without flags:
                    count_request(edge, status >= 500 or status <= 0, ex.duration_ms)
                return
        self.metrics.series.observe(ex.labels(), ex.duration_ms, ex.request_bytes, response_bytes)
        if edges is not None:
            edges.request(
                ex.reporter,
                ex.source or UNKNOWN,
                ex.destination or UNKNOWN,
                ex.subset,
                status,
                ex.flags,
                ex.duration_ms,
            )

    def _hot_entry(
        self, key: tuple[str, str, str, str, str, int], ex: Exchange, edges: EdgeStats | None
    ) -> tuple[tuple[str, ...], EdgeCounts | None] | None:
        """The labels and edge of requests like ``ex`` (no flags), kept for
        the next ones; None when its edge is beyond the graph's limit (each
        request is counted as dropped there, by the general path)."""
        edge = None
        if edges is not None:
            edge = edges.request_edge(
                ex.reporter, ex.source or UNKNOWN, ex.destination or UNKNOWN, ex.subset
            )
            if edge is None:  # the general path counts each request's drop
                return None
        if len(self._hot) >= HOT_LABELS:  # raw methods are unbounded: start over
            self._hot.clear()
        hot = self._hot[key] = (ex.labels(), edge)
        return hot

    async def observe(self, ex: Exchange, handle: Callable[[Exchange], Awaitable[R]]) -> R:
        """``await handle(ex)``, then ``end`` with its answer. A handler that
        raises (the client went away, cancellation) records nothing."""
        resp = await handle(ex)
        self.end(ex, resp.status, len(resp.body))
        return resp

    # The L7 cores' events, on the exchange's edge.
    def retried(self, ex: Exchange) -> None:
        ex.retries += 1
        self.metrics.retries.labels(ex.source or UNKNOWN, ex.destination or UNKNOWN).inc()

    def ejected(self, ex: Exchange) -> None:
        self.metrics.ejections.labels(ex.source or UNKNOWN, ex.destination or UNKNOWN).inc()

    def overflowed(self, ex: Exchange) -> None:
        ex.flag(Flag.OVERFLOW)
        self.metrics.overflows.labels(ex.source or UNKNOWN, ex.destination or UNKNOWN).inc()

    def fault(self, ex: Exchange, kind: str) -> None:
        ex.flag(Flag.FAULT_ABORT if kind == "abort" else Flag.FAULT_DELAY)
        self.metrics.faults.labels(ex.source or UNKNOWN, ex.destination or UNKNOWN, kind).inc()


_FAILURE_FLAGS = {
    Failure.CONNECT_FAILURE: Flag.CONNECT_FAILURE,
    Failure.RESET: Flag.UPSTREAM_RESET,
    Failure.REFUSED_STREAM: Flag.UPSTREAM_RESET,
    Failure.PER_TRY_TIMEOUT: Flag.TIMEOUT,
}
_RETRY_LIMITS = frozenset({"retries exhausted", "retry budget exhausted"})


def mark_target(ex: Exchange, chain: Mapping[str, Any] | None, target_id: str | None) -> None:
    """The picked target's service and subset become the exchange's
    destination labels (a redirect or failover may leave the upstream)."""
    target = ((chain or {}).get("Targets") or {}).get(target_id or "")
    if isinstance(target, Mapping):
        ex.destination = str(target.get("Service") or ex.destination)
        ex.subset = str(target.get("ServiceSubset") or "")


class TargetMarks:
    """``mark_target`` for the requests of one upstream: each target's
    labels are read from the chain once per chain, not per request."""

    __slots__ = ("_chain", "_marks")

    def __init__(self) -> None:
        self._chain: Mapping[str, Any] | None = None
        # target id -> (Service, ServiceSubset), None for no such target.
        self._marks: dict[str, tuple[str, str] | None] = {}

    def mark(self, ex: Exchange, chain: Mapping[str, Any] | None, target_id: str | None) -> None:
        """What ``mark_target(ex, chain, target_id)`` does."""
        if chain is not self._chain:
            self._chain, self._marks = chain, {}
        key = target_id or ""
        if key in self._marks:
            found = self._marks[key]
        else:
            target = ((chain or {}).get("Targets") or {}).get(key)
            found = None
            if isinstance(target, Mapping):
                service = target.get("Service")
                found = (str(service) if service else "", str(target.get("ServiceSubset") or ""))
            self._marks[key] = found
        if found is not None:
            if found[0]:
                ex.destination = found[0]
            ex.subset = found[1]


def mark_attempt(ex: Exchange, verdict: Verdict, reason: str, failure: Failure | None) -> None:
    """Flags for an attempt's outcome once the retry core has ruled on it."""
    if verdict is Verdict.TIMEOUT:
        ex.flag(Flag.TIMEOUT)
        return
    if verdict is not Verdict.RESPOND:
        return
    if failure is not None:
        ex.flag(_FAILURE_FLAGS.get(failure, Flag.UPSTREAM_RESET))
    if reason in _RETRY_LIMITS:
        ex.flag(Flag.RETRY_LIMIT)
