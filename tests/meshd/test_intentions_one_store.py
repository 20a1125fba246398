"""Intentions and service-intentions config entries are one store (Consul
1.9+, issues #15/#16): each source of an entry is an intention, the
intentions API writes sources, both surfaces see every write and delete,
and the leader migrates the pre-1.9 table once. In-process agents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from trio.testing import MockClock

from registry.records import Intention
from tests.meshd.inproc import InprocClient, inproc_agent
from tests.meshd.test_acl_enforcement import intentions, world
from tests.meshd.test_api_intentions import authorize, create, service_uri, trust_domain

ENTRY = "/v1/config/service-intentions/db"
PERMS = [{"Action": "allow", "HTTP": {"PathPrefix": "/v1", "Methods": ["GET"]}}]
HTTP_DB = {"Kind": "service-defaults", "Name": "db", "Protocol": "http"}


def by_source(listing: list[dict[str, Any]], dest: str = "db") -> dict[str, dict[str, Any]]:
    return {i["SourceName"]: i for i in listing if i["DestinationName"] == dest}


async def sources(api: InprocClient, path: str = ENTRY) -> dict[str, dict[str, Any]]:
    r = await api.get(path)
    assert r.status == 200, r.text
    return {s["Name"]: s for s in r.json()["Sources"]}


async def test_an_entry_written_with_v1_config_is_listed_and_decides(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        td = await trust_domain(api)
        assert (await api.put("/v1/config", HTTP_DB)).status == 200
        first = await api.get("/v1/connect/intentions")
        async with trio.open_nursery() as nursery:
            woke: list[Any] = []

            async def block() -> None:
                woke.append(await api.get(f"/v1/connect/intentions?index={first.index}&wait=60s"))

            nursery.start_soon(block)
            await trio.sleep(5)
            entry = {
                "Kind": "service-intentions",
                "Name": "db",
                "Sources": [
                    {"Name": "*", "Action": "deny"},
                    {"Name": "web", "Action": "allow", "Description": "web reads db"},
                    {"Name": "api", "Permissions": PERMS},
                ],
            }
            assert (await api.put("/v1/config", entry)).status == 200
            started = trio.current_time()
        # The blocking list woke on the entry's write, not at its wait.
        assert trio.current_time() - started < 1 and woke[0].index > first.index
        listed = by_source(woke[0].json())
        assert [i["SourceName"] for i in woke[0].json()] == ["api", "web", "*"]
        assert listed["web"]["Action"] == "allow" and listed["web"]["Precedence"] == 9
        assert listed["web"]["Description"] == "web reads db" and listed["web"]["ID"] == ""
        assert listed["web"]["CreatedAt"] == "0001-01-01T00:00:00Z"  # Consul's zero time
        assert listed["*"]["Precedence"] == 8 and listed["*"]["Action"] == "deny"
        assert listed["api"]["Permissions"] == PERMS and "Action" not in listed["api"]
        ok = (await authorize(api, "db", service_uri(td, "web"))).json()
        assert ok["Authorized"] is True and "Matched L4 intention" in ok["Reason"]
        denied = (await authorize(api, "db", service_uri(td, "billing"))).json()
        assert denied["Authorized"] is False and '"*" => "db"' in denied["Reason"]
        l7 = (await authorize(api, "db", service_uri(td, "api"))).json()
        assert l7["Authorized"] is False and l7["Reason"].startswith("Matched L7 intention")
        match = await api.get("/v1/connect/intentions/match?by=destination&name=db")
        assert [i["SourceName"] for i in match.json()["db"]] == ["api", "web", "*"]
        check = await api.get("/v1/connect/intentions/check?source=web&destination=db")
        assert check.json() == {"Allowed": True}
        exact = await api.get("/v1/connect/intentions/exact?source=web&destination=db")
        assert exact.status == 200 and exact.json()["Action"] == "allow"


async def test_api_writes_are_sources_and_deletes_are_seen_both_ways(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        put = await api.put(
            "/v1/connect/intentions/exact?source=web&destination=db", {"Action": "allow"}
        )
        assert put.status == 200
        legacy_id = await create(api, "api", "db", action="deny", Meta={"team": "a"})
        got = await sources(api)
        assert set(got) == {"web", "api"}
        assert got["web"]["Action"] == "allow" and got["web"]["Precedence"] == 9
        assert got["api"]["LegacyID"] == legacy_id and got["api"]["Action"] == "deny"
        assert got["api"]["LegacyMeta"] == {"team": "a"}
        by_id = (await api.get(f"/v1/connect/intentions/{legacy_id}")).json()
        assert by_id["Meta"] == {"team": "a"} and by_id["DestinationName"] == "db"
        # An L7 intention through the API is stored as the entry's Permissions
        # (once the destination speaks http, as the graph check wants).
        tcp = await api.put(
            "/v1/connect/intentions/exact?source=cli&destination=db", {"Permissions": PERMS}
        )
        assert tcp.status == 400 and "incompatible with L7 intentions" in tcp.text
        assert (await api.put("/v1/config", HTTP_DB)).status == 200
        l7 = await api.put(
            "/v1/connect/intentions/exact?source=cli&destination=db", {"Permissions": PERMS}
        )
        assert l7.status == 200 and (await sources(api))["cli"]["Permissions"] == PERMS
        # Delete through the API: the entry loses the source, then goes.
        assert (
            await api.delete("/v1/connect/intentions/exact?source=web&destination=db")
        ).status == 200
        assert (
            await api.delete("/v1/connect/intentions/exact?source=cli&destination=db")
        ).status == 200
        assert set(await sources(api)) == {"api"}
        assert (await api.delete(f"/v1/connect/intentions/{legacy_id}")).status == 200
        assert (await api.get(ENTRY)).status == 404
        # Delete through /v1/config: the intention is gone from the API.
        legacy_id = await create(api, "api", "db")
        assert (await api.delete(ENTRY)).status == 200
        assert (await api.get(f"/v1/connect/intentions/{legacy_id}")).status == 404
        assert (await api.get("/v1/connect/intentions")).json() == []


async def test_legacy_update_moves_the_source_and_keeps_created_at(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        ixn_id = await create(api, "web", "db")
        before = (await api.get(f"/v1/connect/intentions/{ixn_id}")).json()
        await trio.sleep(5)
        body = {"SourceName": "web", "DestinationName": "cache", "Action": "deny"}
        assert (await api.put(f"/v1/connect/intentions/{ixn_id}", body)).status == 200
        after = (await api.get(f"/v1/connect/intentions/{ixn_id}")).json()
        assert after["DestinationName"] == "cache" and after["Action"] == "deny"
        assert after["CreatedAt"] == before["CreatedAt"] != after["UpdatedAt"]
        assert (await api.get(ENTRY)).status == 404
        moved = await sources(api, "/v1/config/service-intentions/cache")
        assert moved["web"]["LegacyID"] == ixn_id
        # The entry read back can be written back (Consul clears the LegacyID).
        read_back = (await api.get("/v1/config/service-intentions/cache")).json()
        assert (await api.put("/v1/config", read_back)).status == 200
        assert "LegacyID" not in (await sources(api, "/v1/config/service-intentions/cache"))["web"]
        assert (await api.get(f"/v1/connect/intentions/{ixn_id}")).status == 404
        # A source written with /v1/config is a duplicate for the legacy create.
        entry = {
            "Kind": "service-intentions",
            "Name": "db",
            "Sources": [{"Name": "web", "Action": "allow"}],
        }
        assert (await api.put("/v1/config", entry)).status == 200
        dup = await api.request(
            "POST",
            "/v1/connect/intentions",
            {"SourceName": "web", "DestinationName": "db", "Action": "deny"},
        )
        assert dup.status == 500 and dup.text.startswith("duplicate intention found")
        # ...but the exact endpoint upserts it, keeping it ID-less.
        put = await api.put(
            "/v1/connect/intentions/exact?source=web&destination=db", {"Action": "deny"}
        )
        assert put.status == 200
        src = (await sources(api))["web"]
        assert src["Action"] == "deny" and "LegacyID" not in src


async def test_the_leader_migrates_the_old_table_once(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (agent, api):
        store = agent.server.store
        old = [
            Intention(
                "11111111-1111-4111-8111-111111111111",
                "web",
                "db",
                action="allow",
                meta={"m": "1"},
                created_at=1000.0,
                updated_at=2000.0,
            ),
            Intention("22222222-2222-4222-8222-222222222222", "*", "db", action="deny"),
        ]
        entry = {
            "Kind": "service-intentions",
            "Name": "db",
            "Sources": [{"Name": "*", "Action": "allow"}],
        }
        assert (await api.put("/v1/config", entry)).status == 200
        tx = store.begin(store.index_of("config-entries"))
        for rec in old:
            store.intentions.intentions.put(tx, rec)
        tx.touch("intentions")
        tx.commit()
        with trio.fail_after(30):
            while list(store.intentions.intentions.values()):
                await trio.sleep(0.5)
        got = await sources(api)
        # The entry's own source wins over the old record of the same pair.
        assert got["*"]["Action"] == "allow" and "LegacyID" not in got["*"]
        assert got["web"]["LegacyID"] == old[0].id and got["web"]["LegacyMeta"] == {"m": "1"}
        web = (await api.get(f"/v1/connect/intentions/{old[0].id}")).json()
        assert web["CreatedAt"] == "1970-01-01T00:16:40Z" and web["Meta"] == {"m": "1"}
        index = (await api.get(ENTRY)).index
        await trio.sleep(3)
        assert (await api.get(ENTRY)).index == index  # nothing more to migrate


async def test_acls_keep_their_meaning_on_the_one_store(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with world(tmp_path) as w:
        moving = {"SourceName": "z", "DestinationName": "cache", "Action": "deny"}
        cache_only = await w.token_with(intentions("cache", "write"), "cache")
        both = await w.token_with(intentions("cache", "write") + intentions("db", "write"), "both")
        api_reader = await w.token_with(intentions("api", "read"), "reader")
        path = f"/v1/connect/intentions/{w.ids['z_db']}"
        # Moving db's intention to cache needs intention:write on both.
        denied = await w.api.request("PUT", path, moving, headers={"X-Consul-Token": cache_only})
        assert denied.status == 403 and '"db"' in denied.text
        moved = await w.api.request("PUT", path, moving, headers={"X-Consul-Token": both})
        assert moved.status == 200
        # The legacy POST's intention is read through /v1/config with intention:read.
        hdr = {"X-Consul-Token": api_reader}
        entry = await w.api.get("/v1/config/service-intentions/api", headers=hdr)
        assert entry.status == 200
        assert entry.json()["Sources"][0]["LegacyID"] == w.ids["web_api"]
        other = await w.api.get("/v1/config/service-intentions/cache", headers=hdr)
        assert other.status == 403
