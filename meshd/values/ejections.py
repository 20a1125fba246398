"""The outlier ejections local proxies report, kept in memory per proxy.

A proxy (connect/proxy/ejections.py) pushes, for one sidecar (its proxy
service ID), every L7 upstream's current ejections whenever they change and
at least every ``REFRESH`` seconds. The agent keeps the last report of each
proxy and forgets it when

- the proxy service is no longer registered on this agent (checked on every
  read, so a deregistration takes effect at once), or
- no report came for ``TTL`` seconds (the proxy is gone or cannot reach us).

An ejection whose ``Until`` has passed is left out of answers even before
the proxy's next report says so. Nothing here is replicated: ejections are
one proxy's local view (Envoy's outlier detection is per Envoy too).

Pure bookkeeping: the caller passes the monotonic time (TTL) and the wall
time (``Until``, seconds since the epoch) in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TTL = 60.0
# The proxy's refresh interval (connect/proxy/ejections.py REFRESH), a third of TTL.
REFRESH = 20.0
MAX_UPSTREAMS = 256
MAX_EJECTIONS = 1024

JSON = Any


@dataclass(frozen=True)
class Ejection:
    """One ejected instance of one target, as a proxy reported it."""

    target: str
    address: str
    service_id: str
    node: str
    reason: str
    last_status: int | None
    ejected_at: float  # wall seconds
    until: float  # wall seconds
    times_ejected: int

    def to_json(self) -> dict[str, JSON]:
        return {
            "Target": self.target,
            "Address": self.address,
            "ServiceID": self.service_id,
            "Node": self.node,
            "Reason": self.reason,
            "LastStatus": self.last_status,
            "EjectedAt": rfc3339(self.ejected_at),
            "Until": rfc3339(self.until),
            "TimesEjected": self.times_ejected,
        }


@dataclass(frozen=True)
class Report:
    """The last report of one proxy: its upstreams' ejections."""

    proxy_id: str
    service: str
    upstreams: Mapping[str, tuple[Ejection, ...]]
    received: float  # monotonic
    received_wall: float

    def to_json(self, wall: float) -> dict[str, JSON]:
        return {
            "ProxyID": self.proxy_id,
            "Service": self.service,
            "ReportedAt": rfc3339(self.received_wall),
            "Upstreams": [
                {
                    "DestinationName": dest,
                    "Ejections": [e.to_json() for e in ejections if e.until > wall],
                }
                for dest, ejections in sorted(self.upstreams.items())
            ],
        }


def rfc3339(seconds: float) -> str:
    """Seconds since the epoch as RFC 3339 UTC with milliseconds (Consul's time format)."""
    when = datetime.fromtimestamp(seconds, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(text: str) -> float:
    """RFC 3339 text to seconds since the epoch. Raises ValueError."""
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError("time zone missing")
    return when.timestamp()


class ProxyEjections:
    """Last report per proxy service ID; ``is_local`` says whether a proxy
    ID is still a registered connect proxy on this agent."""

    def __init__(self, is_local: Callable[[str], bool], *, ttl: float = TTL) -> None:
        self.is_local = is_local
        self.ttl = ttl
        self._reports: dict[str, Report] = {}

    def put(
        self,
        proxy_id: str,
        service: str,
        upstreams: Mapping[str, Iterable[Ejection]],
        *,
        now: float,
        wall: float,
    ) -> None:
        """Replace ``proxy_id``'s report."""
        ups = {dest: tuple(ejs) for dest, ejs in upstreams.items()}
        self._reports[proxy_id] = Report(proxy_id, service, ups, now, wall)

    def _live(self, now: float) -> dict[str, Report]:
        for pid, rep in list(self._reports.items()):
            if now - rep.received > self.ttl or not self.is_local(pid):
                del self._reports[pid]
        return self._reports

    def get(self, proxy_id: str, now: float) -> Report | None:
        """The live report of ``proxy_id``, or None."""
        return self._live(now).get(proxy_id)

    def all(self, now: float) -> list[Report]:
        """Every live report, sorted by proxy ID."""
        return [rep for _, rep in sorted(self._live(now).items())]

    def for_upstream(
        self, source: str, destination: str, now: float, wall: float
    ) -> dict[str, list[Ejection]]:
        """Target ID -> current ejections, from the local proxies of ``source``
        for their upstream ``destination`` (merged over proxies)."""
        out: dict[str, list[Ejection]] = {}
        for rep in self.all(now):
            if rep.service != source:
                continue
            for ej in rep.upstreams.get(destination, ()):
                if ej.until > wall:
                    out.setdefault(ej.target, []).append(ej)
        return out
