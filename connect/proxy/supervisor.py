"""``--workers N``: N proxy processes sharing the listeners through SO_REUSEPORT.

The supervisor starts N copies of ``meshd proxy --worker-id I`` (each runs
the full proxy with its own agent watches; the kernel spreads new
connections over the processes because every listener sets SO_REUSEPORT),
restarts a worker that dies (backoff 0.5 s doubling to 30 s; a worker that
ran for a minute resets it) and on SIGTERM/SIGINT sends SIGTERM to all,
waits up to ``STOP_GRACE`` seconds and kills the rest.

Metrics: workers write prometheus-client multiprocess files to a private
temporary directory (``PROMETHEUS_MULTIPROC_DIR``) and the supervisor alone
serves ``--metrics-addr``, summing them; a dead worker is marked so its
active-connection gauge disappears.

systemd: each worker reports its readiness to the supervisor, which sends
``READY=1`` once all have (connect/proxy/notify.py).

A worker exiting with ``EXIT_FATAL`` (agent unreachable at start, bad
arguments) stops everything: restarting would fail the same way.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio
from prometheus_client import generate_latest
from prometheus_client.multiprocess import mark_process_dead

from .logfmt import emit
from .metrics import multiprocess_registry, serve_metrics
from .notify import notify

EXIT_FATAL = 3
STOP_GRACE = 10.0
RESTART_MIN = 0.5
RESTART_MAX = 30.0
HEALTHY_AFTER = 60.0


@dataclass
class _Worker:
    index: int
    process: trio.Process | None = None
    restarts: int = 0
    delay: float = RESTART_MIN
    pids: list[int] = field(default_factory=list)


class FatalWorkerExit(Exception):
    """A worker exited with ``EXIT_FATAL``; the message is its reason."""


class Supervisor:
    """Runs and restarts the workers; ``run`` returns when told to stop."""

    def __init__(
        self,
        command: Sequence[str],
        workers: int,
        *,
        env: dict[str, str] | None = None,
        metrics_addr: tuple[str, int] | None = None,
    ) -> None:
        self.command = list(command)
        self.count = workers
        self.env = dict(os.environ if env is None else env)
        self.metrics_addr = metrics_addr
        self.metrics_dir = ""
        self.stopping = False
        self.workers = [_Worker(i) for i in range(workers)]

    def _render(self) -> bytes:
        return generate_latest(multiprocess_registry(self.metrics_dir))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until SIGTERM/SIGINT or cancellation; raises ``FatalWorkerExit``."""
        self.metrics_dir = tempfile.mkdtemp(prefix="meshd-proxy-metrics-")
        self.env["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
        try:
            async with trio.open_nursery() as nursery:
                if self.metrics_addr is not None:
                    host, port = self.metrics_addr
                    await nursery.start(serve_metrics, host, port, self._render)
                await nursery.start(self._relay_ready)
                for worker in self.workers:
                    nursery.start_soon(self._keep, worker)
                nursery.start_soon(self._signals, nursery)
                task_status.started()
        finally:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    async def _relay_ready(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Workers report ``READY=1 WORKER=i`` to a socket of the supervisor's
        (their ``$NOTIFY_SOCKET``); once every worker has, the supervisor
        tells systemd ``READY=1`` (sd_notify accepts only the main PID)."""
        path = os.path.join(self.metrics_dir, "notify")
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
        with sock:
            await sock.bind(path)
            self.env["NOTIFY_SOCKET"] = path
            task_status.started()
            ready: set[str] = set()
            while True:  # kept open: restarted workers report again
                lines = (await sock.recv(4096)).decode(errors="replace").splitlines()
                if "READY=1" not in lines or len(ready) >= self.count:
                    continue
                ready.update(ln[7:] for ln in lines if ln.startswith("WORKER="))
                if len(ready) == self.count:
                    notify(f"READY=1\nSTATUS=serving; {self.count} workers")

    async def _signals(self, nursery: trio.Nursery) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for sig in signals:
                emit(20, "stopping", signal=signal.Signals(sig).name, workers=self.count)
                notify("STOPPING=1")
                await self.stop()
                nursery.cancel_scope.cancel()
                return

    async def stop(self) -> None:
        """SIGTERM every worker, then SIGKILL those alive after ``STOP_GRACE``."""
        self.stopping = True
        alive = [w.process for w in self.workers if w.process and w.process.returncode is None]
        for proc in alive:
            proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(STOP_GRACE):
            for proc in alive:
                await proc.wait()
        for proc in alive:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    async def _keep(self, worker: _Worker) -> None:
        while not self.stopping:
            cmd = [*self.command, "--worker-id", str(worker.index)]
            started = trio.current_time()
            # Spawned in a shielded scope so a stop never leaves an unreaped child.
            with trio.CancelScope(shield=True):
                proc = await trio.lowlevel.open_process(cmd, env=self.env, stdin=subprocess.DEVNULL)
            worker.process = proc
            worker.pids.append(proc.pid)
            emit(20, "worker_started", worker=worker.index, pid=proc.pid)
            try:
                code = await proc.wait()
            finally:
                if proc.returncode is None:
                    with trio.CancelScope(shield=True):
                        proc.kill()
                        await proc.wait()
                mark_process_dead(proc.pid, self.metrics_dir)  # type: ignore[no-untyped-call]
            if self.stopping:
                return
            if code == EXIT_FATAL:
                self.stopping = True
                await self.stop()
                raise FatalWorkerExit(f"worker {worker.index} exited: fatal error (see its log)")
            if trio.current_time() - started > HEALTHY_AFTER:
                worker.delay = RESTART_MIN
            emit(
                40,
                "worker_exited",
                worker=worker.index,
                pid=proc.pid,
                code=code,
                restart_in=worker.delay,
            )
            worker.restarts += 1
            await trio.sleep(worker.delay)
            worker.delay = min(RESTART_MAX, worker.delay * 2)
