"""ACLs on a real cluster: 3 servers + 1 client over mTLS, ACLs enabled with
default deny, the initial management token on the servers and an agent
token per agent. Agents join only once their agent token exists; a service
registered with a service-scoped token reaches the catalog and gets its
leaf certificate, another token gets neither; ``meshd acl token list``
prints no secret and no agent log contains one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.meshd.jwt_support import jwks, jwks_server, sign
from tools.local_cluster import LocalAgentCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MGMT = str(uuid.uuid4())


class ACLCluster:
    def __init__(self, root: Path) -> None:
        self.c = LocalAgentCluster(root, servers=3, clients=1, subnet="127.0.16")
        self.agent_tokens: dict[str, str] = {}
        for name, proc in self.c.agents.items():
            secret = str(uuid.uuid4())
            self.agent_tokens[name] = secret
            config = json.loads(proc.config_file.read_text())
            tokens: dict[str, str] = {"agent": secret}
            if proc.server:
                tokens["initial_management"] = MGMT
            config["acl"] = {"enabled": True, "default_policy": "deny", "tokens": tokens}
            proc.config_file.write_text(json.dumps(config, indent=2))
        self.secrets: list[str] = []

    def call(self, agent: str, method: str, path: str, body: Any = None, token: str = "") -> Any:
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.c.agents[agent].http + path, data=data, method=method)
        if token:
            req.add_header("X-Consul-Token", token)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw, status = resp.read(), resp.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def token(self, body: dict[str, Any]) -> str:
        status, out = self.call("server-1", "PUT", "/v1/acl/token", body, MGMT)
        assert status == 200, out
        secret = str(out["SecretID"])
        self.secrets.append(secret)
        return secret


@pytest.fixture(scope="module")
def acl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ACLCluster]:
    a = ACLCluster(tmp_path_factory.mktemp("aclcluster"))
    c = a.c
    c.start_all()
    try:
        c.wait_until(
            lambda: a.call("server-1", "GET", "/v1/acl/token/self", token=MGMT)[0] == 200,
            30,
            "the initial management token",
        )
        for name, secret in a.agent_tokens.items():
            body = {
                "SecretID": secret,
                "Description": f"agent token for {name}",
                "NodeIdentities": [{"NodeName": name, "Datacenter": "dc1"}],
            }
            status, out = a.call("server-1", "PUT", "/v1/acl/token", body, MGMT)
            assert status == 200, out

        def all_nodes() -> bool:
            status, nodes = a.call("server-1", "GET", "/v1/catalog/nodes", token=MGMT)
            return status == 200 and len(nodes) == 4

        c.wait_until(all_nodes, 30, "4 nodes registered with their agent tokens")
        yield a
    finally:
        c.stop_all()


def test_anonymous_requests_see_nothing_and_cannot_write(acl: ACLCluster) -> None:
    status, nodes = acl.call("client-1", "GET", "/v1/catalog/nodes")
    assert status == 200 and nodes == []
    status, text = acl.call("client-1", "PUT", "/v1/kv/x", "1")
    assert status == 403 and "Permission denied" in text


def test_service_token_registers_its_service_and_gets_only_its_leaf(acl: ACLCluster) -> None:
    web = acl.token({"ServiceIdentities": [{"ServiceName": "web"}]})
    db = acl.token({"ServiceIdentities": [{"ServiceName": "db"}]})
    svc = {"Name": "web", "Port": 8080}
    assert acl.call("client-1", "PUT", "/v1/agent/service/register", svc, web)[0] == 200
    status, text = acl.call("client-1", "PUT", "/v1/agent/service/register", {"Name": "db"}, web)
    assert status == 403 and "service:write" in text

    def visible() -> bool:
        status, rows = acl.call("server-2", "GET", "/v1/catalog/service/web", token=MGMT)
        return status == 200 and [r["Node"] for r in rows] == ["client-1"]

    acl.c.wait_until(visible, 15, "web in the catalog, written with its own token")
    status, leaf = acl.call("client-1", "GET", "/v1/agent/connect/ca/leaf/web", token=web)
    assert status == 200, leaf
    assert leaf["ServiceURI"].endswith("/svc/web")
    status, text = acl.call("client-1", "GET", "/v1/agent/connect/ca/leaf/web", token=db)
    assert status == 403 and "lacks permission 'service:write' on \"web\"" in text
    assert acl.call("client-1", "GET", "/v1/agent/connect/ca/leaf/web")[0] == 403
    # The db token can read (service_prefix "" read) but not claim web's identity.
    status, rows = acl.call("client-1", "GET", "/v1/catalog/service/web", token=db)
    assert status == 200 and len(rows) == 1


def test_a_client_agent_cannot_write_past_the_callers_token(acl: ACLCluster) -> None:
    reader = acl.token({"ServiceIdentities": [{"ServiceName": "reader"}]})
    # Catalog writes go from the client agent to a server with the caller's token.
    body = {"Node": "fake", "Address": "10.9.9.9"}
    status, _ = acl.call("client-1", "PUT", "/v1/catalog/register", body, reader)
    assert status == 403
    status, nodes = acl.call("server-1", "GET", "/v1/catalog/nodes", token=MGMT)
    assert "fake" not in {n["Node"] for n in nodes}


def test_sync_skips_a_service_the_servers_refuse_and_keeps_syncing(acl: ACLCluster) -> None:
    """Issue 13 item 9: once the servers refuse one local service (its token
    lost the right to write it), anti-entropy skips it with one log line and
    every other change on the node still reaches the catalog."""
    rules = 'service "flip" { policy = "write" }'
    policy = {"Name": "flip-writer", "Rules": rules}
    status, out = acl.call("server-1", "PUT", "/v1/acl/policy", policy, MGMT)
    assert status == 200, out
    pid = out["ID"]
    flip = acl.token({"Policies": [{"ID": pid}]})
    svc = {"Name": "flip", "Port": 1, "Check": {"CheckID": "flip-ttl", "TTL": "300s"}}
    assert acl.call("client-1", "PUT", "/v1/agent/service/register", svc, flip)[0] == 200

    def in_catalog(name: str, status_: str | None = None) -> bool:
        code, rows = acl.call("server-2", "GET", f"/v1/health/service/{name}", token=MGMT)
        if code != 200 or not rows:
            return False
        return status_ is None or all(c["Status"] == status_ for c in rows[0]["Checks"])

    acl.c.wait_until(lambda: in_catalog("flip"), 15, "flip in the catalog")
    policy["Rules"] = 'service "flip" { policy = "read" }'
    status, out = acl.call("server-1", "PUT", f"/v1/acl/policy/{pid}", policy, MGMT)
    assert status == 200, out
    # A local change to flip that sync must now write with flip's token: refused.
    assert acl.call("client-1", "PUT", "/v1/agent/check/pass/flip-ttl", token=MGMT)[0] == 200
    other = {"Name": "after-refusal", "Port": 2}
    assert acl.call("client-1", "PUT", "/v1/agent/service/register", other, MGMT)[0] == 200
    acl.c.wait_until(lambda: in_catalog("after-refusal"), 15, "later services still synced")

    def refused_lines() -> list[str]:
        return [
            line
            for line in acl.c.logs("client-1").splitlines()
            if "sync_item_refused" in line and "service:flip" in line
        ]

    acl.c.wait_until(refused_lines, 15, "the refusal logged")
    assert not in_catalog("flip", "passing")  # the refused update did not land
    # More changes and passes: still one line for the same refusal.
    more = {"Name": "after-refusal-2", "Port": 3}
    assert acl.call("client-1", "PUT", "/v1/agent/service/register", more, MGMT)[0] == 200
    acl.c.wait_until(lambda: in_catalog("after-refusal-2"), 15, "still syncing")
    assert len(refused_lines()) == 1, refused_lines()


def test_a_pod_jwt_logs_in_through_a_client_agent_and_registers_its_service(
    acl: ACLCluster,
) -> None:
    """The Kubernetes path on a real cluster: the auth method names the
    cluster's JWKS URL (served on loopback), the login goes from a client
    agent to the leader, which fetches the keys and validates the projected
    service-account token; the token then registers the bound service."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with jwks_server(jwks(("sa-1", key))) as server:
        method = {
            "Name": "kubernetes",
            "Type": "jwt",
            "MaxTokenTTL": "1h",
            "Config": {
                "JWKSURL": server.url,
                "BoundIssuer": "https://kubernetes.default.svc.cluster.local",
                "BoundAudiences": ["meshd"],
                "ClaimMappings": {
                    "/kubernetes.io/namespace": "namespace",
                    "/kubernetes.io/serviceaccount/name": "service_account",
                },
            },
        }
        status, out = acl.call("server-2", "PUT", "/v1/acl/auth-method", method, MGMT)
        assert status == 200, out
        rule = {
            "AuthMethod": "kubernetes",
            "BindType": "service",
            "BindName": "${value.service_account}",
            "Selector": "value.namespace == default",
        }
        status, out = acl.call("server-3", "PUT", "/v1/acl/binding-rule", rule, MGMT)
        assert status == 200, out
        now = int(time.time())
        bearer = sign(
            key,
            {
                "iss": "https://kubernetes.default.svc.cluster.local",
                "aud": ["meshd"],
                "exp": now + 3600,
                "nbf": now,
                "sub": "system:serviceaccount:default:orders",
                "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "orders"}},
            },
            kid="sa-1",
        )
        body = {"AuthMethod": "kubernetes", "BearerToken": bearer}
        status, login = acl.call("client-1", "POST", "/v1/acl/login", body)
    assert status == 200, login
    acl.secrets += [login["SecretID"], bearer]
    assert login["AuthMethod"] == "kubernetes"
    assert login["ServiceIdentities"] == [{"ServiceName": "orders"}]
    secret = login["SecretID"]
    svc = {"Name": "orders", "Port": 9000}
    assert acl.call("client-1", "PUT", "/v1/agent/service/register", svc, secret)[0] == 200
    status, text = acl.call("client-1", "PUT", "/v1/agent/service/register", {"Name": "x"}, secret)
    assert status == 403 and "service:write" in text

    def visible() -> bool:
        status, rows = acl.call("server-1", "GET", "/v1/catalog/service/orders", token=MGMT)
        return status == 200 and [r["Node"] for r in rows] == ["client-1"]

    acl.c.wait_until(visible, 15, "orders in the catalog, registered with the login token")
    assert acl.call("client-1", "POST", "/v1/acl/logout", token=secret) == (200, True)
    # The client agent forgets the token at once (not after acl.token_ttl).
    status, text = acl.call("client-1", "GET", "/v1/agent/services", token=secret)
    assert (status, text) == (403, "ACL not found")
    status, text = acl.call("server-1", "GET", "/v1/acl/token/self", token=secret)
    assert (status, text) == (403, "ACL not found")


def test_secrets_never_printed_by_token_list_nor_logged(acl: ACLCluster) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "meshd",
            "acl",
            "token",
            "list",
            "-http-addr",
            acl.c.agents["server-1"].http.removeprefix("http://"),
            "-token",
            MGMT,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert "AccessorID" in proc.stdout
    secrets = [MGMT, *acl.agent_tokens.values(), *acl.secrets]
    for secret in secrets:
        assert secret not in proc.stdout
    for name in acl.c.agents:
        log = acl.c.logs(name)
        assert log, f"no log for {name}"
        leaked = [s for s in secrets if s in log]
        assert not leaked, f"{name} logged a token secret"
