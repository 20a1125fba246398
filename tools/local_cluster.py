"""A cluster of real ``meshd agent`` processes on this machine, for the e2e
tests, the benchmarks and trying things out.

Each agent gets its own loopback address (127.0.1.N), Consul's default ports
on it, a data directory, a JSON config file written the way an operator
would, and a certificate from a fresh agent CA (servers
``server.dc1.consul``, clients ``client.dc1.consul``), so RPC is real mTLS.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from meshd.agent_tls import create_ca, create_cert, write_pem


@dataclass
class AgentProc:
    name: str
    ip: str
    server: bool
    config_file: Path
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    log_file: Path | None = None

    @property
    def http(self) -> str:
        return f"http://{self.ip}:8500"

    @property
    def rpc(self) -> str:
        return f"{self.ip}:8300"


@dataclass
class LocalAgentCluster:
    root: Path
    servers: int = 3
    clients: int = 2
    subnet: str = "127.0.1"
    first_host: int = 1
    extra_config: dict[str, Any] = field(default_factory=dict)
    agents: dict[str, AgentProc] = field(default_factory=dict)
    # Each agent in its own session: with the kernel's autogroup scheduling
    # (the default on desktop and CI kernels) a session shares one CPU share,
    # so three servers in the caller's session compete for one "machine"
    # with everything else it runs; in their own they are scheduled like
    # separate hosts.
    own_sessions: bool = False

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        ca_cert, ca_key = create_ca()
        self._ca = (ca_cert, ca_key)
        self.ca_file = self.root / "meshd-agent-ca.pem"
        write_pem(self.ca_file, ca_cert)
        total = self.servers + self.clients
        ips = [f"{self.subnet}.{self.first_host + i}" for i in range(total)]
        server_rpc = [f"{ip}:8300" for ip in ips[: self.servers]]
        for i, ip in enumerate(ips):
            is_server = i < self.servers
            name = f"server-{i + 1}" if is_server else f"client-{i + 1 - self.servers}"
            self.agents[name] = self._prepare(name, ip, is_server, server_rpc)

    def issue_cert(
        self, name: str, *, kind: Literal["server", "client"], ips: list[str]
    ) -> tuple[Path, Path]:
        """A certificate of ``kind`` (server or client) from the cluster's
        agent CA, written as ``name.pem`` and ``name-key.pem``."""
        cert, key = create_cert(*self._ca, kind=kind, ips=ips)
        cert_file, key_file = self.root / f"{name}.pem", self.root / f"{name}-key.pem"
        write_pem(cert_file, cert)
        write_pem(key_file, key, private=True)
        return cert_file, key_file

    def _prepare(self, name: str, ip: str, is_server: bool, server_rpc: list[str]) -> AgentProc:
        kind: Literal["server", "client"] = "server" if is_server else "client"
        cert_file, key_file = self.issue_cert(name, kind=kind, ips=[ip])
        data_dir = self.root / name
        config: dict[str, Any] = {
            "node_name": name,
            "datacenter": "dc1",
            "data_dir": str(data_dir),
            "server": is_server,
            "bind_addr": ip,
            "advertise_addr": ip,
            "client_addr": ip,
            "retry_join": [a for a in server_rpc if not a.startswith(ip + ":")],
            "retry_interval": "1s",
            "log_level": "INFO",
            "performance": {"raft_multiplier": 1},
            "tls": {
                "defaults": {
                    "ca_file": str(self.ca_file),
                    "cert_file": str(cert_file),
                    "key_file": str(key_file),
                    "verify_incoming": True,
                    "verify_outgoing": True,
                },
                "internal_rpc": {"verify_server_hostname": True},
            },
        }
        if is_server:
            config["bootstrap_expect"] = self.servers
        config.update(self.extra_config)
        config_file = self.root / f"{name}.json"
        config_file.write_text(json.dumps(config, indent=2))
        return AgentProc(name, ip, is_server, config_file, data_dir)

    def start(self, name: str) -> None:
        a = self.agents[name]
        a.log_file = self.root / f"{name}.log"
        with open(a.log_file, "ab") as log:
            a.proc = subprocess.Popen(
                [sys.executable, "-m", "meshd", "agent", "--config-file", str(a.config_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.own_sessions,
            )

    def start_all(self) -> None:
        for name in self.agents:
            self.start(name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        a = self.agents[name]
        if a.proc is not None and a.proc.poll() is None:
            a.proc.send_signal(sig)
            try:
                a.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                a.proc.kill()
                a.proc.wait()
        a.proc = None

    def stop_all(self, timeout: float = 15) -> None:
        """SIGTERM every running agent at once, then SIGKILL those still
        running ``timeout`` seconds later."""
        running = [a for a in self.agents.values() if a.proc is not None and a.proc.poll() is None]
        for a in running:
            assert a.proc is not None
            a.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for a in running:
            assert a.proc is not None
            try:
                a.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                a.proc.kill()
                a.proc.wait()
        for a in self.agents.values():
            a.proc = None

    def alive(self) -> list[str]:
        return [n for n, a in self.agents.items() if a.proc is not None and a.proc.poll() is None]

    def get(self, name: str, path: str, timeout: float = 5) -> tuple[int, Any, dict[str, str]]:
        """(status, decoded JSON or text, headers) of a GET on an agent."""
        return self.request(name, "GET", path, timeout=timeout)

    def request(
        self, name: str, method: str, path: str, body: Any = None, timeout: float = 5
    ) -> tuple[int, Any, dict[str, str]]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.agents[name].http + path, data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw, status, headers = resp.read(), resp.status, dict(resp.headers)
        except urllib.error.HTTPError as exc:
            raw, status, headers = exc.read(), exc.code, dict(exc.headers)
        try:
            return status, json.loads(raw), headers
        except ValueError:
            return status, raw.decode(errors="replace"), headers

    def wait_until(self, predicate: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
                if last:
                    return last
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{what} within {timeout}s (last: {last!r})")

    def leader(self, timeout: float = 15) -> str:
        """The name of the server that leads, per any live agent."""

        def find() -> str | None:
            for name in self.alive():
                status, addr, _ = self.get(name, "/v1/status/leader", timeout=2)
                if status == 200 and addr:
                    for n, a in self.agents.items():
                        if a.rpc == addr and n in self.alive():
                            return n
            return None

        result: str = self.wait_until(find, timeout, "a leader")
        return result

    def logs(self, name: str) -> str:
        a = self.agents[name]
        return a.log_file.read_text() if a.log_file and a.log_file.exists() else ""


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.local_cluster",
        description=(
            "Start a cluster of real meshd agents on this machine (servers and clients "
            "on 127.0.1.N, Consul's default ports, mTLS) until SIGINT/SIGTERM, which "
            "stops every agent it started."
        ),
    )
    parser.add_argument(
        "directory",
        nargs="?",
        default=".cluster",
        help="where configs, certificates, data and logs go (default: .cluster)",
    )
    parser.add_argument("--servers", type=int, default=3, help="number of servers (default: 3)")
    parser.add_argument("--clients", type=int, default=2, help="number of clients (default: 2)")
    parser.add_argument(
        "--subnet", default="127.0.1", help="first three octets of the agents' loopback addresses"
    )
    args = parser.parse_args(argv)
    if args.servers < 1 or args.clients < 0:
        parser.error("--servers must be at least 1 and --clients at least 0")
    if args.directory.startswith("-"):
        parser.error(f"unknown option {args.directory!r}")
    return args


class _Stop(Exception):
    """SIGTERM arrived: leave the wait loop and stop the agents."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.local_cluster [DIR]``: run the cluster until SIGINT or
    SIGTERM, then stop (SIGTERM, then SIGKILL after 15 s) every agent started."""
    args = _parse_args(argv)
    root = Path(args.directory)
    signal.signal(signal.SIGTERM, _raise_stop)
    cluster: LocalAgentCluster | None = None
    try:
        cluster = LocalAgentCluster(
            root, servers=args.servers, clients=args.clients, subnet=args.subnet
        )
        cluster.start_all()
        pids = ", ".join(f"{n} pid {a.proc.pid}" for n, a in cluster.agents.items() if a.proc)
        print(f"started {pids} under {root}; Ctrl-C or SIGTERM stops them", flush=True)
        while True:
            time.sleep(1)
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup
        if cluster is not None:
            cluster.stop_all()
            print("stopped every agent", flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
