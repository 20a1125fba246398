"""Ready means usable: with ``acl.tokens.initial_management`` a client that
starts using the management token the moment the agent answers (or the
moment systemd hears READY=1, or /v1/status/leader names a leader) never
gets ``ACL not found``: the server reports no leader until its leader has
established leadership, and requests in that window wait for it."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.meshd.harness import free_port
from tests.meshd.test_sd_notify import Listener
from tools.local_cluster import LocalAgentCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SECRET = "5a1f2e3d-0000-4000-8000-00000000beef"
ACL = {
    "enabled": True,
    "default_policy": "deny",
    "tokens": {"initial_management": SECRET},
}


def _get(host: str, port: int, path: str, token: str = "") -> tuple[int, str] | None:
    """(status, body), or None while nothing listens."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path, headers={"X-Consul-Token": token} if token else {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    except OSError:
        return None
    finally:
        conn.close()


def _hammer(host: str, port: int, deadline: float) -> list[tuple[str, int, str]]:
    """Use the management token (and ask for the leader) as fast as possible
    from before the agent listens until 20 answers after the first success."""
    seen: list[tuple[str, int, str]] = []
    ok = 0
    while time.monotonic() < deadline and ok < 20:
        got = _get(host, port, "/v1/acl/token/self", SECRET)
        if got is None:
            time.sleep(0.001)
            continue
        seen.append(("token", *got))
        ok += got[0] == 200
        leader = _get(host, port, "/v1/status/leader")
        if leader is not None and leader[0] == 200 and json.loads(leader[1]):
            after = _get(host, port, "/v1/acl/token/self", SECRET)
            assert after is not None
            seen.append(("after-leader", *after))
    return seen


def _assert_usable(seen: list[tuple[str, int, str]]) -> None:
    assert seen, "the agent never answered"
    assert not [s for s in seen if "ACL not found" in s[2]], seen[:5]
    assert all(status == 200 for _, status, _ in seen), seen[:5]
    body = json.loads(seen[-1][2])
    assert body["SecretID"] == SECRET
    assert body["Policies"][0]["Name"] == "global-management"


def test_a_single_server_answers_the_management_token_from_its_first_request(
    tmp_path: Path,
) -> None:
    c = LocalAgentCluster(
        tmp_path / "one", servers=1, clients=0, subnet="127.0.24", extra_config={"acl": ACL}
    )
    c.start_all()
    try:
        seen = _hammer(c.agents["server-1"].ip, 8500, time.monotonic() + 60)
    finally:
        c.stop_all()
    _assert_usable(seen)


def test_ready_1_from_a_dev_agent_means_the_management_token_works(tmp_path: Path) -> None:
    listener = Listener()
    http_port = free_port()
    config: dict[str, Any] = {
        "node_name": "ready-node",
        "ports": {"http": http_port, "dns": free_port(), "server": free_port()},
        "acl": ACL,
    }
    cfg = tmp_path / "agent.json"
    cfg.write_text(json.dumps(config))
    with open(tmp_path / "agent.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshd", "agent", "--dev", "--config-file", str(cfg)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NOTIFY_SOCKET": listener.env_value},
        )
    try:
        seen = _hammer("127.0.0.1", http_port, time.monotonic() + 60)
        _assert_usable(seen)
        listener.wait_for(lambda m: "READY" in m, 30)
        got = _get("127.0.0.1", http_port, "/v1/acl/token/self", SECRET)
        assert got is not None and got[0] == 200
    finally:
        proc.kill()
        proc.wait(10)
        listener.close()


def test_a_client_agent_names_a_leader_only_once_the_management_token_works(
    tmp_path: Path,
) -> None:
    # A client's /v1/status/leader is the servers' Status.Leader RPC, and its
    # tokens are resolved by their ACL.Resolve: both must wait for the leader.
    c = LocalAgentCluster(
        tmp_path / "three", servers=3, clients=1, subnet="127.0.41", extra_config={"acl": ACL}
    )
    c.start_all()
    seen: list[tuple[str, int, str]] = []
    try:
        ip = c.agents["client-1"].ip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            got = _get(ip, 8500, "/v1/status/leader")
            if got is not None and got[0] == 200 and json.loads(got[1]):
                break
            time.sleep(0.001)
        for _ in range(20):
            answer = _get(ip, 8500, "/v1/acl/token/self", SECRET)
            assert answer is not None
            seen.append(("client", *answer))
    finally:
        c.stop_all()
    _assert_usable(seen)
