"""Start, kill and restart a local cluster of ``raft.kvserver`` processes.

Used by ``make run`` (until the agent exists), by the real-process tests and
by ``bench/raft_bench.py``. Every server gets a certificate from a fresh agent
CA, its own loopback address (127.0.1.N) and its own data directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from meshd.agent_tls import create_ca, create_cert, write_pem
from raft.transport import FramedStream


@dataclass
class ServerProc:
    id: str
    raft_addr: str
    client_addr: str
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None


@dataclass
class LocalKVCluster:
    root: Path
    size: int = 3
    base_port: int = 17000
    tick: float = 0.1
    election_ticks: int = 10
    snapshot_threshold: int = 16384
    trailing_logs: int = 10240
    log_level: str = "INFO"
    servers: dict[str, ServerProc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        ca_cert, ca_key = create_ca()
        self.ca_file = self.root / "ca.pem"
        write_pem(self.ca_file, ca_cert)
        for i in range(1, self.size + 1):
            sid = f"s{i}"
            host = f"127.0.1.{i}"
            cert, key = create_cert(ca_cert, ca_key, kind="server", ips=[host])
            write_pem(self.root / f"{sid}.pem", cert)
            write_pem(self.root / f"{sid}-key.pem", key, private=True)
            self.servers[sid] = ServerProc(
                sid,
                f"{host}:{self.base_port}",
                f"{host}:{self.base_port + 1}",
                self.root / sid,
            )

    def peers_spec(self) -> str:
        return ",".join(f"{s.id}={s.raft_addr}" for s in self.servers.values())

    def start(self, sid: str, *, bootstrap: bool = True) -> None:
        """Start server ``sid`` (a new process; its data directory is kept)."""
        s = self.servers[sid]
        s.log_path = self.root / f"{sid}.log"
        args = [
            sys.executable,
            "-m",
            "raft.kvserver",
            "--id",
            sid,
            "--peers",
            self.peers_spec(),
            "--client",
            s.client_addr,
            "--data-dir",
            str(s.data_dir),
            "--ca",
            str(self.ca_file),
            "--cert",
            str(self.root / f"{sid}.pem"),
            "--key",
            str(self.root / f"{sid}-key.pem"),
            "--tick",
            str(self.tick),
            "--election-ticks",
            str(self.election_ticks),
            "--snapshot-threshold",
            str(self.snapshot_threshold),
            "--trailing-logs",
            str(self.trailing_logs),
            "--log-level",
            self.log_level,
        ]
        if bootstrap:
            args.append("--bootstrap")
        with open(s.log_path, "ab") as logf:
            s.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT)

    def start_all(self) -> None:
        for sid in self.servers:
            self.start(sid)

    def kill(self, sid: str, sig: int = signal.SIGKILL) -> None:
        """Kill server ``sid`` (SIGKILL by default: no chance to clean up)."""
        s = self.servers[sid]
        if s.proc is not None and s.proc.poll() is None:
            s.proc.send_signal(sig)
            s.proc.wait(timeout=10)
        s.proc = None

    def stop_all(self) -> None:
        for sid in self.servers:
            self.kill(sid, signal.SIGTERM if os.name == "posix" else signal.SIGKILL)

    def alive(self) -> list[str]:
        return [sid for sid, s in self.servers.items() if s.proc and s.proc.poll() is None]


async def call(addr: str, req: dict[str, Any], *, timeout: float = 5) -> dict[str, Any]:
    """One request on a new connection; raises OSError/TooSlowError if down."""
    host, _, port = addr.rpartition(":")
    with trio.fail_after(timeout):
        stream = await trio.open_tcp_stream(host, int(port))
        framed = FramedStream(stream)
        try:
            await framed.send(req)
            return await framed.receive()
        finally:
            await framed.aclose()


class KVClient:
    """A keep-alive connection to one server's client port."""

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self._framed: FramedStream | None = None

    async def request(self, req: dict[str, Any], *, timeout: float = 5) -> dict[str, Any]:
        with trio.fail_after(timeout):
            if self._framed is None:
                host, _, port = self.addr.rpartition(":")
                self._framed = FramedStream(await trio.open_tcp_stream(host, int(port)))
            try:
                await self._framed.send(req)
                return await self._framed.receive()
            except BaseException:
                await self.aclose()
                raise

    async def aclose(self) -> None:
        if self._framed is not None:
            framed, self._framed = self._framed, None
            await framed.aclose()


async def wait_ready(cluster: LocalKVCluster, sids: list[str], timeout: float = 15) -> None:
    """Wait until every server in ``sids`` answers status."""
    with trio.fail_after(timeout):
        for sid in sids:
            while True:
                try:
                    await call(cluster.servers[sid].client_addr, {"op": "status"}, timeout=1)
                    break
                except (OSError, trio.TooSlowError, Exception):
                    await trio.sleep(0.05)


async def find_leader(cluster: LocalKVCluster, timeout: float = 10) -> str:
    """The id of the server that says it leads, once exactly one does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leaders = []
        for sid in cluster.alive():
            try:
                st = await call(cluster.servers[sid].client_addr, {"op": "status"}, timeout=1)
            except (OSError, trio.TooSlowError, Exception):
                continue
            if st.get("ok") and st["result"]["role"] == "leader":
                leaders.append((st["result"]["term"], sid))
        if leaders:
            return max(leaders)[1]
        await trio.sleep(0.05)
    raise TimeoutError("no leader elected")
