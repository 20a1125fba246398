"""Run the deterministic Raft simulation over a range of seeds.

    python -m tests.sim.run --seeds 300 --seed-start 0        # what `make sim` runs
    python -m tests.sim.run --seed 202 --trace                 # replay one seed, event by event

Prints one line per failing seed (``seed=<s> property=<name> detail=...``) and then the
summary ``sim: N seeds, F failures``; exits 1 if any seed failed. A seed replays exactly.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from registry.fsm import RegistryFSM
from tests.sim.registry_workload import RegistryWorkload
from tests.sim.world import SimConfig, SimResult, World


def fsm_overrides(seed: int, fsm: str) -> dict[str, Any]:
    """``kv``: the tiny KV FSM; ``registry``: registry.fsm.RegistryFSM with real
    registry commands; ``mixed``: every third seed on the registry."""
    if fsm == "registry" or (fsm == "mixed" and seed % 3 == 2):
        return {"fsm_factory": RegistryFSM, "workload_factory": RegistryWorkload}
    return {}


def run_one(seed: int, overrides: dict[str, Any]) -> SimResult:
    opts = dict(overrides)
    fsm = opts.pop("fsm", "kv")
    return World(SimConfig(seed=seed, **opts, **fsm_overrides(seed, fsm))).run()


def run_many(seeds: Sequence[int], overrides: dict[str, Any], jobs: int) -> Iterator[SimResult]:
    """Results in seed order (runs in ``jobs`` processes when more than one)."""
    if jobs <= 1:
        for seed in seeds:
            yield run_one(seed, overrides)
        return
    with ProcessPoolExecutor(jobs) as pool:
        yield from pool.map(run_one, seeds, [overrides] * len(seeds), chunksize=4)


def failure_line(r: SimResult, verbose: bool, fsm: str = "mixed") -> str:
    detail = r.detail if verbose else r.detail.replace("\n", " | ")
    return (
        f"seed={r.seed} property={r.prop} detail={detail} "
        f"(nodes={r.nodes} faults: {r.profile}; "
        f"replay: python -m tests.sim.run --seed {r.seed} --fsm {fsm})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.sim.run", description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=300, help="how many seeds to run")
    p.add_argument("--seed-start", type=int, default=0, help="first seed")
    p.add_argument("--seed", type=int, help="run this one seed (overrides --seeds)")
    p.add_argument("--nodes", type=int, choices=(3, 5), help="cluster size (default: per seed)")
    p.add_argument("--chaos-ticks", type=int, help="length of the fault phase in Raft ticks")
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    p.add_argument(
        "--fsm",
        choices=("kv", "registry", "mixed"),
        default="mixed",
        help="state machine under test (mixed: every third seed runs the registry FSM)",
    )
    p.add_argument("--trace", action="store_true", help="print every event (with --seed)")
    p.add_argument("--verbose", "-v", action="store_true", help="one line per seed, with stats")
    args = p.parse_args(argv)

    overrides: dict[str, Any] = {"fsm": args.fsm}
    if args.nodes:
        overrides["nodes"] = args.nodes
    if args.chaos_ticks:
        overrides["chaos_ticks"] = args.chaos_ticks
    if args.seed is not None:
        seeds = [args.seed]
        overrides["trace"] = args.trace
    else:
        seeds = list(range(args.seed_start, args.seed_start + args.seeds))

    started = time.monotonic()
    failures = 0
    for r in run_many(seeds, overrides, 1 if args.trace else args.jobs):
        if args.verbose or args.seed is not None:
            stats = " ".join(f"{k}={v}" for k, v in r.stats.items())
            print(
                f"seed={r.seed} nodes={r.nodes} {'ok' if r.ok else 'FAIL'} "
                f"faults: {r.profile} trace={r.trace_hash} {stats}"
            )
        if not r.ok:
            failures += 1
            print(failure_line(r, args.verbose, args.fsm), flush=True)
    if args.verbose:
        print(f"elapsed {time.monotonic() - started:.1f} s")
    print(f"sim: {len(seeds)} seeds, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
