"""Reporting each L7 upstream's outlier ejections to the local agent.

Per sidecar (proxy service ID) the reporter pushes the current ejections of
its L7 upstreams with ``PUT /v1/agent/connect/proxy-ejections/<id>``:

- when they change: an upstream's detector ejected a host (``poke``), or an
  ejection's time ran out (the reporter wakes at the earliest ``until``);
- at least every ``REFRESH`` seconds, so the agent (which forgets a report
  after its TTL of 3 x REFRESH) keeps it while the proxy lives;
- never more often than once per ``MIN_INTERVAL`` (rate limit: a burst of
  ejections is one push).

Times go out as RFC 3339 wall-clock times: the detectors run on trio's
clock, so each is shifted by ``wall() - now`` at the time of the push.
A failed push is logged once per kind of failure and retried (in RETRY
seconds when the agent did not answer, at the refresh when it refused);
it never affects requests.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import trio

from .agent_client import AgentClient, path_segment
from .errors import AgentError, AgentResponseError
from .l7_outbound import L7Upstream
from .logfmt import emit

PATH = "/v1/agent/connect/proxy-ejections/"
MIN_INTERVAL = 0.5
REFRESH = 20.0
RETRY = 5.0


def _rfc3339(seconds: float) -> str:
    when = datetime.fromtimestamp(seconds, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Sidecar:
    service: str
    upstreams: list[L7Upstream] = field(default_factory=list)
    sent: tuple[Any, ...] | None = None
    sent_at: float = -math.inf


def upstream_ejections(up: L7Upstream, now: float, wall: float) -> list[dict[str, Any]]:
    """``up``'s current ejections as the agent's API takes them."""
    out: list[dict[str, Any]] = []
    for target, det in sorted(up.outliers.items()):
        for ej in det.ejections(now):
            endpoint = up.by_address.get(ej.host)
            out.append(
                {
                    "Target": target,
                    "Address": ej.host,
                    "ServiceID": endpoint.service_id if endpoint else "",
                    "Node": endpoint.node if endpoint else "",
                    "Reason": ej.reason,
                    "LastStatus": ej.last_status,
                    "EjectedAt": _rfc3339(wall - (now - ej.ejected_at)),
                    "Until": _rfc3339(wall + (ej.until - now)),
                    "TimesEjected": ej.times_ejected,
                }
            )
    return out


def _signature(sc: _Sidecar, now: float) -> tuple[Any, ...]:
    return tuple(
        (up.destination, target, ej.host, ej.until, ej.times_ejected)
        for up in sc.upstreams
        for target, det in sorted(up.outliers.items())
        for ej in det.ejections(now)
    )


def _earliest_until(sc: _Sidecar, now: float) -> float:
    return min(
        (
            ej.until
            for up in sc.upstreams
            for det in up.outliers.values()
            for ej in det.ejections(now)
        ),
        default=math.inf,
    )


class EjectionReporter:
    """Pushes the ejections of every registered sidecar's L7 upstreams."""

    def __init__(
        self,
        client: AgentClient,
        *,
        min_interval: float = MIN_INTERVAL,
        refresh: float = REFRESH,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.min_interval = min_interval
        self.refresh = refresh
        self.wall = wall
        self._sidecars: dict[str, _Sidecar] = {}
        self._wake = trio.Event()
        self._failed: str = ""

    def add(self, proxy_id: str, service: str, up: L7Upstream) -> None:
        """Report ``up`` as an upstream of sidecar ``proxy_id``."""
        sc = self._sidecars.setdefault(proxy_id, _Sidecar(service))
        sc.upstreams.append(up)
        up.on_ejection = self.poke
        self.poke()

    def remove(self, proxy_id: str, up: L7Upstream) -> None:
        sc = self._sidecars.get(proxy_id)
        if sc is None:
            return
        sc.upstreams = [u for u in sc.upstreams if u is not up]
        if not sc.upstreams:
            del self._sidecars[proxy_id]
        else:
            self.poke()

    def poke(self) -> None:
        """Something changed: push soon (within the rate limit)."""
        self._wake.set()

    def _next_wake(self, now: float) -> float:
        due = math.inf
        for sc in self._sidecars.values():
            due = min(due, sc.sent_at + self.refresh, _earliest_until(sc, now))
        return max(0.0, due - now)

    async def run(self) -> None:
        """Push on changes until cancelled."""
        while True:
            with trio.move_on_after(self._next_wake(trio.current_time())):
                await self._wake.wait()
            self._wake = trio.Event()
            await self.push_due()
            await trio.sleep(self.min_interval)

    async def push_due(self) -> None:
        """Push every sidecar whose ejections changed or whose refresh is due."""
        for proxy_id, sc in list(self._sidecars.items()):
            now = trio.current_time()
            if not any(up.is_http for up in sc.upstreams):
                continue
            sig = _signature(sc, now)
            if sig == sc.sent and now - sc.sent_at < self.refresh:
                continue
            wall = self.wall()
            body = {
                "Upstreams": [
                    {
                        "DestinationName": up.destination,
                        "Ejections": upstream_ejections(up, now, wall),
                    }
                    for up in sc.upstreams
                    if up.is_http
                ]
            }
            try:
                await self.client.request("PUT", PATH + path_segment(proxy_id), body=body)
            except AgentError as exc:
                if str(exc) != self._failed:
                    self._failed = str(exc)
                    emit(30, "ejections_report_failed", proxy=proxy_id, reason=str(exc))
                # An agent that answered (403, or 404 from one without the
                # endpoint) is asked again at the refresh; one that did not,
                # in RETRY seconds. A change pushes at once either way.
                answered = isinstance(exc, AgentResponseError)
                delay = self.refresh if answered else min(RETRY, self.refresh)
                sc.sent, sc.sent_at = None, now - self.refresh + delay
                continue
            self._failed = ""
            sc.sent, sc.sent_at = sig, now
