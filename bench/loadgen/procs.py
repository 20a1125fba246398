"""Stopping what a benchmark started, and the file-descriptor limit it needs."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Stop ``proc`` and, if it leads its own process group (started with
    ``start_new_session=True``), everything in that group: SIGTERM, then
    SIGKILL after ``timeout``. Never raises for a process already gone."""
    own_group = False
    with contextlib.suppress(ProcessLookupError):
        own_group = os.getpgid(proc.pid) == proc.pid
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
        with contextlib.suppress(ProcessLookupError):
            if own_group:
                os.killpg(proc.pid, sig)
            elif proc.poll() is None:
                proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    if own_group:  # children that outlived the leader
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def raise_nofile(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (capped by
    the hard limit) so that it and the children it starts after this call
    can hold that many descriptors. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted and os.geteuid() == 0:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, wanted))  # root may raise it
            hard = wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def cpu_ticks(pid: int) -> int:
    """User + system CPU of ``pid`` in clock ticks (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)


def wait_idle(pids: Sequence[int], timeout: float, window: float = 0.3, busy: float = 0.05) -> bool:
    """Until every process in ``pids`` used under ``busy`` of a CPU over one
    ``window`` (they finished the work just handed to them, e.g. parking
    thousands of blocking queries). False if that did not happen in time."""
    hz = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + timeout
    before = [cpu_ticks(p) for p in pids]
    while time.monotonic() < deadline:
        time.sleep(window)
        after = [cpu_ticks(p) for p in pids]
        if all((a - b) / hz <= busy * window for a, b in zip(after, before, strict=True)):
            return True
        before = after
    return False
