"""Optional py-spy recordings of a meshd process while a benchmark row runs
(``--py-spy DIR`` on the benchmarks that offer it)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from .procs import stop_process


def py_spy() -> str:
    """The py-spy executable (next to this interpreter or on PATH); raises
    ``RuntimeError`` naming the fix when it is not installed."""
    here = Path(sys.executable).with_name("py-spy")
    found = str(here) if here.exists() else shutil.which("py-spy")
    if not found:
        raise RuntimeError("--py-spy needs py-spy: .venv/bin/pip install py-spy")
    return found


@contextlib.contextmanager
def recording(pid: int, out: Path, seconds: float) -> Iterator[None]:
    """Record ``pid`` for ``seconds`` (samples taken while it holds the GIL,
    200 Hz) into the flame graph ``out`` (SVG); waits for py-spy on exit."""
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        py_spy(),
        "record",
        "--gil",
        "--nonblocking",
        "-r",
        "200",
        "-d",
        str(max(1, int(seconds))),
        "-o",
        str(out),
        "-p",
        str(pid),
    ]
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        yield
        proc.wait(timeout=seconds + 60)
    finally:
        stop_process(proc)
