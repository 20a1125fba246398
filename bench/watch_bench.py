"""Watch fan-out: how long until every watcher has seen one change.

meshd: N blocking queries ``GET /v1/health/service/web?index=I&wait=60s``
spread round-robin over the 3 servers (default consistency: a follower
confirms with the leader, a ReadIndex round, then blocks on its own state);
the change is a
``PUT /v1/catalog/register`` of a new instance of ``web`` on the leader.
etcd 3.4 (same run): N ``POST /v3/watch`` streams on the HTTP gateway over
its 3 members; the change is a ``/v3/kv/put`` on the leader. Time of a
watcher = its answer (or event) fully received - the moment the write was
sent, so the write's own commit is inside both figures ("write ms" is how
long the write itself took to answer). Rows marked ``?stale`` (full run
only) let every server answer its own watchers: they show what forwarding
to the leader costs.

The watchers are one small C epoll process (bench/loadgen/watchers.c), not
Python. Its own cost is measured in the same run against a trivial C target
that holds N requests and answers them all at once ("generator floor").
Every watcher re-arms at once after a change, as real clients do; a round
fires only once the servers have gone idle after that (every query parked).
A watcher that fails or does not answer within 30 s counts as missed, and
the note says why. Prints figures and ratios; never asserts.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bench.etcd_cluster import CLIENT_PORT, EtcdCluster, b64
from bench.loadgen.install import BASELINE_TOOLS, ensure_commands
from bench.loadgen.meshd_cluster import running_meshd, wait_ready
from bench.loadgen.procs import raise_nofile, wait_idle
from bench.loadgen.server_logs import LogMarks, LogSummary
from bench.loadgen.table import machine, ms, print_table, ratio, verdict
from bench.loadgen.watchers import TrivialTarget, WatcherClient, build
from tools.local_cluster import LocalAgentCluster

SERVICE = "web"
_ROWS = 0  # meshd rows run so far in this process (each registers its own instances)
VERBOSE = False
WATCH_KEY = "bench/watch"


@dataclass
class Fanout:
    """Latencies (s) of every watcher over all rounds, and what went wrong."""

    label: str
    watchers: int
    latencies: list[float] = field(default_factory=list)
    missed: int = 0  # no answer within the round's timeout, failed or answered early
    write_s: list[float] = field(default_factory=list)
    note: str = ""
    elections: int | None = None  # Raft term changes during the row (meshd)
    logs: LogSummary | None = None  # the servers' stalls, GC pauses, role changes (meshd)
    leader: str = ""

    def pct(self, q: float) -> float | None:
        if not self.latencies:
            return None
        data = sorted(self.latencies)
        return data[min(len(data) - 1, round(q / 100 * (len(data) - 1)))]

    @property
    def max(self) -> float | None:
        return max(self.latencies) if self.latencies else None


@dataclass(frozen=True)
class Plan:
    meshd_counts: tuple[int, ...]
    etcd_counts: tuple[int, ...]
    rounds: int
    rounds_large: int  # for 10,000 watchers
    stale_rows: bool
    timeout: float
    stability_runs: int = 1  # rows of 10,000 watchers repeated for the stability count


FULL = Plan((1000, 10000), (1000,), rounds=5, rounds_large=3, stale_rows=True, timeout=30)
QUICK = Plan((200,), (200,), rounds=1, rounds_large=1, stale_rows=False, timeout=15)


class Trigger:
    """One keep-alive HTTP connection for the writes, opened ahead of time so
    that a round's clock starts at the request, not at a TCP handshake."""

    def __init__(self, host: str, port: int) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=30)
        self.conn.connect()

    def send(self, method: str, path: str, body: bytes) -> tuple[float, float]:
        """(monotonic time the request was sent, seconds until its answer)."""
        t0 = time.monotonic()
        self.conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()
        t1 = time.monotonic()
        if resp.status != 200:
            raise RuntimeError(f"trigger {method} {path} answered {resp.status}: {data[:200]!r}")
        return t0, t1 - t0

    def close(self) -> None:
        self.conn.close()


class Scenario(Protocol):
    """What one system does in a round."""

    def arm_request(self, r: int) -> bytes:
        """The bytes every watcher sends to (re-)arm itself for round ``r``."""
        ...

    def settle(self) -> None:
        """Return once every watcher is parked on the server side."""
        ...

    def fire(self, r: int) -> tuple[float, float]:
        """Make the change: (monotonic time it was sent, seconds it took)."""
        ...


def failure_summary(errors: str) -> str:
    """``status=12 first=HTTP/1.1|500|...||||No|cluster|leader`` (the C client's
    ERRORS line) as ``status=12 (first: 500 No cluster leader)``."""
    counts, _, first = errors.partition(" first=")
    if not first:
        return counts
    head, _, body = first.partition("||||")
    status = head.split("|")[1] if "|" in head else "?"
    return f"{counts} (first: {status} {body.replace('|', ' ').strip()})"


def run_rounds(
    out: Fanout, client: WatcherClient, scenario: Scenario, rounds: int, timeout: float
) -> None:
    """``rounds`` times: arm every watcher, wait until the servers settle,
    fire the change, collect every watcher's answer time."""
    client.connected()
    for r in range(rounds):
        client.arm(scenario.arm_request(r), timeout=120)
        scenario.settle()
        t0, write_s = scenario.fire(r)
        times, pending, errors = client.collect(timeout)
        answered = [t - t0 for t in times if t >= t0]  # earlier ones did not see the change
        out.latencies.extend(answered)
        out.missed += out.watchers - len(answered)
        out.write_s.append(write_s)
        if errors and "failed:" not in out.note:
            out.note += f"; failed: {failure_summary(client.last_errors)}"
        if VERBOSE:
            print(
                f"  {out.label} round {r}: answered={len(answered)}"
                f" early={len(times) - len(answered)} pending={pending} errors={errors}"
                f" {client.last_errors}"
                f" max={max(answered, default=0):.3f}s",
                flush=True,
            )


# ------------------------------------------------------------------ meshd


def _register_body(i: int) -> bytes:
    return json.dumps(
        {
            "Node": "bench-node",
            "Address": "10.0.0.1",
            "Service": {"ID": f"{SERVICE}-{i}", "Service": SERVICE, "Port": 8000 + i % 1000},
        }
    ).encode()


def _index(host: str, path: str, stale: bool) -> int:
    conn = http.client.HTTPConnection(host, 8500, timeout=10)
    try:
        conn.request("GET", path + ("?stale" if stale else ""))
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {path} on {host} answered {resp.status}")
        return int(resp.getheader("X-Consul-Index") or 0)
    finally:
        conn.close()


class MeshdScenario:
    """Blocking queries on ``path`` over every server; the change is a new
    instance registered through the leader."""

    def __init__(self, cluster: LocalAgentCluster, path: str, stale: bool, base: int) -> None:
        self.leader = cluster.agents[cluster.leader()].ip
        self.servers = [a.ip for a in cluster.agents.values()]
        self.pids = [a.proc.pid for a in cluster.agents.values() if a.proc is not None]
        self.path = path
        self.query = path + ("?stale&" if stale else "?")
        self.base = base
        self.trigger = Trigger(self.leader, 8500)

    def arm_request(self, r: int) -> bytes:
        idx = _index(self.leader, self.path, stale=False)
        # Every server must have applied idx, or a ?stale query would answer
        # at once with its older index.
        deadline = time.monotonic() + 10
        while any(_index(ip, self.path, stale=True) < idx for ip in self.servers):
            if time.monotonic() > deadline:
                raise TimeoutError("followers did not catch up")
            time.sleep(0.01)
        head = f"GET {self.query}index={idx}&wait=60s HTTP/1.1\r\nHost: {self.leader}\r\n\r\n"
        return head.encode()

    def settle(self) -> None:
        wait_idle(self.pids, timeout=30)

    def fire(self, r: int) -> tuple[float, float]:
        return self.trigger.send("PUT", "/v1/catalog/register", _register_body(self.base + r))


def meshd_fanout(
    cluster: LocalAgentCluster,
    binary: Path,
    n: int,
    rounds: int,
    stale: bool,
    timeout: float,
    path: str,
) -> Fanout:
    """One row; an error (e.g. the cluster losing its leader under the load)
    ends the row early and is shown in its note."""
    out = Fanout(f"meshd, {n:,} watchers" + (" (?stale)" if stale else ""), n)
    out.note = path.split("/")[2]
    leader_before = cluster.leader()
    term_before = _term(cluster, leader_before)
    out.leader = leader_before
    marks = LogMarks(cluster)
    # A fresh instance ID for every round of every row: re-registering an
    # identical instance changes nothing (no new index, no wake-up), so a
    # repeated row that reused IDs left every watcher waiting out its wait=.
    global _ROWS
    _ROWS += 1
    scenario = MeshdScenario(cluster, path, stale, base=1000 * _ROWS)
    client = WatcherClient(binary, "http", n, [f"{ip}:8500" for ip in scenario.servers])
    try:
        run_rounds(out, client, scenario, rounds, timeout)
    except Exception as exc:
        out.note += f"; stopped: {exc}"[:120]
    finally:
        client.close()
        scenario.trigger.close()
    try:
        leader_after = cluster.leader(timeout=30)
        out.elections = _term(cluster, leader_after) - term_before
        if leader_after != leader_before:
            out.note += "; leader changed"
        elif out.elections:
            out.note += f"; {out.elections} election(s)"
    except TimeoutError:
        out.note += "; no leader after the row"
    out.logs = marks.summary()
    if VERBOSE and out.logs.changes:
        print("  role changes: " + " | ".join(out.logs.changes), flush=True)
    return out


def _term(cluster: LocalAgentCluster, name: str) -> int:
    """The Raft term ``name`` reports: any election in between raises it."""
    status, body, _ = cluster.get(name, "/v1/agent/self", timeout=30)
    if status != 200:
        raise RuntimeError(f"/v1/agent/self answered {status}")
    return int(body["Stats"]["raft"]["term"])


def measure_meshd(
    root: Path, binary: Path, plan: Plan, subnet: str, own_sessions: bool = False
) -> list[Fanout]:
    results = []
    with running_meshd(root / "meshd", subnet, own_sessions=own_sessions) as cluster:
        leader = cluster.leader()
        cluster.request(leader, "PUT", "/v1/catalog/register", json.loads(_register_body(0)))
        path = f"/v1/health/service/{SERVICE}"
        if cluster.get(leader, path)[0] != 200:  # health API not there yet: the catalog's
            path = f"/v1/catalog/service/{SERVICE}"
        variants = [(n, False) for n in plan.meshd_counts]
        if plan.stale_rows:
            variants += [(n, True) for n in plan.meshd_counts]
        for n, stale in variants:
            rounds = plan.rounds_large if n >= 5000 else plan.rounds
            for _ in range(plan.stability_runs if n >= 5000 else 1):
                row = meshd_fanout(cluster, binary, n, rounds, stale, plan.timeout, path)
                results.append(row)
                wait_ready(cluster)
    return results


# ------------------------------------------------------------------- etcd


class EtcdScenario:
    """One ``POST /v3/watch`` stream per watcher; the change is a put on the leader."""

    def __init__(self, cluster: EtcdCluster) -> None:
        self.leader = cluster.members[cluster.leader()].ip
        self.pids = [m.proc.pid for m in cluster.members.values() if m.proc is not None]
        body = json.dumps({"create_request": {"key": b64(WATCH_KEY)}}).encode()
        self.watch = (
            f"POST /v3/watch HTTP/1.1\r\nHost: {self.leader}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.trigger = Trigger(self.leader, CLIENT_PORT)

    def arm_request(self, r: int) -> bytes:
        return self.watch  # sent once; later rounds reuse the open streams

    def settle(self) -> None:
        wait_idle(self.pids, timeout=30)

    def fire(self, r: int) -> tuple[float, float]:
        value = json.dumps({"key": b64(WATCH_KEY), "value": b64(b"x" * 100 + b"%d" % r)})
        return self.trigger.send("POST", "/v3/kv/put", value.encode())


def measure_etcd(root: Path, binary: Path, plan: Plan, subnet: str) -> list[Fanout]:
    results = []
    cluster = EtcdCluster(root / "etcd", subnet=subnet)
    try:
        cluster.start_all()
        cluster.wait_healthy()
        targets = [f"{m.ip}:{CLIENT_PORT}" for m in cluster.members.values()]
        for n in plan.etcd_counts:
            out = Fanout(f"etcd, {n:,} watchers", n, note="v3 watch")
            scenario = EtcdScenario(cluster)
            client = WatcherClient(binary, "etcd", n, targets)
            try:
                run_rounds(out, client, scenario, plan.rounds, plan.timeout)
            finally:
                client.close()
                scenario.trigger.close()
            results.append(out)
    finally:
        cluster.stop_all()
    return results


# ---------------------------------------------------------------- trivial


class TrivialScenario:
    """The C target holds every request and answers all of them on ``fire``."""

    def __init__(self, target: TrivialTarget, address: str) -> None:
        self.target = target
        self.request = f"GET /x?index=1 HTTP/1.1\r\nHost: {address}\r\n\r\n".encode()

    def arm_request(self, r: int) -> bytes:
        return self.request

    def settle(self) -> None:
        self.target.held()

    def fire(self, r: int) -> tuple[float, float]:
        t0 = time.monotonic()
        self.target.fire()
        return t0, time.monotonic() - t0


def measure_generator(
    binary: Path, counts: Sequence[int], address: str, timeout: float
) -> list[Fanout]:
    """The watcher client against a target that answers all N at once: the
    generator's (and loopback's) own share of every figure."""
    results = []
    for n in counts:
        out = Fanout(f"generator floor, {n:,} watchers", n, note="trivial C target")
        target = TrivialTarget(binary, address, n)
        client = WatcherClient(binary, "http", n, [address])
        try:
            run_rounds(out, client, TrivialScenario(target, address), 3, timeout)
        finally:
            client.close()
            target.close()
        results.append(out)
    return results


# ----------------------------------------------------------------- report


def report(rows: list[Fanout], plan: Plan) -> None:
    etcd = {f.watchers: f for f in rows if f.label.startswith("etcd")}
    etcd_1k = etcd.get(min(plan.etcd_counts))
    table = []
    for f in rows:
        target, met, versus = "", None, ""
        p99 = f.pct(99)
        if f.label.startswith("meshd") and "stale" not in f.label:
            if f.watchers >= 5000:
                target, met = "p99 < 1 s", p99 is not None and p99 < 1.0 and not f.missed
            elif etcd_1k is not None:
                etcd_p99 = etcd_1k.pct(99)
                versus = ratio(p99, etcd_p99)
                met = None if p99 is None or etcd_p99 is None else p99 <= etcd_p99 and not f.missed
                target = "p99 <= etcd"
        table.append(
            [
                f.label,
                str(len(f.latencies)),
                str(f.missed),
                ms(f.pct(50)),
                ms(f.pct(99)),
                ms(f.max),
                ms(statistics.median(f.write_s)) if f.write_s else "-",
                versus,
                target,
                verdict(met),
                f.note,
            ]
        )
    print_table(
        "Watch fan-out: change -> every watcher answered (all rounds pooled; write = the"
        " change's own request) " + machine(),
        [
            "watchers",
            "answers",
            "missed",
            "p50 ms",
            "p99 ms",
            "max ms",
            "write ms",
            "p99 vs etcd",
            "target",
            "",
            "via",
        ],
        table,
    )


def report_stability(rows: list[Fanout]) -> None:
    """Leader stability: per meshd row kind, how many runs saw no election."""
    kinds: dict[str, list[Fanout]] = {}
    for f in rows:
        if f.label.startswith("meshd"):
            kinds.setdefault(f.label, []).append(f)
    table = []
    for label, runs in kinds.items():
        passed = sum(1 for f in runs if f.elections == 0)
        elections = sum(f.elections or 0 for f in runs)
        missed = sum(f.missed for f in runs)
        counts = [len(runs), passed, len(runs) - passed, elections, missed]
        table.append([label, *map(str, counts), verdict(passed == len(runs))])
    print_runs(rows)
    print_table(
        "Leader stability under watch load (pass = a run with 0 leader changes;"
        " the target is 10 consecutive passing runs per row) " + machine(),
        ["watchers", "runs", "pass", "fail", "elections", "missed answers", ""],
        table,
    )


def print_runs(rows: list[Fanout]) -> None:
    """One line per meshd run: its elections, the longest event-loop stall
    on the leader and on the followers (the Raft driver logs stalls of 3
    ticks or more, so "-" is under ~0.4 s), the longest GC pause on any
    server (wall, generation and CPU ms: the difference is time the process
    waited for a core), and the first role change a timer caused, with the
    core's reason."""
    table = []
    runs: dict[str, int] = {}
    for f in rows:
        if not f.label.startswith("meshd") or f.logs is None:
            continue
        runs[f.label] = runs.get(f.label, 0) + 1
        followers = [n for n in f.logs.stall_ms if n != f.leader]
        gc_ms, gen, gc_cpu = f.logs.longest_gc()
        table.append(
            [
                f.label,
                str(runs[f.label]),
                str(f.elections if f.elections is not None else "?"),
                ms_or_dash(f.logs.longest_stall([f.leader])),
                ms_or_dash(f.logs.longest_stall(followers)),
                f"{gc_ms} (gen {gen}, {gc_cpu} cpu)" if gc_ms else "-",
                str(f.missed),
                f.logs.first_cause()[:70],
            ]
        )
    print_table(
        "Watch runs: elections, longest loop stall (ms) and GC pause (ms) per run " + machine(),
        [
            "watchers",
            "run",
            "elections",
            "leader stall",
            "follower stall",
            "gc pause",
            "missed",
            "first timer-caused role change",
        ],
        table,
    )


def ms_or_dash(value: int) -> str:
    return str(value) if value else "-"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="CI smoke run: 200 watchers, 1 round")
    p.add_argument("--meshd-subnet", default="127.0.11")
    p.add_argument("--etcd-subnet", default="127.0.21")
    p.add_argument("--verbose", action="store_true", help="print every round")
    p.add_argument("--only", choices=("generator", "etcd", "meshd"), action="append")
    p.add_argument("--meshd-counts", type=lambda s: tuple(int(x) for x in s.split(",")))
    p.add_argument(
        "--stability-runs",
        type=int,
        help="repeat each row of >= 5,000 watchers this many times (leader stability count)",
    )
    p.add_argument(
        "--own-sessions",
        action="store_true",
        help="start each meshd server in its own session: with autogroup scheduling it then"
        " gets its own CPU share, as a separate host would, instead of sharing this one's",
    )
    args = p.parse_args(argv)
    global VERBOSE
    VERBOSE = args.verbose
    plan = QUICK if args.quick else FULL
    if args.meshd_counts:
        plan = dataclasses.replace(plan, meshd_counts=args.meshd_counts)
    if args.stability_runs:
        plan = dataclasses.replace(plan, stability_runs=args.stability_runs)
    ensure_commands(BASELINE_TOOLS)
    biggest = max(*plan.meshd_counts, *plan.etcd_counts)
    limit = raise_nofile(biggest + 4096)  # before any child starts: they inherit it
    if limit < biggest + 512:
        print(f"warning: RLIMIT_NOFILE is {limit}; {biggest:,} watchers will miss answers")
    binary = build()
    rows: list[Fanout] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="meshd-watch-bench-") as tmp:
        root = Path(tmp)
        steps: list[tuple[str, Callable[[], list[Fanout]]]] = [
            (
                "generator",
                lambda: measure_generator(
                    binary, plan.meshd_counts, f"{args.meshd_subnet}.250:8080", plan.timeout
                ),
            ),
            ("etcd", lambda: measure_etcd(root, binary, plan, args.etcd_subnet)),
            (
                "meshd",
                lambda: measure_meshd(root, binary, plan, args.meshd_subnet, args.own_sessions),
            ),
        ]
        for name, step in steps:
            if args.only and name not in args.only:
                continue
            try:
                rows.extend(step())
            except Exception as exc:
                failures.append(f"{name}: {exc!r}")
                traceback.print_exc()
    report(rows, plan)
    report_stability(rows)
    if failures:
        raise RuntimeError("watch_bench could not measure " + "; ".join(failures))


if __name__ == "__main__":
    main()
