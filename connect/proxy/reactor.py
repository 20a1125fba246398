"""One epoll set per trio run for the data path's steady state.

A relayed request costs the L4 pump two readiness waits per proxy (one per
direction). Through trio each wait is an ``epoll_ctl`` (trio registers
one-shot), an ``epoll_wait`` and a task switch through the scheduler: in
CPython that task switch, not the copy, was most of the proxy's user time
(profiled: ~16 us per request per proxy against Envoy's ~4).

Here the reading socket of each pumped direction stays registered in one
private, level-triggered epoll set, and one system task waits for that
set's fd to become readable (one trio wait per batch of ready sockets, not
per socket) and runs each ready job's ``step()`` synchronously: recv, send,
count. Only when a step cannot finish on its own (EOF, an error, a send
that would block, a TLS write wanting a read) does the job go back to its
task, which handles that slow path with ordinary trio waits and hands the
socket back.

Jobs whose source may hold bytes OpenSSL decrypted but the kernel no
longer reports (a step that stopped at its budget) are stepped again on
the next round without waiting, so no data sits unseen.

The L7 path's keep-alive sockets (a client's connection, a pooled one to an
upstream) wait for readability twice per request. Through trio each wait
re-arms the fd (an ``epoll_ctl``, trio registers one-shot) and costs trio's
registration bookkeeping; here such a socket (``watch``) can stay in the
set, edge-triggered, and ``Readiness.wait`` parks its task until the
reactor's next round sees an edge. An edge seen while nobody waits is kept
(``ready``), so the next wait returns at once and the read finds the bytes
(or, rarely, nothing: then it waits again). Rounds that only wake such
tasks are not repeated (the woken tasks have not run yet). That pays only
when a round wakes several tasks (many busy connections); one at a time,
the hop through the reactor's task costs more than the re-arm it saves, so
the sockets are in the set only while rounds wake ``BATCH`` tasks on
average, and wait through trio otherwise (``Reactor.batching``).
"""

from __future__ import annotations

import contextlib
import select
from typing import Any, Protocol

import trio

# Chunks one job may move per round before the others get their turn.
STEP_BUDGET = 16
# Rounds run back to back while sockets keep being ready, before yielding.
EXTRA_ROUNDS = 3
# Watched sockets (see Readiness) are in the set while a reactor round wakes
# at least BATCH of their tasks on average, over JUDGE rounds that wake any;
# below that they are waited for through trio, and TRIAL_EVERY waits later
# the set is tried again.
BATCH = 2.0
JUDGE = 64
TRIAL_EVERY = 4096


class Job(Protocol):
    fd: int

    def step(self, budget: int, now: float) -> Any:
        """Move what is ready (``now``: trio's clock at the round's start).
        ``None``: wait for readability again; ``AGAIN``: the budget ran out
        with more to read; anything else: the task's result (the job leaves
        the set)."""


AGAIN = object()
# What ends a watched socket for good (EPOLLRDHUP: the peer's FIN).
_HUP = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR


class Readiness:
    """A watched socket's readability (``Reactor.watch``): one task waits at a time.

    In the reactor's set (edge-triggered) while the reactor is in its
    batching mode (``Reactor.batching``); otherwise waited for through trio
    directly, as any other fd. A socket joins or leaves the set at the start
    of a wait."""

    __slots__ = (
        "closed",
        "fd",
        "hup",
        "in_set",
        "interrupted",
        "more",
        "reactor",
        "ready",
        "task",
    )

    def __init__(self, reactor: Reactor, fd: int) -> None:
        self.reactor = reactor
        self.fd = fd
        self.in_set = False  # registered in the reactor's epoll set
        self.ready = False  # an edge came while nobody waited
        self.task: trio.lowlevel.Task | None = None
        self.closed = False  # unwatched: every wait raises
        self.interrupted = False  # the waiting task was woken by ``closing``
        # The last read may have left bytes in the socket (its reader says,
        # http1.recv_into_view): edge-triggered, a wait then may never end.
        self.more = False
        # The peer shut its side (or the socket failed): permanent, so every
        # later wait returns at once. Edge-triggered, a FIN that came with
        # the last bytes is one edge; a read that took the bytes would
        # otherwise leave the EOF unseen.
        self.hup = False

    async def wait(self) -> None:
        """Until the socket is readable (in the set: an edge since the last
        wait, not a checkpoint when one is already there). Raises
        ``trio.ClosedResourceError`` when ``closing`` (or trio's
        ``notify_closing``) wakes it, or once unwatched; cancellation ends
        the wait. OSError when the fd cannot join the set."""
        if self.closed:
            raise trio.ClosedResourceError("socket closed")
        r = self.reactor
        r.waits += 1
        if self.in_set is not r.batching:
            if self.in_set:
                r.leave(self)
            else:
                r.join(self)
        elif r.waits >= r.trial_at and not r.batching:
            r.start_trial()
        if not self.in_set:
            await trio.lowlevel.wait_readable(self.fd)
            return
        if self.ready or self.hup:
            self.ready = False
            return
        self.task = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self.task = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        if self.interrupted:
            self.interrupted = False
            raise trio.ClosedResourceError("socket closed while waiting")

    def wake(self) -> None:
        task, self.task = self.task, None
        if task is None:
            self.ready = True
        else:
            trio.lowlevel.reschedule(task)


class Reactor:
    """The run's epoll set and the system task serving it."""

    def __init__(self) -> None:
        self.ep = select.epoll()
        self.jobs: dict[int, tuple[Job, trio.lowlevel.Task]] = {}
        self.watched: dict[int, Readiness] = {}
        # The batching mode of watched sockets (see Readiness, _judge).
        self.batching = False
        self.waits = 0  # waits on watched sockets so far
        self.trial_at = 0  # the wait count at which the next trial starts
        self.rounds = self.woken = 0  # this trial's rounds that woke tasks, and wakes
        self.again: list[Job] = []
        self.results: dict[int, Any] = {}  # fd -> what its task gets

    async def pump(self, job: Job, *, wait_first: bool = False) -> Any:
        """Serve ``job`` until its ``step`` returns a result, and return it
        (stepping it at once unless ``wait_first``: then only once its fd is
        readable). A step raising an exception raises it here.
        Cancellation takes the job out of the set (a checkpoint)."""
        result = None if wait_first else _safe_step(job)
        while result is AGAIN:
            await trio.lowlevel.checkpoint()
            result = _safe_step(job)
        if result is not None:
            await trio.lowlevel.checkpoint()
            return _unwrap(result)
        fd = job.fd
        self._register(fd, select.EPOLLIN)
        self.jobs[fd] = (job, trio.lowlevel.current_task())

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._drop(fd)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        return _unwrap(self.results.pop(fd))

    def watch(self, fd: int) -> Readiness:
        """Follow ``fd`` (a socket nobody pumps) until ``unwatch``: its
        readability is then ``Readiness.wait``."""
        w = self.watched[fd] = Readiness(self, fd)
        return w

    def join(self, w: Readiness) -> None:
        """``w``'s fd into the set, edge-triggered (its current readability
        is reported too). Raises OSError for a bad fd."""
        self._register(w.fd, select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET)
        w.in_set = True

    def _register(self, fd: int, flags: int) -> None:
        """``fd`` in the set with ``flags``. Raises OSError for a bad fd."""
        try:
            self.ep.register(fd, flags)
        except FileExistsError:  # still registered (the same open file)
            self.ep.modify(fd, flags)

    def _unregister(self, fd: int) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.ep.unregister(fd)

    def leave(self, w: Readiness) -> None:
        """``w``'s fd out of the set (waited for through trio from now on)."""
        w.in_set = False
        w.ready = False  # trio reports a readable fd at once anyway
        self._unregister(w.fd)

    def start_trial(self) -> None:
        """Try the batching mode again (judged after JUDGE rounds)."""
        self.batching = True
        self.rounds = self.woken = 0

    def _judge(self, woken: int) -> None:
        """Count a round that woke ``woken`` watched tasks; every JUDGE such
        rounds, keep the batching mode only if it paid (BATCH per round)."""
        self.rounds += 1
        self.woken += woken
        if self.rounds >= JUDGE:
            if self.woken < BATCH * self.rounds:
                self.batching = False
                self.trial_at = self.waits + TRIAL_EVERY
            self.rounds = self.woken = 0

    def unwatch(self, fd: int, which: Readiness | None = None) -> None:
        """Forget ``fd`` (before it is closed); a task still waiting on it
        gets ``trio.ClosedResourceError``. With ``which``, only that watch
        (the fd's number may be another socket's by now)."""
        w = self.watched.get(fd)
        if w is None or (which is not None and w is not which):
            return
        del self.watched[fd]
        w.closed = True
        w.hup = False
        self.closing(fd, w)
        if w.in_set:
            self.leave(w)

    def closing(self, fd: int, w: Readiness | None = None) -> None:
        """``trio.lowlevel.notify_closing`` for a watched ``fd``: the task
        waiting on it (if any) wakes with ``trio.ClosedResourceError``."""
        w = w or self.watched.get(fd)
        if w is not None and w.task is not None:
            w.interrupted = True
            w.wake()

    def _drop(self, fd: int) -> None:
        self.jobs.pop(fd, None)
        self._unregister(fd)

    async def serve(self) -> None:
        """Step the ready jobs until cancelled (the end of the trio run),
        then close the epoll set."""
        epfd = self.ep.fileno()
        try:
            while True:
                if self.again:
                    await trio.lowlevel.checkpoint()
                else:
                    await trio.lowlevel.wait_readable(epfd)
                # Answers often arrive while a round runs (the peer process
                # has the other core): look again before the trio round trip,
                # a bounded number of times so the other tasks get their turn.
                for _ in range(EXTRA_ROUNDS + 1):
                    if not self._round():
                        break
        finally:
            self.ep.close()

    def _round(self) -> bool:
        """Step every ready job once and wake the tasks of ready watched
        sockets; whether any job was ready (worth another round at once)."""
        events = self.ep.poll(0)
        ready = [fd for fd, _ in events]
        for fd, mask in events:
            if mask & _HUP:
                w = self.watched.get(fd)
                if w is not None:
                    w.hup = True
        again, self.again = self.again, []
        if not ready and not again:
            return False
        now = trio.current_time()
        ready += [j.fd for j in again if j.fd not in ready]
        stepped = False
        woken = 0
        for fd in ready:
            entry = self.jobs.get(fd)
            if entry is None:
                w = self.watched.get(fd)
                if w is not None and w.in_set:
                    woken += w.task is not None
                    w.wake()
                continue
            stepped = True
            job, task = entry
            result = _safe_step(job, now)
            if result is None:
                continue
            if result is AGAIN:
                self.again.append(job)
                continue
            self._drop(fd)
            self.results[fd] = result
            trio.lowlevel.reschedule(task)
        if woken:
            self._judge(woken)
        return stepped


class _Raised:
    __slots__ = ("exc",)

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


def _safe_step(job: Job, now: float | None = None) -> Any:
    try:
        return job.step(STEP_BUDGET, trio.current_time() if now is None else now)
    except Exception as exc:  # handed to the job's task, never to the reactor
        return _Raised(exc)


def _unwrap(result: Any) -> Any:
    if isinstance(result, _Raised):
        raise result.exc
    return result


_REACTOR: trio.lowlevel.RunVar[Reactor] = trio.lowlevel.RunVar("proxy_reactor")


def _running() -> Reactor | None:
    try:
        return _REACTOR.get()
    except (LookupError, RuntimeError):  # none yet; outside a trio run
        return None


def notify_closing(fd: int) -> None:
    """Wake every task waiting on ``fd`` with ``trio.ClosedResourceError``:
    through trio (``trio.lowlevel.notify_closing``) and through this run's
    reactor (a watched socket's wait in its set). Raises RuntimeError
    outside a trio run, as trio's does."""
    trio.lowlevel.notify_closing(fd)
    r = _running()
    if r is not None:
        r.closing(fd)


def unwatch(fd: int, which: Readiness | None = None) -> None:
    """``Reactor.unwatch`` on this run's reactor, if any (call before closing ``fd``)."""
    r = _running()
    if r is not None:
        r.unwatch(fd, which)


def reactor() -> Reactor:
    """This trio run's reactor (created, and its system task started, on
    first use)."""
    try:
        return _REACTOR.get()
    except LookupError:
        r = Reactor()
        _REACTOR.set(r)
        trio.lowlevel.spawn_system_task(r.serve, name="proxy-reactor")
        return r
