"""Retrying durable writes that failed for a reason that can pass (a full
disk): exponential backoff and logs that say so once, not on every try.

A server whose log writes fail stays up: the driver keeps the unwritten
batch, refuses new proposals, hands leadership away and sends nothing that
promises durability, retrying the write on this schedule until it succeeds.
"""

from __future__ import annotations

import logging
import math

from .errors import StorageError

log = logging.getLogger("raft.node")


class Backoff:
    """Exponential backoff between ``first`` and ``cap`` seconds; times come
    in as arguments (the driver's clock)."""

    def __init__(self, first: float, cap: float) -> None:
        self.first, self.cap = first, cap
        self.delay = 0.0
        self.retry_at = 0.0

    def failed(self, now: float) -> float:
        """Record a failure at ``now``; returns the delay before the next try."""
        self.delay = min(max(2 * self.delay, self.first), self.cap)
        self.retry_at = now + self.delay
        return self.delay

    def succeeded(self) -> None:
        self.delay = self.retry_at = 0.0

    def due(self, now: float) -> bool:
        return now >= self.retry_at


class StorageHealth:
    """Whether this server's log writes work. Logs the first failure, then
    at most one reminder every ``remind_every`` seconds, and the recovery."""

    def __init__(self, server_id: str, *, remind_every: float = 60.0) -> None:
        self.server_id = server_id
        self.error: StorageError | None = None
        self.backoff = Backoff(0.05, 5.0)
        self._remind_every = remind_every
        self._logged_at = -math.inf
        self._failures = 0

    @property
    def down(self) -> bool:
        return self.error is not None

    def failed(self, exc: StorageError, now: float, role: str) -> None:
        delay = self.backoff.failed(now)
        self._failures += 1
        first = self.error is None
        self.error = exc
        if first or now - self._logged_at >= self._remind_every:
            self._logged_at = now
            action = "refuse_writes_and_step_down" if role == "leader" else "hold_acknowledgements"
            log.error(
                "event=raft_storage_unavailable id=%s role=%s failures=%d retry_in_s=%.2f "
                "action=%s reason=%s",
                self.server_id,
                role,
                self._failures,
                delay,
                action,
                exc,
            )

    def recovered(self, now: float) -> None:
        if self.error is None:
            return
        log.warning(
            "event=raft_storage_recovered id=%s failures=%d", self.server_id, self._failures
        )
        self.error = None
        self._failures = 0
        self._logged_at = -math.inf
        self.backoff.succeeded()
