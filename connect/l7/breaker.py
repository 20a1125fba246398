"""Circuit breakers: Consul's ``Limits`` as Envoy's cluster thresholds.

Rules (Consul ``UpstreamLimits`` -> Envoy ``circuit_breakers.thresholds``):

- MaxConnections -> ``max_connections``, MaxPendingRequests ->
  ``max_pending_requests``, MaxConcurrentRequests -> ``max_requests``. An
  unset limit keeps Envoy's default of 1024.
- Limits are counters per upstream cluster in this proxy (uncoordinated
  across proxies, as Envoy's). ``try_*`` either takes a slot and answers
  ``OK`` or leaves the counters alone and answers an overflow; every taken
  slot is given back with the matching ``release_*``.
- On overflow the driver answers at once (never queues): 503, header
  ``x-envoy-overloaded: true`` and Envoy's body below.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

ENVOY_DEFAULT_LIMIT = 1024
OVERLOADED_STATUS = 503
OVERLOADED_HEADERS: tuple[tuple[str, str], ...] = (("x-envoy-overloaded", "true"),)
OVERFLOW_BODY = "upstream connect error or disconnect/reset before headers. reset reason: overflow"


@dataclass(frozen=True)
class Limits:
    """Consul's ``UpstreamLimits``; None = Envoy's default (1024)."""

    max_connections: int | None = None
    max_pending_requests: int | None = None
    max_concurrent_requests: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_pending_requests", "max_concurrent_requests"):
            value = getattr(self, name)
            if value is not None and value < 0:
                label = name.replace("max_", "max ").replace("_", " ")
                raise ValueError(f"{label} cannot be negative")


class Admission(enum.Enum):
    OK = "ok"
    CONNECTION_OVERFLOW = "upstream_cx_overflow"
    PENDING_OVERFLOW = "upstream_rq_pending_overflow"
    REQUEST_OVERFLOW = "upstream_rq_overflow"

    @property
    def overflow(self) -> bool:
        return self is not Admission.OK


def _limit(value: int | None) -> int:
    return ENVOY_DEFAULT_LIMIT if value is None else value


class CircuitBreaker:
    """Counters and overflow stats for one upstream cluster."""

    __slots__ = ("connections", "limits", "overflows", "pending", "requests")

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.connections = 0
        self.pending = 0
        self.requests = 0
        self.overflows: dict[Admission, int] = {}

    def _overflow(self, kind: Admission) -> Admission:
        self.overflows[kind] = self.overflows.get(kind, 0) + 1
        return kind

    def try_request(self) -> Admission:
        """Admit one active request (``max_requests``)."""
        if self.requests >= _limit(self.limits.max_concurrent_requests):
            return self._overflow(Admission.REQUEST_OVERFLOW)
        self.requests += 1
        return Admission.OK

    def release_request(self) -> None:
        self.requests = max(0, self.requests - 1)

    def try_pending(self) -> Admission:
        """Queue one request waiting for a connection (``max_pending_requests``)."""
        if self.pending >= _limit(self.limits.max_pending_requests):
            return self._overflow(Admission.PENDING_OVERFLOW)
        self.pending += 1
        return Admission.OK

    def release_pending(self) -> None:
        self.pending = max(0, self.pending - 1)

    def can_connect(self) -> bool:
        """Whether a new upstream connection may be opened now."""
        return self.connections < _limit(self.limits.max_connections)

    def try_connection(self) -> Admission:
        """Open one upstream connection (``max_connections``)."""
        if not self.can_connect():
            return self._overflow(Admission.CONNECTION_OVERFLOW)
        self.connections += 1
        return Admission.OK

    def release_connection(self) -> None:
        self.connections = max(0, self.connections - 1)

    def snapshot(self) -> dict[str, int]:
        """Counters and overflow totals, for introspection and metrics."""
        out = {
            "connections": self.connections,
            "pending": self.pending,
            "requests": self.requests,
            "max_connections": _limit(self.limits.max_connections),
            "max_pending_requests": _limit(self.limits.max_pending_requests),
            "max_requests": _limit(self.limits.max_concurrent_requests),
        }
        for kind in Admission:
            if kind.overflow:
                out[kind.value] = self.overflows.get(kind, 0)
        return out
