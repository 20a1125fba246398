"""Every server RPC method enforces ACLs over the real RPC port (issue 13).

A real ACL-enabled server (default deny) serves mTLS on a free loopback
port; the caller holds a valid *client* certificate of the same CA, as every
client host does. ``CALLS`` has one row per RPC method, and the first test
enumerates the live server's registry, so a method added without a row (and
a rule in meshd/agent/rpc_rules.py) fails it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from connect import ca as ca_core
from connect.spiffe import ServiceID
from meshd.acl.read_filters import READ_FILTERS
from meshd.agent.agent import Agent
from meshd.agent.reads import READS
from meshd.agent.rpc_rules import READ_RULES, RULES, UnruledRPC
from meshd.agent_tls import create_ca, create_cert, write_pem
from meshd.rpc import RPCClient, RPCError
from raft.tls import client_context
from registry.commands import AutopilotConfigSet, CanarySet, KVRequest, encode_command
from registry.records import AutopilotConfig, Canary, ConfigEntry
from tests.meshd.harness import APIClient, dev_agent

pytestmark = pytest.mark.e2e

MGMT = str(uuid.uuid4())
DENIED = "PermissionDenied"


@dataclass
class World:
    agent: Agent
    api: APIClient  # HTTP with the management token
    client: RPCClient  # a client certificate
    server_client: RPCClient  # a server certificate
    address: str
    tmp: Path

    async def call(self, method: str, args: dict[str, Any], token: str | None = None) -> Any:
        return await self.client.call(self.address, method, args, token=token, timeout=20)

    async def code(self, method: str, args: dict[str, Any], token: str | None = None) -> str:
        """The error code the call answers, or "ok"."""
        try:
            await self.call(method, args, token)
        except RPCError as exc:
            return exc.code
        return "ok"

    async def token_with(self, rules: str) -> str:
        name = f"p-{uuid.uuid4().hex[:8]}"
        policy = await self.api.put("/v1/acl/policy", {"Name": name, "Rules": rules})
        assert policy.status == 200, policy.text
        made = await self.api.put("/v1/acl/token", {"Policies": [{"ID": policy.json()["ID"]}]})
        assert made.status == 200, made.text
        return str(made.json()["SecretID"])

    async def csr(self, service: str) -> str:
        """A CSR for ``service`` in this cluster's trust domain."""
        roots = (await self.api.get("/v1/connect/ca/roots")).json()
        return _csr(service, str(roots["TrustDomain"]))

    async def root_id(self) -> str:
        roots = (await self.api.get("/v1/connect/ca/roots")).json()
        return str(roots["ActiveRootID"])


def _files(tmp: Path, ca: tuple[str, str], kind: str) -> tuple[str, str, str]:
    cert, key = create_cert(ca[0], ca[1], kind=kind)  # type: ignore[arg-type]
    write_pem(tmp / f"{kind}.pem", cert)
    write_pem(tmp / f"{kind}-key.pem", key, private=True)
    return str(tmp / "ca.pem"), str(tmp / f"{kind}.pem"), str(tmp / f"{kind}-key.pem")


async def _has_root(api: APIClient) -> bool:
    resp = await api.get("/v1/connect/ca/roots")
    return resp.status == 200 and bool(resp.json().get("ActiveRootID"))


@asynccontextmanager
async def world(tmp: Path, limits: dict[str, Any] | None = None) -> AsyncIterator[World]:
    ca = create_ca()
    write_pem(tmp / "ca.pem", ca[0])
    ca_file, cert, key = _files(tmp, ca, "server")
    client_files = _files(tmp, ca, "client")
    config = {
        "acl": {
            "enabled": True,
            "default_policy": "deny",
            "tokens": {"initial_management": MGMT, "agent": MGMT},
        },
        "tls": {"internal_rpc": {"ca_file": ca_file, "cert_file": cert, "key_file": key}},
        "limits": limits or {},
    }
    (tmp / "agent.json").write_text(json.dumps(config))
    async with dev_agent(files=[str(tmp / "agent.json")]) as (agent, api):
        api = APIClient(*agent.http_addresses[0], token=MGMT)
        with trio.fail_after(30):  # ACL and CA initialised by the leader
            while not await _has_root(api):
                await trio.sleep(0.05)
            while (await api.get("/v1/acl/token/self")).status != 200:
                await trio.sleep(0.05)
        assert agent.server is not None and agent.server.bound is not None
        address = f"127.0.0.1:{agent.server.bound[1]}"
        async with trio.open_nursery() as nursery:
            name = "server.dc1.consul"
            client = RPCClient(
                nursery, client_context(*client_files), server_name=name, local_id="c"
            )
            server_client = RPCClient(
                nursery, client_context(ca_file, cert, key), server_name=name, local_id="s"
            )
            yield World(agent, api, client, server_client, address, tmp)
            nursery.cancel_scope.cancel()


def _csr(service: str, trust_domain: str = "11111111-2222-3333-4444-555555555555.consul") -> str:
    key = ca_core.generate_private_key("ec", 256)
    return ca_core.make_csr(key, ServiceID(trust_domain, "dc1", service))


def _event(name: str) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "n": name, "p": b"", "nf": "", "sf": "", "tf": "", "lt": 0}


NEW_KEY = ca_core.generate_private_key("ec", 256)
KV_SET = encode_command(KVRequest(op="set", key="forged/key", value=b"1"))


@dataclass(frozen=True)
class Call:
    """One method's call without a token and what it must answer."""

    args: Callable[[], dict[str, Any]]
    expect: str = DENIED  # DENIED | "empty" (answer filtered to nothing) | "open"


CALLS: dict[str, Call] = {
    "Status.Ping": Call(dict, "open"),
    "Status.Leader": Call(dict, "open"),
    "Status.Peers": Call(dict, "open"),
    "ACL.Resolve": Call(lambda: {"secret": ""}, "open"),
    "ACL.Bootstrap": Call(dict, "open"),  # spent by initial_management: refused
    "Registry.Apply": Call(lambda: {"cmd": KV_SET}),
    "Registry.ApplyBatch": Call(lambda: {"cmds": [KV_SET], "fwd": True}),
    "Registry.Read": Call(lambda: {"name": "acl.tokens", "args": {}, "opts": {}}),
    "Raft.ReadIndex": Call(dict),
    "Operator.JoinServer": Call(lambda: {"id": "evil", "address": "127.0.0.1:1"}),
    "Operator.RaftConfiguration": Call(dict),
    "Operator.RaftRemovePeer": Call(lambda: {"id": "nope"}),
    "Operator.RaftTransferLeader": Call(dict),
    "Operator.AutopilotHealth": Call(dict),
    "Operator.ForceLeave": Call(lambda: {"node": "nobody"}),
    "Agent.Members": Call(dict, "empty"),
    "Snapshot.Save": Call(dict),
    "Snapshot.Chunk": Call(lambda: {"id": "x", "offset": 0}),
    "Snapshot.Restore": Call(lambda: {"archive": b"not an archive"}),
    "Snapshot.Upload": Call(lambda: {"id": "", "offset": 0, "size": 1, "data": b"x"}),
    "Event.Fire": Call(lambda: {"event": _event("deploy")}),
    "Event.List": Call(dict, "empty"),
    "Node.Heartbeat": Call(lambda: {"node": "made-up-node"}),
    "Node.HeartbeatBatch": Call(lambda: {"nodes": ["made-up-node"]}),
    "Coordinate.Update": Call(
        lambda: {"node": "made-up-node", "coord": {"Vec": [0.0] * 8}, "segment": ""}
    ),
    "ACL.TokenSet": Call(lambda: {"token": {"Description": "x"}, "create": True}),
    "ACL.TokenClone": Call(lambda: {"id": "00000000-0000-0000-0000-000000000002"}),
    "ACL.TokenDelete": Call(lambda: {"id": "00000000-0000-0000-0000-000000000002"}),
    "ACL.PolicySet": Call(lambda: {"policy": {"id": "", "name": "evil"}, "create": True}),
    "ACL.PolicyDelete": Call(lambda: {"id": "00000000-0000-0000-0000-000000000001"}),
    "ACL.RoleSet": Call(lambda: {"role": {"id": "", "name": "evil"}, "create": True}),
    "ACL.RoleDelete": Call(lambda: {"id": str(uuid.uuid4())}),
    "ACL.AuthMethodSet": Call(lambda: {"method": {"Name": "evil", "Type": "jwt"}}),
    "ACL.AuthMethodDelete": Call(lambda: {"name": "evil"}),
    "ACL.BindingRuleSet": Call(lambda: {"rule": {"AuthMethod": "evil"}}),
    "ACL.BindingRuleDelete": Call(lambda: {"id": str(uuid.uuid4())}),
    "ACL.Login": Call(lambda: {"auth_method": "evil", "bearer_token": "x"}, "open"),
    "ACL.Logout": Call(lambda: {"auth_token": MGMT}, "open"),  # not a login token: refused
    "Session.Renew": Call(lambda: {"id": str(uuid.uuid4())}),
    "ConnectCA.Sign": Call(lambda: {"csr": _csr("web"), "service": "web"}),
    "ConnectCA.ConfigurationSet": Call(
        lambda: {"provider": "consul", "config": {"PrivateKey": NEW_KEY}}
    ),
}


def _no_secret(value: Any) -> None:
    text = json.dumps(value, default=repr)
    assert MGMT not in text and "SecretID" not in text, text[:300]


async def test_every_rpc_method_refuses_a_client_certificate_without_a_token(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        assert w.agent.server is not None
        methods = w.agent.server.rpc.methods()
        assert set(methods) == set(CALLS), "each RPC method needs a row here and in RULES"
        await w.api.put("/v1/event/fire/deploy")  # something Event.List could leak
        root = await w.root_id()
        for method in methods:
            row = CALLS[method]
            try:
                answer = await w.call(method, row.args())
            except RPCError as exc:
                if row.expect == "open":
                    assert exc.code != "UnknownMethod", (method, exc)
                    _no_secret(exc.message)
                    continue
                assert (method, exc.code) == (method, DENIED), exc
                continue
            assert row.expect != DENIED, f"{method} answered {answer!r} without a token"
            _no_secret(answer)
            if row.expect == "empty":
                events = answer.get("events") if isinstance(answer, dict) else answer
                assert events == [], (method, answer)
        # Nothing the calls tried took effect.
        assert (await w.api.get("/v1/kv/forged/key")).status == 404
        assert await w.root_id() == root
        members = (await w.api.get("/v1/catalog/nodes")).json()
        assert [n["Node"] for n in members] == ["dev-node"]


async def test_every_registry_read_is_refused_or_filtered_to_nothing(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.api.put("/v1/kv/app/secret", "v")
        assert set(READS) <= set(READ_FILTERS) | set(READ_RULES), "a read without a rule"
        args = {
            "id": "x",
            "secret": MGMT,  # reading the management token by its secret
            "name": "global-management",
            "key": "app/secret",
            "prefix": "",
            "service": "web",
            "node": "dev-node",
            "source": "web",
            "destination": "api",
            "names": ["api"],
            "by": "destination",
            "ops": [],
            "state": "any",
            "default_allow": True,
            "source_ns": "default",
            "datacenter": "dc1",
        }
        for name in sorted(READS):
            read = {"name": name, "args": args, "opts": {"c": "stale"}}
            try:
                answer = await w.call("Registry.Read", read)
            except RPCError as exc:
                if name == "ca.roots":
                    raise
                assert exc.code == DENIED, (name, exc)
                continue
            value = answer["r"]
            _no_secret(value)
            if name != "ca.roots":
                assert value in (None, [], {}, {"Results": None, "Errors": None}) or name in (
                    "intentions.match",
                    "txn.read",
                ), (name, value)
            assert "app/secret" not in json.dumps(value, default=repr), name


async def test_forwarded_and_server_only_calls_need_a_server_certificate(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        fwd = {"name": "acl.tokens", "args": {}, "opts": {}, "fwd": True}
        assert await w.code("Registry.Read", fwd) == DENIED
        assert await w.code("Registry.Apply", {"cmd": KV_SET, "fwd": True}, MGMT) == DENIED
        assert await w.code("Raft.ReadIndex", {}, MGMT) == DENIED
        # A server (Raft peer) may: forwarding and read-index rounds keep working.
        answer = await w.server_client.call(w.address, "Registry.Read", fwd)
        assert any(t["SecretID"] == MGMT for t in answer["r"])
        index = await w.server_client.call(w.address, "Raft.ReadIndex", {})
        assert index["index"] > 0
        # A server's own heartbeat needs no token; a client's does.
        beat = {"node": "server-node"}
        assert (await w.server_client.call(w.address, "Node.Heartbeat", beat))["ok"] is True
        assert await w.code("Node.Heartbeat", beat) == DENIED
        # A follower's gathered heartbeats: servers only, whatever the token.
        batch = {"nodes": ["server-node"], "fwd": True}
        assert await w.code("Node.HeartbeatBatch", batch, MGMT) == DENIED
        assert (await w.server_client.call(w.address, "Node.HeartbeatBatch", batch))["ok"] is True
        # A follower's forwarded writes: servers only, even with the management
        # token (each write's rule was enforced by the forwarding server).
        writes = {"cmds": [KV_SET], "fwd": True}
        assert await w.code("Registry.ApplyBatch", writes, MGMT) == DENIED
        assert await w.code("Registry.ApplyBatch", {"cmds": [KV_SET]}, MGMT) == DENIED
        answer = await w.server_client.call(w.address, "Registry.ApplyBatch", writes)
        assert answer["results"][0]["w"]["ok"] is True


async def test_calls_with_a_sufficient_token_pass_the_rule(tmp_path: Path) -> None:
    """With the management token no call is refused for permissions (some
    still fail on their made-up arguments); narrow tokens get exactly theirs."""
    async with world(tmp_path) as w:
        assert w.agent.server is not None
        for method in w.agent.server.rpc.methods():
            if method in (
                "ConnectCA.ConfigurationSet",
                "Raft.ReadIndex",
                "Operator.JoinServer",
                "Node.HeartbeatBatch",
                "Registry.ApplyBatch",
            ):
                continue  # a root rotation, and server-only calls (tested above)
            if CALLS[method].expect == "open":
                continue  # no rule to pass (ACL.Bootstrap is refused as spent)
            assert await w.code(method, CALLS[method].args(), MGMT) != DENIED, method
        assert (await w.api.get("/v1/kv/forged/key")).status == 200
        node_writer = await w.token_with('node "n1" { policy = "write" }')
        assert await w.code("Node.Heartbeat", {"node": "n1"}, node_writer) == "ok"
        assert await w.code("Node.Heartbeat", {"node": "n2"}, node_writer) == DENIED
        update = {"node": "n1", "segment": "", "coord": {"Vec": [0.0] * 8}}
        assert await w.code("Coordinate.Update", update, node_writer) == "ok"
        other = {**update, "node": "n2"}
        assert await w.code("Coordinate.Update", other, node_writer) == DENIED
        for coord in ({"Vec": ["x"] * 8}, "not an object", {"Vec": [float("nan")] * 8}):
            bad = {**update, "coord": coord}
            assert await w.code("Coordinate.Update", bad, node_writer) == "InvalidArgument"
        kv_reader = await w.token_with('key_prefix "app/" { policy = "read" }')
        await w.api.put("/v1/kv/app/a", "1")
        await w.api.put("/v1/kv/other/b", "2")
        read = {"name": "kv.list", "args": {"key": ""}, "opts": {}}
        listed = await w.call("Registry.Read", read, kv_reader)
        assert [e["Key"] for e in listed["r"]] == ["app/a"] and listed["f"] is True
        assert await w.code("Registry.Apply", {"cmd": KV_SET}, kv_reader) == DENIED
        assert await w.code("Registry.Apply", {"cmd": b"garbage"}, MGMT) == "InvalidArgument"
        no_state = {"name": "health.state", "args": {}, "opts": {}}
        assert await w.code("Registry.Read", no_state, MGMT) == "InvalidArgument"
        operator = await w.token_with('operator = "read"')
        conf = await w.call("Operator.RaftConfiguration", {}, operator)
        assert conf["Servers"][0]["Node"] == "dev-node"
        assert await w.code("Operator.RaftRemovePeer", {"id": "x"}, operator) == DENIED
        eventer = await w.token_with('event "deploy" { policy = "write" }')
        assert await w.code("Event.Fire", {"event": _event("deploy")}, eventer) == "ok"
        assert await w.code("Event.Fire", {"event": _event("other")}, eventer) == DENIED
        made = await w.api.put("/v1/session/create", {"Node": "dev-node", "TTL": "30s"})
        renew = {"id": made.json()["ID"]}
        sessions = await w.token_with('session "dev-node" { policy = "write" }')
        assert await w.call("Session.Renew", renew, sessions) == {"found": True}
        assert await w.code("Session.Renew", renew, kv_reader) == DENIED
        web = await w.token_with('service "web" { policy = "write" }')
        leaf = await w.call("ConnectCA.Sign", {"csr": await w.csr("web"), "service": "web"}, web)
        assert leaf["Service"] == "web"
        assert await w.code("ConnectCA.Sign", {"csr": await w.csr("api")}, web) == DENIED
        assert await w.code("ConnectCA.Sign", {"csr": await w.csr("api")}) == DENIED


async def test_token_secrets_are_redacted_at_the_server_without_acl_write(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        reader = await w.token_with('acl = "read"')
        tokens = {"name": "acl.tokens", "args": {}, "opts": {}}
        seen = (await w.call("Registry.Read", tokens, reader))["r"]
        assert len(seen) >= 3 and {t["SecretID"] for t in seen} == {"<hidden>"}
        one = {"name": "acl.token_self", "args": {"secret": MGMT}, "opts": {}}
        assert (await w.call("Registry.Read", one, reader))["r"]["SecretID"] == "<hidden>"
        # Its own token (it knows the secret) and a management token see secrets.
        mine = {"name": "acl.token_self", "args": {"secret": reader}, "opts": {}}
        assert (await w.call("Registry.Read", mine, reader))["r"]["SecretID"] == reader
        full = (await w.call("Registry.Read", tokens, MGMT))["r"]
        assert MGMT in {t["SecretID"] for t in full}
        assert (
            await w.code("Registry.Read", tokens, await w.token_with('key "" { policy = "read" }'))
            == DENIED
        )


async def test_ca_configuration_set_needs_operator_write(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        root = await w.root_id()
        args = {"provider": "consul", "config": {"PrivateKey": NEW_KEY}}
        reader = await w.token_with('operator = "read"')
        for token, code in ((None, DENIED), (reader, DENIED), ("not-a-token", "ACLNotFound")):
            with pytest.raises(RPCError) as info:
                await w.call("ConnectCA.ConfigurationSet", args, token)
            assert info.value.code == code
            assert await w.root_id() == root
        writer = await w.token_with('operator = "write"')
        assert (await w.call("ConnectCA.ConfigurationSet", args, writer))["rotated"] is True
        assert await w.root_id() != root


async def test_autopilot_configuration_set_needs_operator_write(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        cmd = encode_command(AutopilotConfigSet(config=AutopilotConfig(min_quorum=3)))
        reader = await w.token_with('operator = "read"')
        for token in (None, reader):
            with pytest.raises(RPCError) as info:
                await w.call("Registry.Apply", {"cmd": cmd}, token)
            assert info.value.code == DENIED
        read = {"name": "operator.autopilot_config", "args": {}, "opts": {"c": "stale"}}
        assert (await w.call("Registry.Read", read, reader))["r"]["MinQuorum"] == 0
        writer = await w.token_with('operator = "write"')
        await w.call("Registry.Apply", {"cmd": cmd}, writer)
        assert (await w.call("Registry.Read", read, reader))["r"]["MinQuorum"] == 3


async def test_canary_set_needs_service_write_as_its_http_endpoint(tmp_path: Path) -> None:
    """A client agent forwards POST /v1/internal/canary/:service as a
    CanarySet; the server checks the endpoint's rule, service:write on the
    service (and the splitter's own config entry write)."""
    async with world(tmp_path) as w:
        splits = [{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}]
        cmd = encode_command(
            CanarySet(
                canary=Canary("cany", "v1", "v2", (10.0, 100.0)),
                splitter=ConfigEntry("service-splitter", "cany", {"Splits": splits}),
            )
        )
        other = await w.token_with('service "web" { policy = "write" }')
        reader = await w.token_with('service "cany" { policy = "read" }')
        for token in (None, other, reader):
            assert await w.code("Registry.Apply", {"cmd": cmd}, token) == DENIED
        read = {"name": "canary.get", "args": {"service": "cany"}, "opts": {"c": "stale"}}
        assert (await w.call("Registry.Read", read, reader))["r"] is None  # nothing stored
        writer = await w.token_with('service "cany" { policy = "write" }')
        assert await w.code("Registry.Apply", {"cmd": cmd}, writer) == "ok"
        assert (await w.call("Registry.Read", read, reader))["r"]["Service"] == "cany"


async def test_register_rpc_refuses_a_method_without_a_rule(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        assert w.agent.server is not None

        async def handler(args: Any, peer: Any) -> Any:
            return "leak"

        with pytest.raises(UnruledRPC, match=r"Debug\.Dump"):
            w.agent.server.register_rpc("Debug.Dump", handler)
        assert "Debug.Dump" not in w.agent.server.rpc.methods()
        assert set(w.agent.server.rpc.methods()) <= set(RULES)
