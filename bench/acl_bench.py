"""Catalog reads over HTTP with ACLs off, and on with a 50-rule token.

Two real ``meshd agent --dev`` processes on free loopback ports, the same
20 services (web-0 .. web-19) registered on each: one with ACLs off, one
with ``acl.enabled``, ``default_policy = "deny"`` and an initial management
token. On the ACL agent a policy of 50 rules (exact and prefix rules for
services, keys, nodes, agents, sessions, events and queries; it grants
``service:read`` on every web-N and ``node:read``) and a token holding it.
Closed-loop load from ``wrk -t2`` with 16 keep-alive connections on
``GET /v1/catalog/services`` (a list filtered per item) and
``GET /v1/catalog/service/web-3`` (one service's instances): ACLs off (no
token), ACLs on with the 50-rule token, and ACLs on with the management
token (the ACL layer with the cheapest possible decisions). The modes
alternate within each round (off, on, mgmt, then reversed) and the table
shows medians over the rounds, so background load on a shared host hits
every mode alike. The agent's CPU per request (utime + stime) is printed
too: a Python agent is one core, so CPU per request is what sets req/s.

Also in-process micro figures: microseconds per authorizer decision of the
same 50-rule policy, and per token resolution from a warm resolver cache.
Target from the issue: ACLs on cost <= 10% of req/s (on/off >= 0.90).
Prints figures and ratios; never asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.loadgen.dev_agent import DevAgent
from bench.loadgen.install import ensure_commands
from bench.loadgen.procs import cpu_ticks
from bench.loadgen.table import machine, print_table, verdict
from bench.loadgen.wrk import Requests, WrkResult, run_wrk

SERVICES = [f"web-{i}" for i in range(20)]
PATHS = ("/v1/catalog/services", "/v1/catalog/service/web-3")
MODES = ("off", "on", "mgmt")  # ACLs off; on + 50-rule token; on + management token
CONNECTIONS = 16
THREADS = 2
TARGET = 0.90
POLICY_NAME = "bench-50-rules"
MICRO_CALLS = 100_000


def policy_rules() -> str:
    """50 HCL rules of the kinds a real service token carries; they grant
    ``service:read`` on web-0 .. web-19 (exact rules for web-0 and web-2 ..
    web-9, the prefix "web-1" for the rest) and ``node:read`` on every node."""
    rules = [f'service "web-{n}" {{ policy = "read" }}' for n in (0, *range(2, 10))]  # 9
    rules.append('service_prefix "web-1" { policy = "read" }')  # 1
    rules += [f'service_prefix "api-{n}" {{ policy = "write" }}' for n in range(8)]  # 8
    rules += [f'key_prefix "app/{n}/" {{ policy = "write" }}' for n in range(16)]  # 16
    rules += [f'key "config/{n}" {{ policy = "read" }}' for n in range(4)]  # 4
    rules.append('node_prefix "" { policy = "read" }')  # 1
    rules += [f'node "node-{n}" {{ policy = "write" }}' for n in range(4)]  # 4
    rules.append('agent_prefix "" { policy = "read" }')  # 1
    rules.append('session_prefix "" { policy = "read" }')  # 1
    rules += [f'event_prefix "deploy-{n}" {{ policy = "write" }}' for n in range(3)]  # 3
    rules += [f'query_prefix "q-{n}" {{ policy = "read" }}' for n in range(2)]  # 2
    assert len(rules) == 50, len(rules)
    return "\n".join(rules) + "\n"


@dataclass
class Setup:
    off: DevAgent
    acl: DevAgent
    management: str
    token: str = ""
    # (path, mode) -> one WrkResult, and the agent's CPU us per request, per round
    results: dict[tuple[str, str], list[WrkResult]] = field(default_factory=dict)
    cpu_us: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def target(self, mode: str) -> tuple[DevAgent, str | None]:
        if mode == "off":
            return self.off, None
        return self.acl, self.token if mode == "on" else self.management


def start_agents(stack: contextlib.ExitStack, root: Path) -> Setup:
    """Both agents started (stopped by ``stack``), ready, with the services
    registered and the 50-rule token created."""
    management = str(uuid.uuid4())
    acl = {"enabled": True, "default_policy": "deny", "tokens": {"initial_management": management}}
    off = DevAgent(root / "off", "acl-bench-off")
    stack.callback(off.stop)
    on = DevAgent(root / "on", "acl-bench-on", {"acl": acl})
    stack.callback(on.stop)
    setup = Setup(off, on, management)
    for agent, token in ((off, None), (on, management)):

        def token_self(a: DevAgent = agent) -> bool:
            return a.request("GET", "/v1/acl/token/self", token=management)[0] == 200

        agent.wait_leader()
        if token:
            agent.wait_for("initial management token", token_self)
        for i, name in enumerate(SERVICES):
            body = {"Name": name, "ID": name, "Port": 9000 + i, "Tags": ["bench", f"v{i % 3}"]}
            agent.call("PUT", "/v1/agent/service/register", body, token)

        def registered(a: DevAgent = agent, t: str | None = token) -> bool:
            status, answer = a.request("GET", "/v1/catalog/services", token=t)
            return status == 200 and all(s in answer for s in SERVICES)

        agent.wait_for("services in /v1/catalog/services", registered)
    on.call("PUT", "/v1/acl/policy", {"Name": POLICY_NAME, "Rules": policy_rules()}, management)
    created = on.call("PUT", "/v1/acl/token", {"Policies": [{"Name": POLICY_NAME}]}, management)
    setup.token = str(created["SecretID"])
    for path in PATHS:  # the token reads everything the rows measure, or the rows mean nothing
        status, answer = on.request("GET", path, token=setup.token)
        if status != 200 or not answer:
            raise RuntimeError(f"the 50-rule token gets {status} {str(answer)[:200]} on {path}")
    return setup


def run_wrk_get(port: int, path: str, token: str | None, seconds: float) -> WrkResult:
    """``wrk -t2 -c16`` on ``GET path``, with ``X-Consul-Token`` when given
    (every mode runs the same script, so only the header differs). Raises
    ``RuntimeError`` if wrk fails or prints no result."""
    headers = [("X-Consul-Token", token)] if token is not None else []
    reqs = Requests("GET", [path], headers=headers)
    return run_wrk(
        reqs, [("127.0.0.1", port)], connections=CONNECTIONS, seconds=seconds, threads=THREADS
    )


def measure_one(setup: Setup, path: str, mode: str, seconds: float, record: bool) -> None:
    agent, token = setup.target(mode)
    hz = os.sysconf("SC_CLK_TCK")
    before = cpu_ticks(agent.proc.pid)
    r = run_wrk_get(agent.http_port, path, token, seconds)
    used = (cpu_ticks(agent.proc.pid) - before) / hz
    if record:
        setup.results.setdefault((path, mode), []).append(r)
        if r.requests:
            setup.cpu_us.setdefault((path, mode), []).append(used / r.requests * 1e6)


def measure(setup: Setup, seconds: float, rounds: int, warmup: float) -> list[str]:
    """``rounds`` alternating rounds over every path and mode (after a
    ``warmup`` run of each, not recorded); returns what failed."""
    failures: list[str] = []
    plan = [(warmup, -1)] if warmup > 0 else []
    for rnd, (secs, label) in enumerate([*plan, *[(seconds, i) for i in range(rounds)]]):
        for path in PATHS:
            order = MODES if rnd % 2 == 0 else MODES[::-1]
            for mode in order:
                try:
                    measure_one(setup, path, mode, secs, record=label >= 0)
                except Exception as exc:
                    failures.append(f"{path} {mode} round {label}: {exc!r}")
                    traceback.print_exc()
    return failures


# ------------------------------------------------------------------ micro


def time_per_call(fn: Callable[[], object], calls: int) -> float:
    """Microseconds per ``fn()`` over ``calls`` calls (best of 3 passes)."""
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, time.perf_counter() - t)
    return best / calls * 1e6


def micro_authorizer(calls: int) -> dict[str, float]:
    """us per decision of the 50-rule policy under default deny, of the
    management token's authorizer, and per filtering of a catalog answer."""
    from meshd.acl import ACLAuthorizer, manage_all, parse_rules
    from meshd.api.acl_rules import filter_service_names

    authz = ACLAuthorizer.from_policies([parse_rules(policy_rules())], default_allow=False)
    manage = manage_all()
    names = {name: ["bench"] for name in SERVICES}
    few = max(1, calls // 20)
    return {
        "service_read web-3 (exact rule)": time_per_call(
            lambda: authz.service_read("web-3"), calls
        ),
        "service_read web-17 (prefix rule)": time_per_call(
            lambda: authz.service_read("web-17"), calls
        ),
        "service_read db (no rule: deny)": time_per_call(lambda: authz.service_read("db"), calls),
        "node_read acl-bench-on": time_per_call(lambda: authz.node_read("acl-bench-on"), calls),
        "service_read web-3, management token": time_per_call(
            lambda: manage.service_read("web-3"), calls
        ),
        f"filter {len(names)} service names (catalog.services)": time_per_call(
            lambda: filter_service_names(authz, names), few
        ),
        f"filter {len(names)} service names, management token": time_per_call(
            lambda: filter_service_names(manage, names), few
        ),
        "parse_rules + from_policies (50 rules)": time_per_call(
            lambda: ACLAuthorizer.from_policies([parse_rules(policy_rules())], default_allow=False),
            max(1, calls // 1000),
        ),
    }


def micro_resolver(calls: int) -> dict[str, float]:
    """us per ``ACLResolver.resolve`` answered from a warm cache (a client
    agent's path: the TTL check; no server attached)."""
    import trio

    from meshd.agent.acl_resolver import ACLResolver
    from meshd.agent.tokens import TokenStore
    from meshd.config.model import ACLConfig

    config = replace(ACLConfig(), enabled=True, default_policy="deny")
    answer = {
        "accessor_id": "bench-accessor",
        "policies": [{"id": "p-bench", "index": 1, "rules": policy_rules(), "datacenters": []}],
    }

    async def call(method: str, args: Any) -> Any:
        return answer

    resolver = ACLResolver(
        config, TokenStore(config, None), node="bench", datacenter="dc1", call=call
    )

    async def run() -> float:
        await resolver.resolve("secret")  # warm the cache
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(calls):
                await resolver.resolve("secret")
            best = min(best, time.perf_counter() - t)
        return best / calls * 1e6

    return {"ACLResolver.resolve, warm cache": trio.run(run)}


# ----------------------------------------------------------------- report


def med(values: Sequence[float] | None) -> float | None:
    return statistics.median(values) if values else None


def num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def report(setup: Setup, seconds: float, rounds: int) -> None:
    rows = []
    for path in PATHS:
        base = med([r.rate for r in setup.results.get((path, "off"), [])])
        for mode in MODES:
            rs = setup.results.get((path, mode), [])
            rate = med([r.rate for r in rs])
            versus = None if rate is None or not base else rate / base
            rows.append(
                [
                    f"{path} {mode}",
                    num(rate),
                    num(med([r.p50_ms for r in rs]), 2),
                    num(med([r.p99_ms for r in rs]), 2),
                    str(sum(r.errors for r in rs)) if rs else "-",
                    num(med(setup.cpu_us.get((path, mode))), 0),
                    "-" if versus is None else f"{versus:.2f}x",
                ]
            )
    print_table(
        f"GET over HTTP, one dev agent per mode, {len(SERVICES)} services, wrk -t{THREADS}"
        f" -c{CONNECTIONS}, {seconds:g} s per run, median of {rounds} alternating round(s);"
        " off: ACLs off; on: 50-rule token; mgmt: management token " + machine(),
        ["path mode", "req/s", "p50 ms", "p99 ms", "errors", "cpu us/req", "vs off"],
        rows,
    )
    ratio_rows = []
    for path in PATHS:
        base = med([r.rate for r in setup.results.get((path, "off"), [])])
        for mode, target in (("on", TARGET), ("mgmt", None)):
            rate = med([r.rate for r in setup.results.get((path, mode), [])])
            value = None if rate is None or not base else rate / base
            label = f"acl {mode}/off req/s {path}"
            shown = "-" if value is None else f"{value:.2f}"
            if target is None:
                ratio_rows.append([label, shown, "(info)", "-"])
            else:
                met = None if value is None else value >= target
                ratio_rows.append([label, shown, f">= {target:.2f}", verdict(met)])
    print_table(
        "ACLs on against off (target from the issue; never asserted)",
        ["ratio", "value", "target", ""],
        ratio_rows,
    )


def report_micro(figures: dict[str, float], calls: int) -> None:
    print_table(
        f"In-process, 50-rule policy, default deny (us per call, best of 3 x {calls:,} calls;"
        " filters: 1/20 as many; parse + build: 1/1000)",
        ["operation", "us/call"],
        [[name, f"{us:.3f}" if us < 10 else f"{us:,.0f}"] for name, us in figures.items()],
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="CI smoke run: 1 s per run, 1 round")
    p.add_argument("--seconds", type=float, default=None, help="wrk duration per run")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds")
    args = p.parse_args(argv)
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    rounds = args.rounds or (1 if args.quick else 3)
    warmup = 0.0 if args.quick else 1.0
    calls = MICRO_CALLS // 10 if args.quick else MICRO_CALLS
    ensure_commands({"wrk": "wrk"})
    failures: list[str] = []
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="meshd-acl-bench-")))
        setup = start_agents(stack, root)
        failures += measure(setup, seconds, rounds, warmup)
    micro: dict[str, float] = {}
    for name, fn in (("authorizer", micro_authorizer), ("resolver", micro_resolver)):
        try:
            micro.update(fn(calls))
        except Exception as exc:
            failures.append(f"micro {name}: {exc!r}")
            traceback.print_exc()
    report(setup, seconds, rounds)
    report_micro(micro, calls)
    if failures:
        raise RuntimeError("acl_bench could not measure " + "; ".join(failures))


if __name__ == "__main__":
    main()
