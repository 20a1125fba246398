"""CPU per forwarded write on the follower's side, in process (issue #18).

N writers submit KV puts through ``WriteBatcher`` at once; ``send`` is the
RPC client's work for one ``Registry.ApplyBatch`` call without the socket
(the request frame encoded, the leader's canned answer frame decoded) plus a
fixed wait standing in for the round trip, so the N writes gather into one
batch of N. Prints CPU microseconds per write for batch sizes 1, 8, 64.

    .venv/bin/python -m bench.fwd_micro [--rounds 300] [--profile 8]
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import os
import pstats
import time
from collections.abc import Sequence
from typing import Any

import trio

from meshd.agent.write_batch import WriteBatcher
from meshd.wire import WriteResult
from raft.codec import pack, unpack
from raft.transport import encode_frame
from registry.commands import KVRequest, encode_command


def _answer_frame(n: int) -> bytes:
    ok = WriteResult(True, True, None, "", 1234567).to_wire()
    return pack({"v": 1, "id": 1, "ok": True, "r": {"results": [{"w": ok}] * n}})


async def _run(batch: int, rounds: int, cls: type[WriteBatcher] = WriteBatcher) -> float:
    answers = {n: _answer_frame(n) for n in (1, batch)}

    async def send(addr: str, cmds: Sequence[bytes]) -> Sequence[Any]:
        encode_frame(
            {"v": 1, "id": 1, "m": "Registry.ApplyBatch", "a": {"cmds": list(cmds), "fwd": True}}
        )
        await trio.sleep(0.0005)  # the round trip
        resp = unpack(answers[len(cmds)])
        results: list[Any] = resp["r"]["results"]
        return results

    batcher = cls(send, max_inflight=1)
    data = encode_command(KVRequest(op="set", key="bench/k", value=b"x" * 64))
    done = 0

    async def writer() -> None:
        nonlocal done
        for _ in range(rounds):
            answer = await batcher.submit("leader:8300", data)
            if "e" in answer:
                raise RuntimeError(answer)
            WriteResult.from_wire(answer["w"])
            done += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        t0 = time.process_time()
        async with trio.open_nursery() as writers:
            for _ in range(batch):
                writers.start_soon(writer)
        cpu = time.process_time() - t0
        nursery.cancel_scope.cancel()
    return cpu / done * 1e6


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=300)
    p.add_argument("--profile", type=int, default=0, help="profile this batch size")
    p.add_argument("--against", help="a write_batch.py to compare with (A B A B ...)")
    a = p.parse_args()
    impls: dict[str, Any] = {"this": WriteBatcher}
    if a.against:
        spec = importlib.util.spec_from_file_location("against_wb", a.against)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        impls = {"against": mod.WriteBatcher, "this": WriteBatcher}
    if a.profile:
        prof = cProfile.Profile(time.process_time)  # CPU, not waits
        prof.runcall(lambda: trio.run(_run, a.profile, a.rounds))
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    for batch in (1, 8, 64):
        rounds = max(20, a.rounds * 8 // batch) if batch > 1 else a.rounds * 4
        figs: dict[str, list[float]] = {name: [] for name in impls}
        for _ in range(5):  # alternated, A B A B ...
            for name, cls in impls.items():
                figs[name].append(trio.run(_run, batch, rounds, cls))
        for name, vals in figs.items():
            med = sorted(vals)[2]
            load = os.getloadavg()[0]
            print(
                f"batch {batch:3d} {name:7s}: {med:6.1f} us CPU/write (median of 5) load {load:.2f}"
            )


if __name__ == "__main__":
    main()
