"""DNS benchmark: queries/s and p99 latency of ``api.service.consul`` A on one core.

Run ``python -m bench.dns_bench`` (``--quick`` for a CI-sized run). Each
scenario starts the DNS server in a subprocess pinned to CPU 0, with a
static in-process catalog, and loads it from the other CPU(s):

- ``ceiling``: the same server process and listener answering one fixed,
  pre-encoded record (no parsing, lookup, cache or building): the I/O bound;
- ``10 instances`` and ``100 instances``: the real answer path (cache hits,
  variants rotating over the instances);
- ``100 instances, no cache``: every query parsed, looked up and encoded,
  to show what the cache buys.

Load comes from ``dnsperf`` (Debian's dnsperf, installed with apt-get when
missing and possible), else from a Python UDP load generator (several
processes). Throughput is measured flat out; p50/p99 latency at a fixed
10,000 queries/s (the target rate), where dnsperf can pace. Prints figures
next to the target and the ceiling; never asserts.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import trio

from meshd.dns import DNSSettings, StaticLookup, serve_dns, serve_responder
from meshd.dns.settings import Transport

QNAME = "api.service.consul"
IN, A = dns.rdataclass.IN, dns.rdatatype.A
TARGET_QPS = 10_000.0
LATENCY_RATE = 10_000


@dataclass
class Scenario:
    label: str
    serve: str  # "static" or a number of instances
    cache: bool = True


@dataclass
class Figures:
    qps: float
    lost_pct: float
    p50_ms: float | None = None
    p99_ms: float | None = None


SCENARIOS = [
    Scenario("ceiling (static answer)", "static"),
    Scenario("10 instances", "10"),
    Scenario("100 instances", "100"),
    Scenario("100 instances, no cache", "100", cache=False),
]


# --- the server subprocess ------------------------------------------------------------


class StaticResponder:
    """Answers every query with one fixed A record, ID patched: the I/O ceiling."""

    def __init__(self) -> None:
        query = dns.message.make_query(QNAME, "A")
        reply = dns.message.make_response(query)
        name = query.question[0].name
        rrset = reply.find_rrset(reply.answer, name, IN, A, create=True)
        rrset.add(dns.rdata.from_text("IN", "A", "10.0.0.1"), 0)
        self._wire = reply.to_wire()

    def cached_reply(self, wire: bytes, transport: Transport) -> bytes | None:
        return wire[:2] + self._wire[2:]

    async def reply(self, wire: bytes, transport: Transport) -> bytes | None:
        return self.cached_reply(wire, transport)


def _rows(count: int) -> list[dict[str, Any]]:
    return [
        {
            "Node": {"Node": f"node-{i}", "Address": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"},
            "Service": {"ID": f"api-{i}", "Service": "api", "Tags": [], "Port": 8080},
            "Checks": [{"CheckID": "serfHealth", "Status": "passing", "ServiceName": ""}],
        }
        for i in range(count)
    ]


async def _serve(mode: str, cache: bool) -> None:
    async with trio.open_nursery() as nursery:
        if mode == "static":
            (_, port), _ = await nursery.start(serve_responder, ("127.0.0.1", 0), StaticResponder())
        else:
            settings = DNSSettings() if cache else DNSSettings(cache_ttl=0, cache_max_age=0)
            lookup = StaticLookup(_rows(int(mode)))
            (_, port), _ = await nursery.start(serve_dns, ("127.0.0.1", 0), lookup, settings)
        print(port, flush=True)


def _run_server(mode: str, cache: bool) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    trio.run(_serve, mode, cache)


def _start_server(scenario: Scenario) -> tuple[subprocess.Popen[str], int]:
    argv = [sys.executable, "-m", "bench.dns_bench", "--serve", scenario.serve]
    if not scenario.cache:
        argv.append("--no-cache")
    root = Path(__file__).resolve().parent.parent  # so that `-m bench.dns_bench` imports
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=root)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        proc.kill()
        raise RuntimeError(f"dns bench server did not start: {line!r}")
    return proc, int(line)


# --- load from dnsperf ----------------------------------------------------------------


def _dnsperf() -> str | None:
    path = shutil.which("dnsperf")
    if path is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "dnsperf"]
        if subprocess.run(install, env=env, capture_output=True, check=False).returncode:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
            subprocess.run(install, env=env, capture_output=True, check=False)
        path = shutil.which("dnsperf")
    return path


def _load_cpus() -> list[str]:
    cpus = os.cpu_count() or 1
    if cpus > 1 and shutil.which("taskset"):
        return ["taskset", "-c", f"1-{cpus - 1}"]
    return []


def _dnsperf_run(binary: str, port: int, qfile: Path, seconds: float, rate: int | None) -> str:
    argv = [*_load_cpus(), binary, "-s", "127.0.0.1", "-p", str(port), "-d", str(qfile)]
    argv += ["-l", str(seconds), "-c", "4", "-q", "200", "-t", "2"]
    if rate is not None:
        argv += ["-Q", str(rate), "-v"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    return done.stdout


def _dnsperf_figures(binary: str, port: int, qfile: Path, seconds: float) -> Figures:
    flat = _dnsperf_run(binary, port, qfile, seconds, None)
    qps = _grab(r"Queries per second:\s+([\d.]+)", flat)
    lost = _grab(r"Queries lost:\s+\d+ \(([\d.]+)%\)", flat)
    paced = _dnsperf_run(binary, port, qfile, seconds, LATENCY_RATE)
    latencies = [float(m) for m in re.findall(r"^> NOERROR \S+ \S+ ([\d.]+)$", paced, re.M)]
    p50, p99 = _percentiles(latencies)
    return Figures(qps, lost, p50, p99)


def _grab(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    return float(match.group(1)) if match else float("nan")


def _percentiles(latencies: list[float]) -> tuple[float | None, float | None]:
    if not latencies:
        return None, None
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return p50 * 1000, p99 * 1000


# --- load from Python (no dnsperf) -----------------------------------------------------


def _py_worker(port: int, seconds: float, window: int, out: Any) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, set(range(1, os.cpu_count() or 2)))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(0.5)
    template = dns.message.make_query(QNAME, "A").to_wire()
    sent: dict[int, float] = {}
    latencies: list[float] = []
    lost = 0
    ids = random.Random(port + os.getpid())
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        while len(sent) < window:
            qid = ids.getrandbits(16)
            sent[qid] = time.perf_counter()
            sock.send(qid.to_bytes(2, "big") + template[2:])
        try:
            data = sock.recv(4096)
        except TimeoutError:
            lost += len(sent)
            sent.clear()
            continue
        start = sent.pop(int.from_bytes(data[:2], "big"), None)
        if start is not None:
            latencies.append(time.perf_counter() - start)
    out.put((latencies, lost))


def _python_figures(port: int, seconds: float) -> Figures:
    ctx = multiprocessing.get_context("spawn")
    results: Any = ctx.Queue()
    workers = [
        ctx.Process(target=_py_worker, args=(port, seconds, 16, results))
        for _ in range(max(2, (os.cpu_count() or 2) - 1))
    ]
    for w in workers:
        w.start()
    latencies: list[float] = []
    lost = 0
    for _ in workers:
        got, missing = results.get(timeout=seconds + 30)
        latencies += got
        lost += missing
    for w in workers:
        w.join()
    total = len(latencies) + lost
    p50, p99 = _percentiles(latencies)
    return Figures(len(latencies) / seconds, 100.0 * lost / max(1, total), p50, p99)


# --- the run --------------------------------------------------------------------------


def _measure(scenario: Scenario, seconds: float, dnsperf: str | None, qfile: Path) -> Figures:
    proc, port = _start_server(scenario)
    try:
        if dnsperf is not None:
            return _dnsperf_figures(dnsperf, port, qfile, seconds)
        return _python_figures(port, seconds)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _print(results: Sequence[tuple[Scenario, Figures]], tool: str, seconds: float) -> None:
    ceiling = results[0][1].qps
    print(f"dns_bench: {QNAME} A over UDP, server pinned to CPU 0, load from {tool}")
    paced = f"at a paced {LATENCY_RATE:,} q/s" if tool == "dnsperf" else "flat out"
    print(f"  flat-out runs of {seconds:g} s; latency {paced}")
    print(
        f"  {'scenario':<26} {'queries/s':>11} {'lost':>6} {'p50 ms':>7} {'p99 ms':>7}  vs ceiling"
    )
    for scenario, f in results:
        p50 = "-" if f.p50_ms is None else f"{f.p50_ms:.3f}"
        p99 = "-" if f.p99_ms is None else f"{f.p99_ms:.3f}"
        ratio = f.qps / ceiling if ceiling else float("nan")
        overloaded = tool == "dnsperf" and f.qps < LATENCY_RATE
        note = "  (latency: overloaded at the paced rate)" if overloaded else ""
        print(
            f"  {scenario.label:<26} {f.qps:>11,.0f} {f.lost_pct:>5.1f}% {p50:>7} {p99:>7}"
            f"  {ratio:>6.2f}x{note}"
        )
    print(f"  target: >= {TARGET_QPS:,.0f} queries/s on one core for 10 and 100 instances")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--quick", action="store_true", help="2-second runs (smoke test)")
    p.add_argument("--python-load", action="store_true", help="use the Python load generator")
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--no-cache", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        _run_server(args.serve, cache=not args.no_cache)
        return
    seconds = 2.0 if args.quick else args.seconds
    dnsperf = None if args.python_load else _dnsperf()
    tool = "dnsperf" if dnsperf else "the Python UDP load generator"
    results = []
    with tempfile.TemporaryDirectory(prefix="dns-bench-") as tmp:
        qfile = Path(tmp) / "queries.txt"
        qfile.write_text(f"{QNAME} A\n")
        for scenario in SCENARIOS:
            results.append((scenario, _measure(scenario, seconds, dnsperf, qfile)))
    _print(results, tool, seconds)


if __name__ == "__main__":
    main(sys.argv[1:])
