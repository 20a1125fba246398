"""/v1/acl/* against a real dev agent with ACLs on, asserting Consul's shapes,
status codes and texts (https://developer.hashicorp.com/consul/api-docs/acl)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from meshd.acl import ANONYMOUS_TOKEN_ACCESSOR_ID, GLOBAL_MANAGEMENT_POLICY_ID
from meshd.agent.agent import Agent
from meshd.api import acl as acl_api
from meshd.errors import PermissionDenied
from meshd.http import BadRequest
from registry import queries as q
from tests.meshd.harness import APIClient, dev_agent
from tests.meshd.inproc import InprocClient, inproc_agent

ROOT = "11111111-2222-4333-8444-555555555555"


def _acl_config(tmp_path: Path, initial: str | None, default_policy: str) -> str:
    tokens = {"initial_management": initial} if initial else {}
    cfg = tmp_path / "acl.json"
    cfg.write_text(
        json.dumps({"acl": {"enabled": True, "default_policy": default_policy, "tokens": tokens}})
    )
    return str(cfg)


async def _acl_ready(agent: Agent, initial: str | None) -> None:
    server = agent.server
    assert server is not None
    with trio.fail_after(10):
        while q.acl_token_by_secret(server.store, None, "anonymous")[1] is None or (
            initial and q.acl_token_by_secret(server.store, None, initial)[1] is None
        ):
            await trio.sleep(0.02)


@asynccontextmanager
async def acl_agent(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    initial: str | None = ROOT,
    default_policy: str = "deny",
) -> AsyncIterator[tuple[Agent, APIClient]]:
    """A dev agent with ACLs enabled and a persistent data_dir; the client
    presents ``initial`` (the initial management token) when set."""
    cfg = _acl_config(tmp_path, initial, default_policy)
    data_dir = tmp_path / "data"
    async with dev_agent(files=[cfg], data_dir=str(data_dir)) as (agent, api):
        await _acl_ready(agent, initial)
        api.token = initial or ""
        yield agent, api


@asynccontextmanager
async def acl_inproc(
    tmp_path: Path, *, initial: str | None = ROOT, default_policy: str = "deny"
) -> AsyncIterator[tuple[Agent, InprocClient]]:
    """``acl_agent`` in-process (tests/meshd/inproc.py): in-memory Raft, no
    data_dir; run it under the ``autojump_clock`` fixture."""
    async with inproc_agent(files=[_acl_config(tmp_path, initial, default_policy)]) as (
        agent,
        api,
    ):
        await _acl_ready(agent, initial)
        api.token = initial or ""
        yield agent, api


async def ok(
    api: APIClient | InprocClient, method: str, path: str, body: Any = None, **kw: Any
) -> Any:
    r = await api.request(method, path, body, **kw)
    assert r.status == 200, (method, path, r.status, r.text)
    return r.json()


async def make_policy(api: APIClient | InprocClient, name: str, rules: str = "") -> dict[str, Any]:
    rules = rules or 'key_prefix "" { policy = "read" }'
    policy: dict[str, Any] = await ok(api, "PUT", "/v1/acl/policy", {"Name": name, "Rules": rules})
    return policy


# ---------------------------------------------------------------- bootstrap


@pytest.mark.e2e
async def test_bootstrap_once_then_reset_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with acl_agent(tmp_path, monkeypatch, initial=None) as (_agent, api):
        first = await ok(api, "PUT", "/v1/acl/bootstrap")
        assert first["Description"] == "Bootstrap Token (Global Management)"
        assert first["ID"] == first["SecretID"] and uuid.UUID(first["AccessorID"])
        assert first["Policies"] == [
            {"ID": GLOBAL_MANAGEMENT_POLICY_ID, "Name": "global-management"}
        ]
        assert first["Local"] is False and first["CreateIndex"] == first["ModifyIndex"] > 0
        assert first["Hash"] and datetime.fromisoformat(first["CreateTime"].replace("Z", "+00:00"))

        again = await api.put("/v1/acl/bootstrap")
        reset_index = first["CreateIndex"]
        assert (again.status, again.text) == (
            403,
            f"Permission denied: ACL bootstrap no longer allowed (reset index: {reset_index})",
        )

        reset_file = tmp_path / "data" / "acl-bootstrap-reset"
        reset_file.write_text("999\n")
        wrong = await api.put("/v1/acl/bootstrap")
        assert (wrong.status, wrong.text) == (
            400,
            f"Invalid bootstrap reset index (specified 999, reset index: {reset_index})",
        )
        reset_file.write_text(f"{reset_index}\n")
        second = await ok(api, "PUT", "/v1/acl/bootstrap")
        assert second["AccessorID"] != first["AccessorID"]
        assert not reset_file.exists()
        third = await api.put("/v1/acl/bootstrap")
        assert third.status == 403
        assert third.text.endswith(f"(reset index: {second['CreateIndex']})")

        api.token = second["SecretID"]
        me = await ok(api, "GET", "/v1/acl/token/self")
        assert me["AccessorID"] == second["AccessorID"] and me["SecretID"] == second["SecretID"]


async def test_initial_management_token_spends_the_bootstrap(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with acl_inproc(tmp_path) as (_agent, api):
        me = await ok(api, "GET", "/v1/acl/token/self")
        assert me["SecretID"] == ROOT and me["Description"] == "Initial Management Token"
        assert me["Policies"] == [{"ID": GLOBAL_MANAGEMENT_POLICY_ID, "Name": "global-management"}]
        r = await api.put("/v1/acl/bootstrap")
        assert r.status == 403 and "ACL bootstrap no longer allowed (reset index: " in r.text


async def test_builtin_policy_and_anonymous_token_exist(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with acl_inproc(tmp_path) as (_agent, api):
        gm = await ok(api, "GET", f"/v1/acl/policy/{GLOBAL_MANAGEMENT_POLICY_ID}")
        assert gm["Name"] == "global-management" and 'acl = "write"' in gm["Rules"]
        anon = await ok(api, "GET", f"/v1/acl/token/{ANONYMOUS_TOKEN_ACCESSOR_ID}")
        assert anon["SecretID"] == "anonymous" and anon["Description"] == "Anonymous Token"
        assert "Policies" not in anon
        by_name = await ok(api, "GET", "/v1/acl/policy/name/global-management")
        assert by_name["ID"] == GLOBAL_MANAGEMENT_POLICY_ID


# -------------------------------------------------------------------- tokens


async def test_token_create_read_update_list_delete(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with acl_inproc(tmp_path) as (_agent, api):
        reader = await make_policy(api, "kv-reader")
        created = await ok(
            api,
            "PUT",
            "/v1/acl/token",
            {
                "Description": "web token",
                "Policies": [{"Name": "kv-reader"}],
                "ServiceIdentities": [{"ServiceName": "web"}],
                "NodeIdentities": [{"NodeName": "n1", "Datacenter": "dc1"}],
            },
        )
        accessor = created["AccessorID"]
        assert uuid.UUID(created["SecretID"]) and created["Description"] == "web token"
        assert created["Policies"] == [{"ID": reader["ID"], "Name": "kv-reader"}]
        assert created["ServiceIdentities"] == [{"ServiceName": "web"}]
        assert created["NodeIdentities"] == [{"NodeName": "n1", "Datacenter": "dc1"}]

        read = await ok(api, "GET", f"/v1/acl/token/{accessor}")
        assert read == created

        role = await ok(
            api, "PUT", "/v1/acl/role", {"Name": "ops", "Policies": [{"ID": reader["ID"]}]}
        )
        updated = await ok(
            api,
            "PUT",
            f"/v1/acl/token/{accessor}",
            {"Description": "renamed", "Roles": [{"Name": "ops"}]},
        )
        assert updated["SecretID"] == created["SecretID"]  # kept when not sent
        assert updated["CreateTime"] == created["CreateTime"]
        assert updated["Roles"] == [{"ID": role["ID"], "Name": "ops"}]
        assert "Policies" not in updated and updated["ModifyIndex"] > created["ModifyIndex"]

        listed = await ok(api, "GET", "/v1/acl/tokens")
        assert {t["AccessorID"] for t in listed} >= {accessor, ANONYMOUS_TOKEN_ACCESSOR_ID}
        by_role = await ok(api, "GET", f"/v1/acl/tokens?role={role['ID']}")
        assert [t["AccessorID"] for t in by_role] == [accessor]
        by_policy = await ok(api, "GET", f"/v1/acl/tokens?policy={GLOBAL_MANAGEMENT_POLICY_ID}")
        assert [t["SecretID"] for t in by_policy] == [ROOT]

        assert await ok(api, "DELETE", f"/v1/acl/token/{accessor}") is True
        gone = await api.get(f"/v1/acl/token/{accessor}")
        assert (gone.status, gone.text) == (403, "ACL not found")


async def test_token_write_errors(autojump_clock: MockClock, tmp_path: Path) -> None:
    async with acl_inproc(tmp_path) as (_agent, api):
        cases: list[tuple[str, str, Any, str]] = [
            (
                "PUT",
                "/v1/acl/token",
                {"Policies": [{"Name": "nope"}]},
                'No such ACL policy with name "nope"',
            ),
            ("PUT", "/v1/acl/token", {"Bogus": 1}, 'unknown field "Bogus"'),
            ("PUT", "/v1/acl/token", {"Policies": [{"Nme": "x"}]}, "Policies[0].Nme"),
            (
                "PUT",
                "/v1/acl/token",
                {"ServiceIdentities": [{"ServiceName": "Web!"}]},
                'Service identity "Web!" has an invalid name',
            ),
            (
                "PUT",
                "/v1/acl/token",
                {"SecretID": ROOT},
                "Invalid Token: SecretID is already in use",
            ),
            (
                "PUT",
                "/v1/acl/token",
                {"ExpirationTTL": "10s"},
                "ExpirationTime cannot be less than 1m0s",
            ),
            (
                "PUT",
                f"/v1/acl/token/{ANONYMOUS_TOKEN_ACCESSOR_ID}",
                {"SecretID": str(uuid.uuid4())},
                "Changing a token's SecretID is not permitted",
            ),
            (
                "PUT",
                f"/v1/acl/token/{ANONYMOUS_TOKEN_ACCESSOR_ID}",
                {"AccessorID": str(uuid.uuid4())},
                "Token Accessor ID in URL and payload do not match",
            ),
            (
                "DELETE",
                f"/v1/acl/token/{ANONYMOUS_TOKEN_ACCESSOR_ID}",
                None,
                "Delete operation not permitted on the anonymous token",
            ),
        ]
        for method, path, body, text in cases:
            r = await api.request(method, path, body)
            assert r.status == 400 and text in r.text, (body, r.status, r.text)
        anon = await ok(api, "GET", f"/v1/acl/token/{ANONYMOUS_TOKEN_ACCESSOR_ID}")
        assert anon["SecretID"] == "anonymous"


async def test_explicit_ids_and_expiration(autojump_clock: MockClock, tmp_path: Path) -> None:
    async with acl_inproc(tmp_path) as (_agent, api):
        accessor, secret = str(uuid.uuid4()), str(uuid.uuid4())
        body = {"AccessorID": accessor, "SecretID": secret, "ExpirationTTL": "10m"}
        token = await ok(api, "PUT", "/v1/acl/token", body)
        assert (token["AccessorID"], token["SecretID"]) == (accessor, secret)
        created = datetime.fromisoformat(token["CreateTime"].replace("Z", "+00:00"))
        expires = datetime.fromisoformat(token["ExpirationTime"].replace("Z", "+00:00"))
        assert abs((expires - created).total_seconds() - 600) < 1
        r = await api.put(f"/v1/acl/token/{accessor}", {"ExpirationTTL": "20m"})
        assert r.status == 400
        assert r.text.startswith(f"Cannot change expiration time of {accessor}")
        kept = await ok(api, "PUT", f"/v1/acl/token/{accessor}", {"Description": "d"})
        assert kept["ExpirationTime"] == token["ExpirationTime"]


async def test_clone_copies_links_with_new_ids(autojump_clock: MockClock, tmp_path: Path) -> None:
    async with acl_inproc(tmp_path) as (_agent, api):
        await make_policy(api, "p1")
        src = await ok(
            api, "PUT", "/v1/acl/token", {"Description": "src", "Policies": [{"Name": "p1"}]}
        )
        clone = await ok(
            api, "PUT", f"/v1/acl/token/{src['AccessorID']}/clone", {"Description": "copy"}
        )
        assert clone["AccessorID"] != src["AccessorID"] and clone["SecretID"] != src["SecretID"]
        assert clone["Policies"] == src["Policies"] and clone["Description"] == "copy"
        missing = await api.put(f"/v1/acl/token/{uuid.uuid4()}/clone")
        assert (missing.status, missing.text) == (403, "ACL not found")


# ------------------------------------------------------------------ policies


async def test_policy_crud_and_builtin_protection(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with acl_inproc(tmp_path) as (_agent, api):
        policy = await make_policy(api, "kv-reader")
        assert uuid.UUID(policy["ID"]) and policy["Hash"]
        by_name = await ok(api, "GET", "/v1/acl/policy/name/kv-reader")
        assert by_name == policy
        rules = 'service_prefix "" { policy = "read" }'
        updated = await ok(
            api, "PUT", f"/v1/acl/policy/{policy['ID']}", {"Name": "svc-reader", "Rules": rules}
        )
        assert updated["Rules"] == rules and updated["Hash"] != policy["Hash"]
        listed = await ok(api, "GET", "/v1/acl/policies")
        assert {p["Name"] for p in listed} == {"global-management", "svc-reader"}
        assert all("Rules" not in p for p in listed)

        dup = await api.put("/v1/acl/policy", {"Name": "svc-reader"})
        assert dup.status == 400 and 'A Policy with Name "svc-reader" already exists' in dup.text
        with_id = await api.put("/v1/acl/policy", {"ID": policy["ID"], "Name": "x"})
        assert (with_id.status, with_id.text) == (
            400,
            "Cannot specify the ID when creating a new policy",
        )

        gm = f"/v1/acl/policy/{GLOBAL_MANAGEMENT_POLICY_ID}"
        r = await api.delete(gm)
        assert (r.status, r.text) == (
            400,
            "Delete operation not permitted on the builtin global-management policy",
        )
        r = await api.put(gm, {"Name": "global-management", "Rules": 'acl = "read"'})
        assert (
            r.status == 400
            and "Changing the Rules for the builtin global-management policy" in r.text
        )
        renamed = await ok(
            api, "PUT", gm, {"Name": "root", "Rules": (await ok(api, "GET", gm))["Rules"]}
        )
        assert renamed["Name"] == "root"

        assert await ok(api, "DELETE", f"/v1/acl/policy/{policy['ID']}") is True
        r = await api.get(f"/v1/acl/policy/{policy['ID']}")
        assert (r.status, r.text) == (403, "ACL not found")


async def test_policy_rules_error_names_rules_and_line(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with acl_inproc(tmp_path) as (_agent, api):
        rules = 'key_prefix "" {\n  policy = "read"\n}\nservice "web" {\n  policy = "writ"\n}\n'
        r = await api.put("/v1/acl/policy", {"Name": "bad", "Rules": rules})
        assert r.status == 400
        assert r.text.startswith("Invalid request: Rules: rules: line 5, column "), r.text
        assert "writ" in r.text
        assert (await ok(api, "GET", "/v1/acl/policies"))[-1]["Name"] != "bad"


# --------------------------------------------------------------------- roles


async def test_role_crud_and_name_lookup(autojump_clock: MockClock, tmp_path: Path) -> None:
    async with acl_inproc(tmp_path) as (_agent, api):
        policy = await make_policy(api, "p1")
        role = await ok(
            api,
            "PUT",
            "/v1/acl/role",
            {
                "Name": "ops",
                "Policies": [{"Name": "p1"}],
                "ServiceIdentities": [{"ServiceName": "db", "Datacenters": ["dc1"]}],
            },
        )
        assert role["Policies"] == [{"ID": policy["ID"], "Name": "p1"}]
        assert role["ServiceIdentities"] == [{"ServiceName": "db", "Datacenters": ["dc1"]}]
        assert await ok(api, "GET", "/v1/acl/role/name/ops") == role
        updated = await ok(
            api, "PUT", f"/v1/acl/role/{role['ID']}", {"Name": "ops2", "Description": "d"}
        )
        assert updated["Name"] == "ops2" and "Policies" not in updated
        assert [r["Name"] for r in await ok(api, "GET", "/v1/acl/roles")] == ["ops2"]
        bad = await api.put("/v1/acl/role", {"Name": "r", "Policies": [{"ID": str(uuid.uuid4())}]})
        assert bad.status == 400 and "No such ACL policy with ID" in bad.text
        nameless = await api.put("/v1/acl/role", {"Description": "x"})
        assert (nameless.status, nameless.text) == (400, "Invalid Role: no Name is set")
        assert await ok(api, "DELETE", f"/v1/acl/role/{role['ID']}") is True
        r = await api.get("/v1/acl/role/name/ops2")
        assert (r.status, r.text) == (403, "ACL not found")


# ------------------------------------------------------------ templated policies


async def test_templated_policies_list_read_preview(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with acl_inproc(tmp_path) as (_agent, api):
        listed = await ok(api, "GET", "/v1/acl/templated-policies")
        assert {"builtin/service", "builtin/node"} <= set(listed)
        svc = await ok(api, "GET", "/v1/acl/templated-policy/name/builtin/service")
        assert svc["TemplateName"] == "builtin/service" and '"required": ["name"]' in svc["Schema"]
        preview = await ok(
            api, "POST", "/v1/acl/templated-policy/preview/builtin/service", {"Name": "api"}
        )
        assert 'service "api-sidecar-proxy"' in preview["Rules"]
        assert preview["Name"].startswith("synthetic-policy-")
        node = await ok(
            api, "POST", "/v1/acl/templated-policy/preview/builtin/node", {"Name": "n1"}
        )
        assert 'node "n1"' in node["Rules"]
        r = await api.get("/v1/acl/templated-policy/name/builtin/nope")
        assert (r.status, r.text) == (400, "Invalid templated policy Name: builtin/nope")


# --------------------------------------------------------------- permissions


async def limited_token(api: APIClient | InprocClient, rules: str) -> dict[str, Any]:
    await make_policy(api, "limited", rules)
    token: dict[str, Any] = await ok(
        api, "PUT", "/v1/acl/token", {"Policies": [{"Name": "limited"}]}
    )
    return token


async def test_secret_hidden_from_acl_read_only_token(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with acl_inproc(tmp_path) as (_agent, api):
        reader = await limited_token(api, 'acl = "read"')
        api.token = reader["SecretID"]
        other = await ok(api, "GET", f"/v1/acl/token/{ANONYMOUS_TOKEN_ACCESSOR_ID}")
        assert other["SecretID"] == "<hidden>"
        assert {t["SecretID"] for t in await ok(api, "GET", "/v1/acl/tokens")} == {"<hidden>"}
        me = await ok(api, "GET", "/v1/acl/token/self")
        assert me["SecretID"] == reader["SecretID"]


async def test_write_needs_acl_write(autojump_clock: MockClock, tmp_path: Path) -> None:
    async with acl_inproc(tmp_path) as (_agent, api):
        reader = await limited_token(api, 'acl = "read"')
        api.token = reader["SecretID"]
        r = await api.put("/v1/acl/policy", {"Name": "x"})
        assert (r.status, r.text) == (
            403,
            f"Permission denied: token with AccessorID '{reader['AccessorID']}' "
            "lacks permission 'acl:write'",
        )


async def test_read_needs_acl_read(autojump_clock: MockClock, tmp_path: Path) -> None:
    async with acl_inproc(tmp_path) as (_agent, api):
        nobody = await limited_token(api, 'key_prefix "" { policy = "read" }')
        api.token = nobody["SecretID"]
        r = await api.get("/v1/acl/tokens")
        assert (r.status, r.text) == (
            403,
            f"Permission denied: token with AccessorID '{nobody['AccessorID']}' "
            "lacks permission 'acl:read'",
        )


async def test_server_rechecks_the_token_of_forwarded_writes(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with acl_inproc(tmp_path) as (agent, api):
        reader = await limited_token(api, 'acl = "read"')
        assert agent.server is not None
        args = {"policy": {"id": "", "name": "sneaky"}, "create": True}
        with pytest.raises(PermissionDenied) as info:
            denied = {**args, "auth_token": reader["SecretID"]}
            await agent.server.call_local("ACL.PolicySet", denied)
        assert "lacks permission 'acl:write'" in info.value.message
        made = await agent.server.call_local("ACL.PolicySet", {**args, "auth_token": ROOT})
        assert made["Name"] == "sneaky"


async def test_acl_endpoints_answer_401_when_disabled(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        for method, path in [
            ("PUT", "/v1/acl/bootstrap"),
            ("GET", "/v1/acl/tokens"),
            ("GET", "/v1/acl/token/self"),
            ("PUT", "/v1/acl/policy"),
            ("GET", "/v1/acl/templated-policies"),
        ]:
            r = await api.request(method, path)
            assert (r.status, r.text) == (401, "ACL support disabled"), (method, path)


# ---------------------------------------------------------------- decoding units


def test_token_body_decoding_names_the_field() -> None:
    token, ttl = acl_api.token_from_body(
        {"Policies": [{"Name": "a"}], "ExpirationTTL": 90_000_000_000}
    )
    assert token.policies[0].name == "a" and ttl == 90.0
    with pytest.raises(BadRequest) as info:
        acl_api.token_from_body({"Local": "yes"})
    assert info.value.field == "Local"
    with pytest.raises(BadRequest) as info:
        acl_api.token_from_body({"Namespace": "team"})
    assert info.value.field == "Namespace"
