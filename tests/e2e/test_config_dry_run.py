"""``config write --dry-run`` end to end: a real ``meshd agent --dev``, its
``meshd proxy`` and real ``api`` v1/v2 backends. A known mix goes through
web's upstream (70% GET /, 20% GET / with ``x-version: 2``, 10% DELETE);
the proxy records the request shapes and posts them to the agent; a dry run
of a router (x-version 2 -> v2), a 90/10 splitter and an intention denying
DELETE reports the mix within 1 point, and nothing is written (entries and
the config index unchanged). Free ports on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_connect_mesh import wait_for
from tests.e2e.test_l7_explain import IP, Env, _leader
from tests.e2e.test_l7_mesh import BACKEND, RESOLVER, Client
from tests.meshd.cli_support import invoke, one_error_line
from tests.meshd.harness import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROUTER = {
    "Kind": "service-router",
    "Name": "api",
    "Routes": [
        {
            "Match": {"HTTP": {"Header": [{"Name": "x-version", "Exact": "2"}]}},
            "Destination": {"ServiceSubset": "v2"},
        }
    ],
}
SPLITTER = {
    "Kind": "service-splitter",
    "Name": "api",
    "Splits": [{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}],
}
INTENTIONS = {
    "Kind": "service-intentions",
    "Name": "api",
    "Sources": [
        {
            "Name": "web",
            "Permissions": [
                {"Action": "deny", "HTTP": {"Methods": ["DELETE"]}},
                {"Action": "allow", "HTTP": {"PathPrefix": "/"}},
            ],
        }
    ],
}
MIX = {"get": 140, "header": 40, "delete": 20}  # 70% / 20% / 10%


class Mesh(Env):
    warmup = 0  # requests sent before the mix (also recorded)

    def index(self, path: str) -> int:
        with urllib.request.urlopen(f"http://{IP}:{self.http}{path}", timeout=10) as resp:
            return int(resp.headers["X-Consul-Index"])


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = Mesh(tmp_path_factory.mktemp("dry"))
    cfg = m.root / "agent.json"
    ports = {"http": m.http, "dns": free_port(IP), "server": free_port(IP)}
    cfg.write_text(json.dumps({"node_name": "dry", "ports": ports}))
    m.spawn("agent", [sys.executable, "-m", "meshd", "agent", "--dev", "--config-file", str(cfg)])
    try:
        wait_for(lambda: _leader(m), 60, "the dev agent and its CA")
        for version in ("v1", "v2"):
            port = free_port(IP)
            m.spawn(version, [sys.executable, str(BACKEND), IP, str(port), f"api-{version}"])
            instance = m.instance(f"api-{version}", port)
            m.api("PUT", "/v1/agent/service/register", {**instance, "Meta": {"version": version}})
        m.api("PUT", "/v1/agent/service/register", m.web())
        m.api("PUT", "/v1/connect/intentions/exact?source=web&destination=api", {"Action": "allow"})
        http = {"Kind": "service-defaults", "Name": "api", "Protocol": "http"}
        assert m.api("PUT", "/v1/internal/config/batch", [http, RESOLVER]) is True
        proxy = [sys.executable, "-m", "meshd", "proxy", "--http-addr", f"{IP}:{m.http}"]
        m.spawn("proxy", proxy)
        wait_for(
            lambda: len(m.api("GET", "/v1/health/connect/api?passing")) == 2,
            60,
            "both api sidecars healthy",
        )

        def answered() -> bool:
            m.warmup += 1
            client = Client(m.upstream)
            try:
                return client.request("/warmup")[2].startswith("api-v1")
            finally:
                client.close()

        wait_for(answered, 60, "the upstream served at L7 by v1")
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


def _send_mix(m: Mesh) -> None:
    client = Client(m.upstream)
    try:
        for _ in range(MIX["get"]):
            assert client.request("/")[0] == 200
        for _ in range(MIX["header"]):
            assert client.request("/", {"x-version": "2"})[0] == 200
        for _ in range(MIX["delete"]):
            assert client.request("/items/1", method="DELETE")[0] == 200
    finally:
        client.close()


def _changes(answer: dict[str, Any]) -> dict[tuple[str, str, str, str], Any]:
    [svc] = answer["Services"]
    return {(c["Kind"], c["From"], c["To"], c["Method"]): c for c in svc["Changes"]}


def test_dry_run_reports_the_recorded_mix_within_one_point(mesh: Mesh) -> None:
    index = mesh.index("/v1/config/service-defaults")
    _send_mix(mesh)
    sent = sum(MIX.values())
    proposed = [ROUTER, SPLITTER, INTENTIONS]

    def recorded() -> Any:
        out = mesh.api("POST", "/v1/internal/config/dry-run", proposed)
        return out if out["Samples"] >= sent + mesh.warmup else None

    answer = wait_for(recorded, 30, "the proxy's samples at the agent")
    total = sent + mesh.warmup
    assert answer["Samples"] == total and answer["Services"][0]["Requests"] == total
    got = _changes(answer)
    assert set(got) == {
        ("route", "v1", "v2", ""),
        ("split", "v1", "v2", ""),
        ("deny", "", "", "DELETE"),
    }
    share = 100.0 / total
    # The known mix: 20% carry x-version 2; 10% of the other 80% split off; 10% DELETEs.
    assert abs(got[("route", "v1", "v2", "")]["Percent"] - 20.0) <= 1.0
    assert abs(got[("route", "v1", "v2", "")]["Percent"] - MIX["header"] * share) < 0.01
    assert abs(got[("split", "v1", "v2", "")]["Percent"] - 8.0) <= 1.0
    expected_split = 0.1 * (MIX["get"] + MIX["delete"] + mesh.warmup) * share
    assert abs(got[("split", "v1", "v2", "")]["Percent"] - expected_split) < 0.01
    assert got[("deny", "", "", "DELETE")]["Requests"] == MIX["delete"]
    assert abs(got[("deny", "", "", "DELETE")]["Percent"] - 10.0) <= 1.0
    assert "20 DELETEs to api would now be denied" in answer["Summary"]
    # Nothing was written.
    for kind in ("service-router", "service-splitter"):
        assert mesh.api("GET", f"/v1/config/{kind}") == []
    [stored] = mesh.api("GET", "/v1/config/service-intentions")
    assert "Permissions" not in stored["Sources"][0]
    assert mesh.index("/v1/config/service-defaults") == index


def test_cli_dry_run_prints_the_summary_or_json_and_fails_as_a_write(
    mesh: Mesh, tmp_path: Path
) -> None:
    path = tmp_path / "splitter.json"
    path.write_text(json.dumps(SPLITTER))
    bad = tmp_path / "bad.hcl"
    bad.write_text('Kind = "service-splitter"\nName = "api"\nSplits = [{ Weight = 50 }]\n')
    addr = ["-http-addr", f"{IP}:{mesh.http}"]
    result = invoke(["config", "write", "--dry-run", str(path), *addr])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # Without a router every request is split: exactly 10% move.
    assert lines[0] == "10.0% of recent requests to api would move from v1 to v2", lines
    assert lines[-1].startswith("Dry run: nothing written (")
    result = invoke(["config", "write", "-dry-run", "-format=json", str(path), *addr])
    assert result.exit_code == 0, result.output
    [change] = _changes(json.loads(result.stdout)).values()
    assert (change["Kind"], change["Percent"]) == ("split", 10.0)
    line = one_error_line(invoke(["config", "write", "--dry-run", str(bad), *addr]))
    assert line.startswith("Error writing config entry service-splitter/api: "), line
    assert mesh.api("GET", "/v1/config/service-splitter") == []
