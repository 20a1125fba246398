"""The per-request metric families' state, in plain Python objects.

``meshd_requests_total`` and the three request histograms
(l7_metrics.py) are observed once per request by both proxies of a hop:
with prometheus-client's ``Counter``/``Histogram`` that is four children
with their own lock and value objects and a linear bucket search each
(~6-10 us per request per proxy). Here one dict lookup on the label tuple
finds a ``_Series`` (a counter, three bucket arrays and sums), ``bisect``
finds the buckets, and ``RequestSeries`` (a prometheus-client collector,
registered in the proxy's registry) builds the families only at scrape
time. The exposition is the one the prometheus-client metrics gave:
the same names, HELP and TYPE, label names and order, cumulative
``_bucket{le}``, ``_count``, ``_sum`` and ``_created`` (while
prometheus-client's process-wide switch exports it;
meshd/metrics/prometheus.py turns it off in the agent's process).

With ``--workers N`` (prometheus-client's multiprocess mode, chosen by
``PROMETHEUS_MULTIPROC_DIR`` before the first metric exists) only
prometheus-client's own values reach the files the supervisor sums, so
``ClientSeries`` keeps the prometheus-client metrics there.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence

import prometheus_client.metrics
from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# (name, HELP) of the four families, in the order they are exported.
REQUESTS = ("meshd_requests", "HTTP requests, by both reporters.")
DURATION = (
    "meshd_request_duration_milliseconds",
    "Time to answer: whole request read to response ready, in ms.",
)
REQUEST_BYTES = ("meshd_request_bytes", "Request body sizes in bytes.")
RESPONSE_BYTES = ("meshd_response_bytes", "Response body sizes in bytes.")


def multiprocess_mode() -> bool:
    """Whether prometheus-client writes its values to multiprocess files."""
    return values.ValueClass is not values.MutexValue


class _Series:
    """One label set's figures: bucket counts are per bucket (the last one
    is ``+Inf``), made cumulative when exported."""

    __slots__ = (
        "count",
        "created",
        "duration",
        "duration_sum",
        "req",
        "req_sum",
        "resp",
        "resp_sum",
    )

    def __init__(self, durations: int, sizes: int) -> None:
        self.count = 0
        self.created = time.time()
        self.duration = [0] * durations
        self.duration_sum = 0.0
        self.req = [0] * sizes
        self.req_sum = 0.0
        self.resp = [0] * sizes
        self.resp_sum = 0.0


class RequestSeries(Collector):
    """The four request families of ``labelnames``, one ``_Series`` per
    label tuple (the tuple's values in ``labelnames`` order)."""

    def __init__(
        self,
        labelnames: Sequence[str],
        duration_buckets: Sequence[float],
        bytes_buckets: Sequence[float],
    ) -> None:
        self.labelnames = tuple(labelnames)
        self.duration_bounds = tuple(float(b) for b in duration_buckets)
        self.bytes_bounds = tuple(float(b) for b in bytes_buckets)
        self.series: dict[tuple[str, ...], _Series] = {}

    def observe(
        self, labels: tuple[str, ...], duration_ms: float, request_bytes: int, response_bytes: int
    ) -> None:
        """Count one request: the counter and one observation per histogram."""
        s = self.series.get(labels)
        if s is None:
            s = self.series[labels] = _Series(
                len(self.duration_bounds) + 1, len(self.bytes_bounds) + 1
            )
        s.count += 1
        # prometheus-client's bucket is the first bound >= the value: bisect_left.
        s.duration[bisect_left(self.duration_bounds, duration_ms)] += 1
        s.duration_sum += duration_ms
        s.req[bisect_left(self.bytes_bounds, request_bytes)] += 1
        s.req_sum += request_bytes
        s.resp[bisect_left(self.bytes_bounds, response_bytes)] += 1
        s.resp_sum += response_bytes

    def describe(self) -> Iterable[Metric]:
        """The families without samples (the registry checks name clashes)."""
        yield Metric(REQUESTS[0], REQUESTS[1], "counter")
        for name, doc in (DURATION, REQUEST_BYTES, RESPONSE_BYTES):
            yield Metric(name, doc, "histogram")

    def collect(self) -> Iterable[Metric]:
        created = prometheus_client.metrics._use_created
        # list(): one C-level copy, so a request counted meanwhile cannot
        # change the dict under the loop.
        items = [
            (dict(zip(self.labelnames, k, strict=True)), s) for k, s in list(self.series.items())
        ]
        requests = Metric(REQUESTS[0], REQUESTS[1], "counter")
        for labels, s in items:
            requests.add_sample(REQUESTS[0] + "_total", labels, float(s.count))
            if created:
                requests.add_sample(REQUESTS[0] + "_created", labels, s.created)
        yield requests
        yield self._histogram(DURATION, self.duration_bounds, items, 0, created)
        yield self._histogram(REQUEST_BYTES, self.bytes_bounds, items, 1, created)
        yield self._histogram(RESPONSE_BYTES, self.bytes_bounds, items, 2, created)

    @staticmethod
    def _histogram(
        family: tuple[str, str],
        bounds: tuple[float, ...],
        items: list[tuple[dict[str, str], _Series]],
        which: int,
        created: bool,
    ) -> Metric:
        name, doc = family
        metric = Metric(name, doc, "histogram")
        les = [floatToGoString(b) for b in (*bounds, float("inf"))]  # type: ignore[no-untyped-call]
        for labels, s in items:
            buckets, total = (
                (s.duration, s.duration_sum),
                (s.req, s.req_sum),
                (s.resp, s.resp_sum),
            )[which]
            acc = 0.0
            for le, n in zip(les, buckets, strict=True):
                acc += n
                metric.add_sample(name + "_bucket", {**labels, "le": le}, acc)
            metric.add_sample(name + "_count", labels, acc)
            metric.add_sample(name + "_sum", labels, total)
            if created:
                metric.add_sample(name + "_created", labels, s.created)
        return metric


class ClientSeries:
    """The same families as prometheus-client metrics (multiprocess mode)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        labelnames: Sequence[str],
        duration_buckets: Sequence[float],
        bytes_buckets: Sequence[float],
    ) -> None:
        r, names = registry, labelnames
        self.requests = Counter(REQUESTS[0], REQUESTS[1], names, registry=r)
        self.families = (
            Histogram(*DURATION, names, buckets=duration_buckets, registry=r),
            Histogram(*REQUEST_BYTES, names, buckets=bytes_buckets, registry=r),
            Histogram(*RESPONSE_BYTES, names, buckets=bytes_buckets, registry=r),
        )
        self._children: dict[tuple[str, ...], tuple[Counter, Histogram, Histogram, Histogram]] = {}

    def observe(
        self, labels: tuple[str, ...], duration_ms: float, request_bytes: int, response_bytes: int
    ) -> None:
        found = self._children.get(labels)
        if found is None:
            duration, req, resp = (f.labels(*labels) for f in self.families)
            found = self._children[labels] = (self.requests.labels(*labels), duration, req, resp)
        found[0].inc()
        found[1].observe(duration_ms)
        found[2].observe(request_bytes)
        found[3].observe(response_bytes)
