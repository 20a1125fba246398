"""Consul blocking queries on top of the state store's watches (trio).

This is the only registry module that imports trio. It relies on writes
(FSM applies) happening on the trio thread: a watch callback reschedules
the parked task directly through ``trio.lowlevel``.

Waking 10,000 readers at once is the case to be cheap for, so a wait costs
no ``trio.Event`` and no cancel scope of its own: timeouts of every waiter
in a trio run are kept in one heap served by one system task
(``_Timers``), which reschedules a waiter whose deadline passed. That task
also does the waking: fired waiters are queued and rescheduled a batch per
scheduler round, so a write that wakes thousands of them cannot hold the
event loop (and the Raft driver sharing it) for the time it takes all of
them to answer. The batch adapts to how long the last round took (at most
``WAKE_BATCH``, at least ``MIN_BATCH``), aiming at ``ROUND_BUDGET`` of work
per round: on a loaded machine each answer costs more, and a fixed count
would let one round outlast a Raft election timeout. ``admit`` puts other
bursts of work through the same queue (an HTTP server's request dispatch).
After each round that ran a batch, the functions given to ``after_batches``
run (the agent's young garbage collection: it then scans one batch's
objects, where CPython's own count let a whole wake-up's pile up).
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

import trio

from .state.watch import WatchSet

T = TypeVar("T")
# Called after every scheduler round that ran a batch (``after_batches``).
_AFTER_BATCH: list[Callable[[], None]] = []

MAX_WAIT = 600.0  # Consul caps ?wait= at 10 minutes
DEFAULT_WAIT = 300.0  # Consul's wait when ?index= is given without ?wait=
JITTER_FRACTION = 16  # Consul adds up to wait/16 of random stagger
WAKE_BATCH = 256  # most waiters rescheduled per scheduler round
MIN_BATCH = 16  # fewest, however long a round takes
ROUND_BUDGET = 0.02  # seconds of paced work per round the batch size aims at


class _Waker:
    """Reschedules one parked task once: on a watch firing or on its deadline.

    Until ``park`` arms it, a call (a watch that had already fired when the
    waiter registered) only marks it done: the task is still running then
    and must not be rescheduled.
    """

    __slots__ = ("aborted", "armed", "done", "task", "timers")

    def __init__(self, task: trio.lowlevel.Task, timers: _Timers) -> None:
        self.task = task
        self.timers = timers
        self.done = False
        self.armed = False
        self.aborted = False

    def __call__(self) -> None:
        if not self.done:
            self.done = True
            if self.armed:
                self.timers.live -= 1
                self.timers.enqueue(self)

    def abort(self, _: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
        """Cancellation of the parked task: neither a watch, the timer nor a
        queued wake may reschedule it now."""
        self.aborted = True
        if not self.done:
            self.done = True
            self.timers.live -= 1
        return trio.lowlevel.Abort.SUCCEEDED


class _Timers:
    """Every waiter's deadline in one heap, expired by one system task per trio run."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, _Waker]] = []
        self.seq = 0
        self.live = 0
        self.scope = trio.CancelScope()
        self.queue: deque[_Waker] = deque()
        self.started = 0  # blocking queries started without queueing since the last batch
        self.batch = WAKE_BATCH  # waiters rescheduled per round, adapted to ROUND_BUDGET
        self.released_at: float | None = None  # when the last batch was rescheduled
        self.busy_at = -math.inf  # perf_counter when a batch last ran

    def enqueue(self, waker: _Waker) -> None:
        """A fired waiter: the system task reschedules it (in batches)."""
        self.queue.append(waker)
        if len(self.queue) == 1:
            self.scope.cancel()  # wake the system task if it sleeps

    def add(self, deadline: float, waker: _Waker) -> None:
        """Wake ``waker`` at ``deadline`` unless something else woke it first."""
        self.seq += 1
        self.live += 1
        heapq.heappush(self.heap, (deadline, self.seq, waker))
        if deadline < self.scope.deadline:
            self.scope.deadline = deadline
        if len(self.heap) > 1024 and len(self.heap) > 2 * self.live:
            self.heap = [entry for entry in self.heap if not entry[2].done]  # woken early
            heapq.heapify(self.heap)

    async def run(self) -> None:
        """The system task: sleep until the earliest deadline or a fired
        waiter, mark who is due, reschedule up to ``WAKE_BATCH`` queued
        waiters, let them (and everyone else) run, repeat."""
        while True:
            if not self.queue:
                self.scope = trio.CancelScope(deadline=self.heap[0][0] if self.heap else math.inf)
                with self.scope:
                    await trio.sleep_forever()
            now = trio.current_time()
            while self.heap and self.heap[0][0] <= now:
                heapq.heappop(self.heap)[2]()
            queue = self.queue
            self.started = 0
            self._adapt()
            released = min(len(queue), self.batch)
            for _ in range(released):
                waker = queue.popleft()
                if not waker.aborted:
                    trio.lowlevel.reschedule(waker.task)
            self.released_at = time.perf_counter() if queue else None
            if released:
                await trio.lowlevel.checkpoint()  # the batch runs meanwhile
                self.busy_at = time.perf_counter()
                for hook in _AFTER_BATCH:
                    hook()

    def _adapt(self) -> None:
        """Resize the batch from how long the round that ran the last one
        took. Real time, not trio's clock: what is bounded is how long the
        process holds the loop, which a test's fake clock does not see."""
        if self.released_at is None:
            return
        took = time.perf_counter() - self.released_at
        if took > ROUND_BUDGET:
            self.batch = max(MIN_BATCH, int(self.batch * ROUND_BUDGET / took))
        elif took < ROUND_BUDGET / 2:
            self.batch = min(WAKE_BATCH, self.batch + self.batch // 4 + 1)


_TIMERS: trio.lowlevel.RunVar[_Timers] = trio.lowlevel.RunVar("registry.blocking.timers")


def _timers() -> _Timers:
    try:
        return _TIMERS.get()
    except LookupError:
        timers = _Timers()
        _TIMERS.set(timers)
        trio.lowlevel.spawn_system_task(timers.run, name="registry.blocking.timers")
        return timers


def after_batches(hook: Callable[[], None]) -> Callable[[], None]:
    """Call ``hook`` after every scheduler round that ran a batch of woken or
    admitted tasks, in every trio run of this process; returns a function
    that removes it. ``hook`` must be quick and must not raise."""
    _AFTER_BATCH.append(hook)
    return lambda: _AFTER_BATCH.remove(hook) if hook in _AFTER_BATCH else None


def seconds_since_batch() -> float:
    """Real seconds since a batch of woken or admitted tasks last ran in
    this trio run (infinite if none has): how long the loop has been free
    of bursts."""
    return time.perf_counter() - _timers().busy_at


async def admit() -> None:
    """Bound the work starting in one scheduler round: thousands of clients
    re-asking at once (right after a write answered them) would otherwise
    all run their request, and their first read, in the same round and hold
    the loop, and the Raft driver sharing it, for as long. Past a batch of
    starts a caller queues behind the wakes, which the system task lets
    through a batch per round, in order. Cancellation while queued leaves
    the queue at once."""
    timers = _timers()
    if not timers.queue and timers.started < timers.batch:
        timers.started += 1
        return
    waker = _Waker(trio.lowlevel.current_task(), timers)
    waker.done = True  # no watch or timer refers to it: only the queue does
    timers.enqueue(waker)
    await trio.lowlevel.wait_task_rescheduled(waker.abort)


async def _park_until_fired(ws: WatchSet, deadline: float) -> None:
    timers = _timers()
    waker = _Waker(trio.lowlevel.current_task(), timers)
    ws.register(waker)  # same synchronous step as the read: no write in between
    try:
        if waker.done:  # something the read depended on already changed
            await trio.lowlevel.checkpoint()
            return
        waker.armed = True
        timers.add(deadline, waker)
        await trio.lowlevel.wait_task_rescheduled(waker.abort)
    finally:
        ws.unregister()


async def wait_for_change(
    store_query: Callable[[WatchSet], tuple[int, T]],
    min_index: int,
    timeout: float,
    *,
    rng: random.Random,
) -> tuple[int, T]:
    """Run ``store_query`` until its index differs from ``min_index`` or time runs out.

    Consul semantics (agent/consul/rpc.go blockingQuery): ``min_index`` 0
    answers at once; an index lower than ``min_index`` (the state went
    backwards, e.g. after a snapshot restore) answers at once so the client
    resets; otherwise wait until a watch the query registered fires and the
    re-run shows a new index, or until ``timeout`` (capped at 10 minutes, plus
    up to timeout/16 of jitter from ``rng``) passes, then answer with a fresh
    read. Spurious wake-ups (watch fired, index unchanged) keep waiting.

    Cancellation: the caller's cancel scope interrupts the wait (Cancelled
    propagates); the watch callbacks are unregistered either way. Exceptions
    from ``store_query`` propagate.
    """
    if min_index > 0:
        await admit()
    ws = WatchSet()
    index, result = store_query(ws)
    if min_index <= 0 or index != min_index:
        return index, result
    timeout = min(max(timeout, 0.0), MAX_WAIT)
    timeout += rng.random() * timeout / JITTER_FRACTION
    deadline = trio.current_time() + timeout
    while True:
        await _park_until_fired(ws, deadline)
        ws = WatchSet()
        index, result = store_query(ws)
        if index != min_index or trio.current_time() >= deadline:
            return index, result
