"""A small replicated key/value server on raft/: the library's runnable example.

Each process is one Raft server (segmented log storage, mTLS transport) with a
client port on loopback speaking framed msgpack (``raft.transport.FramedStream``)::

    {"op": "put", "key": k, "value": v}      -> {"ok": true, "index": i}
    {"op": "cas", "key": k, "expected": e, "value": v} -> {"ok": true, "result": bool}
    {"op": "incr", "key": k}                 -> {"ok": true, "result": n}
    {"op": "get", "key": k, "consistency": "consistent"|"lease"|"stale"}
    {"op": "status"}
    {"op": "bench", "proposers": 64, "seconds": 3, "size": 100}   (run on the leader)

Errors answer ``{"ok": false, "error": ..., "leader": addr-or-null}``. It is
what ``make run`` starts (a 3-node demo), what the real-process tests kill
and restart, and what ``bench/raft_bench.py`` measures.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import trio

from .errors import NotLeaderError, RaftError
from .node import NodeConfig, RaftNode
from .tls import client_context, server_context
from .transport import FramedStream, Transport
from .types import Configuration, Server
from .wal import open_durable_storage

log = logging.getLogger("raft.kvserver")


class KVStateMachine:
    """put / cas / incr on a dict; deterministic, msgpack commands."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def apply(self, index: int, data: bytes) -> Any:
        cmd = msgpack.unpackb(data)
        op, key = cmd["op"], cmd["key"]
        if op == "put":
            self.data[key] = cmd["value"]
            return index
        if op == "cas":
            if self.data.get(key) != cmd.get("expected"):
                return False
            self.data[key] = cmd["value"]
            return True
        if op == "incr":
            value = int(self.data.get(key, 0)) + 1
            self.data[key] = value
            return value
        raise RaftError(f"corrupt command: unknown op {op!r}")

    def snapshot(self) -> bytes:
        # Sorted so that equal states give equal bytes (status compares digests).
        ordered = dict(sorted(self.data.items()))
        return msgpack.packb(ordered, use_bin_type=True)  # type: ignore[no-any-return]

    def restore(self, data: bytes) -> None:
        self.data = msgpack.unpackb(data, raw=False)


def _parse_peers(spec: str) -> Configuration:
    servers = []
    for item in spec.split(","):
        sid, _, addr = item.partition("=")
        if not sid or not addr:
            raise SystemExit(f"--peers: expected id=host:port[,...], got {item!r}")
        servers.append(Server(sid, addr))
    return Configuration(tuple(servers))


def _split(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


class KVServer:
    def __init__(self, node: RaftNode, fsm: KVStateMachine) -> None:
        self.node = node
        self.fsm = fsm

    def _leader_addr(self) -> str | None:
        return self.node.leader()[1]

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        try:
            if op in ("put", "cas", "incr"):
                cmd = {k: req[k] for k in ("op", "key", "value", "expected") if k in req}
                result = await self.node.apply(msgpack.packb(cmd, use_bin_type=True))
                return {"ok": True, "result": result}
            if op == "get":
                mode = req.get("consistency", "consistent")
                if mode != "stale":
                    await self.node.read_barrier(allow_lease=mode == "lease")
                return {"ok": True, "result": self.fsm.data.get(req["key"])}
            if op == "status":
                return {"ok": True, "result": self._status()}
            if op == "bench":
                return {"ok": True, "result": await self._bench(req)}
            return {"ok": False, "error": f"op: unknown operation {op!r}"}
        except NotLeaderError as exc:
            return {"ok": False, "error": "not leader", "leader": exc.leader_addr}
        except RaftError as exc:
            return {"ok": False, "error": str(exc), "leader": self._leader_addr()}
        except KeyError as exc:
            return {"ok": False, "error": f"missing field {exc}"}

    def _status(self) -> dict[str, Any]:
        st = self.node.status()
        c = st.core
        return {
            "id": c.id,
            "role": c.role.value,
            "term": c.term,
            "leader": c.leader,
            "commit": c.commit,
            "applied": st.applied,
            "last_index": c.last_index,
            "snapshot_index": st.snapshot_index,
            "snapshots_installed": st.snapshots_installed,
            "digest": hashlib.sha256(self.fsm.snapshot()).hexdigest()[:16],
            "log_offset": self.node.core.log.offset,
            "peers": [{"id": p.id, "match": p.match, "state": p.state} for p in c.peers],
        }

    async def _bench(self, req: dict[str, Any]) -> dict[str, Any]:
        """Closed-loop proposers inside the leader process (no client hop)."""
        proposers = int(req.get("proposers", 1))
        seconds = float(req.get("seconds", 3))
        remaining = int(req.get("count", 1 << 62))
        value = b"x" * int(req.get("size", 100))
        lat: list[float] = []
        errors = 0
        deadline = time.perf_counter() + seconds

        async def proposer(n: int) -> None:
            nonlocal errors, remaining
            i = 0
            while time.perf_counter() < deadline and remaining > 0:
                remaining -= 1
                cmd = {"op": "put", "key": f"bench/{n}/{i % 100}", "value": value}
                data = msgpack.packb(cmd, use_bin_type=True)
                t0 = time.perf_counter()
                try:
                    await self.node.apply(data)
                except RaftError:
                    errors += 1
                    remaining += 1
                    await trio.sleep(0.01)
                    continue
                lat.append(time.perf_counter() - t0)
                i += 1

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for n in range(proposers):
                nursery.start_soon(proposer, n)
        elapsed = time.perf_counter() - start
        lat.sort()
        return {
            "commits": len(lat),
            "seconds": elapsed,
            "errors": errors,
            "p50_ms": lat[len(lat) // 2] * 1000 if lat else None,
            "p99_ms": lat[int(len(lat) * 0.99)] * 1000 if lat else None,
        }

    async def serve_client(self, stream: trio.SocketStream) -> None:
        framed = FramedStream(stream)
        try:
            while True:
                req = await framed.receive()
                await framed.send(await self.handle(req))
        except RaftError:
            pass  # client went away or sent garbage: its connection ends
        finally:
            await framed.aclose()


async def serve(args: argparse.Namespace) -> None:
    conf = _parse_peers(args.peers)
    me = conf.get(args.id)
    if me is None:
        raise SystemExit(f"--id: {args.id!r} is not in --peers")
    tls = [args.ca, args.cert, args.key]
    transport = Transport(
        args.id,
        _split(me.address),
        server_context(*tls),
        client_context(*tls),
        server_name=args.server_name,
    )
    fsm = KVStateMachine()
    node = RaftNode(
        NodeConfig(
            id=args.id,
            address=me.address,
            tick_interval=args.tick,
            election_ticks=args.election_ticks,
            snapshot_threshold=args.snapshot_threshold,
            trailing_logs=args.trailing_logs,
        ),
        open_durable_storage(Path(args.data_dir)),
        fsm,
        transport,
        rng=random.Random(),
        bootstrap=conf if args.bootstrap else None,
    )
    server = KVServer(node, fsm)
    host, port = _split(args.client)
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.serve)
        await nursery.start(node.run)
        listeners = await trio.open_tcp_listeners(port, host=host)
        nursery.start_soon(trio.serve_listeners, server.serve_client, listeners)
        log.info("event=kvserver_ready id=%s raft=%s client=%s", args.id, me.address, args.client)
        print(f"ready {args.id} client={args.client}", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m raft.kvserver", description=__doc__.split("\n")[0])
    p.add_argument("--id", required=True)
    p.add_argument("--peers", required=True, help="id=host:port,... of every server's Raft port")
    p.add_argument("--client", required=True, help="host:port for the client protocol")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--server-name", default="server.dc1.consul")
    p.add_argument("--bootstrap", action="store_true", help="write the initial configuration")
    p.add_argument("--tick", type=float, default=0.1)
    p.add_argument("--election-ticks", type=int, default=10)
    p.add_argument("--snapshot-threshold", type=int, default=16384)
    p.add_argument("--trailing-logs", type=int, default=10240)
    p.add_argument("--log-level", default=os.environ.get("RAFT_LOG_LEVEL", "WARNING"))
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        trio.run(serve, args)
    except KeyboardInterrupt:
        pass
    except RaftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
