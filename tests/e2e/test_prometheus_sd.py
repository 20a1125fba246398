"""A real Prometheus (Debian's package, which lacks consul_sd) finds the
agent, a ``meshd proxy`` and the service instances through
``http_sd_configs`` pointed at /v1/prometheus/sd, with relabel rules a
consul_sd user would write, and scrapes the agent and the proxy (``up == 1``).

Prometheus is installed with apt if missing (the machine's root); the
Debian service is never started: the binary runs here on a free loopback
port with its storage in a temporary directory.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.machine_lock import machine_lock
from tests.meshd.harness import APIClient, dev_agent, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROMETHEUS = Path("/usr/bin/prometheus")
PROXY = [sys.executable, "-m", "meshd", "proxy"]


def _apt_install() -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def prometheus_binary() -> Path:
    """Debian's prometheus, installed if missing (never skipped)."""
    with machine_lock("apt"):
        if not PROMETHEUS.exists() and _apt_install().returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, timeout=600)
            result = _apt_install()
            assert result.returncode == 0, f"apt-get install prometheus failed:\n{result.stderr}"
    assert PROMETHEUS.exists(), "apt-get install prometheus did not provide /usr/bin/prometheus"
    return PROMETHEUS


CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: meshd
    http_sd_configs:
      - url: http://{agent}/v1/prometheus/sd
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [__meta_meshd_kind]
        target_label: kind
      - source_labels: [__meta_consul_service]
        target_label: service
      - source_labels: [__meta_consul_node]
        target_label: node
      - source_labels: [__meta_consul_tags]
        regex: '.*,v1,.*'
        target_label: version
        replacement: v1
"""


class Prometheus:
    def __init__(self, binary: Path, root: Path, agent: str) -> None:
        (root / "prometheus.yml").write_text(CONFIG.format(agent=agent))
        self.port = free_port()
        self.api = APIClient("127.0.0.1", self.port)
        self.log = open(root / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        args = [
            str(binary),
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)

    async def get(self, path: str) -> Any:
        resp = await self.api.get(path)
        assert resp.status == 200, resp.text
        return resp.json()["data"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def by_kind(targets: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [t for t in targets if t["labels"].get("kind") == kind]


async def test_prometheus_scrapes_agent_and_proxy_found_through_http_sd(
    prometheus_binary: Path, tmp_path: Path
) -> None:
    metrics_port, sidecar_port, upstream_port = free_port(), free_port(), free_port()
    web = {
        "Name": "web",
        "Port": free_port(),
        "Tags": ["v1"],
        "Meta": {"team": "a"},
        "Connect": {
            "SidecarService": {
                "Port": sidecar_port,
                "Proxy": {
                    "Upstreams": [{"DestinationName": "api", "LocalBindPort": upstream_port}],
                    "Config": {"envoy_prometheus_bind_addr": f"127.0.0.1:{metrics_port}"},
                },
            }
        },
    }
    async with dev_agent() as (_agent, api):
        assert (await api.put("/v1/agent/service/register", web)).status == 200
        agent_addr = f"{api.host}:{api.port}"
        proxy_log = open(tmp_path / "proxy.log", "wb")  # noqa: SIM115
        proxy = subprocess.Popen(
            [*PROXY, "--http-addr", agent_addr, "--metrics-addr", f"127.0.0.1:{metrics_port}"],
            stdout=proxy_log,
            stderr=subprocess.STDOUT,
        )
        prom = Prometheus(prometheus_binary, tmp_path, agent_addr)
        try:
            await _check_scrapes(prom, metrics_port)
            await _probe_counted(prom, sidecar_port)
        finally:
            prom.stop()
            proxy.terminate()
            try:
                proxy.wait(10)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait()
            proxy_log.close()


async def _check_scrapes(prom: Prometheus, metrics_port: int) -> None:
    deadline = trio.current_time() + 50
    targets: list[dict[str, Any]] = []
    while trio.current_time() < deadline:
        try:
            targets = (await prom.get("/api/v1/targets?state=active"))["activeTargets"]
        except (OSError, AssertionError):
            targets = []
        up = [t for t in targets if t["health"] == "up"]
        if by_kind(up, "agent") and by_kind(up, "proxy"):
            break
        await trio.sleep(0.5)
    else:
        pytest.fail(f"agent and proxy not both up in Prometheus: {targets}")
    (proxy,) = by_kind(targets, "proxy")
    assert proxy["scrapeUrl"] == f"http://127.0.0.1:{metrics_port}/metrics"
    assert proxy["labels"]["service"] == "web-sidecar-proxy"
    (agent,) = by_kind(targets, "agent")
    assert "/v1/agent/metrics?format=prometheus" in agent["scrapeUrl"]
    (instance,) = [t for t in by_kind(targets, "service") if t["labels"]["service"] == "web"]
    assert instance["labels"]["version"] == "v1"  # from __meta_consul_tags ",v1,"
    assert instance["labels"]["node"] == "dev-node"
    assert instance["discoveredLabels"]["__meta_consul_service_metadata_team"] == "a"
    for kind in ("agent", "proxy"):
        query = urllib.parse.quote(f'up{{kind="{kind}"}}')
        deadline = trio.current_time() + 20
        while True:
            result = (await prom.get(f"/api/v1/query?query={query}"))["result"]
            if result or trio.current_time() > deadline:
                break
            await trio.sleep(0.5)
        assert [r["value"][1] for r in result] == ["1"], (kind, result)
    result = (await prom.get("/api/v1/query?query=meshd_runtime_uptime_seconds"))["result"]
    assert [r["metric"]["kind"] for r in result] == ["agent"]


async def _probe_counted(prom: Prometheus, sidecar_port: int) -> None:
    """A TCP probe of the sidecar reaches Prometheus through the proxy's scrape."""
    with trio.fail_after(20):
        while True:
            try:
                socket.create_connection(("127.0.0.1", sidecar_port), timeout=1).close()
                break
            except OSError:
                await trio.sleep(0.2)
    query = urllib.parse.quote('meshd_proxy_closed_before_handshake_total{destination="web"}')
    with trio.fail_after(20):
        while True:
            result = (await prom.get(f"/api/v1/query?query={query}"))["result"]
            if result and float(result[0]["value"][1]) >= 1:
                break
            await trio.sleep(0.5)
    assert result[0]["metric"]["kind"] == "proxy"
