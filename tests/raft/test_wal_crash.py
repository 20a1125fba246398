"""kill -9 of a real process in the middle of SegmentLogStorage writes: every
save that returned is on disk after a restart, the one in flight is there
whole or not at all, and appends go on after the torn tail (three crashes on
one directory)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from raft.types import Entry, HardState
from raft.wal import SegmentLogStorage

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Op:
    first: int
    count: int
    term: int
    size: int

    def entries(self) -> list[Entry]:
        return [
            Entry(i, self.term, data=(b"%d.%d:" % (i, self.term)) * (self.size // 8 + 1))
            for i in range(self.first, self.first + self.count)
        ]


def ops(seed: int, last: int, term: int, n: int = 400) -> list[Op]:
    """The saves a round makes from a log ending at ``last`` in ``term``:
    appends, some of them replacing a suffix (a follower's conflict) in a
    new term, with entries from 10 bytes to 200 KB (writes that take time)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        first = last + 1
        if last > 3 and rng.random() < 0.15:
            first, term = last + 1 - rng.randint(1, 3), term + 1
        count = rng.randint(1, 4)
        out.append(Op(first, count, term, rng.choice((10, 300, 5000, 200_000))))
        last = first + count - 1
    return out


def child(directory: str, seed: int) -> None:
    """Run the saves of ``ops``; print each index once its save returned."""
    s = SegmentLogStorage(directory, segment_size=2**20)
    state = s.load()
    last = state.entries[-1].index if state.entries else 0
    for i, op in enumerate(ops(seed, last, state.hard_state.term)):
        s.save(HardState(op.term, "a", 0), op.entries())
        print(i, flush=True)


def apply(log: list[Entry], op: Op) -> None:
    del log[op.first - 1 :]
    log.extend(op.entries())


def run_and_kill(directory: Path, seed: int, rng: random.Random) -> int:
    """Start ``child``, SIGKILL it mid-run; returns how many saves returned."""
    code = f"from tests.raft.test_wal_crash import child; child({str(directory)!r}, {seed})"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    acked = 0
    for _ in range(rng.randint(5, 60)):
        if not proc.stdout.readline():
            break
        acked += 1
    time.sleep(rng.random() * 0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    acked += len(proc.stdout.read().split())
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "it ran out of saves before the kill"
    return acked


def test_saves_survive_kill_minus_9_mid_write(tmp_path: Path) -> None:
    rng = random.Random(1805)
    log: list[Entry] = []
    term = 0
    for round_ in range(3):
        seed = rng.randrange(2**32)
        round_ops = ops(seed, len(log), term)
        acked = run_and_kill(tmp_path, seed, rng)
        for op in round_ops[:acked]:
            apply(log, op)
        with_next = list(log)
        apply(with_next, round_ops[acked])
        s = SegmentLogStorage(tmp_path, segment_size=2**20)
        state = s.load()
        s.close()
        assert state.entries in (log, with_next), f"round {round_}: acked {acked} saves"
        log = state.entries
        term = state.hard_state.term
        assert term >= log[-1].term
    assert len(list((tmp_path / "wal").glob("wal-*.log"))) > 1  # segments rotated too
