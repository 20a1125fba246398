"""A follower's CPU per forwarded KV PUT, end to end (issue #18).

Starts a 3-server meshd cluster (real processes, as kv_bench does), sends
PUTs with wrk to the two followers only (every write forwarded), and prints
the followers' and the leader's CPU (utime + stime) per write and the
load average. Repeat with ``--rounds`` to get a median; run it from another
source tree (``PYTHONPATH``) for the before figure.

    timeout 300 .venv/bin/python -m bench.fwd_cpu --subnet 127.0.83 --rounds 3

``--to-leader --connections 64``: the leader's CPU per PUT sent to it directly;
``--spread --connections 64``: kv_bench's spread row (PUTs over all three).
``--py-spy DIR``: raw py-spy samples of every server in the first round
(``DIR/<mode>-leader.txt``, ``DIR/<mode>-follower-<name>.txt``; fold one
with ``python -m bench.fwd_cpu --top FILE``). ``--alternate``: the spread and
the to-leader rows alternated in one cluster (forwarding's own cost).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench.loadgen.meshd_cluster import running_meshd
from bench.loadgen.pyspy import py_spy
from bench.loadgen.stages import scrape
from bench.loadgen.wrk import Requests, run_wrk
from tools.local_cluster import LocalAgentCluster

TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")
PUTS = Requests("PUT", [f"/v1/kv/fwd/{i:04d}" for i in range(1000)], [b"v" * 100])


def _spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    argv = [py_spy(), "record", "--gil", "--format", "raw", "-r", "200", "-d", str(int(seconds))]
    return subprocess.Popen([*argv, "-p", str(pid), "-o", str(out)], stdout=subprocess.DEVNULL)


def _user_sys(pid: int) -> tuple[int, int]:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0, 0
    return int(fields[11]), int(fields[12])


def _mode(a: argparse.Namespace) -> str:
    return "leader" if a.to_leader else "spread" if a.spread else "followers"


PERF_EVENTS = {
    "cs": "context-switches",
    "sysc": "raw_syscalls:sys_enter",
    "fsync": "syscalls:sys_enter_fdatasync",
    "fsync2": "syscalls:sys_enter_fsync",
    "futex": "syscalls:sys_enter_futex",
    "epoll": "syscalls:sys_enter_epoll_wait",
    "write": "syscalls:sys_enter_write",
    "send": "syscalls:sys_enter_sendto",
    "read": "syscalls:sys_enter_read",
    "recv": "syscalls:sys_enter_recvfrom",
}


def _perf(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """``perf stat`` of ``pid``'s context switches and syscalls for ``seconds``."""
    events = ",".join(PERF_EVENTS.values())
    argv = ["perf", "stat", "-x,", "-e", events, "-p", str(pid), "-o", str(out)]
    return subprocess.Popen([*argv, "--", "sleep", str(seconds)], stdout=subprocess.DEVNULL)


def _perf_counts(out: Path) -> dict[str, float]:
    by_event = {v: k for k, v in PERF_EVENTS.items()}
    counts: dict[str, float] = {}
    for line in out.read_text().splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[2] in by_event and parts[0].replace(".", "").isdigit():
            counts[by_event[parts[2]]] = float(parts[0])
    counts["fsync"] = counts.get("fsync", 0) + counts.pop("fsync2", 0)
    return counts


class _Round:
    """One measured wrk run: CPU (and optionally py-spy, perf) per server."""

    def __init__(self, pids: dict[str, int], leader: str, a: argparse.Namespace, http: str) -> None:
        self.pids, self.leader, self.a, self.http = pids, leader, a, http

    def _batches(self) -> tuple[float, float]:
        """``Registry.ApplyBatch`` calls the leader answered and Raft entries
        it applied, so far."""
        sample = scrape(self.http)
        key = ("meshd_rpc_request_duration_seconds", 'method="Registry.ApplyBatch"')
        entries = sample.get(("meshd_raft_fsm_apply_seconds", ""), (0.0, 0.0))[1]
        return sample.get(key, (0.0, 0.0))[1], entries

    def run(self, mode: str, targets: list[tuple[str, int]], first: bool) -> tuple[float, float]:
        a, pids = self.a, self.pids
        procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        for n, pid in pids.items():
            name = "leader" if n == self.leader else f"follower-{n}"
            if a.py_spy and first:
                a.py_spy.mkdir(parents=True, exist_ok=True)
                out = a.py_spy / f"{mode}-{name}.txt"
                procs.append(("spy", _spy(pid, a.seconds, out), out))
            if a.perf:
                out = Path(tempfile.mkdtemp(prefix="fwdcpu-perf-")) / f"{n}.txt"
                procs.append((n, _perf(pid, a.seconds, out), out))
        before_rpc = self._batches()
        before = {n: _user_sys(pid) for n, pid in pids.items()}
        res = run_wrk(PUTS, targets, connections=a.connections, seconds=a.seconds)
        after = {n: _user_sys(pid) for n, pid in pids.items()}
        batches, entries = (b - a for a, b in zip(before_rpc, self._batches(), strict=True))
        counts: dict[str, float] = {}
        by_role: dict[str, dict[str, float]] = {"leader": {}, "followers": {}}
        for n, proc, out in procs:
            proc.wait(timeout=30)
            if n != "spy":
                role = by_role["leader" if n == self.leader else "followers"]
                for k, v in _perf_counts(out).items():
                    counts[k] = counts.get(k, 0) + v
                    role[k] = role.get(k, 0) + v
        writes = max(res.requests, 1)
        used = {n: sum(after[n]) - sum(before[n]) for n in pids}
        usr = sum(after[n][0] - before[n][0] for n in pids) * TICK_US / writes
        sys_ = sum(after[n][1] - before[n][1] for n in pids) * TICK_US / writes
        fol = sum(used[n] for n in pids if n != self.leader) * TICK_US / writes
        lead = used[self.leader] * TICK_US / writes
        counts["batches"] = batches
        counts["entries"] = entries
        per_put = " ".join(f"{k} {v / writes:.3f}" for k, v in counts.items())
        for who, role_counts in by_role.items():  # --perf: where the syscalls are
            if role_counts:
                each = " ".join(f"{k} {v / writes:.3f}" for k, v in role_counts.items())
                per_put += f"\n          {who}: {each}"
        print(
            f"{mode:9s} {res.rate:7.0f} puts/s p50 {res.p50_ms:5.1f} ms err {res.errors}: "
            f"followers {fol:6.1f} us CPU/put, leader {lead:6.1f} us CPU/put"
            f" (user {usr:.0f} sys {sys_:.0f})  load {os.getloadavg()[0]:.2f}"
            + (f"\n          per put: {per_put}" if per_put else ""),
            flush=True,
        )
        return fol, lead


def _measure(cluster: LocalAgentCluster, a: argparse.Namespace) -> None:
    leader = cluster.leader()
    pids = {n: ag.proc.pid for n, ag in cluster.agents.items() if ag.proc}
    followers = [n for n in pids if n != leader]
    sent_to = {"leader": [leader], "spread": list(pids), "followers": followers}
    modes = ["spread", "leader"] if a.alternate else [_mode(a)]
    targets = {m: [(cluster.agents[n].ip, 8500) for n in sent_to[m]] for m in modes}
    run_wrk(PUTS, targets[modes[0]], connections=a.connections, seconds=1)  # warm up
    fol: dict[str, list[float]] = {m: [] for m in modes}
    lead: dict[str, list[float]] = {m: [] for m in modes}
    one = _Round(pids, leader, a, cluster.agents[leader].http)
    for i in range(a.rounds):
        for m in modes:  # alternated: A B A B ...
            f, ld = one.run(m, targets[m], i == 0)
            fol[m].append(f)
            lead[m].append(ld)
    for m in modes:
        f, ld = statistics.median(fol[m]), statistics.median(lead[m])
        print(f"median {m}: followers {f:.1f} us/put, leader {ld:.1f} us/put, all {f + ld:.1f}")


def _top(raw: Path, n: int = 60) -> None:
    """The functions of a raw (collapsed) py-spy profile with the most samples
    on the stack (inclusive) and at its top (self), in percent."""
    incl: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        c = int(count)
        total += c
        frames = [f.rsplit(":", 1)[0] + ")" for f in stack.split(";")]  # no line numbers
        own[frames[-1]] = own.get(frames[-1], 0) + c
        for f in set(frames):
            incl[f] = incl.get(f, 0) + c
    print(f"{total} samples")
    for title, table in (("self", own), ("inclusive", incl)):
        print(f"--- {title}")
        for f, c in sorted(table.items(), key=lambda kv: -kv[1])[:n]:
            print(f"{100 * c / total:5.1f}%  {f}")


# Where a server's samples go, by the first of these found on the stack
# (``--top RAW --groups``): the follower's forwarding against the rest.
# "senders": a WriteBatcher's sender outside the forwarding call (answering
# writers; on the leader also local_batcher's proposals).
GROUPS = (
    ("forwarding", ("_forward_write", "_send_write_batch", "RPCClient.")),
    ("senders", ("WriteBatcher._sender",)),
    ("rpc server", ("RPCServer.",)),
    ("wal threads", ("to_thread_run_sync", "start_thread_soon")),
    ("gc", ("GcPolicy.", "PauseLog.")),
    ("http", ("serve_http", "meshd/http/")),
    ("raft", ("RaftNode.", "Transport.", "raft/")),
)


def _groups(raw: Path) -> None:
    """A raw profile's samples by ``GROUPS`` (percent of the samples; the
    rest is the scheduler, epoll and smaller tasks)."""
    counts = {name: 0 for name, _ in GROUPS}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        total += int(count)
        for name, marks in GROUPS:
            if any(m in stack for m in marks):
                counts[name] += int(count)
                break
    shares = " ".join(f"{k} {100 * v / max(total, 1):.1f}%" for k, v in counts.items())
    rest = 100 * (total - sum(counts.values())) / max(total, 1)
    print(f"{raw.name}: {total} samples: {shares} other {rest:.1f}%")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--subnet", default="127.0.83")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--to-leader", action="store_true", help="PUTs to the leader (kv_bench's 64-conn row)"
    )
    p.add_argument("--spread", action="store_true", help="PUTs over all three (kv_bench's row)")
    p.add_argument("--alternate", action="store_true", help="spread and to-leader, A B A B")
    p.add_argument("--py-spy", type=Path, metavar="DIR", help="raw py-spy samples, 1st round")
    p.add_argument("--perf", action="store_true", help="syscalls and switches per put (perf)")
    p.add_argument("--top", type=Path, metavar="RAW", help="print a raw profile's top functions")
    p.add_argument("--groups", action="store_true", help="with --top: samples by GROUPS")
    a = p.parse_args()
    if a.top:
        _groups(a.top) if a.groups else _top(a.top)
        return
    with (
        tempfile.TemporaryDirectory(prefix="meshd-fwdcpu-") as tmp,
        running_meshd(Path(tmp), a.subnet) as cluster,
    ):
        _measure(cluster, a)


if __name__ == "__main__":
    main()
