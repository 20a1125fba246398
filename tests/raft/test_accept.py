"""The Raft transport's accept loop: EMFILE backs off and is logged a bounded
number of times (issue 13 item 10: trio's ``serve_listeners`` logged
``accept returned EMFILE`` with a traceback 10 times a second)."""

from __future__ import annotations

import errno
import logging
import random
import socket
import ssl
from typing import Any

import pytest
import trio
import trio.testing

from raft.accept import AcceptFailures, serve_listeners
from raft.transport import Transport


class _ExhaustedListener(trio.abc.Listener[Any]):
    """Fails every accept with ``error`` until ``fds_back``, then hands out
    one stream and waits."""

    def __init__(self, error: int = errno.EMFILE) -> None:
        self.socket = socket.socket()  # only getsockname() is used
        self.socket.bind(("127.0.0.1", 0))
        self.error = error
        self.attempts = 0
        self.fds_back = False
        self.handed: Any = None

    async def accept(self) -> Any:
        await trio.lowlevel.checkpoint()
        self.attempts += 1
        if self.fds_back and self.handed is None:
            self.handed, _peer = trio.testing.memory_stream_pair()
            return self.handed
        if self.fds_back:
            await trio.sleep_forever()
        raise OSError(self.error, "Too many open files")

    async def aclose(self) -> None:
        self.socket.close()
        await trio.lowlevel.checkpoint()


def _lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "accept" in r.getMessage().lower()]


async def test_emfile_backs_off_and_logs_at_most_once_per_10s(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    listener = _ExhaustedListener()
    failures = AcceptFailures(logging.getLogger("test.raft.accept"))
    handled: list[Any] = []

    async def handler(stream: Any) -> None:
        handled.append(stream)

    async with trio.open_nursery() as nursery:
        await nursery.start(serve_listeners, handler, [listener], failures)
        await trio.sleep(60)
        attempts, lines = listener.attempts, _lines(caplog)
        listener.fds_back = True
        await trio.sleep(3)  # at most one full backoff later it accepts again
        nursery.cancel_scope.cancel()
    assert 25 <= attempts <= 40, attempts  # trio's loop: 600 in 60 s
    assert 5 <= len(lines) <= 7, [r.getMessage() for r in lines]
    first = lines[0].getMessage()
    assert "event=accept_failed errno=EMFILE" in first and "suppressed=0" in first
    assert all(r.exc_info is None for r in lines)  # no tracebacks
    reported = sum(int(r.getMessage().split("suppressed=")[1].split()[0]) for r in lines)
    assert reported + len(lines) <= attempts <= reported + len(lines) + 5  # every one counted
    assert any("suppressed=0" not in r.getMessage() for r in lines[1:])
    assert handled == [listener.handed]


async def test_an_accept_error_that_is_not_about_capacity_is_raised(autojump_clock: Any) -> None:
    listener = _ExhaustedListener(errno.EBADF)

    async def handler(stream: Any) -> None:
        raise AssertionError("nothing to accept")

    with pytest.raises(BaseException) as exc:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                serve_listeners, handler, [listener], AcceptFailures(logging.getLogger("t"))
            )
    assert _errnos(exc.value) == [errno.EBADF]
    assert listener.attempts == 1  # raised at once, not retried


def _errnos(exc: BaseException) -> list[int | None]:
    if isinstance(exc, BaseExceptionGroup):
        return [n for inner in exc.exceptions for n in _errnos(inner)]
    return [getattr(exc, "errno", None)]


async def test_the_transport_serves_with_the_backed_off_loop(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real ``Transport.serve`` out of descriptors for a minute: a handful
    of lines on raft.transport, none of trio's ``accept returned EMFILE``."""
    caplog.set_level(logging.DEBUG)
    listener = _ExhaustedListener()

    async def fake_listeners(port: int, host: str | None = None) -> list[Any]:
        return [listener]

    monkeypatch.setattr(trio, "open_tcp_listeners", fake_listeners)
    ctx = ssl.create_default_context()
    transport = Transport("a", ("127.0.0.1", 0), ctx, ctx, rng=random.Random(1))
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.serve)
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    messages = [r.getMessage() for r in caplog.records]
    assert not any("accept returned" in m for m in messages), messages[:5]
    failed = [r for r in caplog.records if "event=accept_failed" in r.getMessage()]
    assert 5 <= len(failed) <= 7 and all(r.name == "raft.transport" for r in failed)
    assert 25 <= listener.attempts <= 40, listener.attempts
    assert transport.accept_failures.logged == len(failed)
