"""KV puts and linearizable reads: meshd's HTTP API against etcd 3.4's, same run.

Both systems run as 3 real server processes on loopback with fsync on (meshd:
sqlite synchronous=FULL; etcd: its default), 100-byte values over a keyspace
of 1,000 keys, closed-loop load from ``wrk`` with 1 and 64 keep-alive
connections. meshd: ``PUT /v1/kv/<key>`` and ``GET /v1/kv/<key>?consistent``;
etcd: ``POST /v3/kv/put`` and ``POST /v3/kv/range`` (linearizable by default)
on its HTTP/JSON gateway. Rows aimed at the leader, plus rows with wrk's
threads spread over the three members (followers forward). Both clusters
stay up for the whole run and each row is measured on both back to back, so
background load on a shared host hits both alike. Prints figures and
ratios; never asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from bench import kv_stages
from bench.etcd_cluster import CLIENT_PORT, EtcdCluster, b64
from bench.loadgen.install import BASELINE_TOOLS, ensure_commands
from bench.loadgen.meshd_cluster import running_meshd
from bench.loadgen.pyspy import recording
from bench.loadgen.stages import print_stages, scrape, stages
from bench.loadgen.table import machine, ms, print_table, ratio, verdict
from bench.loadgen.wrk import Requests, WrkResult, run_wrk

KEYS = 1000
VALUE = b"v" * 100
MESHD_PORT = 8500


@dataclass(frozen=True)
class Workload:
    label: str
    op: str  # "put" | "read"
    connections: int
    spread: bool  # wrk threads over all three members instead of the leader


FULL = (
    Workload("put, 1 conn -> leader", "put", 1, False),
    Workload("put, 64 conns -> leader", "put", 64, False),
    Workload("put, 64 conns -> 3 members", "put", 64, True),
    Workload("linearizable read, 1 conn -> leader", "read", 1, False),
    Workload("linearizable read, 64 conns -> leader", "read", 64, False),
    Workload("linearizable read, 64 conns -> 3 members", "read", 64, True),
)
QUICK = (FULL[0], FULL[1], FULL[4])


def key(i: int) -> str:
    return f"bench/{i:04d}"


def meshd_requests(op: str) -> Requests:
    if op == "put":
        return Requests("PUT", [f"/v1/kv/{key(i)}" for i in range(KEYS)], [VALUE])
    return Requests("GET", [f"/v1/kv/{key(i)}?consistent" for i in range(KEYS)])


def etcd_requests(op: str) -> Requests:
    if op == "put":
        bodies = [
            json.dumps({"key": b64(key(i)), "value": b64(VALUE)}).encode() for i in range(KEYS)
        ]
        return Requests("POST", ["/v3/kv/put"] * KEYS, bodies, "application/json")
    bodies = [json.dumps({"key": b64(key(i))}).encode() for i in range(KEYS)]
    return Requests("POST", ["/v3/kv/range"] * KEYS, bodies, "application/json")


@dataclass
class Target:
    """One running system as wrk sees it."""

    name: str
    requests: dict[str, Requests]  # by op
    leader: tuple[str, int]
    members: list[tuple[str, int]]
    around: Callable[[Workload], AbstractContextManager[None]] | None = None
    results: dict[str, WrkResult] = field(default_factory=dict)

    def warm_up(self, seconds: float) -> None:
        """Write the whole key space (so every read finds its key) and warm up."""
        run_wrk(self.requests["put"], [self.leader], connections=16, seconds=max(seconds, 1.0))

    def run(self, w: Workload, seconds: float) -> None:
        targets = self.members if w.spread else [self.leader]
        with self.around(w) if self.around else contextlib.nullcontext():
            self.results[w.label] = run_wrk(
                self.requests[w.op], targets, connections=w.connections, seconds=seconds
            )


def start_etcd(stack: contextlib.ExitStack, root: Path, subnet: str) -> Target:
    cluster = EtcdCluster(root / "etcd", subnet=subnet)
    stack.callback(cluster.stop_all)
    cluster.start_all()
    cluster.wait_healthy()
    leader = cluster.members[cluster.leader()].ip
    members = [(m.ip, CLIENT_PORT) for m in cluster.members.values()]
    reqs = {op: etcd_requests(op) for op in ("put", "read")}
    return Target("etcd", reqs, (leader, CLIENT_PORT), members)


def start_meshd(
    stack: contextlib.ExitStack, root: Path, subnet: str, seconds: float, profile_dir: Path | None
) -> Target:
    """meshd as a target; with ``profile_dir``, a py-spy flame graph of the leader per row."""
    cluster = stack.enter_context(running_meshd(root / "meshd", subnet))
    name = cluster.leader()
    members = [(a.ip, MESHD_PORT) for a in cluster.agents.values()]
    reqs = {op: meshd_requests(op) for op in ("put", "read")}
    target = Target("meshd", reqs, (cluster.agents[name].ip, MESHD_PORT), members)
    proc = cluster.agents[name].proc
    pid = proc.pid if profile_dir is not None and proc is not None else None
    bases = {n: a.http for n, a in cluster.agents.items()}

    @contextlib.contextmanager
    def around(w: Workload) -> Iterator[None]:
        slug = w.label.replace(" ", "").replace(",", "-").replace(">", "")
        profile: AbstractContextManager[None] = contextlib.nullcontext()
        if pid is not None and profile_dir is not None:
            profile = recording(pid, profile_dir / f"meshd-leader-{slug}.svg", seconds)
        timed = w.op == "put" and w.connections > 1
        before = {n: scrape(b) for n, b in bases.items()} if timed else {}
        with profile:
            yield
        if timed:
            after = {n: scrape(b) for n, b in bases.items()}
            print_stages(w.label, stages(before, after, name))

    target.around = around
    return target


def measure(
    args: argparse.Namespace,
    root: Path,
    workloads: Sequence[Workload],
    seconds: float,
    warmup: float,
) -> tuple[dict[str, dict[str, WrkResult]], list[str]]:
    """Both clusters run side by side (idle, each process uses about 1% of a
    CPU) and every row is measured on both back to back, alternating which
    goes first, so that background load on a shared host hits both alike.
    Returns the results by system and what could not be measured."""
    failures: list[str] = []
    targets: list[Target] = []
    with contextlib.ExitStack() as stack:
        starts: list[tuple[str, Callable[[], Target]]] = [
            ("etcd", lambda: start_etcd(stack, root, args.etcd_subnet)),
            ("meshd", lambda: start_meshd(stack, root, args.meshd_subnet, seconds, args.py_spy)),
        ]
        for name, start in starts:
            try:
                target = start()
                target.warm_up(warmup)
                targets.append(target)
            except Exception as exc:
                failures.append(f"{name}: {exc!r}")
                traceback.print_exc()
        for i, w in enumerate(workloads):
            for target in targets if i % 2 == 0 else targets[::-1]:
                try:
                    target.run(w, seconds)
                except Exception as exc:
                    failures.append(f"{target.name} {w.label}: {exc!r}")
                    traceback.print_exc()
    results: dict[str, dict[str, WrkResult]] = {"etcd": {}, "meshd": {}}
    results.update((t.name, t.results) for t in targets)
    return results, failures


def cell(r: WrkResult | None) -> list[str]:
    if r is None:
        return ["-", "-", "-", "-"]
    return [f"{r.rate:,.0f}", ms(r.p50_ms / 1000), ms(r.p99_ms / 1000), str(r.errors)]


def report(
    workloads: Sequence[Workload],
    meshd: dict[str, WrkResult],
    etcd: dict[str, WrkResult],
    seconds: float,
) -> None:
    rows = []
    for w in workloads:
        m, e = meshd.get(w.label), etcd.get(w.label)
        met = None if m is None or e is None else m.rate >= e.rate
        # Spread puts are a target (issue #18: forwarded writes batched);
        # spread reads are shown for information.
        info = w.spread and w.op != "put"
        target = "(info)" if info else "meshd >= etcd"
        versus = ratio(m.rate if m else None, e.rate if e else None)
        rows.append([w.label, *cell(m), *cell(e), versus, target, "-" if info else verdict(met)])
    print_table(
        f"KV over HTTP, 3 servers each, fsync on, 100-byte values, wrk {seconds:g} s per row"
        " (ms: latency; err: errors + non-2xx) " + machine(),
        [
            "workload",
            "meshd/s",
            "p50 ms",
            "p99 ms",
            "err",
            "etcd/s",
            "p50 ms",
            "p99 ms",
            "err",
            "meshd/etcd",
            "target",
            "",
        ],
        rows,
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="CI smoke run: 1 s per row, 3 rows")
    p.add_argument("--seconds", type=float, default=None, help="wrk duration per row")
    p.add_argument("--meshd-subnet", default="127.0.10")
    p.add_argument("--etcd-subnet", default="127.0.20")
    p.add_argument("--py-spy", type=Path, metavar="DIR", help="flame graphs of meshd's leader")
    p.add_argument(
        "--stages",
        action="store_true",
        help="then where one 1-connection PUT and read spend their time (bench/kv_stages.py)",
    )
    p.add_argument("--only", metavar="TEXT", help="only the rows whose label contains TEXT")
    args = p.parse_args(argv)
    ensure_commands(BASELINE_TOOLS)
    workloads = QUICK if args.quick else FULL
    if args.only:
        workloads = tuple(w for w in workloads if args.only in w.label)
    seconds = args.seconds or (1.0 if args.quick else 10.0)
    warmup = 1.0 if args.quick else 3.0
    with tempfile.TemporaryDirectory(prefix="meshd-kv-bench-") as tmp:
        results, failures = measure(args, Path(tmp), workloads, seconds, warmup)
    report(workloads, results["meshd"], results["etcd"], seconds)
    if args.stages:
        print("\nPer stage, meshd (bench/kv_stages.py):", flush=True)
        kv_stages.main(["--subnet", args.meshd_subnet, "--seconds", f"{min(seconds, 5.0):g}"])
    if failures:
        raise RuntimeError("kv_bench could not measure " + "; ".join(failures))


if __name__ == "__main__":
    main()
