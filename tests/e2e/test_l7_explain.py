"""Ejections end to end: a real ``meshd agent --dev``, its ``meshd proxy`` and
two real ``api`` backends, one answering 500 to everything. After a few
requests through web's upstream the proxy ejects the bad instance, reports
it, and both ``/v1/agent/connect/proxy-ejections`` and
``/v1/internal/explain`` show it ejected (why, until when) while the good
instance stays eligible. Free ports on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_connect_mesh import wait_for
from tests.e2e.test_l7_mesh import BACKEND, Client
from tests.meshd.harness import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

IP = "127.0.0.1"
WEB_DEFAULTS = {
    "Kind": "service-defaults",
    "Name": "web",
    "UpstreamConfig": {
        "Overrides": [
            {
                "Name": "api",
                "PassiveHealthCheck": {
                    "Interval": "1s",
                    "MaxFailures": 2,
                    "MaxEjectionPercent": 50,
                    "BaseEjectionTime": "120s",
                },
            }
        ]
    },
}


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.http = free_port(IP)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.upstream = (IP, free_port(IP))
        self.sidecars: dict[str, int] = {}

    def spawn(self, name: str, args: list[str]) -> None:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://{IP}:{self.http}{path}", data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def api(self, method: str, path: str, body: Any = None) -> Any:
        status, out = self.call(method, path, body)
        assert status == 200, f"{method} {path}: {status} {out}"
        return out

    def instance(self, name: str, port: int) -> dict[str, Any]:
        self.sidecars[name] = free_port(IP)
        return {
            "Name": "api",
            "ID": name,
            "Address": IP,
            "Port": port,
            "Check": {"HTTP": f"http://{IP}:{port}/health", "Interval": "1s"},
            "Connect": {
                "SidecarService": {
                    "Port": self.sidecars[name],
                    "Proxy": {"LocalServiceAddress": IP},
                }
            },
        }

    def web(self) -> dict[str, Any]:
        up = {"DestinationName": "api", "LocalBindAddress": IP, "LocalBindPort": self.upstream[1]}
        proxy = {"LocalServiceAddress": IP, "Upstreams": [up]}
        sidecar = {"Port": free_port(IP), "Proxy": proxy}
        return {
            "Name": "web",
            "Address": IP,
            "Port": free_port(IP),
            "Connect": {"SidecarService": sidecar},
        }


def _leader(env: Env) -> bool:
    try:
        status, roots = env.call("GET", "/v1/connect/ca/roots")
    except OSError:
        return False
    return status == 200 and bool(roots.get("Roots"))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    e = Env(tmp_path_factory.mktemp("l7x"))
    cfg = e.root / "agent.json"
    ports = {"http": e.http, "dns": free_port(IP), "server": free_port(IP)}
    cfg.write_text(json.dumps({"node_name": "l7x", "ports": ports}))
    e.spawn("agent", [sys.executable, "-m", "meshd", "agent", "--dev", "--config-file", str(cfg)])
    try:
        wait_for(lambda: _leader(e), 60, "the dev agent and its CA")
        for name in ("good", "bad"):
            port = free_port(IP)
            e.spawn(name, [sys.executable, str(BACKEND), IP, str(port), name])
            e.api("PUT", "/v1/agent/service/register", e.instance(f"api-{name}", port))
        e.api("PUT", "/v1/agent/service/register", e.web())
        e.api("PUT", "/v1/connect/intentions/exact?source=web&destination=api", {"Action": "allow"})
        for entry in (
            {"Kind": "service-defaults", "Name": "api", "Protocol": "http"},
            WEB_DEFAULTS,
        ):
            assert e.api("PUT", "/v1/config", entry) is True
        proxy = [sys.executable, "-m", "meshd", "proxy", "--http-addr", f"{IP}:{e.http}"]
        e.spawn("proxy", [*proxy, "--metrics-addr", f"{IP}:{free_port(IP)}"])
        wait_for(
            lambda: len(e.api("GET", "/v1/health/connect/api?passing")) == 2,
            60,
            "both api sidecars healthy",
        )
        yield e
    finally:
        for proc in e.procs:
            proc.terminate()
        for proc in e.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert "Traceback" not in e.log("proxy"), e.log("proxy")


def _bad_ejected(env: Env) -> Any:
    client = Client(env.upstream)
    try:
        for _ in range(4):
            client.request("/x")
    finally:
        client.close()
    reports = env.api("GET", "/v1/agent/connect/proxy-ejections")
    web = [r for r in reports if r["ProxyID"] == "web-sidecar-proxy"]
    ups = web[0]["Upstreams"] if web else []
    return [ej for up in ups if up["DestinationName"] == "api" for ej in up["Ejections"]]


def test_a_500_instance_is_ejected_reported_and_explained(env: Env) -> None:
    bad = f"{IP}:{env.sidecars['api-bad']}"
    good = f"{IP}:{env.sidecars['api-good']}"
    ejections = wait_for(lambda: _bad_ejected(env), 60, "the bad instance ejected and reported")
    [ej] = ejections
    assert ej["Address"] == bad and ej["ServiceID"] == "api-bad-sidecar-proxy"
    assert ej["Reason"] == "consecutive_5xx" and ej["LastStatus"] == 500
    assert ej["Target"] == "api.default.default.dc1" and ej["TimesEjected"] == 1
    assert ej["Until"] > ej["EjectedAt"]
    # While it is ejected every request reaches the good instance.
    client = Client(env.upstream)
    try:
        answers = [client.request("/after") for _ in range(10)]
    finally:
        client.close()
    assert {(status, body.split(" ")[0]) for status, _, body in answers} == {(200, "good")}

    out = env.api("POST", "/v1/internal/explain", {"Source": "web", "Destination": "api"})
    assert [e["Address"] for e in out["Ejected"]] == [bad]
    assert out["Ejected"][0]["Reason"] == "consecutive_5xx"
    assert [e["Address"] for e in out["Eligible"]] == [good]
    assert out["Endpoint"] == good and out["EjectionsReportedBy"] == ["web-sidecar-proxy"]
    assert out["OutlierDetection"]["MaxFailures"] == 2
