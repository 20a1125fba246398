"""Follower reads: one leader round trip shared by every read waiting for it.

A follower answers a read from its own state once that state includes every
write the leader had committed when the read arrived (Raft's ReadIndex,
thesis §6.4, served to followers as etcd does): it asks the leader for its
read index (``Raft.ReadIndex``; with a lease for Consul's ``default``
consistency, a quorum round for ``consistent``) and waits until it has
applied that index. Reads that arrive while a round is in flight join the
next round, which starts after they arrived, so each is linearizable; a
burst of reads (blocking queries re-issued after a change) costs the leader
a few round trips instead of one forwarded read each.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

Fetch = Callable[[bool], Awaitable[int]]


class _Round:
    __slots__ = ("done", "error", "index", "strict")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.strict = False
        self.index = 0
        self.error: Exception | None = None


class ReadIndexRounds:
    """Coalesces read-index requests into rounds of ``fetch(strict)`` calls,
    one at a time. Start ``run`` in a nursery first."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._next: _Round | None = None
        self._wake = trio.Event()

    async def index(self, *, strict: bool) -> int:
        """The leader's read index from a round that started after this call
        (``strict``: confirmed by a quorum, not by the leader's lease). Raises
        what ``fetch`` raised for that round."""
        r = self._next
        if r is None:
            r = self._next = _Round()
            self._wake.set()
        r.strict = r.strict or strict
        await r.done.wait()
        if r.error is not None:
            raise r.error
        return r.index

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while (r := self._next) is not None:
                self._next = None
                try:
                    r.index = await self._fetch(r.strict)
                except Exception as exc:  # every waiter of the round gets it
                    r.error = exc
                r.done.set()
