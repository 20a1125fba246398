"""Canaries that finish themselves, end to end (issue 19): three servers and
a client agent, ``meshd proxy`` on the client, real backends: ``api`` v1 and
v2 (healthy) and v3 (answers 500 to 20% of requests). The test's client
calls api through web's upstream listener the whole time; the leader's
controller reads the proxies' figures through ``MeshStats`` (pushed every
0.3 s here) and steps the service-splitter.

* a healthy v2 goes 10 -> 50 -> 100 (promoted) and no request fails;
* v3 is rolled back to 0% within one interval of the step that exposed it,
  and every failed request is one v3 itself answered;
* killing the leader mid-canary neither loses nor repeats a step.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_connect_mesh import wait_for
from tests.e2e.test_l7_mesh import Client
from tests.meshd.harness import free_port
from tools.local_cluster import LocalAgentCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SUBNET = "127.0.57"
IP = f"{SUBNET}.4"  # client-1: the proxy, the backends and the test's client
BACKEND = Path(__file__).with_name("l7_backend.py")
CLIENT = "client-1"
WAIT = 90


class Traffic:
    """Requests to api through web's upstream, in a thread, ~100/s:
    (status, the backend's name or the error) of each."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.results: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = Client(self.upstream)
        n = 0
        try:
            while not self._stop.is_set():
                try:
                    status, _, body = client.request(f"/c/{n}")
                    self.results.append((status, body.split(" ")[0]))
                except OSError as exc:
                    self.results.append((0, repr(exc)))
                    client.close()
                    client = Client(self.upstream)
                n += 1
                time.sleep(0.01)
        finally:
            client.close()

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


class CanaryMesh:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cluster = LocalAgentCluster(root / "agents", servers=3, clients=1, subnet=SUBNET)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.upstream = (IP, free_port(IP))

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.procs.append(
            subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env or None)
        )

    def api(self, method: str, path: str, body: Any = None) -> Any:
        status, out, _ = self.cluster.request(CLIENT, method, path, body, timeout=30)
        assert status == 200, f"{method} {path}: {status} {out}"
        return out

    def canary(self) -> Any:
        return self.api("GET", "/v1/internal/canary/api")

    def wait_canary(self, pred: Any, what: str) -> Any:
        def check() -> Any:
            current = self.canary()
            return current if pred(current) else None

        return wait_for(check, WAIT, what)

    def canary_log(self) -> str:
        """Every agent's canary lines, for failure messages."""
        lines = [
            f"{name}: {line}"
            for name in self.cluster.agents
            for line in self.cluster.logs(name).splitlines()
            if "event=canary" in line
        ]
        return "\n".join(lines)

    def sample(self, n: int) -> list[str]:
        c = Client(self.upstream)
        try:
            return [c.request("/s")[2].split(" ")[0] for _ in range(n)]
        finally:
            c.close()


def _instance(version: str, port: int) -> dict[str, Any]:
    return {
        "Name": "api",
        "ID": f"api-{version}",
        "Address": IP,
        "Port": port,
        "Meta": {"version": version},
        "Check": {"HTTP": f"http://{IP}:{port}/health", "Interval": "1s"},
        "Connect": {"SidecarService": {"Proxy": {"LocalServiceAddress": IP}}},
    }


def _web(upstream: tuple[str, int]) -> dict[str, Any]:
    up = {"DestinationName": "api", "LocalBindAddress": upstream[0], "LocalBindPort": upstream[1]}
    proxy = {"LocalServiceAddress": IP, "Upstreams": [up]}
    return {
        "Name": "web",
        "Address": IP,
        "Port": 8080,
        "Connect": {"SidecarService": {"Proxy": proxy}},
    }


RESOLVER = {
    "Kind": "service-resolver",
    "Name": "api",
    "DefaultSubset": "v1",
    "Subsets": {v: {"Filter": f'Service.Meta.version == "{v}"'} for v in ("v1", "v2", "v3")},
}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CanaryMesh]:
    m = CanaryMesh(tmp_path_factory.mktemp("canary"))
    c = m.cluster
    c.start_all()
    try:
        c.wait_until(lambda: len(c.get(CLIENT, "/v1/catalog/nodes")[1]) == 4, 60, "agents up")
        for version, name in (("v1", "api-v1"), ("v2", "api-v2"), ("v3", "api-v3-err20")):
            port = free_port(IP)
            m.spawn(name, [sys.executable, str(BACKEND), IP, str(port), name])
            m.api("PUT", "/v1/agent/service/register", _instance(version, port))
        m.api("PUT", "/v1/agent/service/register", _web(m.upstream))
        m.api("PUT", "/v1/connect/intentions/exact?source=web&destination=api", {"Action": "allow"})
        for entry in ({"Kind": "service-defaults", "Name": "api", "Protocol": "http"}, RESOLVER):
            assert m.api("PUT", "/v1/config", entry) is True
        env = {**os.environ, "MESHD_PROXY_STATS_INTERVAL": "0.3"}
        m.spawn("proxy", [sys.executable, "-m", "meshd", "proxy", "--http-addr", f"{IP}:8500"], env)
        c.wait_until(
            lambda: len(c.get(CLIENT, "/v1/health/connect/api?passing")[1]) == 3,
            60,
            "the api sidecars healthy",
        )
        wait_for(lambda: set(m.sample(10)) == {"api-v1"}, 60, "web -> api v1 through the mesh")
        yield m
    finally:
        for proc in m.procs:
            proc.terminate()
        for proc in m.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        c.stop_all()


def _t(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _steps(canary: Any) -> list[tuple[int, str]]:
    return [(h["Step"], h["Event"]) for h in canary["History"]]


def _splits(m: CanaryMesh) -> list[tuple[str, float]]:
    splitter = m.api("GET", "/v1/config/service-splitter/api")
    return [(s["ServiceSubset"], s["Weight"]) for s in splitter["Splits"]]


def _start(m: CanaryMesh, to: str, steps: list[int], interval: str, **extra: Any) -> Any:
    body = {"To": to, "From": "v1", "Steps": steps, "Interval": interval, "MinRequests": 5}
    # Latency is not what these tests judge: a loaded CI machine may take a
    # second or two on a few requests, and a step is judged on a handful.
    body.update({"MaxP99": "10s", **extra})
    status, out, _ = m.cluster.request(CLIENT, "POST", "/v1/internal/canary/api", body, 30)
    assert status == 200, out
    return out


def test_healthy_canary_reaches_100_through_every_step(mesh: CanaryMesh) -> None:
    with Traffic(mesh.upstream) as traffic:
        _start(mesh, "v2", [10, 50, 100], "2s")
        done = mesh.wait_canary(lambda c: c["State"] != "running", "the canary finished")
        assert done["State"] == "promoted", f"{done}\n{mesh.canary_log()}"
        wait_for(lambda: set(mesh.sample(20)) == {"api-v2"}, 30, "everything on v2")
    assert _steps(done) == [(0, "step"), (1, "step"), (2, "promote")]
    assert all(h["Requests"] >= 5 for h in done["History"][1:]), done["History"]
    assert _splits(mesh) == [("v1", 0), ("v2", 100)]
    seen = {name for _, name in traffic.results}
    assert {"api-v1", "api-v2"} <= seen
    failed = [r for r in traffic.results if r[0] != 200]
    assert not failed, f"{len(failed)} of {len(traffic.results)} failed: {failed[:5]}"


def test_erroring_canary_is_rolled_back_within_one_interval(mesh: CanaryMesh) -> None:
    with Traffic(mesh.upstream) as traffic:
        _start(mesh, "v3", [10, 50, 100], "5s", MinRequests=10)
        done = mesh.wait_canary(lambda c: c["State"] != "running", "the canary finished")
        assert done["State"] == "rolled_back", f"{done}\n{mesh.canary_log()}"
        wait_for(lambda: set(mesh.sample(20)) == {"api-v1"}, 30, "everything back on v1")
    assert _steps(done) == [(0, "step"), (0, "rollback")]
    started, rolled = (_t(h["Time"]) for h in done["History"])
    assert rolled - started <= 5.0, f"rolled back {rolled - started:.1f}s into a 5s step"
    assert done["Weight"] == 0 and done["Reason"].startswith("MaxErrorRate exceeded")
    assert _splits(mesh) == [("v1", 100), ("v3", 0)]
    # Every failure is one v3 answered itself; the controller failed nothing.
    failed = [r for r in traffic.results if r[0] != 200]
    assert failed and all(r == (500, "api-v3-err20") for r in failed), failed[:5]


def test_killing_the_leader_mid_canary_neither_loses_nor_repeats_a_step(
    mesh: CanaryMesh,
) -> None:
    c = mesh.cluster
    with Traffic(mesh.upstream) as traffic:
        _start(mesh, "v2", [10, 25, 50, 100], "2s")
        mesh.wait_canary(lambda x: x["Step"] >= 1, "the canary at step 1")
        leader = c.leader()
        c.kill(leader)
        done = mesh.wait_canary(lambda x: x["State"] != "running", "the canary finished")
    assert done["State"] == "promoted", f"{done}\n{mesh.canary_log()}"
    assert _steps(done) == [(0, "step"), (1, "step"), (2, "step"), (3, "promote")]
    times = [_t(h["Time"]) for h in done["History"]]
    assert times == sorted(times)
    failed = [r for r in traffic.results if r[0] != 200]
    assert not failed, f"{len(failed)} of {len(traffic.results)} failed: {failed[:5]}"
    # The killed server, restarted, holds the same record (its log or a snapshot).
    c.start(leader)
    c.wait_until(
        lambda: c.get(leader, "/v1/internal/canary/api?stale")[1] == done,
        60,
        "the restarted server's copy of the canary",
    )
