"""The mesh graph's arithmetic: proxy snapshots, window deltas, quantiles, edges.

Pure and synchronous (times are parameters). A proxy pushes cumulative
per-edge counters under its own ID (connect/proxy/l7_stats.py); the agent
keeps a bounded ring of snapshots per proxy (``ProxySeries``) and answers
"what happened in the last W seconds" from the newest snapshot minus the
newest one taken at or before ``now - W``:

* a proxy started inside the window counts from zero (its cumulative
  counters are its whole life);
* requests/s: the delta over the time between the two snapshots while the
  proxy pushed through the whole window (Prometheus ``rate``); a proxy that
  started, stopped or has no older snapshot inside the window contributes
  delta / W, so a restarted proxy (two IDs) is not counted twice;
* p50/p99 come from the summed bucket deltas, interpolated linearly inside
  a bucket as Prometheus' ``histogram_quantile`` does.

``Delta`` records (one per reporter, source, destination, subset, mTLS) are
what an agent answers for its own proxies; ``build_edges`` sums them from
every agent and turns them into the graph's edges.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connect.proxy.l7_metrics import DURATION_BUCKETS_MS
from connect.proxy.l7_stats import edge_json

# The proxies' buckets (Istio's, as meshd_request_duration_milliseconds).
BUCKETS_MS: tuple[float, ...] = tuple(DURATION_BUCKETS_MS)
NBUCKETS = len(BUCKETS_MS) + 1  # the last one is +Inf
RECENT = 128  # snapshots kept as pushed (10+ min at 5 s)
COARSE = 128  # one snapshot per COARSE_SPACING beyond that (1 h+)
COARSE_SPACING = 30.0
MAX_EDGES_PER_PROXY = 4096
REPORTERS = ("source", "destination")
# The windows the mesh graph answers for (seconds): ?window= bounds and default.
MIN_WINDOW, MAX_WINDOW, DEFAULT_WINDOW = 1.0, 3600.0, 60.0

Key = tuple[str, str, str, str, bool]  # reporter, source, destination, subset, mtls


class StatsFormatError(ValueError):
    """A proxy-stats body that does not parse; ``field`` names where."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(slots=True)
class Counts:
    requests: int = 0
    errors: int = 0
    buckets: tuple[int, ...] = (0,) * NBUCKETS
    duration_sum_ms: float = 0.0
    connections: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0

    def minus(self, base: Counts) -> Counts:
        """The increase since ``base`` (a counter that went down counts from 0)."""
        if self.requests < base.requests or self.connections < base.connections:
            return self
        return Counts(
            self.requests - base.requests,
            max(0, self.errors - base.errors),
            tuple(x if x > 0 else 0 for x in map(operator.sub, self.buckets, base.buckets)),
            max(0.0, self.duration_sum_ms - base.duration_sum_ms),
            self.connections - base.connections,
            max(0, self.bytes_received - base.bytes_received),
            max(0, self.bytes_sent - base.bytes_sent),
        )

    def add(self, other: Counts) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.buckets = tuple(map(operator.add, self.buckets, other.buckets))
        self.duration_sum_ms += other.duration_sum_ms
        self.connections += other.connections
        self.bytes_received += other.bytes_received
        self.bytes_sent += other.bytes_sent


ZERO = Counts()


@dataclass(slots=True)
class Snapshot:
    time: float  # the agent's clock when it arrived
    counts: dict[Key, Counts]


@dataclass(slots=True)
class Delta:
    """One key's increase over a window, with its rates (summable across proxies)."""

    key: Key
    counts: Counts
    rps: float = 0.0
    cps: float = 0.0  # TCP connections per second

    def to_json(self) -> dict[str, Any]:
        return {
            **edge_json(self.key, self.counts),
            "RequestsPerSecond": self.rps,
            "ConnectionsPerSecond": self.cps,
        }


def _int(item: Mapping[str, Any], name: str, where: str) -> int:
    value = item.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StatsFormatError(f"{where}.{name}", "must be a non-negative integer")
    return value


def _str(item: Mapping[str, Any], name: str, where: str) -> str:
    value = item.get(name, "")
    if not isinstance(value, str) or len(value) > 256:
        raise StatsFormatError(f"{where}.{name}", "must be a string (at most 256 characters)")
    return value


def _number(item: Mapping[str, Any], name: str, where: str) -> float:
    value = item.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StatsFormatError(f"{where}.{name}", "must be a number")
    return float(value)


def parse_record(item: Any, where: str) -> tuple[Key, Counts]:
    """One edge of a push or of a peer's answer; raises ``StatsFormatError``."""
    if not isinstance(item, Mapping):
        raise StatsFormatError(where, "must be an object")
    reporter = _str(item, "Reporter", where)
    if reporter not in REPORTERS:
        raise StatsFormatError(f"{where}.Reporter", 'must be "source" or "destination"')
    source, destination = _str(item, "Source", where), _str(item, "Destination", where)
    if not source or not destination:
        raise StatsFormatError(where, "needs a Source and a Destination")
    buckets = item.get("Buckets", [0] * NBUCKETS)
    if not isinstance(buckets, list) or len(buckets) != NBUCKETS:
        raise StatsFormatError(f"{where}.Buckets", f"must be a list of {NBUCKETS} counts")
    counts = Counts(
        _int(item, "Requests", where),
        _int(item, "Errors", where),
        tuple(_int({"b": b}, "b", f"{where}.Buckets") for b in buckets),
        _number(item, "DurationSumMs", where),
        _int(item, "Connections", where),
        _int(item, "BytesReceived", where),
        _int(item, "BytesSent", where),
    )
    mtls = item.get("MTLS", True)
    if not isinstance(mtls, bool):
        raise StatsFormatError(f"{where}.MTLS", "must be a boolean")
    return (reporter, source, destination, _str(item, "Subset", where), mtls), counts


@dataclass(frozen=True, slots=True)
class Push:
    """A parsed ``PUT /v1/internal/telemetry/proxy-stats`` body."""

    id: str
    age: float  # seconds the proxy has run (its Time - StartedAt)
    counts: dict[Key, Counts]


def parse_push(body: Any) -> Push:
    """Parse and check a push; raises ``StatsFormatError`` naming the field."""
    if not isinstance(body, Mapping):
        raise StatsFormatError("body", "must be an object")
    proxy_id = _str(body, "ID", "body").strip()
    if not proxy_id:
        raise StatsFormatError("ID", "is required")
    age = _number(body, "Time", "body") - _number(body, "StartedAt", "body")
    if body.get("BucketsMs", list(BUCKETS_MS)) != list(BUCKETS_MS):
        raise StatsFormatError("BucketsMs", f"must be {list(BUCKETS_MS)}")
    edges = body.get("Edges", [])
    if not isinstance(edges, list) or len(edges) > MAX_EDGES_PER_PROXY:
        raise StatsFormatError("Edges", f"must be a list of at most {MAX_EDGES_PER_PROXY} edges")
    counts: dict[Key, Counts] = {}
    for i, item in enumerate(edges):
        key, c = parse_record(item, f"Edges[{i}]")
        counts[key] = c
    return Push(proxy_id, max(0.0, age), counts)


@dataclass
class ProxySeries:
    """The snapshots of one proxy process: recent ones as pushed, older ones
    thinned to one per ``COARSE_SPACING`` (bounded either way)."""

    started: float  # agent clock
    recent: deque[Snapshot] = field(default_factory=lambda: deque(maxlen=RECENT))
    coarse: deque[Snapshot] = field(default_factory=lambda: deque(maxlen=COARSE))

    def add(self, snap: Snapshot) -> None:
        if self.recent and snap.time < self.recent[-1].time:
            return  # out of order: the newer one stands
        if len(self.recent) == RECENT:
            oldest = self.recent[0]
            if not self.coarse or oldest.time - self.coarse[-1].time >= COARSE_SPACING:
                self.coarse.append(oldest)
        self.recent.append(snap)

    @property
    def last(self) -> Snapshot:
        return self.recent[-1]

    def base(self, at: float) -> Snapshot | None:
        """The newest snapshot taken at or before ``at``."""
        for ring in (self.recent, self.coarse):
            for snap in reversed(ring):
                if snap.time <= at:
                    return snap
        return None

    def oldest(self) -> Snapshot:
        return self.coarse[0] if self.coarse else self.recent[0]

    def window(self, now: float, window: float, fresh: float) -> list[Delta]:
        """Per key: the increase over ``[now - window, now]`` and its rates.
        ``fresh``: a last push older than this many seconds means the proxy stopped."""
        if not self.recent or self.last.time < now - window:
            return []
        start = now - window
        last = self.last
        base = self.base(start)
        whole = base is not None and last.time >= now - fresh
        if base is None:
            born = self.started >= start
            base = Snapshot(self.started, {}) if born else self.oldest()
            whole = not born and last.time >= now - fresh
        span = last.time - base.time
        out = []
        for key, counts in last.counts.items():
            d = counts.minus(base.counts.get(key, ZERO))
            per = span if whole and span > 0 else window
            out.append(Delta(key, d, d.requests / per, d.connections / per))
        return out


def quantile(q: float, counts: Sequence[int], bounds: Sequence[float] = BUCKETS_MS) -> float | None:
    """Prometheus' ``histogram_quantile`` over per-bucket ``counts`` (the last
    one ``+Inf``): None without observations; the highest finite bound when
    the rank falls in ``+Inf``; else linear interpolation inside the bucket."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    cum = 0
    for i, c in enumerate(counts):
        if i == len(bounds):  # +Inf
            return float(bounds[-1])
        if cum + c >= rank and c > 0:
            lower = 0.0 if i == 0 else float(bounds[i - 1])
            return lower + (float(bounds[i]) - lower) * (rank - cum) / c
        cum += c
    return float(bounds[-1])


def merge(deltas: Iterable[Delta]) -> dict[Key, Delta]:
    """Sum deltas (from several proxies or agents) by key."""
    out: dict[Key, Delta] = {}
    for d in deltas:
        have = out.get(d.key)
        if have is None:
            out[d.key] = Delta(d.key, dataclasses.replace(d.counts), d.rps, d.cps)
            continue
        have.counts.add(d.counts)
        have.rps += d.rps
        have.cps += d.cps
    return out


def delta_from_json(item: Any, where: str = "Records") -> Delta:
    key, counts = parse_record(item, where)
    rps = _number(item, "RequestsPerSecond", where)
    cps = _number(item, "ConnectionsPerSecond", where)
    return Delta(key, counts, rps, cps)


def _figures(counts: Counts, rps: float) -> dict[str, Any]:
    p50, p99 = quantile(0.5, counts.buckets), quantile(0.99, counts.buckets)
    return {
        "Requests": counts.requests,
        "Errors": counts.errors,
        "RequestsPerSecond": round(rps, 4),
        "ErrorRate": round(counts.errors / counts.requests, 6) if counts.requests else 0.0,
        "P50Ms": None if p50 is None else round(p50, 3),
        "P99Ms": None if p99 is None else round(p99, 3),
    }


def _subsets(deltas: Sequence[Delta]) -> list[dict[str, Any]]:
    by: dict[str, Delta] = {}
    for d in deltas:
        if d.key[3]:
            have = by.setdefault(d.key[3], Delta(d.key, Counts()))
            have.counts.add(d.counts)
            have.rps += d.rps
    return [{"Subset": name, **_figures(d.counts, d.rps)} for name, d in sorted(by.items())]


def _edge(source: str, destination: str, deltas: Sequence[Delta]) -> dict[str, Any]:
    """One graph edge from its deltas: the destination reporter's figures when
    it saw requests (or the source saw none), else the source's; subsets from
    the source side, which picks them."""
    by_reporter = {r: [d for d in deltas if d.key[0] == r] for r in REPORTERS}
    dest, src = by_reporter["destination"], by_reporter["source"]
    dest_requests = sum(d.counts.requests for d in dest)
    src_requests = sum(d.counts.requests for d in src)
    chosen = dest if dest and (dest_requests > 0 or src_requests == 0) else src
    total = Counts()
    rps = cps = 0.0
    for d in chosen:
        total.add(d.counts)
        rps += d.rps
        cps += d.cps
    http = any(d.counts.requests or sum(d.counts.buckets) for d in deltas)
    edge: dict[str, Any] = {
        "Source": source,
        "Destination": destination,
        "Protocol": "http" if http or not total.connections else "tcp",
        **_figures(total, rps),
        "MTLS": all(d.key[4] for d in chosen),
        "Reporter": chosen[0].key[0] if chosen else "",
        "Subsets": _subsets(src) or _subsets(dest),
    }
    if edge["Protocol"] == "tcp":
        edge["Connections"] = total.connections
        edge["ConnectionsPerSecond"] = round(cps, 4)
        edge["BytesSent"] = total.bytes_sent
        edge["BytesReceived"] = total.bytes_received
    return edge


def build_edges(deltas: Iterable[Delta]) -> list[dict[str, Any]]:
    """The graph's edges (without intentions), busiest first."""
    groups: dict[tuple[str, str], list[Delta]] = {}
    for d in merge(deltas).values():
        groups.setdefault((d.key[1], d.key[2]), []).append(d)
    edges = [_edge(s, t, ds) for (s, t), ds in groups.items()]
    edges.sort(
        key=lambda e: (-e["RequestsPerSecond"], -e["Requests"], e["Source"], e["Destination"])
    )
    return edges


def subset_figures(deltas: Iterable[Delta], service: str, subset: str) -> tuple[Counts, float]:
    """Everything sent to ``service``'s ``subset`` (source reporters: they pick
    the subset), summed over sources: counts and requests/s."""
    total, rps = Counts(), 0.0
    for d in merge(deltas).values():
        if d.key[0] == "source" and d.key[2] == service and d.key[3] == subset:
            total.add(d.counts)
            rps += d.rps
    return total, rps
