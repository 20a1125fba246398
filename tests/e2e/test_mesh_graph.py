"""The mesh graph end to end: a real ``--dev`` agent, its ``meshd proxy``
(pushing its per-edge figures every second, ``MESHD_PROXY_STATS_INTERVAL``)
and real backends calling their upstreams: client -> web -> api -> db.

``client`` is a mesh service without a backend (the test speaks to its
upstream listener), so each request crosses three edges: client -> web,
web -> api, api -> db. Everything binds free ports on 127.0.0.1 (the
sidecars' ports are given at registration), so no loopback subnet is owned.
The load is paced: ``RATE`` requests/s for ``SECONDS``; the graph must show
exactly those three edges with exactly ``RATE * SECONDS`` requests each
(destination reporter), and requests/s within 10% of the load's rate
(``RATE`` while the mesh keeps up) in one of three windows inside it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_connect_mesh import wait_for
from tests.e2e.test_l7_mesh import Client
from tests.meshd.harness import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

IP = "127.0.0.1"
BACKEND = Path(__file__).with_name("trace_backend.py")
RATE, SECONDS = 10, 12
WORKERS = 8  # connections sharing the schedule: an answer may take 0.8 s
# The rate is read over the last 5 s, at 7, 9 and 11 s into the load.
RATE_WINDOW, RATE_AT = 5.0, (7.0, 9.0, 11.0)
EDGES = {("client", "web"), ("web", "api"), ("api", "db")}


class GraphMesh:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.http = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.entry = (IP, free_port())  # client's upstream listener (to web)

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env))

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://{IP}:{self.http}{path}", data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except OSError as exc:
            return 0, str(exc)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        status, out = self.call(method, path, body)
        assert status == 200, f"{method} {path}: {status} {out}"
        return out

    def service(
        self, name: str, upstream: str = "", *, backend: bool = True, bind: int = 0
    ) -> None:
        """Register ``name`` (sidecar on a free port) and start its backend,
        which calls ``upstream`` through its local upstream listener."""
        port, ups = free_port(), []
        if upstream:
            ups = [{"DestinationName": upstream, "LocalBindAddress": IP,
                    "LocalBindPort": bind or free_port()}]  # fmt: skip
        if backend:
            args = [sys.executable, str(BACKEND), IP, str(port), name]
            self.spawn(name, [*args, f"{IP}:{ups[0]['LocalBindPort']}"] if ups else args)
        svc: dict[str, Any] = {
            "Name": name,
            "Address": IP,
            "Port": port,
            "Meta": {"version": "v1"} if name == "api" else {},
            "Connect": {
                "SidecarService": {
                    "Port": free_port(),
                    "Proxy": {"LocalServiceAddress": IP, "Upstreams": ups},
                }
            },
        }
        if backend:
            svc["Check"] = {"HTTP": f"http://{IP}:{port}/health", "Interval": "1s"}
        self.api("PUT", "/v1/agent/service/register", svc)


def _chain_ok(address: tuple[str, int]) -> bool:
    client = Client(address)
    try:
        status, _, body = client.request("/orders")
        answer = json.loads(body) if status == 200 else {}
    except (ValueError, OSError):
        return False
    finally:
        client.close()
    return bool(answer.get("upstream", {}).get("upstream", {}).get("name") == "db")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GraphMesh]:
    m = GraphMesh(tmp_path_factory.mktemp("graph"))
    agent = [sys.executable, "-m", "meshd", "agent", "--dev", "--node", "graph-e2e"]
    ports = ["--http-port", str(m.http), "--dns-port", str(free_port())]
    m.spawn("agent", [*agent, *ports, "--server-port", str(free_port())])
    try:
        wait_for(lambda: m.call("GET", "/v1/status/leader")[0] == 200, 30, "agent up")
        m.service("db")
        m.service("api", "db")
        m.service("web", "api")
        m.service("client", "web", backend=False, bind=m.entry[1])
        for src, dst in (("client", "web"), ("web", "api"), ("api", "db")):
            path = f"/v1/connect/intentions/exact?source={src}&destination={dst}"
            m.api("PUT", path, {"Action": "allow"})
        entry = {"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}}
        assert m.api("PUT", "/v1/config", entry) is True
        env = {**os.environ, "MESHD_PROXY_STATS_INTERVAL": "1"}
        m.spawn("proxy", [sys.executable, "-m", "meshd", "proxy", "--http-addr", f"{IP}:{m.http}"],
                env)  # fmt: skip
        for svc in ("web", "api", "db"):
            wait_for(
                lambda svc=svc: len(m.api("GET", f"/v1/health/connect/{svc}?passing")) == 1,
                60,
                f"{svc} sidecar healthy",
            )
        wait_for(lambda: _chain_ok(m.entry), 60, "client -> web -> api -> db answers")
        yield m
    finally:
        for proc in m.procs:
            proc.terminate()
        for proc in m.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert "Traceback" not in m.log("proxy"), m.log("proxy")


def graph(m: GraphMesh, window: float) -> dict[str, Any]:
    out: dict[str, Any] = m.api("GET", f"/v1/internal/ui/mesh-graph?window={int(window * 1000)}ms")
    return out


def _load(m: GraphMesh) -> list[tuple[dict[str, Any], float]]:
    """``RATE * SECONDS`` requests on a schedule, from ``WORKERS`` connections
    (on a loaded machine an answer took up to 1 s: one connection fell behind
    the schedule, to 3 requests/s). The graph is read at each of ``RATE_AT``
    s into the load, each with the rate the load had over its window:
    answers received in it / its length."""
    start = time.monotonic()
    answered: list[float] = []
    statuses: list[int] = []

    def worker(first: int) -> None:
        client = Client(m.entry)
        try:
            for i in range(first, RATE * SECONDS, WORKERS):
                delay = start + i / RATE - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                statuses.append(client.request("/orders")[0])
                answered.append(time.monotonic())
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(WORKERS)]
    for t in threads:
        t.start()
    reads: list[tuple[float, dict[str, Any]]] = []
    try:
        for at in RATE_AT:
            time.sleep(max(0.0, start + at - time.monotonic()))
            reads.append((time.monotonic(), graph(m, RATE_WINDOW)))
    finally:
        for t in threads:
            t.join(60)
    assert statuses == [200] * (RATE * SECONDS), statuses
    return [
        (g, sum(read - RATE_WINDOW <= t < read for t in answered) / RATE_WINDOW)
        for read, g in reads
    ]


def test_the_graph_shows_the_three_edges_with_exact_counts_and_rates(mesh: GraphMesh) -> None:
    time.sleep(3)  # every proxy pushed after the warm-up requests: they fall before the window
    t0 = time.monotonic()
    readings = _load(mesh)
    during = readings[1][0]
    n = RATE * SECONDS

    def settled() -> dict[str, Any] | None:
        g = graph(mesh, time.monotonic() - t0 + 1.0)
        counts = [e["Requests"] for e in g["Edges"]]
        return g if len(counts) == 3 and min(counts) >= n else None

    after = wait_for(settled, 30, f"{n} requests on every edge")
    for name, answer in (("during", during), ("after", after)):  # kept for the record
        (mesh.root / f"mesh-graph-{name}.json").write_text(json.dumps(answer, indent=1))
    edges = {(e["Source"], e["Destination"]): e for e in after["Edges"]}
    assert set(edges) == EDGES
    for key, e in edges.items():
        assert (e["Requests"], e["Errors"], e["ErrorRate"]) == (n, 0, 0.0), key
        assert e["Reporter"] == "destination" and e["MTLS"] is True and e["Protocol"] == "http"
        assert 0 < e["P50Ms"] <= e["P99Ms"], key
        assert e["Intention"]["Allowed"] is True and e["Intention"]["HasExact"] is True
    assert [s["Subset"] for s in edges["web", "api"]["Subsets"]] == []  # no resolver subsets
    nodes = {x["Name"]: x for x in after["Nodes"]}
    assert {"client", "web", "api", "db"} <= set(nodes)
    assert nodes["api"]["Versions"] == ["v1"] and nodes["api"]["Instances"] == 1
    # Each reading against the rate the load had in its window (RATE while
    # the mesh keeps up). On a loaded machine a stall of the proxy inside a
    # window also stalls its pushes there, and its figure lags the client's:
    # one reading of the three must match on every edge, within 10%.
    seen = []
    for g, had in readings:
        rates = {(e["Source"], e["Destination"]): e["RequestsPerSecond"] for e in g["Edges"]}
        assert set(rates) == EDGES, g
        seen.append((had, rates))
        if had >= RATE / 2 and all(math.isclose(rps, had, rel_tol=0.10) for rps in rates.values()):
            break
    else:
        raise AssertionError(f"no reading within 10% of the load's rate: {seen}")
