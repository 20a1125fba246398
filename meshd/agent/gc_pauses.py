"""Log the cyclic garbage collector's long pauses.

A collection runs on whatever thread allocated last, holding the GIL: the
event loop, and the Raft driver on it, wait for all of it. A pause longer
than an election timeout on the leader is an election (issue 18), so each
long one is one log line (``event=gc_pause``: wall and CPU time, the
difference being time the process waited for a core), next to the Raft driver's
``event=raft_loop_stall``. The callback costs four clock reads per collection.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

log = logging.getLogger("meshd.gc")

# Pauses shorter than this are not logged.
LOG_THRESHOLD = 0.1


class PauseLog:
    """A ``gc.callbacks`` entry timing every collection; keeps the longest."""

    def __init__(self, threshold: float = LOG_THRESHOLD) -> None:
        self.threshold = threshold
        self.longest = 0.0
        self._start = 0.0
        self._start_cpu = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
            self._start_cpu = time.thread_time()
            return
        took = time.perf_counter() - self._start
        self.longest = max(self.longest, took)
        if took >= self.threshold:
            log.warning(
                "event=gc_pause generation=%d ms=%d cpu_ms=%d collected=%d uncollectable=%d",
                info.get("generation", -1),
                took * 1000,
                (time.thread_time() - self._start_cpu) * 1000,
                info.get("collected", 0),
                info.get("uncollectable", 0),
            )


def install(threshold: float = LOG_THRESHOLD) -> PauseLog:
    """Start logging pauses of ``threshold`` seconds or more (once per process)."""
    for cb in gc.callbacks:
        if isinstance(cb, PauseLog):
            return cb
    pauses = PauseLog(threshold)
    gc.callbacks.append(pauses)
    return pauses
