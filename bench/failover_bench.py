"""Leader failover under write load: kill -9 of the leader -> first accepted write.

Each system runs 3 servers (meshd: real ``meshd agent`` processes; etcd 3.4:
Debian's etcd-server, same run) with the same Raft timing (100 ms heartbeat,
1 s election timeout). Three writers per member put 100-byte values in a
loop (a write every 50 ms each, retried 10 ms after a failure; a request
unanswered after 250 ms is abandoned and sent again, so every writer sends a
fresh request at least every ~260 ms). Then the leader is killed with
SIGKILL; the figure is the time from the kill to the first successful write
*sent after* the kill, from any writer. The killed member is restarted and
the cluster left to settle before the next kill. Also shown: when a
survivor first named a new leader. Prints figures; never asserts.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import signal
import statistics
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.etcd_cluster import CLIENT_PORT, EtcdCluster, b64
from bench.loadgen.install import BASELINE_TOOLS, ensure_commands
from bench.loadgen.meshd_cluster import running_meshd, wait_ready
from bench.loadgen.table import machine, ms, print_table, ratio, verdict
from tools.local_cluster import LocalAgentCluster

WRITERS_PER_MEMBER = 3
PACE = 0.05
RETRY = 0.01
CLIENT_TIMEOUT = 0.25
GIVE_UP = 30.0  # seconds after a kill without any accepted write
VALUE = b"f" * 100


@dataclass
class Trial:
    first_write: float | None  # seconds from the kill
    new_leader: float | None  # seconds from the kill until a survivor named one


@dataclass
class Outcome:
    system: str
    trials: list[Trial] = field(default_factory=list)

    def median(self, attr: str) -> float | None:
        values = [getattr(t, attr) for t in self.trials if getattr(t, attr) is not None]
        return statistics.median(values) if values else None


# One write on a member's connection (the int makes the key); True when accepted.
WriteFn = Callable[[http.client.HTTPConnection, int], bool]


class Writers:
    """Writer threads, each bound to one member, recording accepted writes."""

    def __init__(self, members: list[tuple[str, int]], write: WriteFn) -> None:
        self._members = members
        self._write = write
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.accepted: list[tuple[float, float]] = []  # (sent, answered), monotonic
        self.failures = 0
        self._threads = [
            threading.Thread(target=self._run, args=(host, port, i), daemon=True)
            for i, (host, port) in enumerate(members * WRITERS_PER_MEMBER)
        ]

    def __enter__(self) -> Writers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)

    def first_accepted_after(self, t: float) -> float | None:
        with self._lock:
            done = [answered for sent, answered in self.accepted if sent >= t]
        return min(done) if done else None

    def _run(self, host: str, port: int, wid: int) -> None:
        conn: http.client.HTTPConnection | None = None
        n = 0
        time.sleep(PACE * wid / len(self._threads))  # stagger the writers
        while not self._stop.is_set():
            n += 1
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=CLIENT_TIMEOUT)
            sent = time.monotonic()
            try:
                ok = self._write(conn, wid * 1_000_000 + n)
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = None
            if ok:
                with self._lock:
                    self.accepted.append((sent, time.monotonic()))
                self._stop.wait(PACE)
            else:
                self.failures += 1
                self._stop.wait(RETRY)
        if conn is not None:
            conn.close()


def _request(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes
) -> tuple[int, bytes]:
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, resp.read()


def meshd_write(conn: http.client.HTTPConnection, n: int) -> bool:
    status, body = _request(conn, "PUT", f"/v1/kv/failover/{n % 1000}", VALUE)
    return status == 200 and body.strip() == b"true"


def etcd_write(conn: http.client.HTTPConnection, n: int) -> bool:
    body = json.dumps({"key": b64(f"failover/{n % 1000}"), "value": b64(VALUE)}).encode()
    status, answer = _request(conn, "POST", "/v3/kv/put", body)
    return status == 200 and b'"header"' in answer and b'"error"' not in answer


def run_trial(writers: Writers, kill: Callable[[], None], new_leader: Callable[[], bool]) -> Trial:
    """Kill the leader under load; wait for the first accepted write after it."""
    time.sleep(1.0)  # writers in steady state
    t_kill = time.monotonic()
    kill()
    leader_at: float | None = None
    while time.monotonic() - t_kill < GIVE_UP:
        if leader_at is None:
            try:
                if new_leader():
                    leader_at = time.monotonic() - t_kill
            except (OSError, ValueError, KeyError):
                pass
        first = writers.first_accepted_after(t_kill)
        if first is not None:
            return Trial(first - t_kill, leader_at)
        time.sleep(0.01)
    return Trial(None, leader_at)


# ------------------------------------------------------------------ meshd


def meshd_has_new_leader(cluster: LocalAgentCluster, old_rpc: str) -> bool:
    """Whether a live server names a leader other than ``old_rpc``."""
    for name in cluster.alive():
        status, addr, _ = cluster.get(name, "/v1/status/leader", timeout=0.2)
        if status == 200 and addr and addr != old_rpc:
            return True
    return False


def measure_meshd(root: Path, trials: int, subnet: str) -> Outcome:
    out = Outcome("meshd")
    with running_meshd(root / "meshd", subnet) as cluster:
        members = [(a.ip, 8500) for a in cluster.agents.values()]
        for _ in range(trials):
            old = cluster.leader()
            kill = functools.partial(cluster.kill, old, signal.SIGKILL)
            seen = functools.partial(meshd_has_new_leader, cluster, cluster.agents[old].rpc)
            with Writers(members, meshd_write) as writers:
                out.trials.append(run_trial(writers, kill, seen))
            cluster.start(old)
            wait_ready(cluster)
    return out


# ------------------------------------------------------------------- etcd


def etcd_has_new_leader(cluster: EtcdCluster, old_id: str) -> bool:
    """Whether a live member names a leader other than the member ``old_id``."""
    for name in cluster.alive():
        st = cluster.call(name, "/v3/maintenance/status", {}, timeout=0.2)
        if str(st.get("leader", "0")) not in ("0", old_id):
            return True
    return False


def measure_etcd(root: Path, trials: int, subnet: str) -> Outcome:
    out = Outcome("etcd")
    cluster = EtcdCluster(root / "etcd", subnet=subnet)
    try:
        cluster.start_all()
        cluster.wait_healthy()
        members = [(m.ip, CLIENT_PORT) for m in cluster.members.values()]
        for _ in range(trials):
            old = cluster.leader()
            old_id = str(cluster.call(old, "/v3/maintenance/status", {})["header"]["member_id"])
            kill = functools.partial(cluster.kill, old, signal.SIGKILL)
            seen = functools.partial(etcd_has_new_leader, cluster, old_id)
            with Writers(members, etcd_write) as writers:
                out.trials.append(run_trial(writers, kill, seen))
            cluster.start(old)
            cluster.wait_healthy()
    finally:
        cluster.stop_all()
    return out


# ----------------------------------------------------------------- report


def report(meshd: Outcome, etcd: Outcome) -> None:
    def trials(o: Outcome, attr: str) -> str:
        return " ".join(ms(getattr(t, attr)) for t in o.trials) or "-"

    m, e = meshd.median("first_write"), etcd.median("first_write")
    met = None if m is None or e is None else m <= e
    rows = [
        [
            o.system,
            ms(o.median("first_write")),
            trials(o, "first_write"),
            ms(o.median("new_leader")),
            trials(o, "new_leader"),
        ]
        for o in (meshd, etcd)
    ]
    rows[0] += [ratio(m, e), "meshd <= etcd", verdict(met)]
    rows[1] += ["", "", ""]
    print_table(
        "Leader failover: kill -9 of the leader -> first accepted write sent after it"
        f" ({WRITERS_PER_MEMBER} writers per member; ms) " + machine(),
        ["system", "median", "trials", "new leader seen", "trials", "meshd/etcd", "target", ""],
        rows,
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="CI smoke run: one kill per system")
    p.add_argument("--trials", type=int, default=None)
    p.add_argument("--meshd-subnet", default="127.0.12")
    p.add_argument("--etcd-subnet", default="127.0.22")
    args = p.parse_args(argv)
    trials = args.trials or (1 if args.quick else 3)
    ensure_commands(BASELINE_TOOLS)
    results = {"meshd": Outcome("meshd"), "etcd": Outcome("etcd")}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="meshd-failover-bench-") as tmp:
        root = Path(tmp)
        for name, measure, subnet in (
            ("etcd", measure_etcd, args.etcd_subnet),
            ("meshd", measure_meshd, args.meshd_subnet),
        ):
            try:
                results[name] = measure(root, trials, subnet)
            except Exception as exc:
                failures.append(f"{name}: {exc!r}")
                traceback.print_exc()
    report(results["meshd"], results["etcd"])
    if failures:
        raise RuntimeError("failover_bench could not measure " + "; ".join(failures))


if __name__ == "__main__":
    main()
