"""When the cyclic garbage collector runs, so that no pass scans the whole heap.

A pass holds the GIL, so the event loop and the Raft driver on it wait for
all of it. A full (generation 2) pass scans every tracked object that is not
frozen: on a server with 10,000 parked blocking queries that is ~1M objects
(~100 per watcher: its connection, two trio tasks and their coroutine
frames, the parsed request) and 0.4-0.8 s of CPU, longer than an election
timeout on a loaded machine (issue 18). CPython starts one when the objects
promoted since the last one exceed a quarter of its survivors, which a
wake-up of 10,000 watchers (each re-arming with fresh objects) does: the
pass came exactly when the loop was busiest.

The policy (``GcPolicy``):

* After every generation 1 or 2 pass, ``gc.freeze()`` (O(1): the collector's
  lists are spliced): what survived a young pass is long-lived, and it is
  never scanned again. Every later pass, full ones included, scans only what
  was allocated since the last young pass: at most ~``THRESHOLDS[0] *
  THRESHOLDS[1]`` objects, some tens of ms, however many watchers are parked.
  A young pass also runs after every scheduler round that ran a batch of
  woken or admitted blocking queries (``registry.blocking.after_batches``):
  CPython counts allocations *net of deallocations*, and a waking watcher
  frees about as many objects as it allocates re-arming, so without it a
  whole wake-up's objects (~180,000) piled up for one generation 0 pass of
  0.2-0.7 s; now each pass scans one batch's (1-5 ms measured).
  Acyclic garbage is still freed by reference counting, frozen or not (a
  parked request leaves no cyclic garbage once answered:
  tests/meshd/test_gc_policy.py), so the frozen set follows the live heap.
* What freezing can keep: a frozen object that later becomes part of an
  unreachable *cycle* is not collected while frozen. That is bounded by a
  complete pass (``gc.unfreeze()``, ``gc.collect()``, freeze again) once the
  process's allocated blocks have grown past ``1 + GROWTH`` times their
  number after the last complete pass plus ``FLOOR`` (``sys.getallocatedblocks``
  walks pymalloc's pools: ~1 ms at 6M blocks). So memory is at most
  (1 + GROWTH) x live + FLOOR blocks (CPython's own rule: about 1.25 x the
  survivors of its last full pass, paid for with those passes); steady load
  with no growth never needs one. A task (``govern``) checks once per ``CHECK_INTERVAL``
  and runs the complete pass when the loop is quiet (no batch of blocking
  queries for ``QUIET`` seconds and its own wake-up on time), or regardless
  once the bound is exceeded twice over: a wake-up does not run one.
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import trio

from registry import blocking

log = logging.getLogger("meshd.gc")

# Young passes: generation 0 every 10,000 net allocations, generation 1 after
# 5 of those (so it scans at most ~50,000 objects, ~30 ms of CPU); full
# passes as CPython schedules them, now as cheap as a young pass.
THRESHOLDS = (10_000, 5, 10)
_thresholds_before: tuple[int, int, int] = gc.get_threshold()  # set by install
uninstalls = 0  # policies removed in this process so far
# A server ramping up to 3,300 watchers (a third of the watch bench's) grows
# from ~300,000 to ~950,000 blocks: no complete pass on the way; one with
# 10,000 passes the bound once (~1.6M blocks), then not again below ~4M.
GROWTH = 1.0
FLOOR = 1_000_000  # allocated blocks
CHECK_INTERVAL = 2.0
# A check that woke later than this, or within QUIET seconds of a batch of
# blocking queries, found the loop busy: the complete pass waits for a
# quieter check (unless the bound is exceeded twice over).
BUSY_LATENESS = 0.05
QUIET = 1.0


class GcPolicy:
    """A ``gc.callbacks`` entry freezing the survivors of young passes, and
    the complete passes that bound what the frozen set may keep."""

    def __init__(self, growth: float = GROWTH, floor: int = FLOOR) -> None:
        self.growth = growth
        self.floor = floor
        self.base = sys.getallocatedblocks()  # after the last complete pass
        self.freezes = 0
        self.young_passes = 0
        self.complete_passes = 0
        self._users = 0
        self.remove_hook: Callable[[], None] | None = None

    @property
    def limit(self) -> int:
        """Allocated blocks past which a complete pass is due."""
        return int(self.base * (1 + self.growth)) + self.floor

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info.get("generation", 0) >= 1:
            gc.freeze()
            self.freezes += 1

    def young_pass(self) -> None:
        """A generation 1 pass (its survivors are then frozen): after a
        round that ran a batch of blocking queries. Not while the collector
        is paused (a snapshot's copy of the store is alive: registry/state/
        frozen.py), so as not to scan that copy."""
        if gc.isenabled():
            gc.collect(1)
            self.young_passes += 1

    def complete_pass(self) -> int:
        """Collect every object, frozen ones included, then freeze the
        survivors; returns the number collected (one long pause: rare)."""
        started, started_cpu = time.perf_counter(), time.thread_time()
        gc.unfreeze()
        collected = gc.collect()  # our callback freezes the survivors
        self.base = sys.getallocatedblocks()
        self.complete_passes += 1
        log.info(
            "event=gc_complete_pass ms=%d cpu_ms=%d collected=%d blocks=%d",
            (time.perf_counter() - started) * 1000,
            (time.thread_time() - started_cpu) * 1000,
            collected,
            self.base,
        )
        return collected

    def due(self, busy: bool) -> bool:
        """Whether a complete pass should run now (see the module docstring)."""
        blocks = sys.getallocatedblocks()
        if busy:
            return blocks > 2 * self.limit
        return blocks > self.limit

    async def govern(self, interval: float = CHECK_INTERVAL) -> None:
        """Run complete passes when due, until cancelled; the policy stays
        installed while at least one ``govern`` runs (several agents in one
        test process share it), and is removed, the heap unfrozen, after."""
        self._users += 1
        try:
            while True:
                woke = time.monotonic() + interval
                await trio.sleep(interval)
                late = time.monotonic() - woke > BUSY_LATENESS
                busy = late or blocking.seconds_since_batch() < QUIET
                if gc.isenabled() and self.due(busy=busy):  # not during a snapshot
                    self.complete_pass()
        finally:
            self._users -= 1
            if not self._users:
                uninstall()


def install(growth: float = GROWTH, floor: int = FLOOR) -> GcPolicy:
    """Freeze what survives young passes from now on (one policy per process):
    sets ``THRESHOLDS`` and freezes the heap as it is (start-up objects)."""
    for cb in gc.callbacks:
        if isinstance(cb, GcPolicy):
            return cb
    global _thresholds_before
    _thresholds_before = gc.get_threshold()
    gc.set_threshold(*THRESHOLDS)
    gc.freeze()
    policy = GcPolicy(growth, floor)
    gc.callbacks.append(policy)
    policy.remove_hook = blocking.after_batches(policy.young_pass)
    return policy


def uninstall() -> None:
    """Back to CPython's collector (its thresholds as before ``install``):
    no freezing, everything scanned again. Not collected here (that would
    hold the loop while the agent shuts down): a process that goes on after
    its agents stopped (a test run with agents in process) should run the
    complete pass itself when ``uninstalls`` moved, or CPython runs it, with
    every cycle the frozen heap kept (seen: 8.6 s, 1.25M objects, on a loaded
    test worker), in the middle of whatever runs next."""
    global uninstalls
    installed = False
    for cb in gc.callbacks:
        if isinstance(cb, GcPolicy):
            installed = True
            if cb.remove_hook is not None:
                cb.remove_hook()
    gc.callbacks[:] = [cb for cb in gc.callbacks if not isinstance(cb, GcPolicy)]
    gc.unfreeze()
    if installed:
        gc.set_threshold(*_thresholds_before)
        uninstalls += 1
