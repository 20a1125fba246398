"""Dev agent start to ready: spawn ``meshd agent --dev`` -> first 200 from
``/v1/catalog/nodes``.

Baselines measured in the same run: a bare ``python -c pass`` and importing
meshd's agent and API (what any Python agent pays before its first line of
work), and a single-member etcd 3.4 (spawn -> first 200 from a linearizable
``/v3/kv/range``). Also, in a fresh interpreter, ``Agent.run`` start ->
``task_status.started()`` (the agent's own start, imports excluded).
Medians of 5 (2 with ``--quick``). Prints figures; never asserts.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench.etcd_cluster import EtcdCluster, b64
from bench.loadgen.install import BASELINE_TOOLS, ensure_commands
from bench.loadgen.procs import stop_process
from bench.loadgen.table import machine, ms, print_table, ratio, verdict

TARGET = 1.0
READY_TIMEOUT = 30.0

IN_PROCESS = """
import sys, time, trio
from meshd.agent.agent import Agent
from meshd.config import load_config
flags = {"client": sys.argv[1], "bind": sys.argv[1], "http_port": 8500}
config, _ = load_config([], [], flags, dev=True)
async def main():
    agent = Agent(config)
    async with trio.open_nursery() as nursery:
        t = time.perf_counter()
        await nursery.start(agent.run)
        print("STARTED", time.perf_counter() - t, flush=True)
        agent.shutdown.set()
trio.run(main)
"""


def _answers(host: str, port: int, method: str, path: str, body: bytes | None = None) -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=1)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def time_to_ready(argv: list[str], ready: Callable[[], bool], cwd: Path | None = None) -> float:
    """Seconds from spawning ``argv`` to ``ready()`` first being true (polled
    every 2 ms); the process is stopped afterwards. Raises ``TimeoutError``
    or ``RuntimeError`` if it exits first."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, cwd=cwd
    )
    try:
        while time.monotonic() - t0 < READY_TIMEOUT:
            if ready():
                return time.monotonic() - t0
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"{argv[:4]} exited with {proc.returncode}: {err[-1500:]}")
            time.sleep(0.002)
        raise TimeoutError(f"{argv[:4]} not ready within {READY_TIMEOUT}s")
    finally:
        stop_process(proc)


def time_process(argv: list[str]) -> float:
    t0 = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True)
    return time.monotonic() - t0


def meshd_dev(ip: str) -> float:
    argv = [
        sys.executable,
        "-m",
        "meshd",
        "agent",
        "--dev",
        "--client",
        ip,
        "--bind",
        ip,
        "--http-port",
        "8500",
    ]
    return time_to_ready(argv, lambda: _answers(ip, 8500, "GET", "/v1/catalog/nodes"))


def in_process(ip: str) -> float:
    proc = subprocess.run(
        [sys.executable, "-c", IN_PROCESS, ip], capture_output=True, text=True, timeout=60
    )
    for line in proc.stdout.splitlines():
        if line.startswith("STARTED "):
            return float(line.split()[1])
    raise RuntimeError(f"in-process start printed nothing: {proc.stderr[-1500:]}")


def etcd_single(root: Path, ip: str, run: int) -> float:
    member = EtcdCluster(
        root / f"etcd-{run}",
        size=1,
        subnet=ip.rsplit(".", 1)[0],
        first_host=int(ip.rsplit(".", 1)[1]),
    )
    m = member.members["etcd-1"]
    body = b'{"key": "' + b64("x").encode() + b'"}'
    return time_to_ready(member._argv(m), lambda: _answers(ip, 2379, "POST", "/v3/kv/range", body))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="CI smoke run: 2 starts each")
    p.add_argument("--runs", type=int, default=None)
    p.add_argument("--ip", default="127.0.13.1")
    p.add_argument("--etcd-ip", default="127.0.23.1")
    args = p.parse_args(argv)
    runs = args.runs or (2 if args.quick else 5)
    ensure_commands(BASELINE_TOOLS)
    imports = "import meshd.agent.agent, meshd.api.routes, meshd.cli"
    figures: dict[str, list[float]] = {}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="meshd-start-bench-") as tmp:
        steps: list[tuple[str, Callable[[int], float]]] = [
            ("meshd agent --dev", lambda i: meshd_dev(args.ip)),
            ("Agent.run -> started()", lambda i: in_process(args.ip)),
            ("etcd 3.4, 1 member", lambda i: etcd_single(Path(tmp), args.etcd_ip, i)),
            ("python -c pass", lambda i: time_process([sys.executable, "-c", "pass"])),
            ("python: import meshd", lambda i: time_process([sys.executable, "-c", imports])),
        ]
        for name, step in steps:
            try:
                figures[name] = [step(i) for i in range(runs)]
            except Exception as exc:
                failures.append(f"{name}: {exc!r}")
                traceback.print_exc()
    med = {k: statistics.median(v) for k, v in figures.items()}
    dev = med.get("meshd agent --dev")
    etcd = med.get("etcd 3.4, 1 member")
    rows = []
    for name, values in figures.items():
        row = [name, ms(med[name]), " ".join(ms(v) for v in values)]
        if name == "meshd agent --dev":
            row += [
                ratio(dev, etcd),
                f"< {TARGET * 1000:.0f} ms",
                verdict(dev is not None and dev < TARGET),
            ]
        else:
            row += ["", "", ""]
        rows.append(row)
    print_table(
        f"Start to ready (ms, median of {runs}): spawn -> first 200 from the HTTP API " + machine(),
        ["what", "median", "runs", "vs etcd", "target", ""],
        rows,
    )
    if failures:
        raise RuntimeError("agent_start_bench could not measure " + "; ".join(failures))


if __name__ == "__main__":
    main()
