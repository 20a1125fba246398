"""CPU per applied KV write (issue #18): set, cas and delete on a fresh FSM.

Every server applies every KV write, so the apply path's CPU is paid three
times over a 3-server cluster. This drives ``RegistryFSM.apply_command``
(the leader's path: an already decoded ``KVRequest``) and ``apply`` (a
follower's: the encoded bytes) with N commands per op, with no watchers and
with ``--watchers`` parked blocking readers on other keys and prefixes, and
prints the median CPU (process time) per apply over ``--runs`` runs.

Run ``python -m bench.kv_apply_bench`` (``--quick`` for a short run). To
compare against another tree, run it as a script with that tree first on
``PYTHONPATH``: ``PYTHONPATH=/tmp/base python bench/kv_apply_bench.py``.
It checks that every write applied and asserts nothing else.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from registry.commands import KVRequest, encode_command
from registry.fsm import RegistryFSM
from registry.state.watch import WatchSet

KEYS = 1000  # distinct keys written per pass (the rest of N overwrite them)


def _park(fsm: RegistryFSM, watchers: int) -> list[WatchSet]:
    """``watchers`` blocking readers: half on a key, half on a prefix, none
    of them covering the keys the bench writes (``bench/...``)."""
    sets = []
    store = fsm.store
    for i in range(watchers):
        ws = WatchSet()
        if i % 2:
            store.watch(ws, ("kvp", f"other/{i}/"))
        else:
            store.watch(ws, ("kv", f"other/{i}"))
        ws.register(lambda: None)
        sets.append(ws)
    return sets


def _commands(op: str, n: int, first_index: int) -> list[KVRequest]:
    """``n`` commands of ``op``; cas expects the index the set phase left
    (key ``i % KEYS`` was last written at ``first_index - KEYS + i % KEYS``
    when a full set phase of ``n`` came just before)."""
    keys = [f"bench/service/{i:05d}/config" for i in range(KEYS)]
    value = b"x" * 64
    if op == "set":
        return [KVRequest(op="set", key=keys[i % KEYS], value=value) for i in range(n)]
    if op == "cas":
        return [
            KVRequest(op="cas", key=keys[i], value=value, cas=first_index - KEYS + i)
            for i in range(n)
        ]
    return [KVRequest(op="delete", key=keys[i]) for i in range(n)]


def _run_once(n: int, watchers: int, encoded: bool) -> dict[str, float]:
    """One fresh FSM: a set phase, a cas phase (every cas succeeds), a
    delete phase; CPU microseconds per apply for each."""
    fsm = RegistryFSM()
    parked = _park(fsm, watchers)
    index = 1
    out: dict[str, float] = {}
    for op in ("set", "cas", "delete"):
        count = n if op == "set" else KEYS
        cmds = _commands(op, count, index)
        payloads: Sequence[object] = [encode_command(c) for c in cmds] if encoded else cmds
        apply: Callable[[int, object], object] = fsm.apply if encoded else fsm.apply_command  # type: ignore[assignment]
        gc.collect()
        start = time.process_time()
        for p in payloads:
            result = apply(index, p)
            index += 1
        out[op] = (time.process_time() - start) / count * 1e6
        assert result, f"{op} did not apply: {result!r}"
    for ws in parked:
        ws.unregister()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000, help="sets per run")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    n, runs = (2000, 3) if args.quick else (max(args.n, KEYS), args.runs)
    import registry

    print(f"registry from {os.path.dirname(registry.__file__)}; load {os.getloadavg()}")
    for encoded in (False, True):
        for watchers in (0, args.watchers):
            samples = [_run_once(n, watchers, encoded) for _ in range(runs)]
            meds = {op: statistics.median(s[op] for s in samples) for op in samples[0]}
            path = "apply(bytes)" if encoded else "apply_command"
            cells = "  ".join(f"{op} {us:6.2f} us" for op, us in meds.items())
            print(f"{path:14s} watchers={watchers:<5d} {cells}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
