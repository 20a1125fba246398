"""One Raft message round trip over the real mTLS transport, in process (issue #18).

A "leader" transport sends a message to one or two "followers"; each
follower's driver task (woken the way ``RaftNode`` is: ``on_message`` puts
the message on an inbox and sets an event) answers at once; the leader's
driver task, woken the same way, starts the next round when the first
answer is in (a quorum of 3). Heartbeats carry a ReadIndex context, as on the
read path; appends carry one 220-byte entry, as a KV PUT does.

Prints, per kind: round-trip latency (median, us) and the process's CPU per
round (utime+stime, us; with 2 followers that is 2 sends + 2 receives + 2
answers + 2 receives), with the load average. Both ends run in this one
process and thread, so CPU per round is the whole cost of the messages.

    .venv/bin/python -m bench.raft_msg_bench [--rounds 3000] [--followers 1 2]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

import trio

from meshd.agent_tls import create_ca, create_cert, write_pem
from raft.tls import client_context, server_context
from raft.transport import Transport
from raft.types import Entry, Message, MessageType

_ANSWER = {MessageType.HEARTBEAT: MessageType.HEARTBEAT_RESP, MessageType.APP: MessageType.APP_RESP}


class _Driver:
    """The node loop's hand-off: ``on_message`` appends and wakes one task."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.inbox: list[Message] = []
        self.wake = trio.Event()
        self.handed_at = 0.0
        self.hops: list[float] = []  # on_message -> the driver task resumes
        transport.on_message = self._on_message

    def _on_message(self, msg: Message) -> None:
        if not self.inbox:
            self.handed_at = time.perf_counter()
        self.inbox.append(msg)
        self.wake.set()

    async def next_batch(self) -> list[Message]:
        await self.wake.wait()
        self.hops.append(time.perf_counter() - self.handed_at)
        self.wake = trio.Event()
        batch, self.inbox = self.inbox, []
        return batch


async def _follower(d: _Driver) -> None:
    while True:
        for m in await d.next_batch():
            index = m.entries[-1].index if m.entries else m.index
            d.transport.send(
                Message(_ANSWER[m.type], m.dst, m.src, m.term, index=index, context=m.context)
            )


def _message(kind: str, src: str, dst: str, i: int) -> Message:
    if kind == "heartbeat":
        ctx = i.to_bytes(8, "big")
        return Message(MessageType.HEARTBEAT, src, dst, 7, commit=i, context=ctx)
    entry = Entry(i, 7, data=b"x" * 220)
    return Message(
        MessageType.APP, src, dst, 7, log_term=7, index=i - 1, entries=(entry,), commit=i - 1
    )


async def _run(ctx: tuple[object, object], kind: str, followers: int, rounds: int) -> list[float]:
    server_ssl, client_ssl = ctx
    names = ["L"] + [f"F{i}" for i in range(followers)]
    ts = {
        n: Transport(n, ("127.0.0.1", 0), server_ssl, client_ssl, rng=random.Random(1))  # type: ignore[arg-type]
        for n in names
    }
    drivers = {n: _Driver(t) for n, t in ts.items()}
    out: list[float] = []
    async with trio.open_nursery() as nursery:
        addrs = {}
        for n, t in ts.items():
            host, port = await nursery.start(t.serve)
            addrs[n] = f"{host}:{port}"
        for n, t in ts.items():
            for m, a in addrs.items():
                if m != n:
                    t.set_peer(m, a)
        for n in names[1:]:
            nursery.start_soon(_follower, drivers[n])
        leader = drivers["L"]

        sends: list[float] = []

        async def one_round(i: int) -> float:
            msgs = [_message(kind, "L", f, i) for f in names[1:]]
            start = time.perf_counter()
            for m in msgs:
                leader.transport.send(m)
            sends.append(time.perf_counter() - start)
            while True:
                batch = await leader.next_batch()
                if any(m.index == i or m.context == i.to_bytes(8, "big") for m in batch):
                    return time.perf_counter() - start

        for i in range(1, 200):  # connections up, caches warm
            await one_round(i)
        # The second follower's answer may still be in flight: let it land.
        await trio.sleep(0.01)
        t0 = resource.getrusage(resource.RUSAGE_SELF)
        for i in range(200, 200 + rounds):
            out.append(await one_round(i))
            await trio.sleep(0)  # late answers are read outside the timed part
        t1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (t1.ru_utime - t0.ru_utime) + (t1.ru_stime - t0.ru_stime)
        out.append(statistics.median(leader.hops[-rounds:]))
        out.append(statistics.median(sends[-rounds:]))
        out.append(cpu / rounds)
        nursery.cancel_scope.cancel()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3000)
    p.add_argument("--followers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--kinds", nargs="+", default=["heartbeat", "append"])
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        ca = create_ca()
        files = {}
        for name, (cert, key) in {"ca": ca, "srv": create_cert(*ca, kind="server")}.items():
            files[name] = (d / f"{name}.pem", d / f"{name}-key.pem")
            write_pem(files[name][0], cert)
            write_pem(files[name][1], key, private=True)
        ca_file = files["ca"][0]
        ctx = (server_context(ca_file, *files["srv"]), client_context(ca_file, *files["srv"]))
        head = f"{'kind':<10} {'followers':>9} {'rtt p50 us':>11} {'cpu/round us':>13}"
        print(f"{head} {'send p50 us':>12} {'hop p50 us':>11}  load")
        for kind in args.kinds:
            for n in args.followers:
                res = trio.run(_run, ctx, kind, n, args.rounds)
                cpu, send, hop, lat = res[-1], res[-2], res[-3], res[:-3]
                load = os.getloadavg()[0]
                p50 = statistics.median(lat) * 1e6
                row = f"{kind:<10} {n:>9} {p50:>11.1f} {cpu * 1e6:>13.1f}"
                row += f" {send * 1e6:>12.1f} {hop * 1e6:>11.1f}"
                print(f"{row}  {load:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
