"""The agent's mesh statistics: its local proxies' figures, merged across agents.

Local proxies ``PUT /v1/internal/telemetry/proxy-stats`` their cumulative
per-edge counters every few seconds (connect/proxy/l7_stats.py);
``MeshStats`` keeps a bounded ring of snapshots per proxy process
(meshd/values/mesh_window.py) and answers for a window:

* ``local(window)``: this agent's proxies' deltas (what a peer asks for,
  ``GET /v1/internal/telemetry/proxy-stats?window=``);
* ``graph(window, service)``: the whole mesh graph of
  ``GET /v1/internal/ui/mesh-graph``: the deltas of every live member's
  agent (asked concurrently, as traces.ask_peers does; an agent that does
  not answer within its timeout is left out), turned into edges with each
  edge's intention decision (the decision service-topology reports) and
  the nodes' health and versions from the catalog;
* ``subset_stats(service, subset, window)``: what the canary controller
  reads.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from ..durations import format_duration
from ..intention_decision import decision
from ..peers import ask_peers
from ..values.mesh_window import (
    MAX_WINDOW,
    Delta,
    ProxySeries,
    Push,
    Snapshot,
    StatsFormatError,
    build_edges,
    delta_from_json,
    quantile,
    subset_figures,
)
from .wire import ReadOptions

PEER_PATH = "/v1/internal/telemetry/proxy-stats"
MAX_PROXIES = 1024
FRESH = 20.0  # a proxy whose last push is older than this has stopped (4 pushes missed)
EXPIRE = MAX_WINDOW + 120.0  # a series silent this long is forgotten
CONSUL_SERVICE = "consul"
_NOW_READ = ReadOptions(0, 0.0)


class GraphPorts(Protocol):
    """What ``MeshStats`` needs of the agent."""

    node_name: str

    async def read(self, name: str, args: Mapping[str, Any], opts: ReadOptions) -> Any: ...

    async def members(self) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class SubsetStats:
    requests: int
    errors: int
    p99_ms: float | None
    rps: float
    error_rate: float  # 0..1, 0 when requests == 0


def _rfc3339(now: float) -> str:
    return datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _versions(rows: Sequence[Mapping[str, Any]]) -> set[str]:
    out: set[str] = set()
    for row in rows:
        svc = row.get("Service") or {}
        version = (svc.get("Meta") or {}).get("version")
        if isinstance(version, str) and version:
            out.add(version)
        for tag in svc.get("Tags") or []:
            name, sep, value = str(tag).partition("=")
            if sep and name == "version" and value:
                out.add(value)
    return out


def _node(name: str, rows: Sequence[Mapping[str, Any]], seen: set[str]) -> dict[str, Any]:
    statuses = [str(c.get("Status") or "") for r in rows for c in r.get("Checks") or []]
    kinds = {str((r.get("Service") or {}).get("Kind") or "") for r in rows}
    return {
        "Name": name,
        "Kind": min(kinds) if kinds else "",
        "Versions": sorted(seen | _versions(rows)),
        "Instances": len(rows),
        "ChecksPassing": statuses.count("passing"),
        "ChecksWarning": statuses.count("warning"),
        "ChecksCritical": statuses.count("critical"),
    }


class MeshStats:
    """One per agent: ingest local pushes, answer windows, build the graph."""

    def __init__(
        self,
        ports: GraphPorts,
        http_port: Callable[[], int],
        default_allow: Callable[[], bool],
        clock: Callable[[], float] = trio.current_time,
        wall: Callable[[], float] | None = None,
        own_token: Callable[[], str] = lambda: "",
    ) -> None:
        self.ports = ports
        self.own_token = own_token
        self.http_port = http_port
        self.default_allow = default_allow
        self.clock = clock
        self.wall = wall or time.time
        self.series: dict[str, ProxySeries] = {}
        self.received = 0
        self.refused = 0  # pushes of new proxies beyond MAX_PROXIES

    def ingest(self, push: Push) -> bool:
        """Keep one proxy snapshot; False when too many proxies are tracked."""
        now = self.clock()
        self._expire(now)
        series = self.series.get(push.id)
        if series is None:
            if len(self.series) >= MAX_PROXIES and not self._evict_idle():
                self.refused += 1
                return False
            series = self.series[push.id] = ProxySeries(started=now - push.age)
        # On the proxy's own time line (its age at the snapshot), so that
        # transit delays do not stretch or shrink the span a rate divides by.
        at = min(now, series.started + push.age)
        series.add(Snapshot(max(at, series.last.time) if series.recent else at, push.counts))
        self.received += 1
        return True

    def _evict_idle(self) -> bool:
        """Make room by forgetting a proxy that never reported an edge."""
        for pid, s in self.series.items():
            if not s.last.counts:
                del self.series[pid]
                return True
        return False

    def _expire(self, now: float) -> None:
        gone = [pid for pid, s in self.series.items() if s.last.time < now - EXPIRE]
        for pid in gone:
            del self.series[pid]

    def local(self, window: float) -> list[Delta]:
        """This agent's proxies' deltas over the last ``window`` seconds."""
        now = self.clock()
        out: list[Delta] = []
        for series in self.series.values():
            out += series.window(now, window, FRESH)
        return out

    async def deltas(self, window: float, token: str | None = None) -> list[Delta]:
        """Every agent's deltas (this one's and its live peers'). ``token``:
        what the peers are asked with (None: this agent's own token, for
        internal callers; an API request passes its own, even empty)."""
        out = self.local(window)
        members = await self.ports.members()
        query = {"window": format_duration(window)}
        secret = self.own_token() if token is None else token
        answers = await ask_peers(
            members, self.ports.node_name, self.http_port(), PEER_PATH, query, secret
        )
        for answer in answers:
            records = answer.get("Records") if isinstance(answer, dict) else None
            for i, item in enumerate(records if isinstance(records, list) else []):
                try:
                    out.append(delta_from_json(item, f"Records[{i}]"))
                except StatsFormatError:
                    continue  # a peer of another version: its part is left out
        return out

    async def subset_stats(
        self, service: str, subset: str, window: float, token: str | None = None
    ) -> SubsetStats:
        """Requests sent to ``service``'s ``subset`` in the last ``window`` seconds."""
        counts, rps = subset_figures(await self.deltas(window, token), service, subset)
        n = counts.requests
        return SubsetStats(
            requests=n,
            errors=counts.errors,
            p99_ms=quantile(0.99, counts.buckets),
            rps=rps,
            error_rate=counts.errors / n if n else 0.0,
        )

    async def graph(
        self,
        window: float,
        service: str | None = None,
        *,
        token: str | None = None,
        allowed: Callable[[str], bool] | None = None,
    ) -> dict[str, Any]:
        """The mesh graph (the API's JSON); with ``allowed``, services it
        refuses are left out and ``FilteredByACLs`` says so."""
        deltas = await self.deltas(window, token)
        if service:
            deltas = [d for d in deltas if service in (d.key[1], d.key[2])]
        ok = allowed or (lambda _name: True)
        readable = [d for d in deltas if ok(d.key[1]) and ok(d.key[2])]
        filtered = len(readable) != len(deltas)
        kept = build_edges(readable)
        intentions = await self._read("intentions.list", {}) or []
        for edge in kept:
            edge["Intention"] = _decision(
                intentions, edge["Source"], edge["Destination"], self.default_allow()
            )
        nodes, hidden = await self._nodes(kept, service, ok)
        return {
            "Window": format_duration(window),
            "GeneratedAt": _rfc3339(self.wall()),
            "Nodes": nodes,
            "Edges": kept,
            "FilteredByACLs": filtered or hidden,
        }

    async def _read(self, name: str, args: Mapping[str, Any]) -> Any:
        result = await self.ports.read(name, args, _NOW_READ)
        return result.value

    async def _nodes(
        self, edges: Sequence[Mapping[str, Any]], service: str | None, ok: Callable[[str], bool]
    ) -> tuple[list[dict[str, Any]], bool]:
        names = {e["Source"] for e in edges} | {e["Destination"] for e in edges}
        hidden = False
        if service:
            names.add(service)
        else:
            # The read is filtered by the request's token (ACL context): what
            # it leaves out is hidden too, though never seen by ``ok``.
            services = await self.ports.read("catalog.services", {}, _NOW_READ)
            hidden = services.filtered
            names |= set(services.value or {}) - {CONSUL_SERVICE}
        seen: dict[str, set[str]] = {}
        for e in edges:
            seen.setdefault(e["Destination"], set()).update(s["Subset"] for s in e["Subsets"])
        out: list[dict[str, Any]] = []
        for name in sorted(names):
            if not ok(name):
                hidden = True
                continue
            rows = await self._read("health.service", {"name": name}) or []
            if any((r.get("Service") or {}).get("Kind") == "connect-proxy" for r in rows):
                continue  # a sidecar: its figures are its service's
            out.append(_node(name, rows, seen.get(name, set())))
        return out, hidden


def _decision(
    intentions: Sequence[Mapping[str, Any]], source: str, destination: str, default_allow: bool
) -> dict[str, Any]:
    full = decision(intentions, source, destination, default_allow)
    return {k: full[k] for k in ("Allowed", "HasPermissions", "DefaultAllow", "HasExact")}
