"""The mesh graph's arithmetic (meshd/values/mesh_window.py): window deltas
from proxy snapshots, rates, Prometheus-style quantiles, edges from both
reporters. Pure: times are numbers."""

from __future__ import annotations

import pytest

from connect.proxy.l7_metrics import DURATION_BUCKETS_MS
from connect.proxy.l7_stats import EdgeStats, is_error
from meshd.values.mesh_window import (
    BUCKETS_MS,
    NBUCKETS,
    Counts,
    Delta,
    ProxySeries,
    Snapshot,
    StatsFormatError,
    build_edges,
    parse_push,
    quantile,
    subset_figures,
)

WEB_API = ("source", "web", "api", "v1", True)


def counts(requests: int, errors: int = 0, bucket: int = 2) -> Counts:
    b = [0] * NBUCKETS
    b[bucket] = requests
    return Counts(requests, errors, tuple(b))


def series(points: list[tuple[float, int]], started: float = 0.0) -> ProxySeries:
    s = ProxySeries(started=started)
    for t, n in points:
        s.add(Snapshot(t, {WEB_API: counts(n)}))
    return s


def test_the_proxy_buckets_are_the_graphs() -> None:
    assert tuple(DURATION_BUCKETS_MS) == BUCKETS_MS


def test_delta_is_newest_minus_the_snapshot_at_the_window_start() -> None:
    # a push every 5 s, 10 requests/s steady
    s = series([(t, t * 10) for t in range(0, 101, 5)])
    [d] = s.window(now=100.0, window=30.0, fresh=20.0)
    assert d.counts.requests == 300  # 1000 - 700 (the snapshot at t=70)
    assert d.rps == pytest.approx(10.0)


def test_rate_uses_the_snapshots_span_not_the_window_when_pushes_are_late() -> None:
    s = series([(0.0, 0), (12.0, 120), (21.0, 210)])
    [d] = s.window(now=23.0, window=10.0, fresh=20.0)
    assert (d.counts.requests, d.rps) == (90, pytest.approx(10.0))


def test_a_proxy_born_inside_the_window_counts_from_zero_over_the_window() -> None:
    s = series([(55.0, 40), (60.0, 100)], started=52.0)
    [d] = s.window(now=60.0, window=30.0, fresh=20.0)
    assert d.counts.requests == 100 and d.rps == pytest.approx(100 / 30)


def test_restart_is_two_series_and_not_counted_twice() -> None:
    old = series([(0.0, 0), (10.0, 100), (20.0, 200)])  # stopped at 20
    new = series([(25.0, 50), (30.0, 100)], started=21.0)
    deltas = old.window(30.0, 30.0, 5.0) + new.window(30.0, 30.0, 5.0)
    assert sum(d.counts.requests for d in deltas) == 300
    assert sum(d.rps for d in deltas) == pytest.approx(10.0)


def test_a_series_silent_for_the_whole_window_contributes_nothing() -> None:
    assert series([(0.0, 0), (10.0, 100)]).window(100.0, 30.0, 20.0) == []


def test_an_edge_first_seen_later_counts_from_zero_at_the_earlier_snapshot() -> None:
    s = ProxySeries(started=0.0)
    s.add(Snapshot(0.0, {}))
    s.add(Snapshot(10.0, {WEB_API: counts(50)}))
    [d] = s.window(10.0, 10.0, 20.0)
    assert (d.counts.requests, d.rps) == (50, 5.0)


def test_old_snapshots_are_thinned_and_bounded() -> None:
    s = series([(float(t), t) for t in range(0, 5000, 5)])
    assert len(s.recent) + len(s.coarse) <= 256
    [d] = s.window(4995.0, 3600.0, 20.0)  # the base is a coarse snapshot near t=1395
    assert d.counts.requests == pytest.approx(3600, abs=35)


def test_quantile_interpolates_inside_the_bucket_like_histogram_quantile() -> None:
    b = [0] * NBUCKETS
    b[2], b[3] = 50, 50  # 50 in (1, 5], 50 in (5, 10]
    assert quantile(0.5, b) == pytest.approx(5.0)
    assert quantile(0.25, b) == pytest.approx(1 + 4 * 25 / 50)
    assert quantile(0.99, b) == pytest.approx(5 + 5 * 49 / 50)
    first = [10] + [0] * (NBUCKETS - 1)
    assert quantile(0.5, first) == pytest.approx(0.25)  # (0, 0.5]
    inf = [0] * (NBUCKETS - 1) + [3]
    assert quantile(0.99, inf) == 10000.0  # +Inf: the highest finite bound
    assert quantile(0.5, [0] * NBUCKETS) is None


def test_errors_are_5xx_and_the_proxys_own_failures() -> None:
    assert is_error(503, set()) and is_error(0, set())
    assert is_error(504, {"UT"}) and is_error(404, {"NR"}) and is_error(503, {"UO"})
    assert not is_error(200, set()) and not is_error(403, {"RBAC"}) and not is_error(404, set())


def test_edges_prefer_the_destination_reporter_and_take_subsets_from_the_source() -> None:
    deltas = [
        Delta(("source", "web", "api", "v1", True), counts(8, 1), 8.0),
        Delta(("source", "web", "api", "v2", True), counts(2, 0, bucket=4), 2.0),
        Delta(("source", "web", "api", "", True), counts(1, 1), 1.0),  # 503 no healthy upstream
        Delta(("destination", "web", "api", "", True), counts(10, 1), 10.0),
        Delta(("source", "api", "db", "", True), counts(4), 4.0),  # no destination side
    ]
    web_api, api_db = build_edges(deltas)
    assert (web_api["Source"], web_api["Destination"], web_api["Reporter"]) == (
        "web",
        "api",
        "destination",
    )
    assert (web_api["Requests"], web_api["Errors"], web_api["ErrorRate"]) == (10, 1, 0.1)
    assert web_api["RequestsPerSecond"] == 10.0 and web_api["MTLS"] is True
    assert [(s["Subset"], s["Requests"]) for s in web_api["Subsets"]] == [("v1", 8), ("v2", 2)]
    assert web_api["Subsets"][1]["P50Ms"] == pytest.approx(17.5)
    assert (api_db["Reporter"], api_db["Requests"], api_db["Protocol"]) == ("source", 4, "http")
    total, rps = subset_figures(deltas, "api", "v1")
    assert (total.requests, total.errors, rps) == (8, 1, 8.0)


def test_tcp_edges_report_connections_and_bytes_and_no_quantiles() -> None:
    d = Delta(("destination", "web", "db", "", True), Counts(connections=3, bytes_sent=90), cps=0.3)
    [edge] = build_edges([d])
    assert edge["Protocol"] == "tcp" and edge["Connections"] == 3 and edge["BytesSent"] == 90
    assert edge["P50Ms"] is None and edge["P99Ms"] is None and edge["Requests"] == 0


def test_a_proxy_snapshot_round_trips_through_the_push_parser() -> None:
    stats = EdgeStats(wall=iter([100.0, 130.0]).__next__)
    for status, ms in ((200, 3.0), (503, 30.0), (200, 20000.0)):
        stats.request("source", "web", "api", "v1", status, set(), ms)
    stats.tcp("destination", "x", "db", opened=1, received=5, sent=7)
    push = parse_push(stats.snapshot())
    assert push.id == stats.id and push.age == 30.0
    c = push.counts[("source", "web", "api", "v1", True)]
    assert (c.requests, c.errors, c.buckets[2], c.buckets[5], c.buckets[-1]) == (3, 1, 1, 1, 1)
    tcp = push.counts[("destination", "x", "db", "", True)]
    assert (tcp.connections, tcp.bytes_received, tcp.bytes_sent) == (1, 5, 7)


NEGATIVE = {"Reporter": "source", "Source": "a", "Destination": "b", "Requests": -1}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({"StartedAt": 1, "Time": 2}, "ID"),
        ({"ID": "p", "Edges": {}}, "Edges"),
        ({"ID": "p", "Edges": [{"Reporter": "x", "Source": "a", "Destination": "b"}]}, "Reporter"),
        ({"ID": "p", "Edges": [{"Reporter": "source", "Source": "a"}]}, "Edges[0]"),
        ({"ID": "p", "Edges": [NEGATIVE]}, "Requests"),
        ({"ID": "p", "BucketsMs": [1, 2]}, "BucketsMs"),
    ],
)
def test_bad_pushes_name_the_field(body: object, field: str) -> None:
    with pytest.raises(StatsFormatError) as err:
        parse_push(body)
    assert field in err.value.field
