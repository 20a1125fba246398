"""/v1/config on an in-process dev agent (tests/meshd/inproc.py), as Consul's
agent/config_endpoint.go answers (https://developer.hashicorp.com/consul/api-docs/config)."""

from __future__ import annotations

from trio.testing import MockClock

from tests.meshd.inproc import block_then_write, inproc_agent

WEB = {"Kind": "service-defaults", "Name": "web", "Protocol": "http"}


async def test_put_answers_bare_booleans_and_cas_is_consuls(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        r = await api.put("/v1/config", WEB)
        assert (r.status, r.text) == (200, "true")
        got = (await api.get("/v1/config/service-defaults/web")).json()
        assert got["Kind"] == "service-defaults" and got["Name"] == "web"
        assert got["Protocol"] == "http"
        assert got["CreateIndex"] == got["ModifyIndex"] > 0
        # cas=0 is create-only: the entry exists, so false (200), nothing changes.
        r = await api.put("/v1/config?cas=0", {**WEB, "Protocol": "grpc"})
        assert (r.status, r.json()) == (200, False)
        r = await api.put(f"/v1/config?cas={got['ModifyIndex'] + 7}", {**WEB, "Protocol": "tcp"})
        assert r.json() is False
        assert (await api.get("/v1/config/service-defaults/web")).json()["Protocol"] == "http"
        # The right index writes; a GET body (with its indexes) can be PUT back.
        r = await api.put(f"/v1/config?cas={got['ModifyIndex']}", {**got, "Protocol": "grpc"})
        assert r.json() is True
        again = (await api.get("/v1/config/service-defaults/web")).json()
        assert again["Protocol"] == "grpc" and again["CreateIndex"] == got["CreateIndex"]
        assert again["ModifyIndex"] > got["ModifyIndex"]
        r = await api.put("/v1/config?cas=0", {"Kind": "service-defaults", "Name": "new"})
        assert r.json() is True
        r = await api.put("/v1/config?cas=x", WEB)
        assert r.status == 400


async def test_get_list_and_delete_shapes(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        r = await api.get("/v1/config/service-defaults/nope")
        assert r.status == 404
        assert r.text == 'Config entry not found for "service-defaults" / "nope"'
        r = await api.get("/v1/config/service-defaults")
        assert (r.status, r.json()) == (200, [])
        assert int(r.headers["x-consul-index"]) > 0
        assert r.headers["x-consul-knownleader"] == "true"
        await api.put("/v1/config", WEB)
        await api.put("/v1/config", {"Kind": "proxy-defaults", "Name": "global"})
        listed = (await api.get("/v1/config/service-defaults")).json()
        assert [e["Name"] for e in listed] == ["web"]
        assert {"Kind", "Name", "CreateIndex", "ModifyIndex"} <= set(listed[0])
        # Plain delete answers {}; a CAS delete answers the boolean.
        r = await api.delete("/v1/config/service-defaults/web")
        assert (r.status, r.json()) == (200, {})
        assert (await api.get("/v1/config/service-defaults/web")).status == 404
        pd = (await api.get("/v1/config/proxy-defaults/global")).json()
        r = await api.delete(f"/v1/config/proxy-defaults/global?cas={pd['ModifyIndex'] + 1}")
        assert r.json() is False
        r = await api.delete(f"/v1/config/proxy-defaults/global?cas={pd['ModifyIndex']}")
        assert r.json() is True
        assert (await api.get("/v1/config/proxy-defaults/global")).status == 404


async def test_bad_entries_are_400_naming_the_field(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        r = await api.put("/v1/config", {"Name": "web"})
        assert r.status == 400 and "Kind" in r.text
        r = await api.put("/v1/config", {"Kind": "bogus", "Name": "web"})
        assert r.status == 400 and "kind" in r.text.lower()
        r = await api.put("/v1/config", {"Kind": "proxy-defaults", "Name": "other"})
        # Consul's text (agent/structs ProxyConfigEntry.Validate).
        assert (r.status, r.text) == (400, 'invalid name ("other"), only "global" is supported')
        assert (await api.get("/v1/config/proxy-defaults")).json() == []


async def test_blocking_get_written_at_5s_answers_at_5s(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        await api.put("/v1/config", WEB)
        index = (await api.get("/v1/config/service-defaults/web")).index

        async def write() -> None:
            assert (await api.put("/v1/config", {**WEB, "Protocol": "grpc"})).json() is True

        res, written, at = await block_then_write(
            api, f"/v1/config/service-defaults/web?index={index}&wait=20s", write
        )
        assert written == at == 5.0  # parked until the write, answered at its time
        assert res.index > index and res.json()["Protocol"] == "grpc"


async def test_the_l7_kinds_are_written_read_listed_and_deleted(autojump_clock: MockClock) -> None:
    entries = [
        {"Kind": "service-defaults", "Name": "api", "Protocol": "http"},
        {"Kind": "service-resolver", "Name": "api", "ConnectTimeout": "5s"},
        {
            "Kind": "service-splitter",
            "Name": "api",
            "Splits": [{"Weight": 100, "Service": "api"}],
        },
        {
            "Kind": "service-router",
            "Name": "api",
            "Routes": [
                {"Match": {"HTTP": {"PathPrefix": "/v2"}}, "Destination": {"Service": "api"}}
            ],
        },
    ]
    async with inproc_agent() as (_agent, api):
        for entry in entries:
            r = await api.put("/v1/config", entry)
            assert (r.status, r.text) == (200, "true"), (entry["Kind"], r.text)
        for entry in entries[1:]:
            kind = entry["Kind"]
            got = (await api.get(f"/v1/config/{kind}/api")).json()
            assert (got["Kind"], got["Name"]) == (kind, "api")
            assert got["ModifyIndex"] > 0
            assert [e["Name"] for e in (await api.get(f"/v1/config/{kind}")).json()] == ["api"]
        router = (await api.get("/v1/config/service-router/api")).json()
        assert router["Routes"][0]["Match"]["HTTP"]["PathPrefix"] == "/v2"
        for entry in reversed(entries):
            r = await api.delete(f"/v1/config/{entry['Kind']}/api")
            assert r.status == 200, (entry["Kind"], r.text)
            assert (await api.get(f"/v1/config/{entry['Kind']}/api")).status == 404
