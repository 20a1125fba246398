"""/v1/txn against a real dev agent, asserting Consul's documented shapes
(https://developer.hashicorp.com/consul/api-docs/txn)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from trio.testing import MockClock

from meshd.api.txn import decode_ops
from meshd.http import BadRequest, PayloadTooLarge
from registry.commands import TxnKVOp
from registry.errors import ValidationError
from tests.meshd.harness import APIClient, dev_agent
from tests.meshd.inproc import InprocClient, inproc_agent

e2e = pytest.mark.e2e


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def kv_op(verb: str, key: str, value: bytes | None = None, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"Verb": verb, "Key": key, **extra}
    if value is not None:
        op["Value"] = b64(value)
    return {"KV": op}


async def kv_state(api: APIClient | InprocClient) -> list[tuple[str, str | None, int]]:
    r = await api.get("/v1/kv/?recurse")
    if r.status == 404:
        return []
    return [(e["Key"], e["Value"], e["ModifyIndex"]) for e in r.json()]


@e2e
@pytest.mark.e2e
async def test_write_transaction_applies_every_op_and_returns_results() -> None:
    async with dev_agent() as (_agent, api):
        r = await api.put(
            "/v1/txn",
            [
                kv_op("set", "cfg/a", b"1", Flags=7),
                kv_op("set", "cfg/b", b"2"),
                kv_op("get", "cfg/a"),
                kv_op("delete", "cfg/none"),
            ],
        )
        assert r.status == 200, r.text
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        assert set(body) == {"Results", "Errors"} and body["Errors"] is None
        results = body["Results"]
        assert [list(res) for res in results] == [["KV"], ["KV"], ["KV"]]  # delete: no result
        set_a, set_b, get_a = (res["KV"] for res in results)
        assert set_a["Key"] == "cfg/a" and set_a["Flags"] == 7
        assert set_a["Value"] is None  # writes answer without the value, as Consul
        assert set_b["Key"] == "cfg/b" and set_a["ModifyIndex"] == set_b["ModifyIndex"] > 0
        assert base64.b64decode(get_a["Value"]) == b"1"
        state = await kv_state(api)
        assert [(k, v) for k, v, _ in state] == [("cfg/a", b64(b"1")), ("cfg/b", b64(b"2"))]


async def test_a_failing_cas_in_the_middle_rolls_back_everything(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        assert (await api.put("/v1/kv/existing", raw=b"old")).json() is True
        before = await kv_state(api)
        stale = before[0][2] + 1000
        r = await api.put(
            "/v1/txn",
            [
                kv_op("set", "new/one", b"1"),
                kv_op("set", "existing", b"changed"),
                kv_op("cas", "existing", b"cas", Index=stale),
                kv_op("delete", "existing"),
                kv_op("set", "new/two", b"2"),
            ],
        )
        assert r.status == 409, r.text
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        assert body["Results"] is None
        [error] = body["Errors"]
        assert set(error) == {"OpIndex", "What"}
        assert error["OpIndex"] == 2 and "existing" in error["What"]
        assert await kv_state(api) == before  # nothing changed, not even op 0 or 1


async def test_read_only_transaction_is_answered_without_raft(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (agent, api):
        assert (await api.put("/v1/kv/r/1", raw=b"one")).json() is True
        assert (await api.put("/v1/kv/r/2", raw=b"two")).json() is True
        [(_, _, index), _] = await kv_state(api)
        assert agent.server is not None
        applied = agent.server.node.applied_index
        r = await api.put(
            "/v1/txn",
            [
                kv_op("get", "r/1"),
                kv_op("get-tree", "r/"),
                kv_op("check-index", "r/1", Index=index),
                kv_op("check-not-exists", "r/3"),
            ],
        )
        assert r.status == 200, r.text
        assert r.headers["x-consul-knownleader"] == "true"
        assert r.headers["x-consul-lastcontact"].isdigit()
        body = r.json()
        assert body["Errors"] is None
        keys = [res["KV"]["Key"] for res in body["Results"]]
        assert keys == ["r/1", "r/1", "r/2", "r/1"]
        values = [res["KV"]["Value"] for res in body["Results"]]
        assert values[:3] == [b64(b"one"), b64(b"one"), b64(b"two")]
        assert values[3] is None  # check-index answers the entry without its value
        assert agent.server.node.applied_index == applied  # no Raft entry was written

        r = await api.put("/v1/txn", [kv_op("check-index", "r/1", Index=index + 1)])
        assert r.status == 409
        assert r.json()["Results"] is None and r.json()["Errors"][0]["OpIndex"] == 0
        r = await api.put("/v1/txn?stale", [kv_op("get", "missing")])
        assert r.status == 409 and "missing" in r.json()["Errors"][0]["What"]


async def test_locks_in_a_transaction(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (agent, api):
        assert agent.sync is not None
        await agent.sync.in_sync.wait()
        r = await api.put("/v1/session/create", {"NodeChecks": [], "LockDelay": "0s"})
        session = r.json()["ID"]
        r = await api.put(
            "/v1/txn",
            [kv_op("lock", "leader", b"me", Session=session), kv_op("check-session", "leader")],
        )
        assert r.status == 400  # check-session without a Session names the field
        assert "Ops[1].KV.Session" in r.text
        r = await api.put(
            "/v1/txn",
            [
                kv_op("lock", "leader", b"me", Session=session),
                kv_op("check-session", "leader", Session=session),
            ],
        )
        assert r.status == 200, r.text
        assert r.json()["Results"][0]["KV"]["Session"] == session
        assert r.json()["Results"][0]["KV"]["LockIndex"] == 1
        r = await api.put("/v1/txn", [kv_op("unlock", "leader", b"", Session=session)])
        assert r.status == 200
        assert "Session" not in (await api.get("/v1/kv/leader")).json()[0]


async def test_catalog_ops_register_node_service_and_check(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        r = await api.put(
            "/v1/txn",
            [
                {"Node": {"Verb": "set", "Node": {"Node": "tx-node", "Address": "10.9.9.9"}}},
                {
                    "Service": {
                        "Verb": "set",
                        "Node": "tx-node",
                        "Service": {"Service": "api", "Port": 9000, "Tags": ["t"]},
                    }
                },
                {
                    "Check": {
                        "Verb": "set",
                        "Check": {
                            "Node": "tx-node",
                            "CheckID": "api-ok",
                            "Name": "api ok",
                            "Status": "passing",
                            "ServiceID": "api",
                        },
                    }
                },
            ],
        )
        assert r.status == 200, r.text
        node, service, check = r.json()["Results"]
        assert node["Node"]["Node"] == "tx-node" and node["Node"]["Datacenter"] == "dc1"
        assert service["Service"]["ID"] == "api" and service["Service"]["Port"] == 9000
        assert check["Check"]["CheckID"] == "api-ok" and check["Check"]["Status"] == "passing"
        [row] = (await api.get("/v1/health/service/api?passing")).json()
        assert row["Node"]["Address"] == "10.9.9.9" and row["Service"]["Tags"] == ["t"]

        # A read-only catalog get; then a stale delete-cas rolls back.
        r = await api.put("/v1/txn", [{"Node": {"Verb": "get", "Node": {"Node": "tx-node"}}}])
        assert r.status == 200 and r.json()["Results"][0]["Node"]["Address"] == "10.9.9.9"
        r = await api.put(
            "/v1/txn",
            [
                {"Service": {"Verb": "delete", "Node": "tx-node", "Service": {"ID": "api"}}},
                {"Node": {"Verb": "delete-cas", "Node": {"Node": "tx-node", "ModifyIndex": 1}}},
            ],
        )
        assert r.status == 409 and r.json()["Errors"][0]["OpIndex"] == 1
        assert len((await api.get("/v1/health/service/api")).json()) == 1


def _svc_op(**service: Any) -> dict[str, Any]:
    body = {"Service": "api", "Port": 9000, **service}
    return {"Service": {"Verb": "set", "Node": "tx-node", "Service": body}}


async def test_catalog_ops_get_the_registration_field_rules(autojump_clock: MockClock) -> None:
    """Issue 13 item 7: a txn op writes the catalog like /v1/catalog/register,
    so each field has the same type and size rules: 400 naming the field,
    nothing stored."""
    async with inproc_agent() as (_agent, api):
        node = {"Node": {"Verb": "set", "Node": {"Node": "tx-node", "Address": "10.9.9.9"}}}
        check = {"Node": "tx-node", "CheckID": "c", "Name": "c", "Status": "passing"}
        cases: list[tuple[Any, str]] = [
            (_svc_op(Port=70000), "Ops[1].Service.Service.Port"),
            (_svc_op(Port="80"), "Ops[1].Service.Service.Port"),
            (_svc_op(EnableTagOverride="false"), "Ops[1].Service.Service.EnableTagOverride"),
            (_svc_op(Service="x" * 5000), "Ops[1].Service.Service.Service"),
            (_svc_op(Meta={"k": "v" * 600}), "Ops[1].Service.Service.Meta"),
            (_svc_op(Tags=[1]), "Ops[1].Service.Service.Tags"),
            (_svc_op(Tags=["\ud800"]), "Ops[1].Service.Service.Tags"),
            (_svc_op(Weights={"Passing": 2**64}), "Ops[1].Service.Service.Weights.Passing"),
            (_svc_op(Weights={"Passing": 0}), "Ops[1].Service.Service.Weights.Passing"),
            (_svc_op(Address=["x"]), "Ops[1].Service.Service.Address"),
            (_svc_op(Proxy={"Upstreams": {"k": _nest(600)}}), "Ops[1].Service.Service.Proxy"),
            (
                {
                    "service": {
                        "verb": "set",
                        "node": "tx-node",
                        "service": {"service": "a", "port": "1"},
                    }
                },
                "Ops[1].Service.Service.Port",
            ),
            (
                {"Node": {"Verb": "set", "Node": {"Node": "n2", "Address": "a" * 5000}}},
                "Ops[1].Node.Node.Address",
            ),
            (
                {"Node": {"Verb": "set", "Node": {"Node": "n2", "Address": "a", "Meta": {"k": 1}}}},
                "Ops[1].Node.Node.Meta",
            ),
            ({"Check": {"Verb": "set", "Check": {**check, "Notes": "n" * 70_000}}}, "Check.Notes"),
            ({"Check": {"Verb": "set", "Check": {**check, "Name": 5}}}, "Ops[1].Check.Check.Name"),
            ({"Check": {"Verb": "set", "Check": {**check, "ServiceTags": [2]}}}, "ServiceTags"),
        ]
        for op, field in cases:
            r = await api.put("/v1/txn", [node, op])
            assert r.status == 400 and field in r.text, (op, r.status, r.text[:300])
            assert len(r.text) < 1000, r.text[:300]
        assert (await api.get("/v1/catalog/node/tx-node")).json() is None  # nothing stored
        r = await api.put("/v1/txn", [node, _svc_op(EnableTagOverride=False, Meta={"k": "v"})])
        assert r.status == 200, r.text
        [svc] = (await api.get("/v1/catalog/service/api")).json()
        assert svc["ServiceEnableTagOverride"] is False and svc["ServicePort"] == 9000


def _nest(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


async def test_too_many_ops_is_413(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        ops = [kv_op("set", f"k{i}", b"x") for i in range(65)]
        r = await api.put("/v1/txn", ops)
        assert (r.status, r.text) == (413, "Transaction contains too many operations (65 > 64)")
        assert await kv_state(api) == []
        r = await api.put("/v1/txn", ops[:64])
        assert r.status == 200 and len(r.json()["Results"]) == 64


async def test_bad_input_gets_400_naming_the_field_and_changes_nothing(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        assert (await api.put("/v1/kv/keep", raw=b"v")).json() is True
        before = await kv_state(api)
        good = kv_op("set", "x", b"1")
        cases: list[tuple[Any, str]] = [
            ([good, kv_op("explode", "x")], "Ops[1].KV.Verb"),
            ([good, kv_op("set", "")], "Ops[1].KV.Key"),
            ([good, {"KV": {"Verb": "set", "Key": "y", "Value": "***"}}], "base64"),
            ([good, {"KV": {"Verb": "set", "Key": "y", "Flags": -1}}], "Flags"),
            ([good, {"KV": {"Verb": "set", "Key": "y", "Colour": 1}}], 'unknown field "Colour"'),
            ([good, {"Bogus": {}}], 'unknown field "Bogus"'),
            ([good, {}], "Ops[1]"),
            ([good, {"KV": {"Verb": "set", "Key": "y", "Namespace": "ns1"}}], "Namespace"),
            ([good, {"Node": {"Verb": "set", "Node": {"Address": "1.2.3.4"}}}], "Node.Node"),
            ([good, {"Check": {"Verb": "set", "Check": {"CheckID": "c"}}}], "Check.Node"),
            ({"KV": {}}, "Failed to parse body"),
            ("not a list", "Failed to parse body"),
        ]
        for body, needle in cases:
            r = await api.put("/v1/txn", body)
            assert r.status == 400 and needle in r.text, (body, r.status, r.text)
        for raw in (b"", b"[{"):
            r = await api.put("/v1/txn", raw=raw)
            assert r.status == 400 and r.text.startswith("Failed to parse body"), raw
        big = {"KV": {"Verb": "set", "Key": "big", "Value": b64(b"x" * (300 * 1024))}}
        r = await api.put("/v1/txn", [big, big])
        assert (r.status, r.text) == (413, "Request body too large, max size: 524288 bytes")
        r = await api.put("/v1/txn?dc=dc9", [good])
        assert r.status == 400 and "No path to datacenter" in r.text
        assert await kv_state(api) == before
        assert (await api.get("/v1/txn")).status == 405


# -- the body decoder, without an agent ----------------------------------------------------------


def test_decode_ops_builds_typed_commands() -> None:
    body = [
        kv_op("cas", "k", b"v", Flags=3, Index=9),
        {"kv": {"verb": "get-tree", "key": "p/"}},  # Go matches field names case-insensitively
        {"Node": {"Verb": "set", "Node": {"Node": "n", "Address": "a", "CreateIndex": 4}}},
        {"Service": {"Verb": "set", "Node": "n", "Service": {"Service": "s", "Kind": ""}}},
        {"Check": {"Verb": "set", "Check": {"Node": "n", "CheckID": "c"}}},
    ]
    ops = decode_ops(json.dumps(body).encode(), "dc7")
    assert ops[0].kv == TxnKVOp(verb="cas", key="k", value=b"v", flags=3, index=9)
    assert ops[1].kv is not None and (ops[1].kv.verb, ops[1].kv.key) == ("get-tree", "p/")
    assert ops[2].node is not None and ops[2].node.node.datacenter == "dc7"
    assert ops[3].service is not None and ops[3].service.service.id == "s"
    assert ops[4].check is not None and ops[4].check.check.status == "critical"
    assert [op.is_read for op in ops] == [False, True, False, False, False]


@pytest.mark.parametrize(
    ("body", "error", "needle"),
    [
        (b"{}", BadRequest, "Failed to parse body"),
        (b"[1]", BadRequest, "expected a JSON object"),
        (json.dumps([kv_op("nope", "k")]).encode(), ValidationError, "Ops[0].KV.Verb"),
        (json.dumps([kv_op("set", "k")] * 65).encode(), PayloadTooLarge, "65 > 64"),
    ],
)
def test_decode_ops_rejects_bad_bodies(body: bytes, error: type[Exception], needle: str) -> None:
    with pytest.raises(error) as exc:
        decode_ops(body, "dc1")
    assert needle in str(exc.value)
