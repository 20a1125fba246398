"""Accepting connections without log floods: the accept loops of ``serve_http``.

trio's ``serve_listeners`` answers accept(2) failing with EMFILE/ENFILE by
logging an error with a traceback and retrying every 100 ms: 10 lines a
second for as long as the process is out of file descriptors (issue 13).
Here the same failures back off exponentially (100 ms doubling to 2 s, reset
by the next successful accept) and are logged through a ``RateLimitedLog``:
the first occurrence at once, then at most one line per interval saying how
many were suppressed.

The connection cap itself lives in ``server._Admission``;
``http_connection_cap`` keeps the configured cap below the process's file
descriptor limit, so the HTTP API alone cannot run the agent out of them.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import resource
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn

import trio

__all__ = [
    "ACCEPT_CAPACITY_ERRNOS",
    "RateLimitedLog",
    "http_connection_cap",
    "serve_listeners",
]

# accept(2) errors that mean "out of resources now", not "listener broken".
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
MIN_BACKOFF = 0.1
MAX_BACKOFF = 2.0
LOG_INTERVAL = 10.0

Handler = Callable[[trio.abc.Stream], Awaitable[None]]


class RateLimitedLog:
    """One log line per event kind per ``interval`` seconds, counting the rest.

    ``clock`` is a parameter so tests can drive it; by default it is trio's
    clock inside a trio run (MockClock-friendly) and ``time.monotonic``
    outside one.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = LOG_INTERVAL,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        try:
            return trio.current_time()
        except RuntimeError:
            return time.monotonic()

    def log(self, level: int, kind: str, msg: str, *args: object) -> bool:
        """Log ``msg % args`` (plus ``suppressed=N``) unless ``kind`` was logged
        less than ``interval`` ago; returns whether a line was written."""
        now = self._now()
        if now - self._last.get(kind, -math.inf) < self._interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return False
        self._last[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        self._logger.log(level, msg + " suppressed=%d", *args, suppressed)
        return True


def http_connection_cap(configured: int, logger: logging.Logger | None = None) -> int:
    """The global HTTP connection cap to enforce for ``limits.http_max_conns``.

    0 stays 0 (no cap, as configured). Otherwise the cap is at most half of
    the soft RLIMIT_NOFILE, leaving the other half for Raft, RPC, checks,
    sqlite and the proxy's API clients; the clamp is logged once.
    """
    if configured <= 0:
        return 0
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return configured
    budget = max(16, soft // 2)
    if configured > budget:
        if logger is not None:
            logger.warning(
                "event=http_max_conns_clamped configured=%d effective=%d rlimit_nofile=%d",
                configured,
                budget,
                soft,
            )
        return budget
    return configured


async def _accept_loop(
    listener: trio.abc.Listener[trio.abc.Stream],
    handler_nursery: trio.Nursery,
    handler: Handler,
    limiter: RateLimitedLog,
) -> None:
    backoff = MIN_BACKOFF
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                    raise
                name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                limiter.log(
                    logging.ERROR,
                    "accept",
                    "event=http_accept_failed errno=%s reason=%r retry_in=%.1fs "
                    "hint='raise LimitNOFILE or lower limits.http_max_conns'",
                    name,
                    os.strerror(exc.errno or 0),
                    backoff,
                )
                await trio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = MIN_BACKOFF
            handler_nursery.start_soon(_run_handler, stream, handler)


async def _run_handler(stream: trio.abc.Stream, handler: Handler) -> None:
    try:
        await handler(stream)
    finally:
        await trio.aclose_forcefully(stream)


async def serve_listeners(
    handler: Handler,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    *,
    limiter: RateLimitedLog,
    task_status: trio.TaskStatus[list[trio.abc.Listener[trio.abc.Stream]]] = (
        trio.TASK_STATUS_IGNORED
    ),
) -> NoReturn:
    """``trio.serve_listeners`` with backoff and rate-limited logs on EMFILE & co.

    Runs ``handler(stream)`` in its own task per connection (closing the
    stream afterwards) until cancelled; closes the listeners on exit. Raises
    what a listener raises on accept other than the capacity errors.
    """
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept_loop, listener, nursery, handler, limiter)
        task_status.started(list(listeners))
    raise AssertionError("accept loops never return")  # pragma: no cover
