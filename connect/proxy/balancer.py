"""Choosing an upstream instance (sans-I/O).

Instances come from ``/v1/health/connect/<dest>?passing``: the healthy
proxies in front of the destination. Two policies:

* ``round_robin`` (default): each pick moves a cursor over the instances.
* ``least_conn``: the instance with the fewest connections this balancer
  has open to it; ties go round-robin so an idle pool is spread evenly.

A dial or handshake failure is retried on another instance: callers pass
the instances already tried as ``exclude``. Counts of open connections
survive an endpoint list update for the instances that remain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, order=True)
class Endpoint:
    """A proxy instance in front of a destination service."""

    host: str
    port: int
    node: str = ""
    service_id: str = ""

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def endpoints_from_health(entries: Sequence[Any]) -> list[Endpoint]:
    """Endpoints from a ``/v1/health/connect`` answer; malformed entries are skipped.

    Address is ``Service.Address``, falling back to ``Node.Address``.
    """
    found: set[Endpoint] = set()
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        svc = entry.get("Service")
        node = entry.get("Node")
        if not isinstance(svc, Mapping):
            continue
        node_map: Mapping[str, Any] = node if isinstance(node, Mapping) else {}
        host = svc.get("Address") or node_map.get("Address") or ""
        port = svc.get("Port")
        if not host or not isinstance(port, int) or isinstance(port, bool) or port <= 0:
            continue
        found.add(
            Endpoint(
                host=str(host),
                port=port,
                node=str(node_map.get("Node") or ""),
                service_id=str(svc.get("ID") or ""),
            )
        )
    return sorted(found)


class Balancer:
    """Picks instances of one upstream; not thread-safe (one trio run)."""

    def __init__(self, policy: str = "round_robin") -> None:
        if policy not in ("round_robin", "least_conn"):
            raise ValueError(f"unknown balance policy {policy!r}")
        self.policy = policy
        self._endpoints: list[Endpoint] = []
        self._active: dict[Endpoint, int] = {}
        self._cursor = 0

    @property
    def endpoints(self) -> list[Endpoint]:
        return list(self._endpoints)

    def set_endpoints(self, endpoints: Iterable[Endpoint]) -> None:
        """Replace the instances; open-connection counts of kept ones remain."""
        self._endpoints = sorted(set(endpoints))
        kept = {ep: self._active.get(ep, 0) for ep in self._endpoints}
        # Instances that left keep their count until released.
        for ep, count in self._active.items():
            if ep not in kept and count > 0:
                kept[ep] = count
        self._active = kept

    def active(self, endpoint: Endpoint) -> int:
        return self._active.get(endpoint, 0)

    def pick(self, exclude: Iterable[Endpoint] = ()) -> Endpoint | None:
        """The next instance not in ``exclude``, or None when none is left."""
        skip = set(exclude)
        candidates = [ep for ep in self._endpoints if ep not in skip]
        if not candidates:
            return None
        start = self._cursor % len(candidates)
        self._cursor += 1
        if self.policy == "round_robin":
            return candidates[start]
        rotated = candidates[start:] + candidates[:start]
        return min(rotated, key=lambda ep: self._active.get(ep, 0))

    def acquire(self, endpoint: Endpoint) -> None:
        """Count a connection open to ``endpoint``."""
        self._active[endpoint] = self._active.get(endpoint, 0) + 1

    def release(self, endpoint: Endpoint) -> None:
        """Count a connection to ``endpoint`` closed."""
        count = self._active.get(endpoint, 0) - 1
        if count > 0 or endpoint in self._endpoints:
            self._active[endpoint] = max(count, 0)
        else:
            self._active.pop(endpoint, None)
