"""The transport's accept loop, without log floods on EMFILE (issue 13).

``trio.serve_listeners`` logs ``accept returned EMFILE`` with a traceback and
retries every 100 ms: 10 lines a second for as long as the process is out of
file descriptors. Here such failures back off (100 ms doubling to 2 s, reset
by the next accept) and are logged at most once per 10 s with the number of
suppressed repeats.

A small private copy of meshd/http/accept.py: raft imports nothing of meshd
(the import contracts in pyproject.toml), and the loop is 40 lines.
"""

from __future__ import annotations

import errno
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn

import trio

# accept(2) errors that mean "out of resources now", not "listener broken".
CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
MIN_BACKOFF = 0.1
MAX_BACKOFF = 2.0
LOG_INTERVAL = 10.0

Handler = Callable[[trio.SocketStream], Awaitable[None]]


class AcceptFailures:
    """Rate-limits the log of failed accepts: the first at once, then one
    line per ``interval`` (trio's clock, so MockClock drives it) naming how
    many were suppressed in between."""

    def __init__(self, logger: logging.Logger, interval: float = LOG_INTERVAL) -> None:
        self._logger = logger
        self._interval = interval
        self._last = -math.inf
        self.suppressed = 0
        self.logged = 0

    def failed(self, exc: OSError, retry_in: float) -> None:
        now = trio.current_time()
        if now - self._last < self._interval:
            self.suppressed += 1
            return
        self._last = now
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        self._logger.error(
            "event=accept_failed errno=%s reason=%r retry_in=%.1fs suppressed=%d "
            "hint='raise LimitNOFILE'",
            name,
            exc.strerror or str(exc),
            retry_in,
            self.suppressed,
        )
        self.logged += 1
        self.suppressed = 0


async def _accept_loop(
    listener: trio.abc.Listener[trio.SocketStream],
    nursery: trio.Nursery,
    handler: Handler,
    failures: AcceptFailures,
) -> None:
    backoff = MIN_BACKOFF
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            if exc.errno not in CAPACITY_ERRNOS:
                raise
            failures.failed(exc, backoff)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
            continue
        backoff = MIN_BACKOFF
        nursery.start_soon(_run_handler, handler, stream)


async def _run_handler(handler: Handler, stream: trio.SocketStream) -> None:
    try:
        await handler(stream)
    finally:
        await trio.aclose_forcefully(stream)


async def serve_listeners(
    handler: Handler,
    listeners: Sequence[trio.abc.Listener[trio.SocketStream]],
    failures: AcceptFailures,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Accept on every listener until cancelled, running ``handler(stream)``
    in a task of its own per connection (the handler closes its stream).
    Capacity errors back off with a rate-limited log; any other accept error
    is raised. The caller closes the listeners."""
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept_loop, listener, nursery, handler, failures)
        task_status.started()
    raise AssertionError("accept loops never return")  # pragma: no cover
