"""Real 3-server clusters for the fault tests (wiped, full and corrupt data
directories): ``tools.local_cluster`` processes on their own loopback
subnet, each agent on free ports rather than Consul's fixed ones."""

from __future__ import annotations

import json
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.meshd.harness import free_port
from tools.local_cluster import AgentProc, LocalAgentCluster


@dataclass
class PortedAgent(AgentProc):
    http_port: int = 0
    server_port: int = 0

    @property
    def http(self) -> str:
        return f"http://{self.ip}:{self.http_port}"

    @property
    def rpc(self) -> str:
        return f"{self.ip}:{self.server_port}"


def fault_cluster(
    root: Path, subnet: str, *, servers: int = 3, extra: dict[str, Any] | None = None
) -> LocalAgentCluster:
    """A ``servers``-server cluster (no clients) prepared, not started."""
    c = LocalAgentCluster(root, servers=servers, clients=0, subnet=subnet, extra_config=extra or {})
    ports = {
        name: {"http": free_port(a.ip), "dns": free_port(a.ip), "server": free_port(a.ip)}
        for name, a in c.agents.items()
    }
    rpc = {name: f"{a.ip}:{ports[name]['server']}" for name, a in c.agents.items()}
    for name, a in list(c.agents.items()):
        config = json.loads(a.config_file.read_text())
        config["ports"] = ports[name]
        config["retry_join"] = [addr for n, addr in rpc.items() if n != name]
        a.config_file.write_text(json.dumps(config, indent=2))
        c.agents[name] = PortedAgent(
            a.name,
            a.ip,
            a.server,
            a.config_file,
            a.data_dir,
            http_port=ports[name]["http"],
            server_port=ports[name]["server"],
        )
    return c


def wait_for_cluster(c: LocalAgentCluster, timeout: float = 60) -> str:
    """Wait until every server sees the same leader and all servers vote;
    returns the leader's name."""

    def formed() -> bool:
        for name in c.alive():
            status, peers, _ = c.get(name, "/v1/status/peers", timeout=2)
            if status != 200 or len(peers) != len(c.agents):
                return False
        return True

    c.wait_until(formed, timeout, "all servers in the Raft configuration")
    return c.leader(timeout)


def put(c: LocalAgentCluster, agent: str, key: str, value: str) -> int:
    status, _, _ = c.request(agent, "PUT", f"/v1/kv/{key}", value, timeout=10)
    return status


def kv_keys(c: LocalAgentCluster, agent: str, prefix: str, query: str = "stale") -> set[str]:
    """Keys under ``prefix`` as ``agent`` answers them (empty on any error)."""
    return kv_keys_or_none(c, agent, prefix, query) or set()


def kv_keys_or_none(
    c: LocalAgentCluster, agent: str, prefix: str, query: str = "stale"
) -> set[str] | None:
    """Keys under ``prefix`` as ``agent`` answers them; None while its API
    does not answer."""
    try:
        status, body, _ = c.get(agent, f"/v1/kv/{prefix}?keys&{query}", timeout=3)
    except OSError:
        return None
    if status == 404:
        return set()
    return set(body) if status == 200 and isinstance(body, list) else None


def autopilot_healthy(c: LocalAgentCluster, via: str, server: str) -> bool | None:
    """Whether autopilot (asked through ``via``) calls ``server`` healthy."""
    status, body, _ = c.get(via, "/v1/operator/autopilot/health", timeout=3)
    if status not in (200, 429):  # Consul answers 429 while the cluster is unhealthy
        return None
    for s in body["Servers"]:
        # By address: a server that left is no longer in the catalog, and
        # autopilot then names it by its ID.
        if s["Address"] == c.agents[server].rpc:
            return bool(s["Healthy"])
    return None


def wipe_raft_dir(c: LocalAgentCluster, name: str) -> None:
    shutil.rmtree(c.agents[name].data_dir / "raft")


def stop(c: LocalAgentCluster, name: str) -> None:
    c.kill(name, signal.SIGTERM)
