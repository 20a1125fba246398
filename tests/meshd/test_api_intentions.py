"""/v1/connect/intentions and /v1/agent/connect/authorize against real dev
agents, asserting Consul's shapes and status codes
(https://developer.hashicorp.com/consul/api-docs/connect/intentions,
https://developer.hashicorp.com/consul/api-docs/agent/connect#authorize)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from tests.meshd.harness import APIClient, HTTPResult, dev_agent
from tests.meshd.inproc import InprocClient, inproc_agent

INTENTION_KEYS = {
    "ID",
    "Description",
    "SourceNS",
    "SourceName",
    "DestinationNS",
    "DestinationName",
    "SourceType",
    "Action",
    "Meta",
    "Precedence",
    "CreatedAt",
    "UpdatedAt",
    "CreateIndex",
    "ModifyIndex",
}


async def create(
    api: APIClient | InprocClient, src: str, dst: str, action: str = "allow", **extra: Any
) -> str:
    body = {"SourceName": src, "DestinationName": dst, "Action": action, **extra}
    r = await api.request("POST", "/v1/connect/intentions", body)
    assert r.status == 200, (body, r.status, r.text)
    obj = r.json()
    assert set(obj) == {"ID"} and str(uuid.UUID(obj["ID"])) == obj["ID"]
    ixn_id: str = obj["ID"]
    return ixn_id


async def trust_domain(api: APIClient | InprocClient) -> str:
    """The cluster's trust domain, once the leader has initialised the CA."""
    with trio.fail_after(10):
        while True:
            r = await api.get("/v1/connect/ca/roots")
            if r.status == 200 and r.json().get("TrustDomain"):
                td: str = r.json()["TrustDomain"]
                return td
            await trio.sleep(0.05)


async def authorize(api: APIClient | InprocClient, target: str, uri: str) -> HTTPResult:
    body = {"Target": target, "ClientCertURI": uri, "ClientCertSerial": "01:02"}
    return await api.request("POST", "/v1/agent/connect/authorize", body)


def service_uri(td: str, service: str) -> str:
    return f"spiffe://{td}/ns/default/dc/dc1/svc/{service}"


def policy_file(tmp_path: Path, policy: str) -> list[str]:
    path = tmp_path / "connect.json"
    path.write_text(json.dumps({"connect": {"default_intention_policy": policy}}))
    return [str(path)]


@pytest.mark.e2e
async def test_create_read_update_and_delete_by_id() -> None:
    async with dev_agent() as (_agent, api):
        ixn_id = await create(api, "web", "db", Description="web reads db", Meta={"team": "a"})
        r = await api.get(f"/v1/connect/intentions/{ixn_id}")
        assert r.status == 200
        got = r.json()
        assert set(got) == INTENTION_KEYS
        assert (got["ID"], got["SourceName"], got["DestinationName"]) == (ixn_id, "web", "db")
        assert (got["Action"], got["Precedence"], got["SourceType"]) == ("allow", 9, "consul")
        assert (got["SourceNS"], got["DestinationNS"]) == ("default", "default")
        assert (got["Description"], got["Meta"]) == ("web reads db", {"team": "a"})
        assert got["CreatedAt"].endswith("Z") and got["CreateIndex"] == got["ModifyIndex"] > 0

        body = {"SourceName": "web", "DestinationName": "db", "Action": "deny"}
        r = await api.put(f"/v1/connect/intentions/{ixn_id}", body)
        assert (r.status, r.json()) == (200, {"ID": ixn_id})
        updated = (await api.get(f"/v1/connect/intentions/{ixn_id}")).json()
        assert updated["Action"] == "deny" and updated["Description"] == ""
        assert updated["CreateIndex"] == got["CreateIndex"] < updated["ModifyIndex"]
        assert updated["CreatedAt"] == got["CreatedAt"]

        listed = (await api.get("/v1/connect/intentions")).json()
        assert [i["ID"] for i in listed] == [ixn_id]

        r = await api.delete(f"/v1/connect/intentions/{ixn_id}")
        assert (r.status, r.json()) == (200, True)
        r = await api.get(f"/v1/connect/intentions/{ixn_id}")
        assert (r.status, r.text) == (404, "Intention not found")
        assert (await api.get("/v1/connect/intentions")).json() == []


async def test_unknown_ids_answer_404(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        missing = str(uuid.uuid4())
        r = await api.get(f"/v1/connect/intentions/{missing}")
        assert (r.status, r.text) == (404, "Intention not found")
        r = await api.delete(f"/v1/connect/intentions/{missing}")
        assert r.status == 404 and missing in r.text and "non-existent" in r.text
        body = {"SourceName": "a", "DestinationName": "b", "Action": "allow"}
        r = await api.put(f"/v1/connect/intentions/{missing}", body)
        assert r.status == 404 and "Cannot modify non-existent intention" in r.text
        assert (await api.get("/v1/connect/intentions")).json() == []  # nothing created
        r = await api.get("/v1/connect/intentions/exact?source=a&destination=b")
        assert (r.status, r.text) == (404, "Intention not found")


async def test_exact_upserts_the_pair_and_deletes_idempotently(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        path = "/v1/connect/intentions/exact?source=web&destination=db"
        r = await api.put(path, {"Action": "allow", "Description": "first"})
        assert (r.status, r.json()) == (200, True)
        first = (await api.get(path)).json()
        assert (first["SourceName"], first["DestinationName"]) == ("web", "db")
        assert (first["Action"], first["Description"]) == ("allow", "first")
        # The identity comes from the URL: names in the body are ignored.
        body = {"SourceName": "x", "DestinationName": "y", "Action": "deny"}
        assert (await api.put(path, body)).json() is True
        second = (await api.get(path)).json()
        assert second["ID"] == first["ID"] and second["Action"] == "deny"
        assert second["SourceName"] == "web"
        assert len((await api.get("/v1/connect/intentions")).json()) == 1
        # ns/name forms naming the default namespace are the same pair.
        other = "/v1/connect/intentions/exact?source=default/web&destination=default/default/db"
        assert (await api.get(other)).json()["ID"] == first["ID"]
        r = await api.delete(path)
        assert (r.status, r.json()) == (200, True)
        assert (await api.get(path)).status == 404
        r = await api.delete(path)  # Consul: deleting a missing pair is a no-op
        assert (r.status, r.json()) == (200, True)


async def test_match_orders_by_precedence_exact_before_wildcards(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        ids = {}
        for src, dst in [("*", "*"), ("web", "*"), ("*", "db"), ("web", "db"), ("api", "cache")]:
            ids[src, dst] = await create(api, src, dst)
        r = await api.get("/v1/connect/intentions/match?by=destination&name=db&name=cache")
        assert r.status == 200 and int(r.headers["x-consul-index"]) > 0
        got = r.json()
        assert set(got) == {"db", "cache"}
        pairs = [(i["SourceName"], i["DestinationName"], i["Precedence"]) for i in got["db"]]
        assert pairs == [("web", "db", 9), ("*", "db", 8), ("web", "*", 6), ("*", "*", 5)]
        assert [i["ID"] for i in got["cache"]] == [
            ids["api", "cache"],
            ids["web", "*"],
            ids["*", "*"],
        ]
        r = await api.get("/v1/connect/intentions/match?by=source&name=web")
        by_source = [(i["SourceName"], i["DestinationName"]) for i in r.json()["web"]]
        assert by_source == [("web", "db"), ("*", "db"), ("web", "*"), ("*", "*")]
        listed = (await api.get("/v1/connect/intentions")).json()
        assert [i["Precedence"] for i in listed] == [9, 9, 8, 6, 5]
        r = await api.get("/v1/connect/intentions?filter=" + "SourceName%20%3D%3D%20web")
        assert {(i["SourceName"], i["DestinationName"]) for i in r.json()} == {
            ("web", "db"),
            ("web", "*"),
        }


async def test_check_falls_back_to_deny_by_default(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):

        async def allowed(src: str, dst: str) -> bool:
            r = await api.get(f"/v1/connect/intentions/check?source={src}&destination={dst}")
            assert r.status == 200, r.text
            assert set(r.json()) == {"Allowed"}
            result: bool = r.json()["Allowed"]
            return result

        assert await allowed("web", "db") is False
        await create(api, "web", "db")
        await create(api, "*", "db", "deny")
        assert await allowed("web", "db") is True
        assert await allowed("other", "db") is False
        await create(api, "*", "*", "allow")
        assert await allowed("other", "api") is True
        assert await allowed("other", "db") is False  # *=>db (8) beats *=>* (5)


async def test_check_with_default_policy_allow(autojump_clock: MockClock, tmp_path: Path) -> None:
    async with inproc_agent(files=policy_file(tmp_path, "allow")) as (_agent, api):
        r = await api.get("/v1/connect/intentions/check?source=a&destination=b")
        assert r.json() == {"Allowed": True}
        await create(api, "a", "b", "deny")
        r = await api.get("/v1/connect/intentions/check?source=a&destination=b")
        assert r.json() == {"Allowed": False}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"DestinationName": "db", "Action": "allow"}, "SourceName"),
        ({"SourceName": "web", "Action": "allow"}, "DestinationName"),
        ({"SourceName": "web", "DestinationName": "db", "Action": "maybe"}, "Action"),
        ({"SourceName": "web", "DestinationName": "db"}, "Action"),
        ({"SourceName": "web*", "DestinationName": "db", "Action": "allow"}, "SourceName"),
        ({"SourceName": "web", "DestinationName": "db", "Action": "allow", "Bogus": 1}, "Bogus"),
        ({"SourceName": 7, "DestinationName": "db", "Action": "allow"}, "SourceName"),
        (
            {"SourceName": "web", "DestinationName": "db", "Action": "allow", "SourceNS": "x"},
            "SourceNS",
        ),
        (
            {
                "SourceName": "web",
                "DestinationName": "db",
                "Action": "allow",
                "DestinationPartition": "p",
            },
            "DestinationPartition",
        ),
        (
            {"SourceName": "web", "DestinationName": "db", "Action": "allow", "ID": "abc"},
            "ID",
        ),
        (
            {
                "SourceName": "web",
                "DestinationName": "db",
                "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}],
            },
            "Permissions",
        ),
        (
            {"SourceName": "web", "DestinationName": "db", "Action": "allow", "Meta": {"k": 1}},
            "Meta",
        ),
    ],
)
async def test_create_rejects_invalid_fields_naming_them(
    autojump_clock: MockClock, body: dict[str, Any], field: str
) -> None:
    async with inproc_agent() as (_agent, api):
        r = await api.request("POST", "/v1/connect/intentions", body)
        assert r.status == 400, r.text
        assert field.lower() in r.text.lower()
        assert (await api.get("/v1/connect/intentions")).json() == []


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/connect/intentions/match?name=db", "'by'"),
        ("/v1/connect/intentions/match?by=sideways&name=db", "'by'"),
        ("/v1/connect/intentions/match?by=source", "'name'"),
        ("/v1/connect/intentions/check?destination=db", "'source'"),
        ("/v1/connect/intentions/check?source=web", "'destination'"),
        ("/v1/connect/intentions/exact?source=web", "'destination'"),
        ("/v1/connect/intentions/exact?source=team/web&destination=db", "Namespace"),
        ("/v1/connect/intentions/exact?source=a/b/c/d&destination=db", "source"),
        ("/v1/connect/intentions/not-a-uuid", "uuid"),
    ],
)
async def test_bad_query_parameters_are_400(
    autojump_clock: MockClock, path: str, field: str
) -> None:
    async with inproc_agent() as (_agent, api):
        r = await api.get(path)
        assert r.status == 400, r.text
        assert field in r.text


async def test_duplicate_pair_is_refused_as_consul_does(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        first = await create(api, "web", "db")
        body = {"SourceName": "web", "DestinationName": "db", "Action": "deny"}
        r = await api.request("POST", "/v1/connect/intentions", body)
        # Consul answers 500 and its UI matches on this prefix.
        assert r.status == 500
        assert r.text.startswith("duplicate intention found: ") and first in r.text
        other = await create(api, "web", "cache")
        r = await api.put(f"/v1/connect/intentions/{other}", body)  # move onto the pair
        assert r.status == 500 and r.text.startswith("duplicate intention found: ")
        listed = (await api.get("/v1/connect/intentions")).json()
        assert {(i["DestinationName"], i["Action"]) for i in listed} == {
            ("db", "allow"),
            ("cache", "allow"),
        }


async def test_authorize_by_intention_and_default_with_reasons(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        td = await trust_domain(api)
        web = service_uri(td, "web")
        r = await authorize(api, "db", web)
        assert r.status == 200, r.text
        assert set(r.json()) == {"Authorized", "Reason"}
        assert r.json()["Authorized"] is False
        assert "default_intention_policy" in r.json()["Reason"]
        allow_id = await create(api, "web", "db")
        r = await authorize(api, "db", web)
        assert r.json()["Authorized"] is True
        assert r.json()["Reason"].startswith("Matched L4 intention")
        assert allow_id in r.json()["Reason"]
        deny_id = await create(api, "*", "db", "deny")
        r = await authorize(api, "db", service_uri(td, "billing"))
        assert r.json()["Authorized"] is False and deny_id in r.json()["Reason"]
        r = await authorize(api, "db", service_uri("11111111-2222.consul", "web"))
        assert r.json() == {
            "Authorized": False,
            "Reason": "Identity from an external trust domain: 11111111-2222.consul",
        }


async def test_authorize_default_allow_policy(autojump_clock: MockClock, tmp_path: Path) -> None:
    async with inproc_agent(files=policy_file(tmp_path, "allow")) as (_agent, api):
        td = await trust_domain(api)
        r = await authorize(api, "db", service_uri(td, "web"))
        assert r.json()["Authorized"] is True and "(allow)" in r.json()["Reason"]


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"ClientCertURI": "spiffe://x.consul/ns/default/dc/dc1/svc/web"}, "Target"),
        ({"Target": "db", "ClientCertURI": "https://web"}, "ClientCertURI not a valid"),
        ({"Target": "db"}, "ClientCertURI not a valid Connect identifier"),
        (
            {"Target": "db", "ClientCertURI": "spiffe://x.consul/agent/client/dc/dc1/id/n1"},
            "ClientCertURI not a valid Service identifier",
        ),
        ({"Target": "db", "ClientCertURI": "spiffe://x.consul", "Extra": 1}, "Extra"),
    ],
)
async def test_authorize_rejects_bad_requests(
    autojump_clock: MockClock, body: dict[str, Any], text: str
) -> None:
    async with inproc_agent() as (_agent, api):
        r = await api.request("POST", "/v1/agent/connect/authorize", body)
        assert r.status == 400 and text in r.text, r.text


async def test_authorize_before_the_ca_exists_is_500(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    path = tmp_path / "no-connect.json"
    path.write_text(json.dumps({"connect": {"enabled": False}}))
    async with inproc_agent(files=[str(path)]) as (_agent, api):
        uri = "spiffe://a.consul/ns/default/dc/dc1/svc/web"
        r = await authorize(api, "db", uri)
        assert (r.status, r.text) == (500, "Connect CA not bootstrapped yet")
