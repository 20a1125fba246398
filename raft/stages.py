"""Per-stage timing of the driver's commit and read paths, for benchmarks.

Off (``None``) unless the process runs with ``MESHD_RAFT_STAGES=N``; then the
driver stamps ``time.perf_counter_ns()`` as one write (or read, or follower
append) passes each stage, and every ``N`` finished samples of a path one log
line gives the median time, in microseconds, from the path's start to each
stage (``bench/kv_stages.py`` reads these lines)::

    event=raft_stages path=leader_put n=200 proposed=35 sent=80 ...

Stages are cumulative offsets from the start, not sums: the leader's own
fsync runs in parallel with replication (thesis §10.2.1), so only offsets
show which one the commit waited for.

A sample may carry labels (``label``: ``#index=…``, the log index it is
about). With each median line a ``raft_stages_raw`` line then lists the
path's samples with their absolute ``perf_counter_ns`` stamps (one line per
flush, not per sample), so that a benchmark can join one write's samples
across processes by index: the leader's request and each follower's append
(CLOCK_MONOTONIC is shared by the processes of one host)::

    event=raft_stages_raw path=follower_append samples=start=1,#index=7,decoded=3;...

An application may time more of a request than the driver sees: it opens a
sample of its own (``begin(key, start_ns)``) and publishes it in ``CURRENT``
for the task that handles the request; ``RaftNode.apply`` called from that
task then stamps the driver's stages into that sample (``adopt``) instead of
opening one of its own, and the application ends it (its own path name) once
the answer is written.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Hashable
from contextvars import ContextVar

log = logging.getLogger("raft.stages")

Sample = list[tuple[str, int]]  # (stage, perf_counter_ns), the start first

# The sample of the request the current task is handling (benchmarks only):
# set by the application around one request, read by ``RaftNode.apply``.
CURRENT: ContextVar[Sample | None] = ContextVar("raft_stages_current", default=None)


def stamp(stage: str) -> None:
    """Stamp ``stage`` in the sample of the request this task handles, if
    one is being timed (``CURRENT``); costs a context-variable read when not."""
    sample = CURRENT.get()
    if sample is not None:
        sample.append((stage, time.perf_counter_ns()))


class Stages:
    """Open samples keyed by anything hashable; finished ones summarised per
    path (medians: on a shared host one preempted sample would move a mean)."""

    def __init__(self, every: int) -> None:
        self.every = max(1, every)
        self._open: dict[Hashable, list[tuple[str, int]]] = {}
        self._offsets: dict[str, dict[str, list[int]]] = {}  # path -> stage -> ns from start
        self._counts: dict[str, int] = {}
        self._raw: dict[str, list[str]] = {}  # path -> labelled samples, absolute

    @classmethod
    def from_env(cls) -> Stages | None:
        raw = os.environ.get("MESHD_RAFT_STAGES", "")
        return cls(int(raw)) if raw.isdigit() and int(raw) > 0 else None

    def begin(self, key: Hashable, start_ns: int | None = None) -> Sample | None:
        """Open a sample for ``key`` starting now (or at ``start_ns``, a
        ``perf_counter_ns``/``CLOCK_MONOTONIC`` time, possibly taken by
        another process on this host); returns it, or None when too many
        are open."""
        if len(self._open) >= 100_000:  # a bench with many in flight: bounded
            return None
        sample: Sample = [("start", time.perf_counter_ns() if start_ns is None else start_ns)]
        self._open[key] = sample
        return sample

    def adopt(self, key: Hashable, sample: Sample) -> None:
        """Stamps for ``key`` go to ``sample``, opened by someone else (who
        ends it); ``drop(key)`` forgets the alias."""
        self._open[key] = sample

    def drop(self, key: Hashable) -> None:
        self._open.pop(key, None)

    def enter(self, key: Hashable, stage: str) -> Sample | None:
        """Start timing ``key``: in the sample of the request this task
        handles (``CURRENT``, stamping ``stage``), which it returns, else in
        a sample of its own (None). ``leave`` ends either."""
        outer = CURRENT.get()
        if outer is None:
            self.begin(key)
        else:
            self.adopt(key, outer)
            self.stamp(key, stage)
        return outer

    def leave(self, key: Hashable, path: str, outer: Sample | None) -> None:
        """Stamp ``resumed`` for ``key`` entered with ``enter`` (which gave
        ``outer``): its own sample ends under ``path``; a request's stays
        open for the application to end."""
        if outer is None:
            self.end(key, path, "resumed")
        else:
            self.stamp(key, "resumed")
            self.drop(key)

    def stamp(self, key: Hashable, stage: str, at_ns: int | None = None) -> None:
        """Stamp ``stage`` (its first time only) now, or at ``at_ns``."""
        stamps = self._open.get(key)
        if stamps is not None and all(s != stage for s, _ in stamps):
            stamps.append((stage, time.perf_counter_ns() if at_ns is None else at_ns))

    def label(self, key: Hashable, name: str, value: int) -> None:
        """Tag ``key``'s sample (``#name=value``, e.g. its log index): not a
        stage; it makes the sample listed whole in the raw line."""
        self.stamp(key, "#" + name, value)

    def rekey(self, old: Hashable, new: Hashable) -> None:
        stamps = self._open.pop(old, None)
        if stamps is not None:
            self._open[new] = stamps

    def end(self, key: Hashable, path: str, stage: str = "done") -> None:
        self.stamp(key, stage)
        stamps = self._open.pop(key, None)
        if stamps is None:
            return
        start = stamps[0][1]
        offsets = self._offsets.setdefault(path, {})
        labelled = False
        for name, at in stamps[1:]:
            if name[0] == "#":
                labelled = True
            else:
                offsets.setdefault(name, []).append(at - start)
        if labelled:
            raw = ",".join(f"{name}={at}" for name, at in stamps)
            self._raw.setdefault(path, []).append(raw)
        n = self._counts[path] = self._counts.get(path, 0) + 1
        if n >= self.every:
            self.flush(path)

    def flush(self, path: str) -> None:
        n, offsets = self._counts.pop(path, 0), self._offsets.pop(path, {})
        if n:
            fields = " ".join(
                f"{name}={statistics.median(ns) / 1000:.0f}" for name, ns in offsets.items()
            )
            log.info("event=raft_stages path=%s n=%d %s", path, n, fields)
        if raw := self._raw.pop(path, None):
            log.info("event=raft_stages_raw path=%s samples=%s", path, ";".join(raw))
