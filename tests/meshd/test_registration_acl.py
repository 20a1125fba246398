"""Who may register what on an agent under ACLs (issue 13, items 4 and 9).

Reusing an existing service or check ID replaces it, so it needs write on
what it replaces (Consul's vetServiceRegister / vetCheckRegister); a
sidecar needs write on its real name; and a registration the servers
refuse is skipped by anti-entropy instead of stopping the node's sync.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from meshd.acl import GLOBAL_MANAGEMENT_POLICY_ID
from meshd.acl.builtin import GLOBAL_MANAGEMENT_RULES
from meshd.agent.agent import Agent
from meshd.agent.sync import _refusal
from meshd.defs.definitions import parse_service
from meshd.errors import NoLeaderError, RemoteError
from registry.commands import ACLPolicySet, ACLTokenSet
from registry.errors import ValidationError
from registry.records import ACLLink, ACLPolicy, ACLToken
from tests.meshd.harness import APIClient, dev_agent
from tests.meshd.inproc import InprocClient, inproc_agent

Client = APIClient | InprocClient

WEB_RULES = 'service "web" { policy = "write" }\nservice_prefix "" { policy = "read" }\n'


async def _token(agent: Agent, rules: str, policy_id: str | None = None) -> str:
    pid, secret = policy_id or str(uuid.uuid4()), str(uuid.uuid4())
    name = "p-" + pid[:8]
    assert (await agent.write(ACLPolicySet(policies=(ACLPolicy(pid, name, rules=rules),)))).ok
    token = ACLToken(str(uuid.uuid4()), secret, policies=(ACLLink(pid, name),))
    assert (await agent.write(ACLTokenSet(tokens=(token,)))).ok
    return secret


@asynccontextmanager
async def acl_agent(
    tmp_path: Path, *, e2e: bool = False
) -> AsyncIterator[tuple[Agent, Client, Client]]:
    """An ACL dev agent (default deny), a management client and a web-only
    client: in-process (under ``autojump_clock``), or on real sockets with ``e2e``."""
    cfg = tmp_path / "acl.json"
    cfg.write_text(json.dumps({"acl": {"enabled": True, "default_policy": "deny"}}))
    agents = dev_agent(files=[str(cfg)]) if e2e else inproc_agent(files=[str(cfg)])
    async with agents as (agent, api):
        mgmt = ACLPolicy(GLOBAL_MANAGEMENT_POLICY_ID, "global-management", rules="")
        mgmt = replace(mgmt, rules=GLOBAL_MANAGEMENT_RULES)
        assert (await agent.write(ACLPolicySet(policies=(mgmt,)))).ok
        root_secret = str(uuid.uuid4())
        root = ACLToken(
            str(uuid.uuid4()),
            root_secret,
            policies=(ACLLink(GLOBAL_MANAGEMENT_POLICY_ID, "global-management"),),
        )
        assert (await agent.write(ACLTokenSet(tokens=(root,)))).ok
        web = await _token(agent, WEB_RULES)
        if isinstance(api, APIClient):
            yield (
                agent,
                APIClient(api.host, api.port, root_secret),
                APIClient(api.host, api.port, web),
            )
        else:
            yield agent, InprocClient(api.app, root_secret), InprocClient(api.app, web)


async def _ok(client: Client, path: str, body: Any) -> None:
    r = await client.put(path, body)
    assert r.status == 200, (path, r.status, r.text)


@pytest.mark.e2e
async def test_reusing_another_services_id_needs_write_on_that_service(tmp_path: Path) -> None:
    async with acl_agent(tmp_path, e2e=True) as (agent, root, web):
        await _ok(root, "/v1/agent/service/register", {"ID": "api-1", "Name": "api", "Port": 1})
        r = await web.put("/v1/agent/service/register", {"ID": "api-1", "Name": "web", "Port": 2})
        assert r.status == 403 and "service:write" in r.text and '"api"' in r.text
        r = await web.put("/v1/agent/service/deregister/api-1")
        assert r.status == 403
        assert agent.local.services["api-1"].service.service == "api"
        assert agent.local.services["api-1"].service.port == 1
        # Its own ID is fine.
        await _ok(web, "/v1/agent/service/register", {"ID": "web-1", "Name": "web", "Port": 3})


async def test_reusing_another_services_check_id_is_refused(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with acl_agent(tmp_path) as (agent, root, web):
        api = {"Name": "api", "Port": 1, "Check": {"CheckID": "api-alive", "TTL": "30s"}}
        await _ok(root, "/v1/agent/service/register", api)
        await _ok(web, "/v1/agent/service/register", {"Name": "web", "Port": 2})
        check = {"CheckID": "api-alive", "Name": "x", "TTL": "30s", "ServiceID": "web"}
        r = await web.put("/v1/agent/check/register", check)
        assert r.status == 403 and '"api"' in r.text
        body = {"Name": "web", "Port": 2, "Check": {"CheckID": "api-alive", "TTL": "30s"}}
        r = await web.put("/v1/agent/service/register", body)
        assert r.status == 403 and '"api"' in r.text
        assert agent.local.checks["api-alive"].check.service_id == "api"


async def test_a_sidecar_named_after_a_service_the_token_cannot_write_is_refused(
    autojump_clock: MockClock,
    tmp_path: Path,
) -> None:
    async with acl_agent(tmp_path) as (agent, _root, web):
        body = {"Name": "web", "Port": 2, "Connect": {"SidecarService": {"Name": "api"}}}
        r = await web.put("/v1/agent/service/register", body)
        assert r.status == 403 and '"api"' in r.text
        assert agent.local.services == {}
        # A connect proxy needs write on the service it fronts, as on the servers.
        proxy = {
            "Name": "web-proxy",
            "Kind": "connect-proxy",
            "Port": 21000,
            "Proxy": {"DestinationServiceName": "api"},
        }
        r = await web.put("/v1/agent/service/register", proxy)
        assert r.status == 403
        ok = {"Name": "web", "Port": 2, "Connect": {"SidecarService": {}}}
        r = await web.put("/v1/agent/service/register", ok)
        assert r.status == 403  # web-sidecar-proxy is not web: the rule names the real sidecar
        assert '"web-sidecar-proxy"' in r.text


async def _in_catalog(client: APIClient, name: str) -> bool:
    r = await client.get(f"/v1/catalog/service/{name}")
    return r.status == 200 and bool(r.json())


async def test_sync_skips_a_refused_registration_and_keeps_syncing(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with acl_agent(tmp_path) as (agent, root, _web):
        assert agent.sync is not None
        # Registered behind the API's back (as an older agent could have
        # persisted it): a service the servers refuse (a reserved meta key)
        # and one whose value the wire format cannot carry.
        refused = parse_service({"Name": "api", "Port": 1}, node=agent.node_name)
        svc = replace(refused.service, meta={"consul-reserved": "x"})
        agent.local.add_service(replace(refused, service=svc))
        big = parse_service({"Name": "big", "Port": 2}, node=agent.node_name)
        svc = replace(big.service, tagged_addresses={"lan": 2**70})
        agent.local.add_service(replace(big, service=svc))
        await _ok(root, "/v1/agent/service/register", {"Name": "db", "Port": 3})
        with trio.fail_after(20):
            while not await _in_catalog(root, "db"):
                await trio.sleep(0.05)
            while {"service:api", "service:big"} - set(agent.sync.refused):
                await trio.sleep(0.05)
        assert "consul-" in agent.sync.refused["service:api"]
        assert "cannot encode" in agent.sync.refused["service:big"]
        assert not await _in_catalog(root, "api")
        # Later changes still reach the catalog.
        await _ok(root, "/v1/agent/service/register", {"Name": "cache", "Port": 4})
        with trio.fail_after(20):
            while not await _in_catalog(root, "cache"):
                await trio.sleep(0.05)
        # Removing the refused item clears its refusal.
        agent.local.remove_service("api")
        with trio.fail_after(20):
            while "service:api" in agent.sync.refused:
                await trio.sleep(0.05)


@pytest.mark.parametrize(
    "exc,refused",
    [
        (RemoteError("PermissionDenied", "Permission denied: ..."), True),
        (RemoteError("Validation", "bad"), True),
        (ValidationError("Service.Meta", "reserved"), True),
        (OverflowError("Integer value out of range"), True),
        (NoLeaderError(), False),
        (RemoteError("Internal", "raft"), False),
        (OSError("connection refused"), False),
        # A token the servers do not know yet (a rollout still creating it):
        # retried with the pass's backoff, not parked until the next full sync.
        (RemoteError("PermissionDenied", "ACL not found"), False),
    ],
)
def test_which_failures_skip_one_item_and_which_fail_the_pass(
    exc: Exception, refused: bool
) -> None:
    assert (_refusal(exc) is not None) is refused


async def test_catalog_register_reusing_another_services_id_needs_write_on_it(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    """Item 4 through /v1/catalog/register and /v1/txn: a token with
    service:write on web (and node:write on the node) re-registering api's
    instance ID gets 403, as Consul's vetRegisterWithACL; api stays."""
    async with acl_agent(tmp_path) as (agent, root, _web):
        rules = WEB_RULES + 'node "ext" { policy = "write" }\n'
        web = InprocClient(root.app, await _token(agent, rules))  # type: ignore[union-attr]
        api = {"Node": "ext", "Address": "10.0.0.1", "Service": {"ID": "api-1", "Service": "api"}}
        await _ok(root, "/v1/catalog/register", api)
        steal = {**api, "Service": {"ID": "api-1", "Service": "web", "Port": 6666}}
        r = await web.put("/v1/catalog/register", steal)
        assert r.status == 403, (r.status, r.text)
        op = {"Verb": "set", "Node": "ext", "Service": {"ID": "api-1", "Service": "web"}}
        r = await web.put("/v1/txn", [{"Service": op}])
        assert r.status == 403, (r.status, r.text)
        check = {"Node": "ext", "CheckID": "api-c", "Name": "c", "ServiceID": "api-1"}
        r = await web.put("/v1/catalog/register", {**api, "Service": None, "Checks": [check]})
        assert r.status == 403, (r.status, r.text)
        found = (await root.get("/v1/catalog/node/ext")).json()
        assert {sid: s["Service"] for sid, s in found["Services"].items()} == {"api-1": "api"}
        assert (await root.get("/v1/health/node/ext")).json() == []
        # Its own IDs are fine.
        mine = {**api, "Service": {"ID": "web-1", "Service": "web", "Port": 1}}
        await _ok(web, "/v1/catalog/register", mine)


async def test_a_dev_server_refuses_and_skips_the_sync_of_a_service_whose_token_lost_rights(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    """Item 9 on a single (dev) server: its anti-entropy writes go to its own
    Raft, not over RPC, and still act with each service's token, so a
    service stored with a token that has since lost service:write is refused
    and skipped, and the rest keeps syncing."""
    async with acl_agent(tmp_path) as (agent, root, _web):
        assert agent.sync is not None and agent.server is not None
        pid = str(uuid.uuid4())
        token = await _token(agent, WEB_RULES, pid)
        web = InprocClient(root.app, token)  # type: ignore[union-attr]
        await _ok(web, "/v1/agent/service/register", {"Name": "web", "Port": 2})
        with trio.fail_after(20):
            while not await _in_catalog(root, "web"):
                await trio.sleep(0.05)
        # The token loses its rights; the stored service then changes.
        await _token(agent, 'service "other" { policy = "write" }\n', pid)
        defn = agent.local.services["web"]
        agent.local.add_service(replace(defn, service=replace(defn.service, port=99)))
        await _ok(root, "/v1/agent/service/register", {"Name": "db", "Port": 3})
        with trio.fail_after(20):
            while not await _in_catalog(root, "db") or "service:web" not in agent.sync.refused:
                await trio.sleep(0.05)
        assert "ermission denied" in agent.sync.refused["service:web"]
        [row] = (await root.get("/v1/catalog/service/web")).json()
        assert row["ServicePort"] == 2  # the refused change never reached the catalog
        # The agent's registration endpoint refuses it too (the same rule).
        r = await web.put("/v1/agent/service/register", {"Name": "web", "Port": 5})
        assert r.status == 403
