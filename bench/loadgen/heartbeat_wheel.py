"""Every simulated agent's heartbeats from one task of the load process.

The servers see what the agent's ``heartbeat_loop`` sends: one
``Node.Heartbeat`` per agent per interval on the agent's own connection,
waiting up to two intervals for the answer before the next one (an answer
still pending then counts as a failure). What changes is the load process's
cost: 2,000 agents' loops were 2,000 tasks, each beat two task wake-ups,
three cancel scopes, a lock and an event. Here one timer heap sends each due
beat with a non-blocking write of a frame, and the connection's reader
hands the answer to a callback. A beat whose connection is gone, busy or
broken takes the agent's own path (``ServerPool.call``: reconnect, fail
over to another server) in a task of its own.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any

import trio

from meshd.agent.pool import ServerPool
from meshd.rpc import VERSION
from raft.transport import encode_frame

from .fleet_client import FleetRPCClient

_BUSY_RETRY = 0.002  # seconds until a beat on a busy connection is tried again
# (latency in seconds, or None for a failure) -> None
Outcome = Callable[[float | None], None]


class Beater:
    """One agent's heartbeats."""

    def __init__(self, node: str, pool: ServerPool, rpc: FleetRPCClient, outcome: Outcome) -> None:
        self.node = node
        self.pool = pool
        self.rpc = rpc
        self.outcome = outcome
        self._pending: tuple[Any, int, float] | None = None  # (conn, rid, sent at)
        self._slow = False

    def set(self) -> None:
        """The connection's reader: the answer (or the connection's loss) is in."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        conn, rid, sent = pending
        waiter = conn.waiters.pop(rid, None)
        resp = waiter[1][0] if waiter is not None and waiter[1] else None
        ok = resp is not None and resp.get("ok")
        self.outcome(time.perf_counter() - sent if ok else None)

    def beat(self, nursery: trio.Nursery, timeout: float) -> bool:
        """Send this interval's beat; False when the connection is busy
        sending another frame (a watch, a sync write), to be tried again in
        a moment, as the agent's call would wait for the send lock."""
        now = time.perf_counter()
        if self._slow:
            return True
        if self._pending is not None:
            conn, rid, sent = self._pending
            if now - sent < timeout:
                return True  # the agent's loop would still be waiting for it
            self._pending = None
            conn.waiters.pop(rid, None)
            self.outcome(None)
        servers = self.pool.servers()
        conn = self.rpc.connection(servers[0]) if servers else None
        if conn is not None and conn.send_lock.locked():
            return False
        if conn is None:
            self._slow = True
            nursery.start_soon(self._slow_beat, timeout)
            return True
        rid = self.rpc.next_id()
        frame = encode_frame(
            {"v": VERSION, "id": rid, "m": "Node.Heartbeat", "a": {"node": self.node}}
        )
        conn.waiters[rid] = (self, [])
        self._pending = (conn, rid, now)
        try:
            sent = conn.framed.stream.send_nowait(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            sent = -1
        if sent != len(frame):  # a frame cut short cannot be finished safely: reconnect
            self.rpc.drop(servers[0], conn, "heartbeat frame not written whole")
        return True

    async def _slow_beat(self, timeout: float) -> None:
        start = time.perf_counter()
        try:
            await self.pool.call("Node.Heartbeat", {"node": self.node}, timeout=timeout)
        except Exception:
            self.outcome(None)
        else:
            self.outcome(time.perf_counter() - start)
        finally:
            self._slow = False


class HeartbeatWheel:
    """Runs every added ``Beater`` every ``interval``, the first beat at once."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._heap: list[tuple[float, int, Beater]] = []
        self._seq = itertools.count()
        self._wake = trio.Event()

    def add(self, beater: Beater) -> None:
        heapq.heappush(self._heap, (trio.current_time(), next(self._seq), beater))
        self._wake.set()

    async def run(self, nursery: trio.Nursery) -> None:
        heap, interval = self._heap, self.interval
        while True:
            if not heap:
                self._wake = trio.Event()
                await self._wake.wait()
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                due, n, beater = heapq.heappop(heap)
                if not beater.beat(nursery, interval * 2):
                    heapq.heappush(heap, (now + _BUSY_RETRY, n, beater))
                    continue
                # Keeps its phase; one that fell behind starts again from now.
                heapq.heappush(heap, (max(due + interval, now), n, beater))
            await trio.sleep_until(heap[0][0])
