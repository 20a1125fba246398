"""Accept loops: EMFILE backs off and is logged a bounded number of times
(issue 13 item 10: trio logged ``accept returned EMFILE`` 10 times a second)."""

from __future__ import annotations

import errno
import logging
from typing import Any

import pytest
import trio

from meshd.http.accept import RateLimitedLog, http_connection_cap, serve_listeners


class _ExhaustedListener(trio.abc.Listener[trio.abc.Stream]):
    """Fails every accept with EMFILE until ``fds_back`` is set, then hands out one stream."""

    def __init__(self) -> None:
        self.attempts = 0
        self.fds_back = False
        self.handed: trio.abc.Stream | None = None

    async def accept(self) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        self.attempts += 1
        if self.fds_back and self.handed is None:
            left, _right = trio.testing.memory_stream_pair()
            self.handed = left
            return left
        if self.fds_back:
            await trio.sleep_forever()
        raise OSError(errno.EMFILE, "Too many open files")

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_emfile_backs_off_and_logs_at_most_once_per_10s(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("test.accept")
    listener = _ExhaustedListener()
    handled: list[trio.abc.Stream] = []

    async def handler(stream: trio.abc.Stream) -> None:
        handled.append(stream)

    caplog.set_level(logging.INFO, logger="test.accept")
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_listeners(
                handler, [listener], limiter=RateLimitedLog(logger), task_status=task_status
            )
        )
        await trio.sleep(60)
        attempts, lines = listener.attempts, list(caplog.records)
        listener.fds_back = True
        await trio.sleep(3)  # at most one full backoff later the loop accepts again
        nursery.cancel_scope.cancel()
    # trio's loop: 600 attempts and 600 tracebacks in 60 s.
    assert 25 <= attempts <= 40, attempts
    assert 5 <= len(lines) <= 7, [r.getMessage() for r in lines]
    assert "errno=EMFILE" in lines[0].getMessage() and lines[0].exc_info is None
    assert "suppressed=0" in lines[0].getMessage()
    assert any(
        "suppressed=" in r.getMessage() and "suppressed=0" not in r.getMessage() for r in lines[1:]
    )
    assert handled == [listener.handed]


def test_rate_limited_log_counts_what_it_drops(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limiter = RateLimitedLog(logging.getLogger("test.rl"), 10.0, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="test.rl")
    written = []
    for step in range(100):  # 10 events a second for 10 s
        now[0] = step / 10
        written.append(limiter.log(logging.WARNING, "k", "event=x n=%d", step))
    now[0] = 10.0
    assert limiter.log(logging.WARNING, "k", "event=x n=%d", 100)
    assert limiter.log(logging.WARNING, "other", "event=y n=%d", 0)  # kinds are separate
    assert written.count(True) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "event=x n=0 suppressed=0",
        "event=x n=100 suppressed=99",
        "event=y n=0 suppressed=0",
    ]


def test_connection_cap_keeps_half_the_fd_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda _which: (1024, 4096))
    assert http_connection_cap(4096) == 512
    assert http_connection_cap(100) == 100
    assert http_connection_cap(0) == 0  # explicitly unlimited stays so
