"""/v1/discovery-chain/:service on an in-process dev agent, with the
entries written through /v1/config (https://developer.hashicorp.com/consul/api-docs/discovery-chain)."""

from __future__ import annotations

from trio.testing import MockClock

from tests.meshd.inproc import block_then_write, inproc_agent

ENTRIES = [
    {"Kind": "service-defaults", "Name": "web", "Protocol": "http"},
    {
        "Kind": "service-resolver",
        "Name": "web",
        "DefaultSubset": "v1",
        "Subsets": {
            "v1": {"Filter": 'Service.Meta.version == "v1"'},
            "v2": {"Filter": 'Service.Meta.version == "v2"'},
        },
        "RequestTimeout": "2s",
    },
    {
        "Kind": "service-splitter",
        "Name": "web",
        "Splits": [
            {"Weight": 90, "ServiceSubset": "v1"},
            {"Weight": 10, "ServiceSubset": "v2"},
        ],
    },
    {
        "Kind": "service-router",
        "Name": "web",
        "Routes": [
            {
                "Match": {"HTTP": {"Header": [{"Name": "x-version", "Exact": "v2"}]}},
                "Destination": {"ServiceSubset": "v2"},
            }
        ],
    },
]


async def test_default_chain_without_entries_is_one_resolver(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        r = await api.get("/v1/discovery-chain/db")
        assert r.status == 200, r.text
        chain = r.json()["Chain"]
        assert chain["ServiceName"] == "db" and chain["Default"] is True
        assert chain["Protocol"] == "tcp"
        assert chain["StartNode"] == "resolver:db.default.default.dc1"
        assert list(chain["Targets"]) == ["db.default.default.dc1"]
        assert int(r.headers["x-consul-index"]) > 0


async def test_router_splitter_resolver_chain_in_consuls_shape(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        for entry in ENTRIES:
            r = await api.put("/v1/config", entry)
            assert (r.status, r.text) == (200, "true"), r.text
        r = await api.get("/v1/discovery-chain/web")
        assert r.status == 200, r.text
        chain = r.json()["Chain"]
        assert chain["Protocol"] == "http" and not chain.get("Default")
        assert chain["StartNode"] == "router:web.default.default"
        router = chain["Nodes"]["router:web.default.default"]
        assert [rt["NextNode"] for rt in router["Routes"]] == [
            "resolver:v2.web.default.default.dc1",
            "splitter:web.default.default",
        ]
        splits = chain["Nodes"]["splitter:web.default.default"]["Splits"]
        assert [(s["Weight"], s["NextNode"]) for s in splits] == [
            (90, "resolver:v1.web.default.default.dc1"),
            (10, "resolver:v2.web.default.default.dc1"),
        ]
        v2 = chain["Targets"]["v2.web.default.default.dc1"]
        assert v2["Subset"]["Filter"] == 'Service.Meta.version == "v2"'
        assert v2["ServiceSubset"] == "v2" and v2["Service"] == "web"
        # POST with an override: protocol tcp drops the router and splitter.
        r = await api.request("POST", "/v1/discovery-chain/web", {"OverrideProtocol": "tcp"})
        assert r.status == 200, r.text
        tcp = r.json()["Chain"]
        assert tcp["Protocol"] == "tcp" and tcp["StartNode"].startswith("resolver:")
        assert not any(k.startswith(("router:", "splitter:")) for k in tcp["Nodes"])


async def test_bad_requests_are_400_with_consuls_texts(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        r = await api.request(
            "POST", "/v1/discovery-chain/web", {"OverrideMeshGateway": {"Mode": "x"}}
        )
        assert (r.status, r.text) == (400, "Invalid OverrideMeshGateway.Mode parameter")
        r = await api.request("POST", "/v1/discovery-chain/web", {"Bogus": 1})
        assert r.status == 400 and r.text.startswith("Request decoding failed:"), r.text
        r = await api.get("/v1/discovery-chain/")
        assert (r.status, r.text) == (400, "Missing chain name")
        r = await api.get("/v1/discovery-chain/web?compile-dc=dc9")
        assert r.status == 400


async def test_blocking_query_written_at_5s_answers_at_5s(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        first = await api.get("/v1/discovery-chain/web")
        assert first.json()["Chain"]["Protocol"] == "tcp"

        async def write() -> None:
            assert (await api.put("/v1/config", ENTRIES[0])).status == 200

        res, written, at = await block_then_write(
            api, f"/v1/discovery-chain/web?index={first.index}&wait=20s", write
        )
        assert written == at == 5.0  # parked until the entry was written, answered then
        assert res.json()["Chain"]["Protocol"] == "http" and res.index > first.index
