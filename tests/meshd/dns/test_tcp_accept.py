"""The DNS TCP accept loop out of file descriptors: it backs off and logs a
bounded number of lines (issue 13 item 10: it logged ``dns_accept_failed``
every 100 ms)."""

from __future__ import annotations

import errno
import logging
from typing import Any

import pytest
import trio
import trio.testing

from meshd.dns.server import DNSServerLimits, _serve_tcp


class _ExhaustedListener(trio.abc.Listener[Any]):
    """EMFILE on every accept until ``fds_back``; then one stream, then waits."""

    def __init__(self) -> None:
        self.attempts = 0
        self.fds_back = False
        self.handed: Any = None
        self.peer: Any = None

    async def accept(self) -> Any:
        await trio.lowlevel.checkpoint()
        self.attempts += 1
        if self.fds_back and self.handed is None:
            self.handed, self.peer = trio.testing.memory_stream_pair()
            return self.handed
        if self.fds_back:
            await trio.sleep_forever()
        raise OSError(errno.EMFILE, "Too many open files")

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class _NoAnswers:
    def cached_reply(self, wire: bytes, transport: str) -> bytes | None:
        return None

    async def reply(self, wire: bytes, transport: str) -> bytes | None:
        return None


async def test_emfile_backs_off_and_logs_at_most_once_per_10s(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="meshd.dns")
    listener = _ExhaustedListener()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve_tcp, listener, _NoAnswers(), DNSServerLimits())
        await trio.sleep(60)
        attempts = listener.attempts
        lines = [r for r in caplog.records if "dns_accept_failed" in r.getMessage()]
        listener.fds_back = True
        with trio.fail_after(3):  # at most one full backoff later it accepts again
            while listener.handed is None:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert 25 <= attempts <= 40, attempts  # the old loop: 600 in 60 s
    assert 5 <= len(lines) <= 7, [r.getMessage() for r in lines]
    first = lines[0].getMessage()
    assert "errno=EMFILE" in first and "suppressed=0" in first
    assert any("suppressed=0" not in r.getMessage() for r in lines[1:])
