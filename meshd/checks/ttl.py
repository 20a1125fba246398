"""TTL checks (Consul agent/checks/check.go ``CheckTTL``).

The application reports its own health through the agent API
(``/v1/agent/check/pass|warn|fail|update/:id``); each report sets the status
and restarts the TTL. When no report arrives within the TTL the check turns
critical with ``TTL expired`` (followed by the last reported output, if
any). Thresholds do not apply: a report is recorded as given.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

__all__ = ["TTLTimer"]


class TTLTimer:
    """The deadline of one TTL check; ``run()`` reports expiry, ``reset()`` restarts it.

    ``clock`` is a monotonic time source in seconds; waits are relative to
    it, so any clock that advances with trio's (the default, or a test's
    MockClock) works.
    """

    def __init__(self, ttl: float, *, clock: Callable[[], float] = trio.current_time) -> None:
        self.ttl = ttl
        self.clock = clock
        self.deadline = clock() + ttl
        self.last_output = ""
        self.expired = False
        self._reset = trio.Event()

    def reset(self, output: str) -> None:
        """A status was reported: remember its output and restart the TTL."""
        self.deadline = self.clock() + self.ttl
        self.last_output = output
        self.expired = False
        self._reset.set()
        self._reset = trio.Event()

    def expired_output(self) -> str:
        """Consul's text for an expired TTL (``getExpiredOutput``)."""
        if not self.last_output:
            return "TTL expired"
        return f"TTL expired (last output before timeout follows): {self.last_output}"

    async def run(self, expire: Callable[[str], None]) -> None:
        """Call ``expire(output)`` each time the TTL runs out without a reset.

        Runs until cancelled; expiry is reported once per TTL period missed,
        not repeatedly while the check stays expired.
        """
        while True:
            event = self._reset
            remaining = self.deadline - self.clock()
            if not self.expired and remaining <= 0:
                self.expired = True
                expire(self.expired_output())
                continue
            if self.expired:
                await event.wait()
            else:
                with trio.move_on_after(remaining):
                    await event.wait()
