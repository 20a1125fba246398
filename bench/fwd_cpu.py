"""A follower's CPU per forwarded KV PUT, end to end (issue #18).

Starts a 3-server meshd cluster (real processes, as kv_bench does), sends
PUTs with wrk to the two followers only (every write forwarded), and prints
the followers' and the leader's CPU (utime + stime) per write and the
load average. Repeat with ``--rounds`` to get a median; run it from another
source tree (``PYTHONPATH``) for the before figure.

    timeout 300 .venv/bin/python -m bench.fwd_cpu --subnet 127.0.83 --rounds 3

``--to-leader --connections 64``: the leader's CPU per PUT sent to it directly.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench.loadgen.meshd_cluster import running_meshd
from bench.loadgen.procs import cpu_ticks
from bench.loadgen.pyspy import py_spy
from bench.loadgen.wrk import Requests, run_wrk
from tools.local_cluster import LocalAgentCluster

TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")
PUTS = Requests("PUT", [f"/v1/kv/fwd/{i:04d}" for i in range(1000)], [b"v" * 100])


def _spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    argv = [py_spy(), "record", "--format", "raw", "-r", "200", "-d", str(int(seconds))]
    return subprocess.Popen([*argv, "-p", str(pid), "-o", str(out)], stdout=subprocess.DEVNULL)


def _measure(cluster: LocalAgentCluster, a: argparse.Namespace) -> None:
    leader = cluster.leader()
    pids = {n: ag.proc.pid for n, ag in cluster.agents.items() if ag.proc}
    followers = [n for n in pids if n != leader]
    sent_to = [leader] if a.to_leader else followers
    targets = [(cluster.agents[n].ip, 8500) for n in sent_to]
    run_wrk(PUTS, targets, connections=a.connections, seconds=1)  # warm up
    fol, lead = [], []
    for i in range(a.rounds):
        spy = _spy(pids[sent_to[0]], a.seconds, a.py_spy) if a.py_spy and i == 0 else None
        before = {n: cpu_ticks(pid) for n, pid in pids.items()}
        res = run_wrk(PUTS, targets, connections=a.connections, seconds=a.seconds)
        used = {n: (cpu_ticks(pid) - before[n]) * TICK_US for n, pid in pids.items()}
        if spy is not None:
            spy.wait(timeout=30)
        writes = max(res.requests, 1)
        fol.append(sum(used[n] for n in followers) / writes)
        lead.append(used[leader] / writes)
        print(
            f"{res.rate:7.0f} puts/s p50 {res.p50_ms:5.1f} ms err {res.errors}: "
            f"followers {fol[-1]:6.1f} us CPU/put, leader {lead[-1]:6.1f} us CPU/put"
            f"  load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    print(
        f"median: followers {statistics.median(fol):.1f} us/put, "
        f"leader {statistics.median(lead):.1f} us/put"
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--subnet", default="127.0.83")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--to-leader", action="store_true", help="PUTs to the leader (kv_bench's 64-conn row)"
    )
    p.add_argument("--py-spy", type=Path, help="raw py-spy samples of the first target (1st round)")
    a = p.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="meshd-fwdcpu-") as tmp,
        running_meshd(Path(tmp), a.subnet) as cluster,
    ):
        _measure(cluster, a)


if __name__ == "__main__":
    main()
