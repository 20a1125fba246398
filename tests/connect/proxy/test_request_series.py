"""The plain-object request series (request_series.py) export exactly what
the prometheus-client metrics they replaced exported."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import prometheus_client.metrics
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from connect.proxy.l7_metrics import (
    BYTES_BUCKETS,
    DURATION_BUCKETS_MS,
    REQUEST_LABELS,
    Exchange,
    Reporter,
    StandardMetrics,
)

ROOT = Path(__file__).resolve().parents[3]
FAMILIES = (
    "meshd_requests",
    "meshd_request_duration_milliseconds",
    "meshd_request_bytes",
    "meshd_response_bytes",
)


class OldStandard:
    """A copy of the families as l7_metrics.py defined them before (the
    reference), fed the label tuple like ``Reporter._count`` fed them."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "meshd_requests", "HTTP requests, by both reporters.", REQUEST_LABELS, registry=r
        )
        self.duration = Histogram(
            "meshd_request_duration_milliseconds",
            "Time to answer: whole request read to response ready, in ms.",
            REQUEST_LABELS,
            buckets=DURATION_BUCKETS_MS,
            registry=r,
        )
        self.request_bytes = Histogram(
            "meshd_request_bytes",
            "Request body sizes in bytes.",
            REQUEST_LABELS,
            buckets=BYTES_BUCKETS,
            registry=r,
        )
        self.response_bytes = Histogram(
            "meshd_response_bytes",
            "Response body sizes in bytes.",
            REQUEST_LABELS,
            buckets=BYTES_BUCKETS,
            registry=r,
        )

    def count(self, ex: Exchange) -> None:
        labels = ex.labels()
        self.requests.labels(*labels).inc()
        self.duration.labels(*labels).observe(ex.duration_ms)
        self.request_bytes.labels(*labels).observe(ex.request_bytes)
        self.response_bytes.labels(*labels).observe(ex.response_bytes)


class Clock:
    now = 50.0

    def __call__(self) -> float:
        return self.now


# duration ms (on, below and above bucket bounds, past the last), request
# and response body sizes (0, on bounds, past 1e8), status, method, flags.
REQUESTS: list[tuple[float, int, int, int, str, set[str]]] = [
    (0.0, 0, 0, 200, "GET", set()),
    (0.5, 1, 10, 200, "GET", set()),
    (0.75, 10, 11, 200, "GET", set()),
    (1.0, 100, 99, 200, "get", set()),
    (5.0, 150, 1000, 404, "POST", set()),
    (12.5, 0, 100_000, 503, "PROPFIND", {"UO"}),
    (2500.0, 2_000, 10_000_000, 504, "PUT", {"UT", "URX"}),
    (10_000.0, 1, 100_000_000, 200, "DELETE", set()),
    (123_456.0, 0, 300_000_000, 200, "GET", set()),
    (3.0, 7, 7, 403, "GET", {"RBAC"}),
    (0.25, 0, 64, 200, "GET", set()),
]


def _feed(new: StandardMetrics, old: OldStandard) -> None:
    """Each request through the real ``Reporter`` (new; ``end`` is what
    ``observe`` calls with the answer) and the copy (old), on both
    reporters and two destinations/subsets."""
    clock = Clock()
    reporters = [
        Reporter(new, "source", "web", clock=clock),
        Reporter(new, "destination", "api", clock=clock),
    ]
    for i, (ms, req, resp, status, method, flags) in enumerate(REQUESTS * 2):
        rep = reporters[i % 2]
        ex = rep.begin(method, f"/u/{i}?q=1", [], req, "web", "api" if i % 3 else "")
        clock.now += ms / 1000.0
        ex.subset = "v2" if i % 4 == 0 else ""
        ex.flags |= flags
        rep.end(ex, status, resp)
        old.count(ex)


def _families(text: str) -> dict[str, tuple[str, str, list[tuple[Any, ...]]]]:
    """name -> (type, HELP, sorted samples); ``_created`` values masked."""
    out = {}
    for f in text_string_to_metric_families(text):
        samples = sorted(
            (
                s.name,
                tuple(sorted(s.labels.items())),
                -1.0 if s.name.endswith("_created") else s.value,
            )
            for s in f.samples
        )
        out[f.name] = (f.type, f.documentation, samples)
    return out


@pytest.fixture(params=[True, False], ids=["created", "no-created"])
def created(request: pytest.FixtureRequest) -> Iterator[bool]:
    before = prometheus_client.metrics._use_created
    prometheus_client.metrics._use_created = request.param
    try:
        yield request.param
    finally:
        prometheus_client.metrics._use_created = before


@pytest.mark.parametrize("fast", [True, False], ids=["plain-objects", "client-metrics"])
def test_scrape_matches_the_prometheus_client_families(created: bool, fast: bool) -> None:
    registry = CollectorRegistry()
    new, old = StandardMetrics(registry, fast=fast), OldStandard()
    assert new.per_request
    _feed(new, old)
    assert type(new.series).__name__ == ("RequestSeries" if fast else "ClientSeries")
    got = _families(generate_latest(registry).decode())
    want = _families(generate_latest(old.registry).decode())
    assert {k: v for k, v in got.items() if k.startswith(FAMILIES)} == want
    series = [s for s in want["meshd_requests"][2] if s[0] == "meshd_requests_total"]
    assert len(series) >= 12 and sum(s[2] for s in series) == 2 * len(REQUESTS)
    assert [k for k in want if k.endswith("_created")] == (
        [f + "_created" for f in FAMILIES] if created else []
    )


def test_scrape_text_is_byte_identical_without_created() -> None:
    before = prometheus_client.metrics._use_created
    prometheus_client.metrics.disable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        registry = CollectorRegistry()
        new, old = StandardMetrics(registry, fast=True), OldStandard()
        _feed(new, old)
        text = generate_latest(registry).decode()
        assert text.startswith(generate_latest(old.registry).decode())
        assert "meshd_request_duration_milliseconds_bucket{" in text
    finally:
        prometheus_client.metrics._use_created = before


def test_workers_mode_keeps_prometheus_client_metrics(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR (--workers N) the families reach the
    files the supervisor sums."""
    script = (
        "import trio\n"
        "from connect.proxy.metrics import ProxyMetrics, multiprocess_registry\n"
        "from connect.proxy.l7_metrics import Reporter\n"
        "from prometheus_client import generate_latest\n"
        "m = ProxyMetrics()\n"
        "rep = Reporter(m.standard, 'source', 'web')\n"
        "class R:\n    status, body = 200, b'ok'\n"
        "async def h(ex):\n    return R()\n"
        "for _ in range(3):\n"
        "    trio.run(rep.observe, rep.begin('GET', '/', [], 0, 'web', 'api'), h)\n"
        "print(type(m.standard.series).__name__)\n"
        "print(generate_latest(multiprocess_registry()).decode())\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.splitlines()[0] == "ClientSeries"
    line = next(ln for ln in out.splitlines() if ln.startswith("meshd_requests_total{"))
    assert float(line.rsplit(" ", 1)[1]) == 3.0
    assert "meshd_request_duration_milliseconds_count{" in out
