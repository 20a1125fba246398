"""Sending shadow copies of requests (traffic mirroring), fire-and-forget.

A route whose destination has the meshd extension ``Mirror`` (see
connect/l7/mirror.py and entries_routing.py) asks the L7 outbound path to
copy matching requests to the mirror target. The copies run here, in the
background, as tasks of one long-lived nursery per upstream listener:

- the caller's request never waits for its copy, and the copy's answer,
  error or hang is discarded (only counted);
- at most ``MAX_IN_FLIGHT`` copies run at once per upstream; a copy that
  would exceed it is dropped and counted, never queued, so a slow mirror
  costs a bounded amount of memory and sockets;
- each copy is cancelled after the route's timeout (as Envoy does for
  shadow requests; ``MIRROR_TIMEOUT``, Envoy's default route timeout, when
  none is given), which frees its slot: a hung mirror drops copies, it
  does not pile them up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from .logfmt import emit

MAX_IN_FLIGHT = 64
MIRROR_TIMEOUT = 15.0  # Envoy's default route timeout


@dataclass
class MirrorCounts:
    """What happened to the copies of one upstream (also in the proxy's log)."""

    sent: int = 0  # copies answered by the mirror (any status)
    failed: int = 0  # copies that reset, failed to connect or timed out
    dropped: int = 0  # copies never sent: too many in flight, or no endpoint


class MirrorSender:
    """Runs mirror copies in the background under a concurrency bound."""

    def __init__(
        self,
        destination: str,
        *,
        max_in_flight: int = MAX_IN_FLIGHT,
        timeout: float = MIRROR_TIMEOUT,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self.destination = destination
        self.on_result = on_result  # called with sent | failed | dropped
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self.in_flight = 0
        self.counts = MirrorCounts()
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the copies' tasks until cancelled (cancelling ends every copy)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    def drop(self, reason: str) -> None:
        """Count a copy that is not sent; log the first and every 100th."""
        self.counts.dropped += 1
        self._report("dropped")
        if self.counts.dropped % 100 == 1:
            emit(
                30,
                "mirror_dropped",
                destination=self.destination,
                reason=reason,
                dropped=self.counts.dropped,
            )

    def submit(self, send: Callable[[], Awaitable[object]], timeout: float | None = None) -> bool:
        """Start ``send()`` in the background, cancelled after ``timeout``
        seconds (default ``self.timeout``); False (and counted) when the
        bound is reached or the sender is not running. Never blocks."""
        if self._nursery is None:
            self.drop("not running")
            return False
        if self.in_flight >= self.max_in_flight:
            self.drop("too many in flight")
            return False
        self.in_flight += 1
        self._nursery.start_soon(self._one, send, timeout or self.timeout)
        return True

    async def _one(self, send: Callable[[], Awaitable[object]], timeout: float) -> None:
        try:
            with trio.move_on_after(timeout):
                try:
                    await send()
                except Exception:  # a mirror's failure is only counted
                    self.counts.failed += 1
                    self._report("failed")
                else:
                    self.counts.sent += 1
                    self._report("sent")
                return
            self.counts.failed += 1  # timed out
            self._report("failed")
        finally:
            self.in_flight -= 1

    def _report(self, result: str) -> None:
        if self.on_result is not None:
            self.on_result(result)
