"""Raft commit throughput and latency on this machine, against the disk's ceiling.

Three raft.kvserver processes (loopback mTLS, the segmented log, fdatasync per batch)
commit 100-byte puts from 1 and from 64 closed-loop proposers running inside
the leader process. The baseline, measured in the same run on the same disk:
the raw fsync rate (one write + fsync per commit would be capped there) and
sqlite's batched insert rate. Prints figures; never asserts.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from tools.raft_cluster import LocalKVCluster, call, find_leader, wait_ready


def fsync_rate(directory: Path, seconds: float) -> float:
    """Appends of 100 bytes, each followed by fsync, per second."""
    path = directory / "fsync.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    n = 0
    end = time.perf_counter() + seconds
    try:
        while time.perf_counter() < end:
            os.write(fd, b"x" * 100)
            os.fsync(fd)
            n += 1
    finally:
        os.close(fd)
        path.unlink()
    return n / seconds


def sqlite_batched_rate(directory: Path, seconds: float, batch: int = 1000) -> float:
    """100-byte rows inserted per second, ``batch`` rows per fsynced transaction."""
    db = sqlite3.connect(directory / "bench.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE log (idx INTEGER PRIMARY KEY, data BLOB)")
    row = b"x" * 100
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        with db:
            db.executemany("INSERT INTO log VALUES (?, ?)", ((n + i, row) for i in range(batch)))
        n += batch
    db.close()
    return n / seconds


async def raft_run(root: Path, seconds: float) -> dict[str, dict[str, Any]]:
    cluster = LocalKVCluster(root, base_port=17200, log_level="WARNING")
    cluster.start_all()
    try:
        await wait_ready(cluster, list(cluster.servers))
        leader = await find_leader(cluster)
        addr = cluster.servers[leader].client_addr
        # Warm up connections and the sqlite files.
        await call(addr, {"op": "bench", "proposers": 8, "seconds": 1}, timeout=30)
        out = {}
        for proposers in (1, 64):
            req = {"op": "bench", "proposers": proposers, "seconds": seconds, "size": 100}
            resp = await call(addr, req, timeout=seconds + 30)
            out[str(proposers)] = resp["result"]
        return out
    finally:
        cluster.stop_all()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--quick", action="store_true", help="1-second runs (smoke test)")
    args = p.parse_args(argv)
    seconds = 1.0 if args.quick else args.seconds
    with tempfile.TemporaryDirectory(prefix="raft-bench-", dir=".") as tmp:
        root = Path(tmp)
        fsyncs = fsync_rate(root, min(seconds, 2))
        inserts = sqlite_batched_rate(root, min(seconds, 2))
        runs = trio.run(raft_run, root / "cluster", seconds)
    log = os.environ.get("MESHD_RAFT_LOG", "segments")  # raft/wal.py open_durable_storage
    print(f"raft_bench: 3 servers, loopback mTLS, {log} log, 100-byte puts")
    print(f"  baseline  fsync (write+fsync)       {fsyncs:10.0f} /s")
    print(f"  baseline  sqlite batched inserts    {inserts:10.0f} rows/s")
    for proposers, r in runs.items():
        rate = r["commits"] / r["seconds"]
        print(
            f"  meshd     {proposers:>2} proposer(s)          {rate:10.0f} commits/s"
            f"   p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms"
            f"   ({rate / fsyncs:.2f}x the fsync rate, errors {r['errors']})"
        )
    print("  targets: >= 10,000 commits/s at 64 proposers; p50 <= 2 ms at 1 proposer")


if __name__ == "__main__":
    main()
