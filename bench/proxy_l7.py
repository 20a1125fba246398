"""The L7 half of the proxy benchmark: meshd's HTTP-aware proxies set up
through Consul's config entries, and the figures only L7 has.

On the benchmark's dev agent, next to the L4 services (web -> api):

- ``api7``: nginx again, ``service-defaults`` ``Protocol: http`` and no
  router: the plain L7 route;
- ``apis``: nginx again with ``Meta.version = v1``, ``http``, a resolver
  with subsets ``v1`` and ``v2`` (both select that one instance, so the
  split changes the decision work, not the backend) and a 90/10
  ``service-splitter``;
- ``web7`` with upstreams ``api7`` and ``apis``, intentions allowing both.

The L7 pair is one ``meshd proxy --sidecar-for web7`` (client side) and one
``--sidecar-for api7 --sidecar-for apis`` (server side), so its CPU and
RSS are apart from the L4 pair's.

Also measured here:

- config write -> applied: ``PUT /v1/config`` of apis's splitter, each
  write setting a new ``x-bench-gen`` response header on both splits; a
  keep-alive client sends ``GET /`` through web7's upstream listener back
  to back until an answer carries the new value (detected by the traffic,
  never by sleeping). p50/p99 over the writes;
- RSS with N services' routers loaded: ``many`` with N upstreams ``r0..``,
  each ``http`` with a 3-route ``service-router``; one ``meshd proxy
  --sidecar-for many`` is measured once its log shows every upstream's
  chain applied as http.
"""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loadgen.dev_agent import ROOT
from bench.loadgen.procs import stop_process
from bench.proxy_backend import free_port, wait_listening
from bench.proxy_measure import tree_rss_mb
from bench.proxy_meshd import MeshdAgent, MeshdPair, start_sidecars

GEN_HEADER = "x-bench-gen"
APPLY_TIMEOUT = 10.0  # per config write
ROUTERS_TIMEOUT = 120.0


@dataclass(frozen=True)
class L7Ports:
    plain: int  # web7's upstream listener for api7 (plain L7 route)
    split: int  # web7's upstream listener for apis (90/10 split)
    api7_public: int  # api7's sidecar inbound
    apis_public: int  # apis's sidecar inbound


def splitter(gen: int | None = None) -> dict[str, Any]:
    """apis's 90/10 splitter; with ``gen``, both splits set ``x-bench-gen``."""
    splits: list[dict[str, Any]] = [
        {"Weight": 90, "ServiceSubset": "v1"},
        {"Weight": 10, "ServiceSubset": "v2"},
    ]
    if gen is not None:
        for split in splits:
            split["ResponseHeaders"] = {"Set": {GEN_HEADER: str(gen)}}
    return {"Kind": "service-splitter", "Name": "apis", "Splits": splits}


def register_l7(agent: MeshdAgent, backend: int) -> L7Ports:
    """The config entries, services and intentions of the L7 pair (see the
    module docstring). Raises ``RuntimeError`` on any refused write."""
    ports = L7Ports(free_port(), free_port(), free_port(), free_port())
    resolver = {
        "Kind": "service-resolver",
        "Name": "apis",
        "DefaultSubset": "v1",
        "Subsets": {
            "v1": {"Filter": 'Service.Meta.version == "v1"'},
            "v2": {"Filter": 'Service.Meta.version == "v1"'},
        },
    }
    for name in ("api7", "apis"):
        agent.call(
            "PUT", "/v1/config", {"Kind": "service-defaults", "Name": name, "Protocol": "http"}
        )
    agent.call("PUT", "/v1/config", resolver)
    agent.call("PUT", "/v1/config", splitter())
    for name, public in (("api7", ports.api7_public), ("apis", ports.apis_public)):
        service = {
            "Name": name,
            "Port": backend,
            "Meta": {"version": "v1"},
            "Connect": {"SidecarService": {"Port": public}},
        }
        agent.call("PUT", "/v1/agent/service/register", service)
        agent.call(
            "PUT",
            f"/v1/connect/intentions/exact?source=web7&destination={name}",
            {"Action": "allow"},
        )
    upstreams = [
        {"DestinationName": name, "LocalBindAddress": "127.0.0.1", "LocalBindPort": port}
        for name, port in (("api7", ports.plain), ("apis", ports.split))
    ]
    web7 = {
        "Name": "web7",
        "Port": free_port(),
        "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": upstreams}}},
    }
    agent.call("PUT", "/v1/agent/service/register", web7)
    return ports


def start_l7_pair(root: Path, agent: MeshdAgent, ports: L7Ports, workers: int) -> MeshdPair:
    """web7's proxy and api7's + apis's proxy; ``entry`` is the plain route."""
    pair = start_sidecars(
        root,
        agent,
        (("web7",), ("api7", "apis")),
        (ports.plain, ports.api7_public),
        workers,
        tag=f"l7-w{workers}",
    )
    wait_listening(ports.split, pair.procs[0], "meshd proxy (apis upstream)")
    wait_listening(ports.apis_public, pair.procs[-1], "meshd proxy (apis inbound)")
    return pair


def _get(conn: http.client.HTTPConnection) -> str | None:
    conn.request("GET", "/", headers={"Host": "bench"})
    resp = conn.getresponse()
    resp.read()
    if resp.status != 200:
        raise RuntimeError(f"GET / through the split route answered {resp.status}")
    return resp.getheader(GEN_HEADER)


def config_apply_latency(agent: MeshdAgent, port: int, writes: int) -> list[float]:
    """Seconds from sending each of ``writes`` splitter writes to the first
    answer through 127.0.0.1:``port`` that shows it (see the module
    docstring). Raises ``TimeoutError`` when one is not seen in
    ``APPLY_TIMEOUT``; the splitter is left without the header."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out: list[float] = []
    try:
        for gen in range(1, writes + 1):
            t0 = time.perf_counter()
            agent.call("PUT", "/v1/config", splitter(gen))
            while _get(conn) != str(gen):
                if time.perf_counter() - t0 > APPLY_TIMEOUT:
                    raise TimeoutError(f"config write {gen} not applied in {APPLY_TIMEOUT:g}s")
            out.append(time.perf_counter() - t0)
    finally:
        conn.close()
        agent.call("PUT", "/v1/config", splitter())
    return out


def register_routers(agent: MeshdAgent, count: int) -> list[int]:
    """``count`` http services ``r<i>`` with a 3-route router each, and
    ``many`` with one upstream per service; returns the upstream ports."""
    for i in range(count):
        name = f"r{i}"
        agent.call(
            "PUT", "/v1/config", {"Kind": "service-defaults", "Name": name, "Protocol": "http"}
        )
        routes = [
            {"Match": {"HTTP": {"PathPrefix": "/v2"}}, "Destination": {"PrefixRewrite": "/"}},
            {
                "Match": {"HTTP": {"Header": [{"Name": "x-debug", "Present": True}]}},
                "Destination": {"RequestTimeout": "2s", "NumRetries": 2},
            },
            {"Match": {"HTTP": {"PathExact": "/health", "Methods": ["GET"]}}},
        ]
        agent.call("PUT", "/v1/config", {"Kind": "service-router", "Name": name, "Routes": routes})
    ports = distinct_ports(count, taken=registered_ports(agent))
    upstreams = [
        {"DestinationName": f"r{i}", "LocalBindAddress": "127.0.0.1", "LocalBindPort": port}
        for i, port in enumerate(ports)
    ]
    many = {
        "Name": "many",
        "Port": free_port(),
        "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": upstreams}}},
    }
    agent.call("PUT", "/v1/agent/service/register", many)
    return ports


def distinct_ports(count: int, taken: set[int] | None = None) -> list[int]:
    """``count`` different free loopback ports (the kernel may hand the same
    one out twice once it is closed again), none of ``taken``."""
    ports: dict[int, None] = {}
    while len(ports) < count:
        port = free_port()
        if port not in (taken or ()):
            ports[port] = None
    return list(ports)


def registered_ports(agent: MeshdAgent) -> set[int]:
    """The ports the agent's services already claim (a stopped proxy's
    public port is free to bind, but the agent refuses it twice)."""
    taken: set[int] = set()
    for svc in agent.call("GET", "/v1/agent/services").values():
        taken.add(int(svc.get("Port") or 0))
        for up in (svc.get("Proxy") or {}).get("Upstreams") or []:
            taken.add(int(up.get("LocalBindPort") or 0))
    return taken


def rss_with_routers(root: Path, agent: MeshdAgent, count: int) -> tuple[float, float]:
    """(RSS in MB, seconds from start to every chain applied) of one ``meshd
    proxy --sidecar-for many`` with ``count`` http upstreams and their routers."""
    register_routers(agent, count)
    root.mkdir(parents=True, exist_ok=True)
    log = root / "proxy-routers.log"
    argv = [sys.executable, "-m", "meshd", "proxy", "--http-addr", agent.http_addr]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*argv, "--sidecar-for", "many"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        start_new_session=True,
        cwd=ROOT,
    )
    try:
        pattern = re.compile(r"event=upstream_chain destination=(r\d+) protocol=http")
        deadline = time.monotonic() + ROUTERS_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"meshd proxy exited: {log.read_text()[-2000:]}")
            if len(set(pattern.findall(log.read_text(errors="replace")))) >= count:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} http chains not applied in {ROUTERS_TIMEOUT:g}s")
            time.sleep(0.05)
        loaded = time.perf_counter() - t0
        return max(tree_rss_mb([proc.pid])), loaded
    finally:
        stop_process(proc)
