"""``python -m tools.local_cluster``: a real argument parser, and SIGTERM
stops every agent it started (none left orphaned)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.local_cluster import _parse_args

REPO = Path(__file__).resolve().parents[2]
# tools/ is not installed: the repository root must be on the path.
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def test_help_prints_usage_and_creates_nothing(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tools.local_cluster", "--help"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: python -m tools.local_cluster")
    assert "--servers" in out.stdout and "SIGTERM" in out.stdout
    assert list(tmp_path.iterdir()) == []


def test_arguments_are_checked() -> None:
    args = _parse_args(["--servers", "1", "--clients", "0", "--subnet", "127.0.77", "d"])
    assert (args.directory, args.servers, args.clients, args.subnet) == ("d", 1, 0, "127.0.77")
    assert _parse_args([]).directory == ".cluster"
    with pytest.raises(SystemExit):
        _parse_args(["--servers", "0"])
    with pytest.raises(SystemExit):
        _parse_args(["-x"])


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.e2e
@pytest.mark.slow
def test_sigterm_stops_every_agent_it_started(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "tools.local_cluster"),
            *("--servers", "1", "--clients", "1", "--subnet", "127.0.77"),
            str(tmp_path / "cluster"),
        ],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        pids = [int(p) for p in re.findall(r"pid (\d+)", first)]
        assert len(pids) == 2, first
        deadline = time.monotonic() + 60
        while not all(_running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(_running(p) for p in pids)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, rest
        assert "stopped every agent" in rest
        deadline = time.monotonic() + 10
        while any(_running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [p for p in pids if _running(p)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
