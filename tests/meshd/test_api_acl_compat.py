"""/v1/acl/* parts real Consul clients use (issue 16 item 9), on a real dev
agent with ACLs on: token expiry, list filters and shapes, templated
policies enforced, auth methods with binding rules, login and logout
(https://developer.hashicorp.com/consul/api-docs/acl)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import consul
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import rsa

from meshd.agent.agent import Agent
from registry import queries as q
from tests.meshd.harness import APIClient, dev_agent
from tests.meshd.jwt_support import jwks, jwks_server, pem_public, sign

pytestmark = pytest.mark.e2e

ROOT = "11111111-2222-4333-8444-555555555555"


@asynccontextmanager
async def acl_agent(
    tmp_path: Path, **acl: Any
) -> AsyncIterator[tuple[Agent, APIClient, consul.Consul]]:
    """A dev agent with ACLs on (default deny), the initial management token
    presented by both clients (ours and py-consul); ``acl`` adds keys."""
    cfg = tmp_path / "acl.json"
    body = {"enabled": True, "default_policy": "deny", "tokens": {"initial_management": ROOT}}
    cfg.write_text(json.dumps({"acl": {**body, **acl}}))
    async with dev_agent(files=[str(cfg)]) as (agent, api):
        server = agent.server
        assert server is not None
        with trio.fail_after(30):
            while q.acl_token_by_secret(server.store, None, ROOT)[1] is None:
                await trio.sleep(0.02)
        api.token = ROOT
        yield agent, api, consul.Consul(host=api.host, port=api.port, token=ROOT)


async def in_thread(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    return await trio.to_thread.run_sync(lambda: fn(*args, **kw))


async def ok(api: APIClient, method: str, path: str, body: Any = None, **kw: Any) -> Any:
    r = await api.request(method, path, body, **kw)
    assert r.status == 200, (method, path, r.status, r.text)
    return r.json()


async def as_token(api: APIClient, secret: str, method: str, path: str, body: Any = None) -> Any:
    return await APIClient(api.host, api.port, secret).request(method, path, body)


# ------------------------------------------------------------------ token expiry


async def test_expiration_ttl_bounds_come_from_config_with_consul_texts(tmp_path: Path) -> None:
    async with acl_agent(
        tmp_path, token_min_expiration_ttl="2s", token_max_expiration_ttl="1h"
    ) as (_a, api, c):
        cases = [
            (
                {"ExpirationTTL": "1s"},
                "ExpirationTime cannot be less than 2s in the future (was 1s)",
            ),
            ({"ExpirationTTL": "2h"}, "ExpirationTime cannot be more than 1h0m0s in the future"),
            ({"ExpirationTTL": "-5s"}, "Token Expiration TTL '-5s' should be > 0"),
            (
                {"ExpirationTTL": "1m", "ExpirationTime": "2030-01-01T00:00:00Z"},
                "Token Expiration TTL and Expiration Time cannot both be set",
            ),
        ]
        for body, text in cases:
            r = await api.put("/v1/acl/token", body)
            assert r.status == 400 and r.text.startswith(text), (body, r.status, r.text)
        assert len(await in_thread(c.acl.token.list)) == 2  # anonymous + initial management
        made = await in_thread(c.acl.token.create, expiration_ttl="30m", description="short")
        assert made["ExpirationTime"] > made["CreateTime"]


async def test_expired_token_stops_working_and_the_leader_reaps_it(tmp_path: Path) -> None:
    async with acl_agent(tmp_path, token_min_expiration_ttl="1s") as (agent, api, c):
        token = await ok(
            api, "PUT", "/v1/acl/token", {"ExpirationTTL": "2s", "Description": "brief"}
        )
        accessor, secret = token["AccessorID"], token["SecretID"]
        r = await as_token(api, secret, "GET", "/v1/acl/token/self")
        assert r.status == 200 and r.json()["AccessorID"] == accessor
        assert accessor in [t["AccessorID"] for t in await in_thread(c.acl.token.list)]
        server = agent.server
        assert server is not None
        with trio.fail_after(30):  # expiry at 2 s, the reaper runs about once a second
            while q.acl_token_get(server.store, None, accessor)[1] is not None:
                await trio.sleep(0.1)
        r = await as_token(api, secret, "GET", "/v1/acl/token/self")
        assert (r.status, r.text) == (403, "ACL not found")
        assert accessor not in [t["AccessorID"] for t in await in_thread(c.acl.token.list)]


# ----------------------------------------------------- list filters and shapes


async def test_token_list_filters_and_list_delete_shapes(tmp_path: Path) -> None:
    async with acl_agent(tmp_path) as (_a, api, c):
        policy = await ok(
            api, "PUT", "/v1/acl/policy", {"Name": "p1", "Rules": 'key "a" { policy = "read" }'}
        )
        role = await ok(api, "PUT", "/v1/acl/role", {"Name": "r1", "Policies": [{"Name": "p1"}]})
        web = await in_thread(c.acl.token.create, service_identities=[{"ServiceName": "web"}])
        tmpl = await in_thread(
            c.acl.token.create, templated_policies=[{"builtin/service": {"Name": "api"}}]
        )
        by_policy = await ok(api, "PUT", "/v1/acl/token", {"Policies": [{"ID": policy["ID"]}]})
        by_role = await ok(api, "PUT", "/v1/acl/token", {"Roles": [{"Name": "r1"}]})

        def ids(tokens: list[dict[str, Any]]) -> list[str]:
            return [t["AccessorID"] for t in tokens]

        assert ids(await in_thread(c.acl.token.list, servicename="web")) == [web["AccessorID"]]
        assert ids(await in_thread(c.acl.token.list, servicename="api")) == [tmpl["AccessorID"]]
        assert ids(await in_thread(c.acl.token.list, policy=policy["ID"])) == [
            by_policy["AccessorID"]
        ]
        assert ids(await in_thread(c.acl.token.list, role=role["ID"])) == [by_role["AccessorID"]]
        assert await in_thread(c.acl.token.list, authmethod="nope") == []
        both = await api.get(f"/v1/acl/tokens?policy={policy['ID']}&servicename=web")
        assert (both.status, both.text) == (
            400,
            "can only filter by one of policy, role, serviceName, or methodName at a time",
        )
        listed = await ok(api, "GET", "/v1/acl/policies")
        assert all("Rules" not in p for p in listed) and "p1" in [p["Name"] for p in listed]
        assert await ok(api, "GET", "/v1/acl/roles") == [
            await ok(api, "GET", f"/v1/acl/role/{role['ID']}")
        ]
        clone = await ok(api, "PUT", f"/v1/acl/token/{tmpl['AccessorID']}/clone", {})
        assert clone["TemplatedPolicies"] == tmpl["TemplatedPolicies"]
        assert await ok(api, "DELETE", f"/v1/acl/role/{role['ID']}") is True
        assert await ok(api, "DELETE", f"/v1/acl/policy/{policy['ID']}") is True


# ------------------------------------------------------------ templated policies


async def test_templated_policies_on_tokens_and_roles_are_enforced(tmp_path: Path) -> None:
    async with acl_agent(tmp_path) as (agent, api, c):
        token = await in_thread(
            c.acl.token.create, templated_policies=[{"builtin/service": {"Name": "web"}}]
        )
        assert token["TemplatedPolicies"] == [
            {"TemplateName": "builtin/service", "TemplateVariables": {"Name": "web"}}
        ]
        secret = token["SecretID"]
        reg = {"Name": "web", "Port": 80}
        r = await as_token(api, secret, "PUT", "/v1/agent/service/register", reg)
        assert r.status == 200, r.text
        r = await as_token(api, secret, "PUT", "/v1/agent/service/register", {"Name": "db"})
        assert r.status == 403 and "service:write" in r.text

        dc = agent.config.datacenter
        role = await ok(
            api,
            "PUT",
            "/v1/acl/role",
            {
                "Name": "dns",
                "TemplatedPolicies": [
                    {"TemplateName": "builtin/dns", "Datacenters": [dc]},
                    {"TemplateName": "builtin/node", "TemplateVariables": {"Name": "n9"}},
                ],
            },
        )
        assert [t["TemplateName"] for t in role["TemplatedPolicies"]] == [
            "builtin/dns",
            "builtin/node",
        ]
        via_role = await ok(api, "PUT", "/v1/acl/token", {"Roles": [{"ID": role["ID"]}]})
        node_reg = {"Node": "n9", "Address": "10.0.0.9"}
        r = await as_token(api, via_role["SecretID"], "PUT", "/v1/catalog/register", node_reg)
        assert r.status == 200, r.text
        r = await as_token(
            api, via_role["SecretID"], "PUT", "/v1/catalog/register", {**node_reg, "Node": "n8"}
        )
        assert r.status == 403

        bad = [
            ({"TemplateName": "builtin/nope"}, "templated policy with an invalid templated name"),
            ({"TemplateName": "builtin/service"}, '"name" is required'),
            ({"TemplateName": "builtin/service", "TemplateVariables": {"Name": "Bad!"}}, "Bad!"),
            ({"TemplateName": "builtin/dns", "Extra": 1}, "TemplatedPolicies[0].Extra"),
        ]
        for item, text in bad:
            r = await api.put("/v1/acl/token", {"TemplatedPolicies": [item]})
            assert r.status == 400 and text in r.text, (item, r.text)


# ------------------------------------------------- auth methods and binding rules


def _jwt_method(public_pem: str, **config: Any) -> dict[str, Any]:
    return {
        "Name": "jwt-1",
        "Type": "jwt",
        "Description": "test",
        "MaxTokenTTL": "10m",
        "Config": {
            "JWTValidationPubKeys": [public_pem],
            "BoundIssuer": "https://issuer.test",
            "BoundAudiences": ["meshd"],
            "ClaimMappings": {"service": "service", "/team/name": "team"},
            "ListClaimMappings": {"groups": "groups"},
            **config,
        },
    }


async def test_auth_method_and_binding_rule_crud_with_consul_shapes(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with acl_agent(tmp_path) as (_a, api, c):
        created = await ok(api, "PUT", "/v1/acl/auth-method", _jwt_method(pem_public(key)))
        assert (created["Name"], created["Type"], created["MaxTokenTTL"]) == (
            "jwt-1",
            "jwt",
            "10m0s",
        )
        plain = {"Name": "plain", "Type": "jwt", "Config": {"JWKSURL": "http://127.0.0.1:1/"}}
        bare = await ok(api, "PUT", "/v1/acl/auth-method", plain)
        assert set(bare) == {"Name", "Type", "Config", "CreateIndex", "ModifyIndex"}
        assert await ok(api, "DELETE", "/v1/acl/auth-method/plain") is True
        listed = await in_thread(c.acl.auth_method.list)
        assert [m["Name"] for m in listed] == ["jwt-1"] and "Config" not in listed[0]
        read = await in_thread(c.acl.auth_method.read, "jwt-1")
        assert read["Config"]["BoundIssuer"] == "https://issuer.test"
        # Consul upserts by name: a second create updates, keeping CreateIndex.
        again = {**_jwt_method(pem_public(key)), "Description": "v2"}
        updated = await ok(api, "PUT", "/v1/acl/auth-method", again)
        assert updated["Description"] == "v2"
        assert updated["CreateIndex"] == created["CreateIndex"] < updated["ModifyIndex"]
        r = await api.put("/v1/acl/auth-method/jwt-1", {**again, "Name": "other"})
        assert (r.status, r.text) == (400, "Auth Method Name in URL and payload do not match")
        errors = [
            ({"Name": "x", "Type": "kubernetes", "Config": {}}, "Type should be one of"),
            ({"Name": "bad name", "Type": "jwt"}, "invalid Name"),
            ({"Name": "x", "Type": "jwt", "Config": {}}, "exactly one of 'JWTValidationPubKeys'"),
            (
                {**_jwt_method(pem_public(key)), "Name": "y", "MaxTokenTTL": "48h"},
                "MaxTokenTTL 48h0m0s cannot be more than 24h0m0s",
            ),
            (
                {"Name": "x", "Type": "jwt", "Config": {"JWTValidationPubKeys": ["junk"]}},
                "public key",
            ),
        ]
        for body, text in errors:
            r = await api.put("/v1/acl/auth-method", body)
            assert r.status == 400 and text in r.text, (body, r.text)

        rule = await in_thread(
            c.acl.binding_rule.create,
            "jwt-1",
            "service",
            "${value.service}",
            selector='value.team == "payments" and "admins" in list.groups',
        )
        assert uuid.UUID(rule["ID"]) and rule["BindName"] == "${value.service}"
        assert [r["ID"] for r in await in_thread(c.acl.binding_rule.list, "jwt-1")] == [rule["ID"]]
        rule_errors = [
            ({"AuthMethod": "missing", "BindType": "service", "BindName": "a"}, "missing"),
            ({"AuthMethod": "jwt-1", "BindType": "group", "BindName": "a"}, "unknown BindType"),
            ({"AuthMethod": "jwt-1", "BindType": "service", "BindName": "${value.x}"}, "BindName"),
            (
                {"AuthMethod": "jwt-1", "BindType": "node", "BindName": "a", "Selector": "=="},
                "Selector is invalid",
            ),
        ]
        for body, text in rule_errors:
            r = await api.put("/v1/acl/binding-rule", body)
            assert r.status == 400 and text in r.text, (body, r.text)
        assert await ok(api, "DELETE", f"/v1/acl/binding-rule/{rule['ID']}") is True
        assert await ok(api, "GET", "/v1/acl/binding-rules") == []
        assert await ok(api, "DELETE", "/v1/acl/auth-method/jwt-1") is True
        assert await ok(api, "GET", "/v1/acl/auth-methods") == []


async def test_login_binds_identities_and_logout_deletes_only_login_tokens(
    tmp_path: Path,
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with acl_agent(tmp_path) as (_a, api, c):
        await ok(api, "PUT", "/v1/acl/auth-method", _jwt_method(pem_public(key)))
        await ok(
            api,
            "PUT",
            "/v1/acl/policy",
            {"Name": "readers", "Rules": 'key_prefix "" { policy = "read" }'},
        )
        selector = 'value.team == "payments"'
        for bind_type, name in (("service", "${value.service}"), ("policy", "readers")):
            body = {"AuthMethod": "jwt-1", "BindType": bind_type, "BindName": name}
            await ok(api, "PUT", "/v1/acl/binding-rule", {**body, "Selector": selector})
        await ok(
            api,
            "PUT",
            "/v1/acl/binding-rule",
            {
                "AuthMethod": "jwt-1",
                "BindType": "templated-policy",
                "BindName": "builtin/node",
                "BindVars": {"Name": "node-${value.service}"},
                "Selector": '"ops" in list.groups',
            },
        )
        now = time.time()
        claims = {
            "iss": "https://issuer.test",
            "aud": ["meshd"],
            "exp": now + 300,
            "nbf": now - 10,
            "service": "billing",
            "team": {"name": "payments"},
            "groups": ["ops", "dev"],
        }
        login = await in_thread(c.acl.login, "jwt-1", sign(key, claims), {"pod": "p1"})
        assert login["AuthMethod"] == "jwt-1" and login["Local"] is True
        assert login["ServiceIdentities"] == [{"ServiceName": "billing"}]
        assert [p["Name"] for p in login["Policies"]] == ["readers"]
        assert login["TemplatedPolicies"] == [
            {"TemplateName": "builtin/node", "TemplateVariables": {"Name": "node-billing"}}
        ]
        assert login["Description"] == 'token created via login: {"pod":"p1"}'
        assert login["ExpirationTime"] > login["CreateTime"]
        listed = await in_thread(c.acl.token.list, authmethod="jwt-1")
        assert [t["AccessorID"] for t in listed] == [login["AccessorID"]]

        r = await as_token(api, ROOT, "POST", "/v1/acl/logout")
        assert (r.status, r.text) == (403, "Permission denied")  # not a login token
        assert await in_thread(c.acl.logout, login["SecretID"]) is True
        r = await as_token(api, login["SecretID"], "GET", "/v1/acl/token/self")
        assert (r.status, r.text) == (403, "ACL not found")

        # Selectors decide: another team binds nothing, so the login is refused.
        other = sign(key, {**claims, "team": {"name": "web"}, "groups": []})
        r = await api.request(
            "POST", "/v1/acl/login", {"AuthMethod": "jwt-1", "BearerToken": other}
        )
        assert (r.status, r.text) == (403, "Permission denied")


async def test_login_checks_signature_issuer_audience_and_times(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with acl_agent(tmp_path) as (_a, api, _c):
        method = _jwt_method(pem_public(key), ClockSkewLeeway="1s", ExpirationLeeway=-1)
        await ok(api, "PUT", "/v1/acl/auth-method", method)
        rule = {"AuthMethod": "jwt-1", "BindType": "service", "BindName": "${value.service}"}
        await ok(api, "PUT", "/v1/acl/binding-rule", rule)
        now = time.time()
        good = {"iss": "https://issuer.test", "aud": "meshd", "service": "web", "exp": now + 60}
        cases = [
            (sign(stranger, good), "failed to verify signature"),
            (sign(key, {**good, "iss": "https://evil.test"}), "invalid issuer"),
            (sign(key, {**good, "aud": "other"}), "invalid audience"),
            (sign(key, {**good, "exp": now - 30}), "token is expired"),
            (sign(key, {**good, "nbf": now + 3600}), "not valid yet"),
            (sign(key, {**good, "service": "Not Valid"}), "Service"),
            ("not-a-jwt", "failed to"),
        ]
        for bearer, text in cases:
            r = await api.request(
                "POST", "/v1/acl/login", {"AuthMethod": "jwt-1", "BearerToken": bearer}
            )
            assert r.status == 403 and text in r.text, (text, r.status, r.text)
        r = await api.request("POST", "/v1/acl/login", {"AuthMethod": "none", "BearerToken": "x"})
        assert r.status == 403 and "ACL not found" in r.text
        # Consul's login ignores X-Consul-Token: a stale one does not get in the way.
        stale = APIClient(api.host, api.port, str(uuid.uuid4()))
        fresh = {"AuthMethod": "jwt-1", "BearerToken": sign(key, good)}
        r = await stale.request("POST", "/v1/acl/login", fresh)
        assert r.status == 200, r.text
        r = await api.request("POST", "/v1/acl/login", {"AuthMethod": "jwt-1"})
        assert r.status == 400 and "BearerToken" in r.text
        # A JWKS file (file:// URL) instead of PEM keys.
        keyset = tmp_path / "jwks.json"
        keyset.write_text(json.dumps(jwks(("k1", key))))
        config = {**method["Config"], "JWKSURL": keyset.as_uri()}
        del config["JWTValidationPubKeys"]
        await ok(api, "PUT", "/v1/acl/auth-method", {**method, "Name": "file", "Config": config})
        await ok(api, "PUT", "/v1/acl/binding-rule", {**rule, "AuthMethod": "file"})
        by_file = {"AuthMethod": "file", "BearerToken": sign(key, good)}
        assert (await ok(api, "POST", "/v1/acl/login", by_file))["AuthMethod"] == "file"
        by_stranger = {"AuthMethod": "file", "BearerToken": sign(stranger, good)}
        r = await api.request("POST", "/v1/acl/login", by_stranger)
        assert r.status == 403 and "failed to verify signature" in r.text
        # nbf inside the leeway (1 s skew + 150 s default not-before leeway) is accepted.
        r = await api.request(
            "POST",
            "/v1/acl/login",
            {"AuthMethod": "jwt-1", "BearerToken": sign(key, {**good, "nbf": now + 100})},
        )
        assert r.status == 200, r.text


# ------------------------------------------- a Kubernetes pod logs in with its JWT


def k8s_service_account_claims(namespace: str, account: str, now: float) -> dict[str, Any]:
    """The claims of a projected service-account token as the kubelet mounts
    it (audience-bound, one-hour expiry)."""
    return {
        "aud": ["meshd"],
        "exp": int(now) + 3600,
        "iat": int(now),
        "nbf": int(now),
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": f"system:serviceaccount:{namespace}:{account}",
        "kubernetes.io": {
            "namespace": namespace,
            "pod": {"name": f"{account}-7d9f8b-x2x9q", "uid": str(uuid.uuid4())},
            "serviceaccount": {"name": account, "uid": str(uuid.uuid4())},
        },
    }


async def test_kubernetes_pod_logs_in_with_projected_token_and_registers_itself(
    tmp_path: Path,
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with jwks_server(jwks(("sa-key-1", key))) as server:
        async with acl_agent(tmp_path) as (_a, api, c):
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
            await ok(api, "PUT", "/v1/acl/auth-method", method)
            await in_thread(
                c.acl.binding_rule.create,
                "kubernetes",
                "service",
                "${value.service_account}",
                selector="value.namespace == default",
            )
            bearer = sign(key, k8s_service_account_claims("default", "payments", time.time()))
            login = await in_thread(c.acl.login, "kubernetes", bearer)
            assert login["ServiceIdentities"] == [{"ServiceName": "payments"}]
            pod = consul.Consul(host=api.host, port=api.port, token=login["SecretID"])
            assert await in_thread(pod.agent.service.register, "payments", port=8443) is True
            _, nodes = await in_thread(c.catalog.service, "payments")
            assert [n["ServicePort"] for n in nodes] == [8443]
            with pytest.raises(consul.ACLPermissionDenied):
                await in_thread(pod.agent.service.register, "billing", port=1)
            # A pod in another namespace matches no binding rule.
            elsewhere = sign(
                key, k8s_service_account_claims("kube-system", "payments", time.time())
            )
            with pytest.raises(consul.ACLPermissionDenied):
                await in_thread(c.acl.login, "kubernetes", elsewhere)
            # A token signed by a key that is not in the cluster's JWKS is refused.
            forged = sign(
                rsa.generate_private_key(public_exponent=65537, key_size=2048),
                k8s_service_account_claims("default", "payments", time.time()),
                kid="sa-key-1",
            )
            with pytest.raises(consul.ACLPermissionDenied):
                await in_thread(c.acl.login, "kubernetes", forged)
            assert await in_thread(pod.acl.logout, login["SecretID"]) is True
            # The JWKS is cached; a rotated key makes the leader fetch it again.
            fetched = server.hits
            again = sign(key, k8s_service_account_claims("default", "payments", time.time()))
            assert (await in_thread(c.acl.login, "kubernetes", again))["AuthMethod"]
            assert server.hits == fetched
            rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            server.document = jwks(("sa-key-2", rotated))
            claims = k8s_service_account_claims("default", "payments", time.time())
            bearer = sign(rotated, claims, kid="sa-key-2")
            body = {"AuthMethod": "kubernetes", "BearerToken": bearer}
            with trio.fail_after(30):  # refetched at most once a second
                while (r := await api.request("POST", "/v1/acl/login", body)).status != 200:
                    assert r.status == 403, r.text
                    await trio.sleep(0.2)
            assert r.json()["ServiceIdentities"] == [{"ServiceName": "payments"}]
            assert server.hits == fetched + 1  # failed attempts did not each refetch


async def test_login_tokens_keep_their_auth_method_and_cannot_be_cloned(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with acl_agent(tmp_path) as (_a, api, c):
        await ok(api, "PUT", "/v1/acl/auth-method", _jwt_method(pem_public(key)))
        rule = {"AuthMethod": "jwt-1", "BindType": "service", "BindName": "${value.service}"}
        await ok(api, "PUT", "/v1/acl/binding-rule", rule)
        claims = {"iss": "https://issuer.test", "aud": "meshd", "service": "web"}
        login = await in_thread(c.acl.login, "jwt-1", sign(key, claims))
        accessor = login["AccessorID"]
        # A read-modify-write (as clients do) keeps the token a login token.
        body = {k: v for k, v in login.items() if k not in ("Hash", "CreateIndex", "ModifyIndex")}
        updated = await ok(api, "PUT", f"/v1/acl/token/{accessor}", {**body, "Description": "d"})
        assert (updated["AuthMethod"], updated["Description"]) == ("jwt-1", "d")
        kept = await ok(
            api, "PUT", f"/v1/acl/token/{accessor}", {"Description": "e", "Local": True}
        )
        assert kept["AuthMethod"] == "jwt-1"
        r = await api.put(f"/v1/acl/token/{accessor}", {"AuthMethod": "other", "Local": True})
        assert (r.status, r.text) == (400, f"Cannot change AuthMethod of {accessor}")
        r = await api.put(f"/v1/acl/token/{accessor}/clone", {})
        assert (r.status, r.text) == (400, "Cannot clone a token created from an auth method")
        r = await api.put("/v1/acl/token", {"AuthMethod": "jwt-1"})
        assert (r.status, r.text) == (400, "AuthMethod field is disallowed outside of login")
        # Deleting the method deletes its binding rules and the tokens it issued.
        assert await in_thread(c.acl.auth_method.delete, "jwt-1") is True
        assert await in_thread(c.acl.binding_rule.list) == []
        r = await as_token(api, login["SecretID"], "GET", "/v1/acl/token/self")
        assert (r.status, r.text) == (403, "ACL not found")
