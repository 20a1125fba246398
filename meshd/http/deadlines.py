"""Connection timeouts checked by one task per server instead of a trio
deadline moved on every request.

A connection's timeout changes with its phase four times per request
(waiting for a head, reading a body, running the handler: none, writing
the answer). Setting ``CancelScope.deadline`` costs a context manager and
a deadline-heap update each time, about 5 us of a 45 us request, so a
connection keeps its deadline as a plain float and one ``DeadlineSweeper``
task per server cancels the connections whose deadline has passed.
A timeout fires up to ``resolution`` late (an eighth of the shortest
timeout, at most 1 s: 75 s idle timeouts close within 76 s).
"""

from __future__ import annotations

from typing import NoReturn, Protocol

import trio

__all__ = ["DeadlineSweeper", "Timed"]

_MIN_RESOLUTION = 0.005
_MAX_RESOLUTION = 1.0


class Timed(Protocol):
    def check_deadline(self, now: float) -> None:
        """Cancel whatever is running if its deadline is at or before ``now``."""


class DeadlineSweeper:
    """The connections of one server whose deadlines ``run`` checks every
    ``resolution`` seconds (derived from the server's shortest timeout)."""

    def __init__(self, *timeouts: float) -> None:
        shortest = min(timeouts, default=_MAX_RESOLUTION * 8)
        self.resolution = max(_MIN_RESOLUTION, min(_MAX_RESOLUTION, shortest / 8))
        self._members: set[Timed] = set()

    def add(self, member: Timed) -> None:
        self._members.add(member)

    def discard(self, member: Timed) -> None:
        self._members.discard(member)

    async def run(self) -> NoReturn:
        """Check every member's deadline once per ``resolution`` until cancelled."""
        while True:
            await trio.sleep(self.resolution)
            now = trio.current_time()
            for member in list(self._members):
                member.check_deadline(now)
