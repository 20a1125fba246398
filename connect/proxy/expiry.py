"""Per-exchange deadlines on pooled connections, without a cancel scope each.

An L7 exchange (one request and its response over a pooled connection)
runs under a timeout: the route's per-try timeout on the outbound side,
the local app's request timeout on the inbound side. A ``trio`` cancel
scope per exchange cost ~5-7 us of CPU (entering and leaving it touches
trio's deadline heap and cancel-status tree), ~5% of a proxy's per-request
CPU, for a deadline that almost never fires.

Here a connection carries its deadline (``Timed.deadline``; ``inf`` while
idle), and one system task per trio run keeps a heap of connections to look
at, at most one live entry per connection (``timer_at``): arming a
connection whose entry is already due earlier pushes nothing, so with one
timeout for every request the heap holds one entry per busy connection and
a request costs a comparison. When an entry comes due and its connection's
exchange is still running past its deadline, the connection is marked
``expired`` and its fd gets ``trio.lowlevel.notify_closing``: a task parked
on it wakes with ``trio.ClosedResourceError`` (the pool turns that into
``Expired`` and closes the connection, as cancellation did). A task that was
runnable at that moment is nudged again every ``RECHECK`` until it parks or
its exchange ends.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Protocol

import trio

from .reactor import notify_closing

RECHECK = 0.01  # an expired exchange not parked yet is nudged again this often


class Expired(Exception):
    """The exchange's deadline passed (its connection is closed)."""


class Timed(Protocol):
    deadline: float  # inf: no exchange running
    timer_at: float  # the due time of its live heap entry (inf: none)
    expired: bool

    def fileno(self) -> int: ...


class Expiry:
    """The run's heap of timed connections and the task serving it."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, Timed]] = []
        self._seq = itertools.count()
        self._scope: trio.CancelScope | None = None

    def arm(self, conn: Timed, deadline: float) -> None:
        """``conn``'s exchange starts and must end by ``deadline`` (trio clock)."""
        conn.deadline = deadline
        conn.expired = False
        if deadline < conn.timer_at:
            self._push(conn, deadline)

    @staticmethod
    def disarm(conn: Timed) -> None:
        """``conn``'s exchange ended (its heap entry goes when it comes due)."""
        conn.deadline = math.inf

    def _push(self, conn: Timed, at: float) -> None:
        conn.timer_at = at
        heapq.heappush(self.heap, (at, next(self._seq), conn))
        scope = self._scope
        if scope is not None and at < scope.deadline:
            scope.deadline = at

    def expire_due(self, now: float) -> None:
        """Handle every entry due at ``now``."""
        heap = self.heap
        while heap and heap[0][0] <= now:
            at, _, conn = heapq.heappop(heap)
            if at != conn.timer_at:
                continue  # superseded by an earlier entry
            conn.timer_at = math.inf
            deadline = conn.deadline
            if deadline == math.inf:
                continue
            if deadline <= now:
                conn.expired = True
                fd = conn.fileno()
                if fd >= 0:
                    notify_closing(fd)  # trio's waits and the reactor's
                deadline = now + RECHECK
            self._push(conn, deadline)

    async def serve(self) -> None:
        """Expire connections as their deadlines pass, until cancelled."""
        while True:
            self.expire_due(trio.current_time())
            wake = self.heap[0][0] if self.heap else math.inf
            with trio.CancelScope(deadline=wake) as self._scope:
                await trio.sleep_forever()
            self._scope = None


_EXPIRY: trio.lowlevel.RunVar[Expiry] = trio.lowlevel.RunVar("proxy_expiry")


def expiry() -> Expiry:
    """This trio run's ``Expiry`` (its system task started on first use)."""
    try:
        return _EXPIRY.get()
    except LookupError:
        e = Expiry()
        _EXPIRY.set(e)
        trio.lowlevel.spawn_system_task(e.serve, name="proxy-expiry")
        return e
