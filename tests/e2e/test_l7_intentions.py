"""L7 intentions end to end (issue 15, scenario 10): a real agent, its
``meshd proxy`` and real HTTP backends. ``web`` calls ``api`` (http) and
``db`` (tcp) through its upstream listeners; ``api``'s service-intentions
entry lets ``web`` GET /api/* and denies /admin, enforced by api's inbound
side of the proxy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_connect_mesh import wait_for
from tests.e2e.test_l7_mesh import BACKEND, Client, L7Mesh
from tests.meshd.harness import free_port
from tools.local_cluster import LocalAgentCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SUBNET = "127.0.15"
IP = f"{SUBNET}.1"

API_INTENTIONS = {
    "Kind": "service-intentions",
    "Name": "api",
    "Sources": [
        {
            "Name": "web",
            "Permissions": [
                {"Action": "deny", "HTTP": {"PathPrefix": "/admin"}},
                {"Action": "allow", "HTTP": {"PathPrefix": "/api/", "Methods": ["GET"]}},
            ],
        }
    ],
}


class IntentionsMesh(L7Mesh):
    """L7Mesh's helpers on this module's own loopback subnet, with two upstreams."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cluster = LocalAgentCluster(root / "agents", servers=1, clients=0, subnet=SUBNET)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.upstream = (IP, free_port(IP))  # web -> api (http)
        self.db_upstream = (IP, free_port(IP))  # web -> db (tcp)
        self.metrics = (IP, free_port(IP))

    def backend(self, name: str) -> int:
        port = free_port(IP)
        self.spawn(name, [sys.executable, str(BACKEND), IP, str(port), name])
        check = {"HTTP": f"http://{IP}:{port}/health", "Interval": "1s"}
        self.api(
            "PUT",
            "/v1/agent/service/register",
            {
                "Name": name,
                "Address": IP,
                "Port": port,
                "Check": check,
                "Connect": {"SidecarService": {"Proxy": {"LocalServiceAddress": IP}}},
            },
        )
        return port

    def metric(self, name: str, labels: dict[str, str]) -> float:
        with urllib.request.urlopen(f"http://{self.metrics[0]}:{self.metrics[1]}/metrics") as r:
            text = r.read().decode()
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in text.splitlines():
            if line.startswith(f"{name}{{") and all(p in line for p in want.split(",")):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


def _web(m: IntentionsMesh) -> dict[str, Any]:
    ups = [
        {"DestinationName": dest, "LocalBindAddress": addr[0], "LocalBindPort": addr[1]}
        for dest, addr in (("api", m.upstream), ("db", m.db_upstream))
    ]
    proxy = {"LocalServiceAddress": IP, "Upstreams": ups}
    return {
        "Name": "web",
        "Address": IP,
        "Port": 8080,
        "Connect": {"SidecarService": {"Proxy": proxy}},
    }


def _get(m: IntentionsMesh, path: str, method: str = "GET") -> tuple[int, str]:
    c = Client(m.upstream)
    try:
        status, _, body = c.request(path, method=method)
        return status, body
    finally:
        c.close()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IntentionsMesh]:
    m = IntentionsMesh(tmp_path_factory.mktemp("l7-intentions"))
    c = m.cluster
    c.start_all()
    try:
        c.wait_until(lambda: len(c.get("server-1", "/v1/catalog/nodes")[1]) == 1, 30, "agent up")
        m.backend("api")
        m.backend("db")
        m.api("PUT", "/v1/agent/service/register", _web(m))
        for entry in (
            {"Kind": "service-defaults", "Name": "api", "Protocol": "http"},
            API_INTENTIONS,
        ):
            assert m.api("PUT", "/v1/config", entry) is True
        args = [sys.executable, "-m", "meshd", "proxy", "--http-addr", f"{IP}:8500"]
        metrics = f"{m.metrics[0]}:{m.metrics[1]}"
        m.spawn("proxy", [*args, "--metrics-addr", metrics], dict(os.environ))
        for svc in ("api", "db"):
            c.wait_until(
                lambda svc=svc: len(c.get("server-1", f"/v1/health/connect/{svc}?passing")[1]) == 1,
                40,
                f"{svc}'s sidecar healthy",
            )
        try:
            wait_for(lambda: _get(m, "/api/ready")[0] == 200, 30, "web's L7 intention applied")
        except TimeoutError as exc:  # say what the proxy saw
            raise AssertionError(f"{exc}\nproxy log (tail):\n{m.log('proxy')[-3000:]}") from None
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
        assert "Traceback" not in m.log("proxy"), m.log("proxy")


def test_get_api_is_allowed_and_delete_admin_denied_with_the_reason_logged(
    mesh: IntentionsMesh,
) -> None:
    c = Client(mesh.upstream)
    try:
        assert c.request("/api/users")[::2] == (200, "api /api/users\n")
        status, headers, body = c.request("/admin", method="DELETE")
        assert (status, headers.get("content-type"), body) == (
            403,
            "text/plain",
            "RBAC: access denied",
        )
        # The keep-alive connection serves on after a deny.
        assert c.request("/api/after")[0] == 200
    finally:
        c.close()
    line = (
        'event=rbac_denied source=web destination=api intention="web => api" permission=0 '
        "method=DELETE path=/admin"
    )
    wait_for(lambda: line in mesh.log("proxy"), 10, "the deny logged")
    labels = {"source": "web", "destination": "api", "intention": "web => api"}
    assert mesh.metric("meshd_proxy_rbac_denials_total", labels) >= 1.0


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/%2e%2e/admin", "GET"),
        ("/api/%2E%2E/admin", "GET"),
        ("//admin", "GET"),
        ("/%61dmin", "GET"),
        ("/api/users", "POST"),  # the allow is GET only: the default (deny) decides
    ],
)
def test_encoded_paths_and_other_methods_cannot_bypass_the_rules(
    mesh: IntentionsMesh, path: str, method: str
) -> None:
    assert _get(mesh, path, method) == (403, "RBAC: access denied")


def test_a_tcp_service_keeps_l4_intentions(mesh: IntentionsMesh) -> None:
    exact = "/v1/connect/intentions/exact?source=web&destination=db"
    mesh.api("PUT", exact, {"Action": "deny"})
    try:
        # An L4 deny closes the connection: no HTTP answer at all, no 403.
        def refused() -> bool:
            try:
                Client(mesh.db_upstream).request("/x")
            except (ConnectionError, OSError):
                return True
            return False

        wait_for(refused, 10, "the L4 deny applied")
        wait_for(
            lambda: "event=denied source=web destination=db" in mesh.log("proxy"),
            10,
            "the L4 deny logged",
        )
        mesh.api("PUT", exact, {"Action": "allow"})

        def db_answers() -> bool:
            c = Client(mesh.db_upstream)
            try:
                return c.request("/x")[::2] == (200, "db /x\n")
            finally:
                c.close()

        wait_for(db_answers, 10, "the L4 allow applied")
    finally:
        mesh.api("DELETE", exact)


def test_an_intention_change_applies_within_1s_on_an_open_keep_alive_connection(
    mesh: IntentionsMesh,
) -> None:
    allow_admin = {
        **API_INTENTIONS,
        "Sources": [
            {"Name": "web", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}
        ],
    }
    c = Client(mesh.upstream)
    try:
        assert c.request("/admin")[0] == 403
        assert mesh.api("PUT", "/v1/config", allow_admin) is True
        written = time.monotonic()
        statuses = []
        while time.monotonic() - written < 5:
            status = c.request("/admin")[0]  # the same connection throughout
            statuses.append(status)
            if status == 200:
                break
        took = time.monotonic() - written
        assert statuses[-1] == 200 and set(statuses) <= {403, 200}, statuses
        assert took < 1.0, f"applied after {took:.2f}s"
        assert mesh.api("PUT", "/v1/config", API_INTENTIONS) is True
        wait_for(lambda: c.request("/admin")[0] == 403, 5, "the deny back on the same connection")
    finally:
        c.close()
