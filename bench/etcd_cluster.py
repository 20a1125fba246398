"""A local 3-member etcd cluster (Debian's etcd-server), the baseline of the
KV, watch and failover benchmarks.

Members listen on ``<subnet>.<first_host + i>`` with etcd's default ports
(client 2379, peer 2380), keep their data in a directory under ``root`` with
etcd's default fsync (no ``--unsafe-no-fsync``), v2 off, and default timing
(100 ms heartbeat, 1 s election timeout: the same as meshd's
``raft_multiplier`` 1). Clients use the v3 HTTP/JSON gateway.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen.install import ensure_commands
from bench.loadgen.procs import stop_process

CLIENT_PORT = 2379
PEER_PORT = 2380


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


@dataclass
class EtcdMember:
    name: str
    ip: str
    data_dir: Path
    log_file: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://{self.ip}:{CLIENT_PORT}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.ip}:{PEER_PORT}"


@dataclass
class EtcdCluster:
    """Start with ``start_all()``; always ``stop_all()`` (in a finally)."""

    root: Path
    size: int = 3
    subnet: str = "127.0.20"
    first_host: int = 1
    members: dict[str, EtcdMember] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ensure_commands({"etcd": "etcd-server", "etcdctl": "etcd-client"})
        self.root.mkdir(parents=True, exist_ok=True)
        for i in range(self.size):
            name = f"etcd-{i + 1}"
            ip = f"{self.subnet}.{self.first_host + i}"
            self.members[name] = EtcdMember(
                name, ip, self.root / f"{name}.data", self.root / f"{name}.log"
            )

    def _argv(self, m: EtcdMember) -> list[str]:
        initial = ",".join(f"{o.name}={o.peer_url}" for o in self.members.values())
        return [
            "etcd",
            "--name",
            m.name,
            "--data-dir",
            str(m.data_dir),
            "--listen-client-urls",
            m.client_url,
            "--advertise-client-urls",
            m.client_url,
            "--listen-peer-urls",
            m.peer_url,
            "--initial-advertise-peer-urls",
            m.peer_url,
            "--initial-cluster",
            initial,
            "--initial-cluster-token",
            f"meshd-bench-{self.subnet}",
            "--initial-cluster-state",
            "new",
            "--enable-v2=false",
            "--logger",
            "zap",
            "--log-level",
            "warn",
        ]

    def start(self, name: str) -> None:
        """Start (or restart, on its existing data) one member."""
        m = self.members[name]
        with open(m.log_file, "ab") as log:
            m.proc = subprocess.Popen(
                self._argv(m), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def start_all(self) -> None:
        for name in self.members:
            self.start(name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        m = self.members[name]
        if m.proc is not None:
            if m.proc.poll() is None:
                m.proc.send_signal(sig)
                m.proc.wait(timeout=15)
            m.proc = None

    def stop_all(self) -> None:
        for m in self.members.values():
            if m.proc is not None:
                stop_process(m.proc)
                m.proc = None

    def alive(self) -> list[str]:
        return [n for n, m in self.members.items() if m.proc is not None and m.proc.poll() is None]

    # ------------------------------------------------------------ the API

    def call(self, name: str, path: str, body: Any, timeout: float = 5) -> Any:
        """POST ``body`` as JSON to the member's v3 gateway; the decoded answer.

        Raises ``urllib.error.URLError``/``OSError`` when it does not answer
        and ``urllib.error.HTTPError`` for an error status.
        """
        req = urllib.request.Request(
            self.members[name].client_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def put(self, name: str, key: str, value: bytes, timeout: float = 5) -> dict[str, Any]:
        answer: dict[str, Any] = self.call(
            name, "/v3/kv/put", {"key": b64(key), "value": b64(value)}, timeout
        )
        return answer

    def leader(self, timeout: float = 30) -> str:
        """The name of the member that leads, as a live member reports it."""
        ids: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name in self.alive():
                try:
                    st = self.call(name, "/v3/maintenance/status", {}, timeout=1)
                except (OSError, ValueError):
                    continue
                ids[str(st["header"]["member_id"])] = name
                leader = str(st.get("leader", "0"))
                if leader in ids and ids[leader] in self.alive():
                    return ids[leader]
            time.sleep(0.05)
        raise TimeoutError(f"no etcd leader within {timeout}s")

    def wait_healthy(self, timeout: float = 60) -> None:
        """Until every live member answers a linearizable read (so it has
        joined and a leader exists). Raises ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        pending = set(self.alive())
        while pending and time.monotonic() < deadline:
            for name in sorted(pending):
                try:
                    self.call(name, "/v3/kv/range", {"key": b64("health")}, timeout=1)
                    pending.discard(name)
                except (OSError, ValueError):
                    pass
            time.sleep(0.05)
        if pending:
            raise TimeoutError(f"etcd members {sorted(pending)} not healthy within {timeout}s")
        self.leader(timeout=max(1.0, deadline - time.monotonic()))
