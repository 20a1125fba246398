"""Server RPC ACLs on a real cluster: 3 servers + 1 client as processes,
mTLS, ACLs on with default deny, free ports on their own loopback IPs.

A client certificate (client-1's) and no token, against a *follower's* RPC
port, can neither read secrets nor snapshot nor change Raft nor the CA, nor
pretend to be a server forwarding a request; a follower forwards a read to
the leader and trims the answer for the caller's token; and the cluster
itself (joins, forwarding, heartbeats with agent tokens, client writes)
keeps working under these rules.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from connect import ca as ca_core
from meshd.rpc import RPCClient, RPCError
from raft.tls import client_context
from tests.meshd.harness import free_port
from tools.local_cluster import LocalAgentCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MGMT = str(uuid.uuid4())


class Cluster:
    def __init__(self, root: Path) -> None:
        self.c = LocalAgentCluster(root, servers=3, clients=1, subnet="127.0.43")
        self.ports = {"http": free_port(), "dns": free_port(), "server": free_port()}
        servers = [a for a in self.c.agents.values() if a.server]
        for name, proc in self.c.agents.items():
            config = json.loads(proc.config_file.read_text())
            config["ports"] = dict(self.ports)
            config["retry_join"] = [self.rpc(a.name) for a in servers if a.name != name]
            tokens = {"agent": MGMT if proc.server else self.agent_token(name)}
            if proc.server:
                tokens["initial_management"] = MGMT
            config["acl"] = {"enabled": True, "default_policy": "deny", "tokens": tokens}
            proc.config_file.write_text(json.dumps(config, indent=2))

    @staticmethod
    def agent_token(name: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.{MGMT}"))

    def rpc(self, name: str) -> str:
        return f"{self.c.agents[name].ip}:{self.ports['server']}"

    def call(self, agent: str, method: str, path: str, body: Any = None, token: str = "") -> Any:
        url = f"http://{self.c.agents[agent].ip}:{self.ports['http']}{path}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if token:
            req.add_header("X-Consul-Token", token)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw, status = resp.read(), resp.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        except OSError as exc:
            return 0, str(exc)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def token(self, rules: str) -> str:
        name = f"p-{uuid.uuid4().hex[:8]}"
        status, policy = self.call(
            "server-1", "PUT", "/v1/acl/policy", {"Name": name, "Rules": rules}, MGMT
        )
        assert status == 200, policy
        body = {"Policies": [{"ID": policy["ID"]}]}
        status, token = self.call("server-1", "PUT", "/v1/acl/token", body, MGMT)
        assert status == 200, token
        return str(token["SecretID"])

    def follower(self) -> str:
        status, leader = self.call("server-1", "GET", "/v1/status/leader", token=MGMT)
        assert status == 200 and leader, leader
        return next(n for n, a in self.c.agents.items() if a.server and self.rpc(n) != leader)

    def root_id(self) -> str:
        status, roots = self.call("server-1", "GET", "/v1/connect/ca/roots", token=MGMT)
        assert status == 200, roots
        return str(roots["ActiveRootID"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    k = Cluster(tmp_path_factory.mktemp("rpcacl"))
    c = k.c
    c.start_all()
    try:
        c.wait_until(
            lambda: k.call("server-1", "GET", "/v1/acl/token/self", token=MGMT)[0] == 200,
            60,
            "the initial management token",
        )
        body = {
            "SecretID": k.agent_token("client-1"),
            "NodeIdentities": [{"NodeName": "client-1", "Datacenter": "dc1"}],
        }
        status, out = k.call("server-1", "PUT", "/v1/acl/token", body, MGMT)
        assert status == 200, out

        def all_nodes() -> bool:
            status, nodes = k.call("server-1", "GET", "/v1/catalog/nodes", token=MGMT)
            return status == 200 and len(nodes) == 4

        c.wait_until(all_nodes, 60, "4 nodes registered")

        def has_root() -> bool:
            status, roots = k.call("server-1", "GET", "/v1/connect/ca/roots", token=MGMT)
            return status == 200 and bool(roots.get("ActiveRootID"))

        c.wait_until(has_root, 30, "the Connect CA")
        yield k
    finally:
        c.stop_all()


async def _rpc(
    k: Cluster, server: str, method: str, args: dict[str, Any], token: str | None
) -> Any:
    root = k.c.root
    files = (str(k.c.ca_file), str(root / "client-1.pem"), str(root / "client-1-key.pem"))
    async with trio.open_nursery() as nursery:
        client = RPCClient(
            nursery, client_context(*files), server_name="server.dc1.consul", local_id="intruder"
        )
        error: RPCError | None = None
        try:
            result = await client.call(k.rpc(server), method, args, token=token, timeout=20)
        except RPCError as exc:
            error = exc
        nursery.cancel_scope.cancel()
    if error is not None:
        raise error
    return result


async def _code(
    k: Cluster, server: str, method: str, args: dict[str, Any], token: str | None = None
) -> str:
    try:
        await _rpc(k, server, method, args, token)
    except RPCError as exc:
        return exc.code
    return "ok"


async def test_a_client_certificate_without_a_token_gets_nothing_from_a_follower(
    cluster: Cluster,
) -> None:
    k = cluster
    follower = k.follower()
    root = k.root_id()
    tokens = {"name": "acl.tokens", "args": {}, "opts": {}}
    assert await _code(k, follower, "Registry.Read", tokens) == "PermissionDenied"
    assert await _code(k, follower, "Registry.Read", {**tokens, "fwd": True}) == "PermissionDenied"
    assert await _code(k, follower, "Snapshot.Save", {}) == "PermissionDenied"
    assert await _code(k, follower, "Operator.RaftConfiguration", {}) == "PermissionDenied"
    assert (
        await _code(k, follower, "Operator.RaftRemovePeer", {"address": k.rpc(follower)})
        == "PermissionDenied"
    )
    assert (
        await _code(k, follower, "Operator.ForceLeave", {"node": "client-1"}) == "PermissionDenied"
    )
    assert await _code(k, follower, "Node.Heartbeat", {"node": "ghost"}) == "PermissionDenied"
    key = ca_core.generate_private_key("ec", 256)
    ca_set = {"provider": "consul", "config": {"PrivateKey": key}}
    assert await _code(k, follower, "ConnectCA.ConfigurationSet", ca_set) == "PermissionDenied"
    # Nothing changed: three voters, the same root, no ghost node.
    status, conf = k.call(follower, "GET", "/v1/operator/raft/configuration", token=MGMT)
    assert status == 200 and len(conf["Servers"]) == 3
    assert k.root_id() == root
    status, nodes = k.call("server-1", "GET", "/v1/catalog/nodes", token=MGMT)
    assert sorted(n["Node"] for n in nodes) == ["client-1", "server-1", "server-2", "server-3"]


async def test_a_follower_trims_the_leaders_answer_for_the_callers_token(cluster: Cluster) -> None:
    k = cluster
    follower = k.follower()
    reader = k.token('acl = "read"')
    tokens = {"name": "acl.tokens", "args": {}, "opts": {}}  # default: the leader answers
    seen = (await _rpc(k, follower, "Registry.Read", tokens, reader))["r"]
    assert len(seen) >= 4 and {t["SecretID"] for t in seen} == {"<hidden>"}
    full = (await _rpc(k, follower, "Registry.Read", tokens, MGMT))["r"]
    assert MGMT in {t["SecretID"] for t in full}


def test_the_cluster_keeps_working_under_rpc_acls(cluster: Cluster) -> None:
    """Joins, forwarding and heartbeats (with agent tokens) work: every node
    is alive, and a client agent's write goes through a server with the
    caller's token."""
    k = cluster
    status, critical = k.call("server-1", "GET", "/v1/health/state/critical", token=MGMT)
    assert status == 200 and critical == [], critical
    writer = k.token('key_prefix "app/" { policy = "write" }')
    assert k.call("client-1", "PUT", "/v1/kv/app/x", "1", writer)[0] == 200
    status, text = k.call("client-1", "PUT", "/v1/kv/other/x", "1", writer)
    assert status == 403 and "Permission denied" in text
    status, entries = k.call(k.follower(), "GET", "/v1/kv/app/x", token=MGMT)
    assert status == 200 and entries[0]["Key"] == "app/x"
