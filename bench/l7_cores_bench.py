"""Per-decision cost of the pure L7 cores (connect/l7), in process.

A 20-route service-router (path prefixes, exact paths, a regex, header and
query matchers, methods; the catch-all last, as Consul's compiler appends
it), a 90/10 splitter and round-robin targets of 3 endpoints. Requests are
a fixed mix spread over the routes (early, middle and catch-all matches),
built fresh for every call so nothing parsed is reused.
Each figure is microseconds per decision, the best of the rounds (the
cases alternate within each round, and the minimum is the run least
disturbed by other load on a shared host):

- baseline: a plain dict lookup of the path (the least any router costs),
- normalise: ``normalize_path`` alone,
- match: normalise + first-match over the 20 routes,
- decide, plain route: match + target + round-robin pick (``Decider``),
- decide, 90/10 split: match + split pick + target + round-robin pick,
- decide, ring_hash: match + header hash + ring lookup.

Also the 90/10 split's cost over the plain route (issue 15's target for the
whole proxy is <= 10% over a plain L7 route; this is the cores' share).
Prints figures and ratios; never asserts.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable
from dataclasses import replace

from bench.loadgen.table import machine, print_table, ratio
from connect.l7.balance import HashPolicy, LoadBalancerConfig
from connect.l7.decide import Decider, Table, Target
from connect.l7.match import HeaderMatch, HTTPMatch, QueryParamMatch, Route, Router, normalize_path
from connect.l7.request import Request
from connect.l7.split import Split, Splitter

ROUTES = 20
CALLS = 20_000


def build_routes(last: str) -> list[Route]:
    routes: list[Route] = []
    for i in range(ROUTES - 1):
        kind = i % 5
        if kind == 0:
            m = HTTPMatch(path_prefix=f"/svc{i}/")
        elif kind == 1:
            m = HTTPMatch(path_exact=f"/exact/{i}", methods=("GET", "HEAD"))
        elif kind == 2:
            m = HTTPMatch(path_prefix="/api/", headers=(HeaderMatch("x-version", exact=f"v{i}"),))
        elif kind == 3:
            m = HTTPMatch(path_regex=f"/items/{i}/[0-9]+")
        else:
            m = HTTPMatch(path_prefix="/q/", query_params=(QueryParamMatch("flag", exact=str(i)),))
        routes.append(Route(m, next_node="plain"))
    routes.append(Route(HTTPMatch(path_prefix="/"), next_node=last))
    return routes


def requests() -> list[Request]:
    return [
        Request.build("GET", "/svc0/a/b"),
        Request.build("GET", "/exact/11"),
        Request.build("GET", "/api/x", [("x-version", "v17")]),
        Request.build("GET", "/items/18/42"),
        Request.build("GET", "/q/x?flag=19"),
        Request.build("GET", "/catch/all/%7Euser", [("x-user", "alice")]),
        Request.build("POST", "/other/path", [("x-user", "bob")]),
        Request.build("GET", "/api/../catch", [("x-user", "carol")]),
    ]


def table(last: str) -> Table:
    endpoints = ("10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80")
    hashed = LoadBalancerConfig(
        policy="ring_hash", hash_policies=(HashPolicy(field="header", field_value="x-user"),)
    )
    return Table(
        start="plain",
        router=Router(build_routes(last)),
        splitters={"split": Splitter([Split(90, "plain"), Split(10, "canary")])},
        targets={
            "plain": Target("plain", endpoints),
            "canary": Target("canary", ("10.0.1.1:80",)),
            "hashed": Target("hashed", endpoints, load_balancer=hashed),
        },
    )


def per_call_us(fn: Callable[[Request], object], calls: int) -> float:
    """Microseconds per call over ``calls`` fresh requests (nothing cached)."""
    mix = requests()
    reqs = [replace(mix[i % len(mix)]) for i in range(calls)]
    gc.collect()
    gc.disable()  # as timeit: a collection landing in one case skews it
    try:
        start = time.perf_counter()
        for r in reqs:
            fn(r)
        return (time.perf_counter() - start) / calls * 1e6
    finally:
        gc.enable()


def measure(calls: int, rounds: int) -> dict[str, float]:
    reqs = requests()
    rng = random.Random(1)
    lookup = {r.path: "plain" for r in reqs}
    plain = Decider(table("plain"))
    split = Decider(table("split"))
    hashed = Decider(table("hashed"))
    router = plain.table.router
    assert router is not None
    cases: dict[str, Callable[[Request], object]] = {
        "baseline: dict lookup": lambda r: lookup.get(r.path),
        "normalise path": lambda r: normalize_path(r.path),
        "match (20 routes)": router.match,
        "decide, plain route": lambda r: plain.decide(r, rng=rng),
        "decide, 90/10 split": lambda r: split.decide(r, rng=rng),
        "decide, ring_hash": lambda r: hashed.decide(r, rng=rng),
    }
    samples: dict[str, list[float]] = {k: [] for k in cases}
    names = list(cases)
    for i in range(rounds):
        for name in names if i % 2 == 0 else reversed(names):
            samples[name].append(per_call_us(cases[name], calls))
    return {k: min(v) for k, v in samples.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: few calls, 1 round")
    p.add_argument("--calls", type=int, default=None, help="decisions per case and round")
    p.add_argument("--rounds", type=int, default=None)
    args = p.parse_args(argv)
    calls = args.calls or (CALLS // 20 if args.quick else CALLS // 2)
    rounds = args.rounds or (1 if args.quick else 9)
    figures = measure(calls, rounds)
    base = figures["baseline: dict lookup"]
    rows = [[name, f"{us:.2f}", ratio(us, base)] for name, us in figures.items()]
    print_table(
        f"L7 decision cores, {ROUTES}-route router, {calls} calls x {rounds} rounds "
        f"(best) {machine()}",
        ["case", "us/decision", "vs dict"],
        rows,
    )
    plain, split = figures["decide, plain route"], figures["decide, 90/10 split"]
    print(f"90/10 split over plain route: {ratio(split, plain)} ({split - plain:+.2f} us)")


if __name__ == "__main__":
    main()
