"""/v1/session and KV locks against a real dev agent, asserting Consul's
documented shapes (https://developer.hashicorp.com/consul/api-docs/session)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from meshd.api.session import create_request, lock_delay_seconds, node_checks
from meshd.http import BadRequest
from tests.meshd.harness import APIClient, dev_agent
from tests.meshd.inproc import InprocClient, inproc_agent

e2e = pytest.mark.e2e

SESSION_KEYS = {
    "ID",
    "Name",
    "Node",
    "LockDelay",
    "Behavior",
    "TTL",
    "NodeChecks",
    "ServiceChecks",
    "CreateIndex",
    "ModifyIndex",
}


@asynccontextmanager
async def agent_api(*, e2e: bool = False) -> AsyncIterator[APIClient | InprocClient]:
    """A dev agent whose own node is in the catalog (sessions need it):
    in-process (run under ``autojump_clock``), or on real sockets with ``e2e``."""
    agents = dev_agent() if e2e else inproc_agent()
    async with agents as (agent, api):
        assert agent.sync is not None
        with trio.fail_after(10):
            await agent.sync.in_sync.wait()
        yield api


async def create(api: APIClient | InprocClient, body: Any = None, **kw: Any) -> str:
    r = await api.put("/v1/session/create", body, **kw)
    assert r.status == 200, (body, r.status, r.text)
    obj = r.json()
    assert set(obj) == {"ID"}
    assert str(uuid.UUID(obj["ID"])) == obj["ID"]
    session_id: str = obj["ID"]
    return session_id


async def info(api: APIClient | InprocClient, session_id: str) -> list[dict[str, Any]]:
    r = await api.get(f"/v1/session/info/{session_id}")
    assert r.status == 200
    sessions: list[dict[str, Any]] = r.json()
    return sessions


async def register_serf_health(api: APIClient | InprocClient, node: str = "dev-node") -> None:
    """What Consul's leader does for every member: a passing serfHealth check."""
    r = await api.put(
        "/v1/catalog/register",
        {
            "Node": node,
            "Address": "127.0.0.1",
            "SkipNodeUpdate": True,
            "Check": {"CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing"},
        },
    )
    assert r.status == 200, r.text


async def kv(api: APIClient | InprocClient, key: str) -> dict[str, Any] | None:
    r = await api.get(f"/v1/kv/{key}")
    if r.status == 404:
        return None
    entry: dict[str, Any] = r.json()[0]
    return entry


async def acquire(
    api: APIClient | InprocClient, key: str, session_id: str, value: bytes = b""
) -> Any:
    r = await api.put(f"/v1/kv/{key}?acquire={session_id}", raw=value)
    assert r.status == 200, r.text
    return r.json()


async def release(api: APIClient | InprocClient, key: str, session_id: str) -> Any:
    r = await api.put(f"/v1/kv/{key}?release={session_id}", raw=b"")
    assert r.status == 200, r.text
    return r.json()


NO_CHECKS: dict[str, Any] = {"NodeChecks": []}


@e2e
async def test_create_with_defaults_binds_this_node_and_serf_health() -> None:
    async with agent_api(e2e=True) as api:
        await register_serf_health(api)
        bodies: list[dict[str, Any] | None] = [None, {}]  # no body, an empty object
        for body in bodies:
            session_id = await create(api, body)
            r = await api.get(f"/v1/session/info/{session_id}")
            assert int(r.headers["x-consul-index"]) > 0
            assert r.headers["x-consul-knownleader"] == "true"
            [s] = r.json()
            assert set(s) == SESSION_KEYS
            assert s["ID"] == session_id and s["Node"] == "dev-node" and s["Name"] == ""
            assert s["NodeChecks"] == ["serfHealth"]
            assert s["LockDelay"] == 15_000_000_000  # nanoseconds, like Go's Duration
            assert s["Behavior"] == "release" and s["TTL"] == ""
            assert s["CreateIndex"] == s["ModifyIndex"] > 0


async def test_create_with_every_option(autojump_clock: MockClock) -> None:
    async with agent_api() as api:
        session_id = await create(
            api,
            {
                "Name": "leader-election",
                "NodeChecks": [],
                "LockDelay": "5s",
                "Behavior": "delete",
                "TTL": "30s",
            },
        )
        [s] = await info(api, session_id)
        assert s["Name"] == "leader-election" and s["NodeChecks"] == []
        assert s["LockDelay"] == 5_000_000_000
        assert s["Behavior"] == "delete" and s["TTL"] == "30s"
        # Consul reads a small number as seconds and a large one as nanoseconds;
        # field names match case-insensitively as in Go.
        for lock_delay, want in ((7, 7e9), (2_000_000_000, 2e9), ("15000ms", 15e9), ("0s", 0)):
            sid = await create(api, {"nodechecks": [], "LockDelay": lock_delay})
            assert (await info(api, sid))[0]["LockDelay"] == want, lock_delay
        # The pre-1.7 "Checks": [] also removes the default serfHealth.
        sid = await create(api, {"Checks": []})
        assert (await info(api, sid))[0]["NodeChecks"] == []


async def test_list_node_info_destroy_and_renew(autojump_clock: MockClock) -> None:
    async with agent_api() as api:
        first = await create(api, {**NO_CHECKS, "Name": "a"})
        second = await create(api, {**NO_CHECKS, "Name": "b"})
        r = await api.get("/v1/session/list")
        assert r.status == 200 and int(r.headers["x-consul-index"]) > 0
        assert sorted(s["ID"] for s in r.json()) == sorted([first, second])
        assert all(set(s) == SESSION_KEYS for s in r.json())
        r = await api.get("/v1/session/node/dev-node")
        assert sorted(s["Name"] for s in r.json()) == ["a", "b"]
        assert (await api.get("/v1/session/node/other")).json() == []
        assert (await api.get("/v1/session/list?filter=Name%20%3D%3D%20%22b%22")).json()[0][
            "ID"
        ] == second

        r = await api.put(f"/v1/session/renew/{first}")
        assert r.status == 200
        [renewed] = r.json()
        assert renewed["ID"] == first and set(renewed) == SESSION_KEYS

        r = await api.put(f"/v1/session/destroy/{first}")
        assert (r.status, r.json()) == (200, True)
        assert await info(api, first) == []
        assert [s["ID"] for s in (await api.get("/v1/session/list")).json()] == [second]
        # Destroying an unknown session is not an error in Consul.
        assert (await api.put(f"/v1/session/destroy/{first}")).json() is True
        r = await api.put(f"/v1/session/renew/{first}")
        assert (r.status, r.text) == (404, f"Session id '{first}' not found")
        assert await info(api, str(uuid.uuid4())) == []


async def test_bad_input_gets_400_naming_the_field_and_creates_nothing(
    autojump_clock: MockClock,
) -> None:
    async with agent_api() as api:
        cases: list[tuple[Any, str]] = [
            ({**NO_CHECKS, "Behavior": "explode"}, "Behavior"),
            ({**NO_CHECKS, "TTL": "5s"}, "TTL"),
            ({**NO_CHECKS, "TTL": "25h"}, "TTL"),
            ({**NO_CHECKS, "TTL": "soon"}, "TTL"),
            ({**NO_CHECKS, "LockDelay": "forever"}, "LockDelay"),
            ({**NO_CHECKS, "LockDelay": "61s"}, "LockDelay"),
            ({**NO_CHECKS, "LockDelay": True}, "LockDelay"),
            ({**NO_CHECKS, "Name": 5}, "Name"),
            ({"NodeChecks": "serfHealth"}, "NodeChecks"),
            ({"NodeChecks": [""]}, "NodeChecks"),
            ({**NO_CHECKS, "ServiceChecks": [{"ID": "x", "Bogus": 1}]}, "Bogus"),
            ({**NO_CHECKS, "Namespace": "team-a"}, "Namespace"),
            ({**NO_CHECKS, "Colour": "blue"}, 'unknown field "Colour"'),
            ([1, 2], "expected a JSON object"),
        ]
        for body, needle in cases:
            r = await api.put("/v1/session/create", body)
            assert r.status == 400 and needle in r.text, (body, r.status, r.text)
        r = await api.put("/v1/session/create", raw=b"{nope")
        assert r.status == 400 and "Request decode failed" in r.text
        r = await api.put("/v1/session/create?dc=dc9", NO_CHECKS)
        assert r.status == 400 and "No path to datacenter" in r.text
        for path in ("/v1/session/destroy/", "/v1/session/renew/"):
            r = await api.put(path)
            assert (r.status, r.text) == (400, "Missing session")
        r = await api.get("/v1/session/info/")
        assert (r.status, r.text) == (400, "Missing session")
        r = await api.get("/v1/session/node/")
        assert (r.status, r.text) == (400, "Missing node name")
        assert (await api.get("/v1/session/list")).json() == []


async def test_create_refused_by_state_answers_500_like_consul(autojump_clock: MockClock) -> None:
    async with agent_api() as api:
        r = await api.put("/v1/session/create", {**NO_CHECKS, "Node": "ghost"})
        assert r.status == 500 and "Missing node registration" in r.text
        r = await api.put("/v1/session/create", {"NodeChecks": ["no-such-check"]})
        assert r.status == 500 and "no-such-check" in r.text
        r = await api.put(
            "/v1/catalog/register",
            {
                "Node": "dev-node",
                "Address": "127.0.0.1",
                "SkipNodeUpdate": True,
                "Check": {"CheckID": "bad", "Name": "bad", "Status": "critical"},
            },
        )
        assert r.status == 200
        r = await api.put("/v1/session/create", {"NodeChecks": ["bad"]})
        assert r.status == 500 and "critical" in r.text
        assert (await api.get("/v1/session/list")).json() == []


async def test_lock_is_exclusive_until_released(autojump_clock: MockClock) -> None:
    async with agent_api() as api:
        s1 = await create(api, {**NO_CHECKS, "Name": "s1"})
        s2 = await create(api, {**NO_CHECKS, "Name": "s2"})
        assert await acquire(api, "service/leader", s1, b"node-1") is True
        entry = await kv(api, "service/leader")
        assert entry is not None
        assert entry["Session"] == s1 and entry["LockIndex"] == 1
        assert base64.b64decode(entry["Value"]) == b"node-1"

        assert await acquire(api, "service/leader", s2, b"node-2") is False
        assert await release(api, "service/leader", s2) is False  # not the holder
        entry = await kv(api, "service/leader")
        assert entry is not None and entry["Session"] == s1
        assert base64.b64decode(entry["Value"]) == b"node-1"

        # Re-acquiring by the holder keeps LockIndex.
        assert await acquire(api, "service/leader", s1, b"node-1b") is True
        assert (await kv(api, "service/leader") or {})["LockIndex"] == 1

        assert await release(api, "service/leader", s1) is True
        entry = await kv(api, "service/leader")
        assert entry is not None and "Session" not in entry and entry["LockIndex"] == 1
        assert await acquire(api, "service/leader", s2, b"node-2") is True
        entry = await kv(api, "service/leader")
        assert entry is not None and entry["Session"] == s2 and entry["LockIndex"] == 2
        # A plain set does not take the lock away.
        assert (await api.put("/v1/kv/service/leader", raw=b"x")).json() is True
        assert (await kv(api, "service/leader") or {})["Session"] == s2


async def test_acquire_with_unknown_session_is_a_500(autojump_clock: MockClock) -> None:
    async with agent_api() as api:
        ghost = str(uuid.uuid4())
        r = await api.put(f"/v1/kv/lock?acquire={ghost}", raw=b"x")
        assert (r.status, r.text) == (500, f'invalid session "{ghost}"')
        assert await kv(api, "lock") is None


async def test_destroying_a_release_session_frees_its_locks_behind_a_lock_delay(
    autojump_clock: MockClock,
) -> None:
    async with agent_api() as api:
        holder = await create(api, {**NO_CHECKS, "LockDelay": "15s"})
        quick = await create(api, {**NO_CHECKS, "LockDelay": "0s"})
        other = await create(api, NO_CHECKS)
        assert await acquire(api, "slow", holder, b"kept") is True
        assert await acquire(api, "fast", quick, b"kept") is True
        assert (await api.put(f"/v1/session/destroy/{holder}")).json() is True
        assert (await api.put(f"/v1/session/destroy/{quick}")).json() is True
        for key in ("slow", "fast"):
            entry = await kv(api, key)
            assert entry is not None and "Session" not in entry, key
            assert base64.b64decode(entry["Value"]) == b"kept"
        # Within the 15s lock-delay nobody may take "slow"; "fast" had none.
        assert await acquire(api, "slow", other) is False
        assert await acquire(api, "fast", other) is True


async def test_destroying_a_delete_session_deletes_its_keys(autojump_clock: MockClock) -> None:
    async with agent_api() as api:
        s = await create(api, {**NO_CHECKS, "Behavior": "delete", "LockDelay": 0})
        assert await acquire(api, "ephemeral/a", s, b"1") is True
        assert await acquire(api, "ephemeral/b", s, b"2") is True
        assert (await api.put("/v1/kv/ephemeral/c", raw=b"3")).json() is True
        assert (await api.put(f"/v1/session/destroy/{s}")).json() is True
        r = await api.get("/v1/kv/ephemeral/?keys")
        assert r.json() == ["ephemeral/c"]


# -- the request builder, without an agent -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "want"),
    [
        ({}, ("serfHealth",)),
        ({"NodeChecks": []}, ()),
        ({"NodeChecks": None}, ()),
        ({"NodeChecks": ["a"]}, ("a",)),
        ({"Checks": []}, ()),
        ({"Checks": ["serfHealth"]}, ("serfHealth",)),
        ({"Checks": ["a", "b"]}, ("serfHealth", "a", "b")),
        ({"Checks": ["a"], "NodeChecks": []}, ()),
        ({"Checks": ["a"], "NodeChecks": ["a", "c"]}, ("a", "c")),
    ],
)
def test_node_checks_follow_consuls_defaulting(body: dict[str, Any], want: tuple[str, ...]) -> None:
    assert node_checks(body) == want


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("15s", 15.0), ("1m", 60.0), ("5ns", 5.0), ("0", 0.0), (5, 5.0), (999, 999.0), (2e9, 2.0)],
)
def test_lock_delay_small_values_are_seconds(raw: Any, seconds: float) -> None:
    assert lock_delay_seconds(raw) == seconds


def test_create_request_defaults_and_fresh_ids() -> None:
    first = create_request(None, "node-a", 100.0)
    second = create_request({}, "node-a", 100.0)
    assert first.id != second.id and str(uuid.UUID(first.id)) == first.id
    assert (first.node, first.node_checks, first.lock_delay) == ("node-a", ("serfHealth",), 15.0)
    assert (first.behavior, first.ttl, first.now) == ("release", "", 100.0)
    other = create_request({"Node": "node-b", "Behavior": "delete", "TTL": "1h"}, "node-a", 1.0)
    assert (other.node, other.behavior, other.ttl) == ("node-b", "delete", "1h")
    with pytest.raises(BadRequest) as exc:
        create_request({"LockDelay": []}, "node-a", 1.0)
    assert exc.value.field == "LockDelay"
