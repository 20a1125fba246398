"""What telemetry costs the real L7 pair (issue 19, "Performance").

The L7 pair of bench/proxy_l7.py (``meshd proxy --sidecar-for web7`` on the
client side, ``--sidecar-for api7 --sidecar-for apis`` on the server side,
mTLS between them, one worker each, a ``meshd agent --dev`` and nginx
behind), driven by wrk with ``GET /`` on web7's plain ``api7`` route, in
three configurations measured in alternating rounds of the same run:

- ``off``: proxy-defaults ``Config.tracing_sampling_percentage = 0`` and
  the proxies started with ``MESHD_PROXY_REQUEST_METRICS=0`` (no
  per-request metrics families, no graph edge aggregate);
- ``metrics + 1%``: the defaults (per-request metrics on, 1% sampling);
- ``metrics + 100%``: every request traced (two spans, one per proxy,
  sent to the agent and stored there).

The pair is restarted for each configuration (the metrics switch is read
at the proxy's start; the sampling percentage is written before it
starts). Per configuration and connection count: req/s, p99, and CPU
microseconds per request of each proxy (process trees) and of the agent
(which ingests and stores the spans), medians over the rounds (and the
best req/s: the run least disturbed on a shared host); then the
ratios to ``off`` (the issue's target: metrics + 1% costs <= 10% of the
req/s) and, from the last round, the RSS of the agent and of each proxy
with the traces the agent holds. Prints figures; never asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.loadgen.install import ensure_commands
from bench.loadgen.table import machine, print_table, ratio, verdict
from bench.loadgen.wrk import Requests, run_wrk
from bench.proxy_backend import start_nginx
from bench.proxy_l7 import L7Ports, register_l7, start_l7_pair
from bench.proxy_measure import tree_cpu_seconds, tree_rss_mb
from bench.proxy_meshd import MeshdAgent, MeshdPair
from connect.proxy.l7_metrics import REQUEST_METRICS_ENV

GET = Requests("GET", ["/"])
TARGET_COST = 0.10  # metrics + 1% tracing cost <= 10% of the pair's req/s
TRACES_LIMIT = 1000  # the trace API's largest page (the store keeps 1,000 by default)
READY_TIMEOUT = 60.0
READY_ANSWERS = 20  # consecutive 200s through the pair before measuring
HTTP_CHAIN = re.compile(r"event=upstream_chain destination=api7 protocol=http")


@dataclass(frozen=True)
class Config:
    name: str
    metrics: bool
    sampling: float  # percent


CONFIGS = (
    Config("off", False, 0.0),
    Config("metrics + 1%", True, 1.0),
    Config("metrics + 100%", True, 100.0),
)


@dataclass
class Figures:
    """One configuration's samples, per connection count, over the rounds."""

    rates: dict[int, list[float]] = field(default_factory=dict)
    p99: dict[int, list[float]] = field(default_factory=dict)
    client_us: dict[int, list[float]] = field(default_factory=dict)
    server_us: dict[int, list[float]] = field(default_factory=dict)
    agent_us: dict[int, list[float]] = field(default_factory=dict)
    errors: int = 0
    # Per round: RSS (MB) of the agent, the client proxy and the server proxy
    # at the end of this configuration's run, and the traces the agent held.
    rss: list[tuple[list[float], int]] = field(default_factory=list)


@contextlib.contextmanager
def request_metrics(on: bool) -> Iterator[None]:
    """The proxies started inside inherit ``MESHD_PROXY_REQUEST_METRICS=0`` when off."""
    old = os.environ.pop(REQUEST_METRICS_ENV, None)
    if not on:
        os.environ[REQUEST_METRICS_ENV] = "0"
    try:
        yield
    finally:
        os.environ.pop(REQUEST_METRICS_ENV, None)
        if old is not None:
            os.environ[REQUEST_METRICS_ENV] = old


def set_sampling(agent: MeshdAgent, percent: float) -> None:
    entry = {
        "Kind": "proxy-defaults",
        "Name": "global",
        "Config": {"tracing_sampling_percentage": percent},
    }
    agent.call("PUT", "/v1/config", entry)


def traces_stored(agent: MeshdAgent) -> int:
    found = agent.call("GET", f"/v1/internal/traces?local&limit={TRACES_LIMIT}")
    return len(found) if isinstance(found, list) else 0


def wait_serving(pair: MeshdPair) -> None:
    """Until the client proxy has api7's chain as http (so the L7 handler,
    not the L4 one, serves the route) and ``READY_ANSWERS`` ``GET /`` in a
    row answer 200 through it. Raises ``TimeoutError`` with the logs' tails."""
    deadline = time.monotonic() + READY_TIMEOUT
    good = 0
    while good < READY_ANSWERS:
        if time.monotonic() > deadline:
            tails = "\n".join(log.read_text(errors="replace")[-1500:] for log in pair.logs)
            raise TimeoutError(f"the L7 pair does not answer 200 in {READY_TIMEOUT:g}s\n{tails}")
        if not HTTP_CHAIN.search(pair.logs[0].read_text(errors="replace")):
            time.sleep(0.05)
            continue
        conn = http.client.HTTPConnection("127.0.0.1", pair.entry, timeout=5)
        try:
            conn.request("GET", "/", headers={"Host": "bench"})
            resp = conn.getresponse()
            resp.read()
            good = good + 1 if resp.status == 200 else 0
        except (OSError, http.client.HTTPException):
            good = 0
        finally:
            conn.close()
        if good == 0:
            time.sleep(0.05)


def add(samples: dict[int, list[float]], conns: int, value: float) -> None:
    samples.setdefault(conns, []).append(value)


def measure(pair: MeshdPair, agent: MeshdAgent, figs: Figures, conns: int, seconds: float) -> None:
    """One wrk run at ``conns`` connections through the pair's plain route."""
    trees = [[pair.procs[0].pid], [pair.procs[-1].pid], [agent.proc.pid]]
    before = [tree_cpu_seconds(t) for t in trees]
    r = run_wrk(GET, [("127.0.0.1", pair.entry)], connections=conns, seconds=seconds)
    after = [tree_cpu_seconds(t) for t in trees]
    add(figs.rates, conns, r.rate)
    add(figs.p99, conns, r.p99_ms)
    figs.errors += r.errors
    if r.requests:
        us = [(b - a) * 1e6 / r.requests for a, b in zip(before, after, strict=True)]
        for samples, value in zip((figs.client_us, figs.server_us, figs.agent_us), us, strict=True):
            add(samples, conns, value)


@dataclass(frozen=True)
class Settings:
    seconds: float
    rounds: int
    connections: tuple[int, ...]


def run_config(
    root: Path, agent: MeshdAgent, ports: L7Ports, cfg: Config, figs: Figures, s: Settings
) -> None:
    """Restart the pair in ``cfg``, warm it up, measure each connection
    count, and take the RSS and trace count before stopping it."""
    set_sampling(agent, cfg.sampling)
    with request_metrics(cfg.metrics):
        pair = start_l7_pair(root, agent, ports, 1)
    try:
        wait_serving(pair)
        run_wrk(GET, [("127.0.0.1", pair.entry)], connections=16, seconds=1)
        for conns in s.connections:
            measure(pair, agent, figs, conns, s.seconds)
        rss = [sum(tree_rss_mb([pid])) for pid in (agent.proc.pid, *pair.pids)]
        figs.rss.append((rss, traces_stored(agent)))
    finally:
        pair.stop()


def median(values: Sequence[float] | None) -> float | None:
    return statistics.median(values) if values else None


def num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def report(figs: dict[str, Figures], s: Settings) -> None:
    rows = []
    for cfg in CONFIGS:
        f = figs[cfg.name]
        for c in s.connections:
            client, server = median(f.client_us.get(c)), median(f.server_us.get(c))
            both = None if client is None or server is None else client + server
            rows.append(
                [
                    f"{cfg.name} c{c}",
                    num(median(f.rates.get(c))),
                    num(max(f.rates.get(c) or [0.0])),
                    num(median(f.p99.get(c)), 2),
                    num(client, 1),
                    num(server, 1),
                    num(both, 1),
                    num(median(f.agent_us.get(c)), 1),
                    str(f.errors),
                ]
            )
    print_table(
        f"L7 pair (mTLS, 1 worker each) GET / via web7 -> api7, wrk -t2, {s.seconds:g} s per run,"
        f" medians of {s.rounds} alternating rounds {machine()}",
        ["config", "req/s", "best", "p99 ms", "client us/req", "server us/req", "pair us/req",
         "agent us/req", "errors"],
        rows,
    )  # fmt: skip
    report_ratios(figs, s)
    report_rss(figs)


def report_ratios(figs: dict[str, Figures], s: Settings) -> None:
    off = figs[CONFIGS[0].name]
    rows = []
    for cfg in CONFIGS[1:]:
        f = figs[cfg.name]
        for c in s.connections:
            rate, base = median(f.rates.get(c)), median(off.rates.get(c))
            pair = _pair_us(f, c)
            ok = None if rate is None or not base else rate / base >= 1 - TARGET_COST
            target = verdict(ok) if cfg.sampling == 1.0 else "(reported)"
            rows.append(
                [
                    f"{cfg.name} / off c{c}",
                    ratio(rate, base),
                    ratio(max(f.rates.get(c) or [0.0]), max(off.rates.get(c) or [0.0])),
                    ratio(median(f.p99.get(c)), median(off.p99.get(c))),
                    ratio(pair, _pair_us(off, c)),
                    target,
                ]
            )
    print_table(
        f"telemetry's cost (target: metrics + 1% req/s >= {1 - TARGET_COST:.2f}x off)",
        ["ratio", "req/s", "best req/s", "p99", "pair CPU-us/req", "target"],
        rows,
    )


def _pair_us(f: Figures, conns: int) -> float | None:
    client, server = median(f.client_us.get(conns)), median(f.server_us.get(conns))
    return None if client is None or server is None else client + server


def report_rss(figs: dict[str, Figures]) -> None:
    """The first round (before any 100% run when it goes first: off, 1%,
    100%) and the last round."""
    rows = []
    for cfg in CONFIGS:
        samples = figs[cfg.name].rss
        for label, i in (("first", 0), ("last", len(samples) - 1))[: len(samples)]:
            rss, traces = samples[i]
            rows.append([f"{cfg.name}, {label} round", *(num(mb, 1) for mb in rss), num(traces)])
    print_table(
        "RSS at the end of each configuration's run (MB)",
        ["config", "agent", "client proxy", "server proxy", "traces stored"],
        rows,
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round, 2 s, c16 only")
    p.add_argument("--seconds", type=float, default=None, help="wrk duration per run")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds")
    p.add_argument("--connections", type=int, nargs="+", default=None)
    args = p.parse_args(argv)
    s = Settings(
        seconds=args.seconds or (2.0 if args.quick else 3.0),
        rounds=args.rounds or (1 if args.quick else 5),
        connections=tuple(args.connections or ((16,) if args.quick else (16, 64))),
    )
    ensure_commands({"wrk": "wrk", "nginx": "nginx-light"})
    figs = {cfg.name: Figures() for cfg in CONFIGS}
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="meshd-tel-bench-")))
        nginx = start_nginx(root / "nginx", 1 << 20)
        stack.callback(nginx.stop)
        agent = MeshdAgent(root / "meshd")
        stack.callback(agent.stop)
        agent.wait_ready()
        ports = register_l7(agent, nginx.port)
        for i in range(s.rounds):
            order = CONFIGS if i % 2 == 0 else tuple(reversed(CONFIGS))
            for cfg in order:
                tag = f"r{i}-{cfg.name.split()[-1].strip('%')}"
                run_config(root / tag, agent, ports, cfg, figs[cfg.name], s)
    report(figs, s)


if __name__ == "__main__":
    main()
