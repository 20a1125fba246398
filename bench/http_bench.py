"""The agent's HTTP API on one core: meshd against a bare trio HTTP loop.

One ``meshd agent --dev`` process and, as the baseline in the same run, the
least a trio HTTP/1.1 server can do (``bench/http_baseline.py``: llhttp
parsing, one fixed answer, nothing else). Closed-loop load from ``wrk -t2``
with 16 keep-alive connections, each row in turn: the baseline;
``GET /v1/status/leader`` (routing, ACL check, metrics: the API's floor);
``GET /v1/kv/<key>`` (default consistency: leader lease);
``GET /v1/kv/<key>?consistent`` (a Raft ReadIndex round, alone on a dev
agent); ``PUT /v1/kv/<key>`` (a Raft commit with fsync). Prints req/s,
p50/p99, the server's CPU per request (utime + stime) and the ratio to the
baseline; never asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.loadgen.dev_agent import ROOT, DevAgent
from bench.loadgen.install import ensure_commands
from bench.loadgen.procs import cpu_ticks, stop_process
from bench.loadgen.table import machine, ms, print_table, ratio
from bench.loadgen.wrk import Requests, WrkResult, run_wrk
from bench.proxy_backend import free_port

CONNECTIONS = 16
KEYS = 100
VALUE = b"v" * 100
ROWS: tuple[tuple[str, Requests], ...] = (
    ("GET /v1/status/leader", Requests("GET", ["/v1/status/leader"])),
    ("GET /v1/kv/<key>", Requests("GET", [f"/v1/kv/bench/{i}" for i in range(KEYS)])),
    (
        "GET /v1/kv/<key>?consistent",
        Requests("GET", [f"/v1/kv/bench/{i}?consistent" for i in range(KEYS)]),
    ),
    ("PUT /v1/kv/<key>", Requests("PUT", [f"/v1/kv/bench/{i}" for i in range(KEYS)], [VALUE])),
)


def measure(port: int, pid: int, reqs: Requests, seconds: float) -> tuple[WrkResult, float]:
    """One wrk row; returns it and the server's CPU microseconds per request."""
    before = cpu_ticks(pid)
    result = run_wrk(reqs, [("127.0.0.1", port)], connections=CONNECTIONS, seconds=seconds)
    cpu = (cpu_ticks(pid) - before) / _ticks_per_second()
    return result, cpu / result.requests * 1e6 if result.requests else 0.0


def _ticks_per_second() -> int:
    return os.sysconf("SC_CLK_TCK")


def start_baseline() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.http_baseline", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError("the baseline HTTP server did not start")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=4.0, help="wrk duration per row")
    p.add_argument("--quick", action="store_true", help="CI smoke run: 1 s per row")
    args = p.parse_args(argv)
    seconds = 1.0 if args.quick else args.seconds
    ensure_commands({"wrk": "wrk"})
    rows: list[list[str]] = []
    failures: list[str] = []
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        try:
            base_proc, base_port = start_baseline()
            stack.callback(stop_process, base_proc)
            agent = DevAgent(Path(tmp) / "agent", "http-bench")
            stack.callback(agent.stop)
            agent.wait_leader()
            for i in range(KEYS):
                agent.call("PUT", f"/v1/kv/bench/{i}", "x")
            base, base_cpu = measure(base_port, base_proc.pid, Requests("GET", ["/"]), seconds)
            rows.append(_row("baseline: bare trio + llhttp loop", base, base_cpu, base))
            for label, reqs in ROWS:
                result, cpu = measure(agent.http_port, agent.proc.pid, reqs, seconds)
                rows.append(_row(f"meshd {label}", result, cpu, base))
        except Exception as exc:
            failures.append(repr(exc))
            traceback.print_exc()
    print_table(
        f"HTTP API, one dev agent, wrk -t2 -c{CONNECTIONS}, {seconds:g} s per row "
        f"(cpu: the server's user + system time per request) {machine()}",
        ["row", "req/s", "p50 ms", "p99 ms", "err", "cpu us/req", "vs baseline"],
        rows,
    )
    for failure in failures:
        print(f"not measured: {failure}")


def _row(label: str, r: WrkResult, cpu_us: float, base: WrkResult) -> list[str]:
    return [
        label,
        f"{r.rate:,.0f}",
        ms(r.p50_ms / 1000),
        ms(r.p99_ms / 1000),
        str(r.errors),
        f"{cpu_us:.0f}",
        ratio(r.rate, base.rate),
    ]


if __name__ == "__main__":
    main()
