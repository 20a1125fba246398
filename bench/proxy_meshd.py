"""meshd's proxy pair for the proxy benchmark: one ``meshd agent --dev`` on
free loopback ports, ``api`` (the backend) and ``web`` registered with
Consul's sidecar shape, an intention allowing web -> api, and ``meshd
proxy`` processes serving the two sidecars.

The client side (web's upstream listener, where wrk connects) and the server
side (api's sidecar inbound) run as two processes, like the Envoy pair, when
``meshd proxy`` can be restricted to one sidecar (``--sidecar-for``);
otherwise one process serves both and its CPU and RSS are the pair's.
The agent's leaves and roots (``/v1/agent/connect/ca/leaf/<service>``,
``/v1/agent/connect/ca/roots``) are also what the Envoy pair presents.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen.dev_agent import ROOT, DevAgent
from bench.loadgen.procs import stop_process
from bench.proxy_backend import free_port, wait_listening
from bench.proxy_certs import Leaf, MeshCerts

READY_TIMEOUT = 30.0
MAX_CONNS_PER_CLIENT = 2000


class MeshdUnavailable(RuntimeError):
    """This meshd lacks what the benchmark needs (an endpoint or a command)."""


@dataclass(frozen=True)
class SidecarPorts:
    api_public: int  # api's sidecar inbound (server side, mTLS)
    web_upstream: int  # web's upstream listener for api (client side, plain)
    web_public: int  # web's own sidecar inbound (unused by the benchmark)


class MeshdAgent(DevAgent):
    """The benchmark's ``meshd agent --dev`` (see ``DevAgent``), with the
    mesh set up through its HTTP API."""

    def __init__(self, root: Path) -> None:
        # A proxy holds ~3 blocking queries per http upstream (its chain, each
        # target's health, the L4 health): the RSS figure's 100 upstreams
        # would pass Consul's default of 200 connections per client (429).
        limits = {"http_max_conns_per_client": MAX_CONNS_PER_CLIENT}
        super().__init__(root, "proxy-bench", {"limits": limits})

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        """Like ``DevAgent.call`` but raises ``MeshdUnavailable`` on 404/405
        (the endpoint does not exist)."""
        status, answer = self.request(method, path, body, token)
        if status in (404, 405):
            raise MeshdUnavailable(f"meshd agent has no {method} {path.split('?')[0]} ({status})")
        if status != 200:
            raise RuntimeError(f"{method} {path} -> {status}: {str(answer)[:300]}")
        return answer

    def wait_ready(self) -> None:
        """Until the agent answers with a leader elected; raises ``RuntimeError``
        if it exits, ``TimeoutError`` after READY_TIMEOUT."""
        self.wait_leader(READY_TIMEOUT)

    def register_mesh(self, backend: int) -> SidecarPorts:
        """Register api (at ``backend``) and web with sidecars, web's upstream
        to api; returns the sidecar ports."""
        ports = SidecarPorts(free_port(), free_port(), free_port())
        api = {
            "Name": "api",
            "Port": backend,
            "Connect": {"SidecarService": {"Port": ports.api_public}},
        }
        upstream = {
            "DestinationName": "api",
            "LocalBindAddress": "127.0.0.1",
            "LocalBindPort": ports.web_upstream,
        }
        web = {
            "Name": "web",
            "Port": free_port(),
            "Connect": {
                "SidecarService": {"Port": ports.web_public, "Proxy": {"Upstreams": [upstream]}}
            },
        }
        for service in (api, web):
            self.call("PUT", "/v1/agent/service/register", service)
        return ports

    def allow_web_to_api(self) -> None:
        """The intention web -> api, allow (Consul's ``PUT
        /v1/connect/intentions/exact``)."""
        self.call(
            "PUT", "/v1/connect/intentions/exact?source=web&destination=api", {"Action": "allow"}
        )

    def certs(self) -> MeshCerts:
        """web's and api's leaves and the roots from the agent's Connect CA."""

        def leaf(service: str) -> Leaf:
            answer = self.call("GET", f"/v1/agent/connect/ca/leaf/{service}")
            return Leaf(answer["CertPEM"], answer["PrivateKeyPEM"])

        roots = self.call("GET", "/v1/agent/connect/ca/roots")
        pem = "".join(r["RootCert"].rstrip("\n") + "\n" for r in roots["Roots"])
        return MeshCerts(pem, leaf("web"), leaf("api"), "meshd agent")


def proxy_help() -> str:
    """``meshd proxy --help``; raises ``MeshdUnavailable`` when there is no
    such command."""
    proc = subprocess.run(
        [sys.executable, "-m", "meshd", "proxy", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise MeshdUnavailable(f"`meshd proxy` is missing: {proc.stderr.strip()[-300:]}")
    return proc.stdout


@dataclass
class MeshdPair:
    """meshd proxy process(es) serving web's and api's sidecars; ``entry`` is
    web's upstream listener, where wrk connects."""

    procs: list[subprocess.Popen[bytes]]
    entry: int
    workers: int
    split: bool  # client and server side in separate processes
    logs: list[Path] = field(default_factory=list)  # each process's stderr

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            stop_process(proc)


def start_meshd_pair(root: Path, agent: MeshdAgent, ports: SidecarPorts, workers: int) -> MeshdPair:
    """Start meshd's proxy (two processes with ``--sidecar-for`` when the
    command has it, else one) with ``--workers``; returns once web's upstream
    and api's inbound listen. Raises ``MeshdUnavailable`` without a ``meshd
    proxy`` command, ``RuntimeError``/``TimeoutError`` if it does not come up."""
    return start_sidecars(
        root,
        agent,
        (("web",), ("api",)),
        (ports.web_upstream, ports.api_public),
        workers,
        tag=f"w{workers}",
    )


def start_sidecars(
    root: Path,
    agent: MeshdAgent,
    sides: Sequence[Sequence[str]],
    listening: Sequence[int],
    workers: int,
    *,
    tag: str,
) -> MeshdPair:
    """``meshd proxy`` processes, the first (the client side, where wrk
    connects: ``listening[0]``) serving the sidecars of ``sides[0]``, the
    last the server side (``listening[-1]``); one process for all when the
    command has no ``--sidecar-for``. Logs go to ``root/proxy-<tag>-<i>.log``.
    Raises as ``start_meshd_pair``."""
    split = "--sidecar-for" in proxy_help()
    base = [sys.executable, "-m", "meshd", "proxy", "--http-addr", agent.http_addr]
    base += ["--workers", str(workers)]
    argvs = [[a for name in side for a in ("--sidecar-for", name)] for side in sides]
    root.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    logs = [root / f"proxy-{tag}-{i}.log" for i in range(len(argvs) if split else 1)]
    try:
        for extra, log in zip(argvs if split else [[]], logs, strict=True):
            procs.append(
                subprocess.Popen(
                    [*base, *extra],
                    stdout=subprocess.DEVNULL,
                    stderr=log.open("wb"),
                    start_new_session=True,
                    cwd=ROOT,
                )
            )
        for port, i in ((listening[0], 0), (listening[-1], len(procs) - 1)):
            _wait_listening_logged(port, procs[i], logs[i])
    except BaseException:
        for proc in procs:
            stop_process(proc)
        raise
    return MeshdPair(procs, listening[0], workers, split, logs)


def _wait_listening_logged(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    try:
        wait_listening(port, proc, "meshd proxy", timeout=READY_TIMEOUT)
    except (RuntimeError, TimeoutError) as exc:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"{exc}\n{tail}") from None
