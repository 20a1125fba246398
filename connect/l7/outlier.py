"""Outlier detection (passive health) from Consul's PassiveHealthCheck.

Rules (Consul ``PassiveHealthCheck`` -> Envoy ``outlier_detection``):

- MaxFailures = ``consecutive_5xx`` (default 5): a 5xx answer or a locally
  originated failure (connect failure, reset, timeout) counts; any other
  answer resets the host's count.
- When a host reaches MaxFailures it is ejected with probability
  EnforcingConsecutive5xx % (default 100), drawn from the rng passed in.
- Ejection lasts BaseEjectionTime x (times ejected), capped at
  ``max(300 s, BaseEjectionTime)`` (Envoy's growing ejection). The "times
  ejected" multiplier goes down by one for every Interval sweep the host
  spends un-ejected.
- MaxEjectionPercent (default 10): a new ejection is allowed while the
  ejected share is below it, and always for the first host (Envoy "ejects
  at least one host regardless") -- but never the last un-ejected host:
  meshd always leaves one host to answer.
- Un-ejection happens when the time is up, at a ``sweep`` (every Interval)
  or on demand (``is_ejected``/``ejected`` check the time too).
- ``ejections(now)`` lists ejected hosts with reason, count and until when.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

REASON_CONSECUTIVE_5XX = "consecutive_5xx"
ENVOY_MAX_EJECTION_TIME_S = 300.0


@dataclass(frozen=True)
class OutlierConfig:
    """Consul's ``PassiveHealthCheck`` with Envoy's defaults."""

    interval_s: float = 10.0
    max_failures: int = 5
    enforcing_consecutive_5xx: int = 100
    max_ejection_percent: int = 10
    base_ejection_time_s: float = 30.0

    def __post_init__(self) -> None:
        if self.interval_s < 0:
            raise ValueError("passive health check interval cannot be negative")
        if not 0 <= self.enforcing_consecutive_5xx <= 100:
            raise ValueError(
                "passive health check enforcing_consecutive_5xx must be a percentage "
                "between 0 and 100"
            )
        if not 0 <= self.max_ejection_percent <= 100:
            raise ValueError(
                "passive health check max_ejection_percent must be a percentage between 0 and 100"
            )
        if self.base_ejection_time_s < 0:
            raise ValueError("passive health check base_ejection_time cannot be negative")

    @property
    def max_ejection_time_s(self) -> float:
        return max(ENVOY_MAX_EJECTION_TIME_S, self.base_ejection_time_s)


@dataclass(frozen=True)
class Ejection:
    """One ejected host, as the introspection API shows it."""

    host: str
    reason: str
    ejected_at: float
    until: float
    times_ejected: int
    last_status: int | None


_NONE: frozenset[str] = frozenset()


class _HostState:
    __slots__ = ("consecutive", "ejected_at", "last_status", "multiplier", "until")

    def __init__(self) -> None:
        self.consecutive = 0
        self.multiplier = 0
        self.ejected_at: float | None = None
        self.until = 0.0
        self.last_status: int | None = None


class OutlierDetector:
    """Consecutive-5xx outlier state of one upstream cluster."""

    def __init__(self, config: OutlierConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        self._hosts: dict[str, _HostState] = {}
        self.last_sweep: float | None = None
        # Hosts ejected now: while 0 (nearly always), a report or an
        # exclusion check walks no host.
        self._ejected = 0

    def set_hosts(self, hosts: Iterable[str]) -> None:
        """Track exactly ``hosts``; state of hosts still present is kept."""
        wanted = list(hosts)
        self._hosts = {h: self._hosts.get(h) or _HostState() for h in wanted}
        self._ejected = sum(1 for s in self._hosts.values() if s.ejected_at is not None)

    def _state(self, host: str) -> _HostState:
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _HostState()
        return state

    def _uneject_expired(self, now: float) -> list[str]:
        back: list[str] = []
        if not self._ejected:
            return back
        for host, state in self._hosts.items():
            if state.ejected_at is not None and now >= state.until:
                state.ejected_at = None
                state.consecutive = 0
                back.append(host)
        self._ejected -= len(back)
        return back

    def _may_eject(self) -> bool:
        total = len(self._hosts)
        ejected = sum(1 for s in self._hosts.values() if s.ejected_at is not None)
        if ejected + 1 >= total:
            return False  # always leave one host
        if ejected == 0:
            return True  # Envoy: at least one host regardless of the percentage
        return ejected * 100 / total < self.config.max_ejection_percent

    def report(self, host: str, status: int | None, now: float) -> Ejection | None:
        """Record one answer (``status``; None = local failure) from ``host``.

        Returns the Ejection if this answer ejected the host.
        """
        self._uneject_expired(now)
        state = self._state(host)
        if status is not None and status < 500:
            state.consecutive = 0
            return None
        state.last_status = status
        if state.ejected_at is not None:
            return None
        state.consecutive += 1
        cfg = self.config
        if cfg.max_failures <= 0 or state.consecutive < cfg.max_failures:
            return None
        state.consecutive = 0
        if self.rng.randrange(100) >= cfg.enforcing_consecutive_5xx:
            return None
        if not self._may_eject():
            return None
        state.multiplier += 1
        duration = min(cfg.base_ejection_time_s * state.multiplier, cfg.max_ejection_time_s)
        state.ejected_at = now
        state.until = now + duration
        self._ejected += 1
        return self._ejection(host, state)

    def sweep(self, now: float) -> list[str]:
        """The Interval timer: un-eject expired hosts, decay multipliers.

        Returns the hosts brought back.
        """
        back = self._uneject_expired(now)
        for host, state in self._hosts.items():
            if state.ejected_at is None and state.multiplier > 0 and host not in back:
                state.multiplier -= 1
        self.last_sweep = now
        return back

    def due(self, now: float) -> bool:
        """Whether a sweep is due (an Interval has passed since the last one)."""
        return self.last_sweep is None or now - self.last_sweep >= self.config.interval_s

    def is_ejected(self, host: str, now: float) -> bool:
        state = self._hosts.get(host)
        if state is None or state.ejected_at is None:
            return False
        if now >= state.until:
            self._uneject_expired(now)
            return False
        return True

    def ejected(self, now: float) -> frozenset[str]:
        self._uneject_expired(now)
        if not self._ejected:
            return _NONE
        return frozenset(h for h, s in self._hosts.items() if s.ejected_at is not None)

    def _ejection(self, host: str, state: _HostState) -> Ejection:
        assert state.ejected_at is not None
        return Ejection(
            host=host,
            reason=REASON_CONSECUTIVE_5XX,
            ejected_at=state.ejected_at,
            until=state.until,
            times_ejected=state.multiplier,
            last_status=state.last_status,
        )

    def ejections(self, now: float) -> list[Ejection]:
        """Every ejected host with why and until when, sorted by host."""
        self._uneject_expired(now)
        return [
            self._ejection(h, s) for h, s in sorted(self._hosts.items()) if s.ejected_at is not None
        ]
