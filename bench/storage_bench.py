"""One Raft log save (one ~220-byte entry, as a KV PUT writes, plus the
commit index) on SqliteStorage vs SegmentLogStorage, alternated A B A B in
the same run and directory's file system: median wall time and CPU
(utime+stime of this process) per save, with a raw append + fdatasync for
the disk's floor and the load average. Prints one table; never asserts.

    python -m bench.storage_bench --rounds 6 --saves 300
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from raft.storage import SqliteStorage
from raft.types import Entry, HardState
from raft.wal import SegmentLogStorage

DATA = b"p" * 220


def _raw(directory: Path, saves: int, batch: int) -> tuple[list[float], float]:
    fd = os.open(directory / "raw", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    times = []
    cpu0 = time.process_time()
    try:
        for _ in range(saves):
            t0 = time.perf_counter()
            os.write(fd, DATA * batch)
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
    return times, (time.process_time() - cpu0) / saves


Run = Callable[[Path, int, int], tuple[list[float], float]]


def _storage(make: Callable[[Path], object]) -> Run:
    def run(directory: Path, saves: int, batch: int) -> tuple[list[float], float]:
        s = make(directory)
        assert isinstance(s, SqliteStorage | SegmentLogStorage)
        s.save(HardState(1, "a", 0), [Entry(1, 1, data=DATA)])
        times = []
        cpu0 = time.process_time()
        for i in range(2, saves * batch + 2, batch):
            entries = [Entry(j, 1, data=DATA) for j in range(i, i + batch)]
            t0 = time.perf_counter()
            s.save(HardState(1, "a", i - 1), entries)
            times.append(time.perf_counter() - t0)
        cpu = (time.process_time() - cpu0) / saves
        s.close()
        return times, cpu

    return run


KINDS: dict[str, Run] = {
    "raw write+fdatasync": _raw,
    "sqlite (before)": _storage(SqliteStorage),
    "segments (after)": _storage(SegmentLogStorage),
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=6, help="A B A B ... rounds")
    p.add_argument("--saves", type=int, default=300, help="saves per storage per round")
    p.add_argument("--batch", type=int, default=1, help="entries per save")
    p.add_argument("--dir", type=Path, help="where to write (default: a temp dir)")
    args = p.parse_args(argv)
    walls: dict[str, list[float]] = {k: [] for k in KINDS}
    cpus: dict[str, list[float]] = {k: [] for k in KINDS}
    loads = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for r in range(args.rounds):
            for kind, run in KINDS.items():
                d = Path(tmp) / f"{r}-{kind.split()[0]}"
                d.mkdir()
                times, cpu = run(d, args.saves, args.batch)
                walls[kind].append(statistics.median(times))
                cpus[kind].append(cpu)
            loads.append(os.getloadavg()[0])
    spread = f"{min(loads):.1f}-{max(loads):.1f}"
    print(f"{args.rounds} rounds x {args.saves} saves of {args.batch}; load average {spread}")
    print(f"{'':22} {'median save us':>15} {'p90 of rounds':>14} {'CPU/save us':>12}")
    for kind in KINDS:
        w = sorted(walls[kind])
        print(
            f"{kind:22} {statistics.median(w) * 1e6:15.0f} "
            f"{w[int(len(w) * 0.9) - 1 if len(w) > 1 else 0] * 1e6:14.0f} "
            f"{statistics.median(cpus[kind]) * 1e6:12.0f}"
        )


if __name__ == "__main__":
    main()
