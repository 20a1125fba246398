"""/v1/internal/config/dry-run in-process: samples posted as a proxy posts them,
the proposed entries validated as a write (same 400s, nothing stored), the
known mix reported exactly; ACL: the write's rights, samples filtered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from connect.l7.dryrun import Sample
from connect.proxy.l7_samples import sample_to_json
from meshd.api.dry_run import newest_per_destination
from meshd.values.request_samples import SampleStore
from tests.meshd.inproc import InprocClient, inproc_agent

DRY = "/v1/internal/config/dry-run"
SAMPLES = "/v1/internal/config/samples"
BASE = [
    {"Kind": "service-defaults", "Name": "api", "Protocol": "http"},
    {
        "Kind": "service-resolver",
        "Name": "api",
        "DefaultSubset": "v1",
        "Subsets": {
            "v1": {"Filter": 'Service.Meta.version == "v1"'},
            "v2": {"Filter": 'Service.Meta.version == "v2"'},
        },
    },
    {"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "*", "Action": "allow"}]},
]
PROPOSED = [
    {
        "Kind": "service-splitter",
        "Name": "api",
        "Splits": [{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}],
    },
    {
        "Kind": "service-intentions",
        "Name": "api",
        "Sources": [
            {
                "Name": "web",
                "Permissions": [
                    {"Action": "deny", "HTTP": {"Methods": ["DELETE"]}},
                    {"Action": "allow", "HTTP": {"PathPrefix": "/"}},
                ],
            }
        ],
    },
]


def mix() -> list[dict[str, Any]]:
    out = [Sample("web", "api", "GET", "/", time=1.0)] * 80
    out += [Sample("web", "api", "DELETE", "/x", "", (("x-a", "1"),), time=1.0)] * 20
    return [sample_to_json(s) for s in out]


async def ok(api: InprocClient, method: str, path: str, body: Any = None) -> Any:
    r = await api.request(method, path, body)
    assert r.status == 200, (path, r.status, r.text)
    return r.json() if r.body else None


async def test_dry_run_reports_the_mix_and_writes_nothing(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        await ok(api, "PUT", "/v1/internal/config/batch", BASE)
        assert (await ok(api, "PUT", SAMPLES, {"Samples": mix()})) == {"Accepted": 100}
        before = await api.get("/v1/config/service-defaults")
        out = await ok(api, "POST", DRY, PROPOSED)
        assert out["Samples"] == 100
        [svc] = out["Services"]
        assert svc["Service"] == "api" and svc["Requests"] == 100
        got = {(c["Kind"], c["From"], c["To"], c["Method"]): c for c in svc["Changes"]}
        assert got[("split", "v1", "v2", "")]["Percent"] == 10.0
        assert got[("deny", "", "", "DELETE")]["Requests"] == 20
        assert out["Summary"] == [
            "20 DELETEs to api would now be denied",
            "10.0% of recent requests to api would move from v1 to v2",
        ]
        assert (await ok(api, "GET", "/v1/config/service-splitter")) == []
        [intentions] = await ok(api, "GET", "/v1/config/service-intentions")
        assert intentions["Sources"][0]["Name"] == "*"
        after = await api.get("/v1/config/service-defaults")
        assert after.index == before.index
        listed = await ok(api, "GET", f"{SAMPLES}?destination=api&local")
        assert len(listed["Samples"]) == 100 and listed["Samples"][80]["Headers"] == [["x-a", "1"]]


async def test_bad_entries_are_refused_as_the_write_refuses_them(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        bad = {"Kind": "service-splitter", "Name": "api", "Splits": [{"Weight": 50}]}
        write = await api.request("PUT", "/v1/config", bad)
        dry = await api.request("POST", DRY, [bad])
        assert dry.status == write.status == 400 and dry.text == write.text
        batch = await api.request("PUT", "/v1/internal/config/batch", [BASE[0], bad])
        dry = await api.request("POST", DRY, [BASE[0], bad])
        assert dry.status == batch.status == 400 and dry.text == batch.text
        assert "Entries[1]" in dry.text
        r = await api.request("POST", DRY, {"Kind": "service-defaults"})
        assert r.status == 400 and "array" in r.text
        r = await api.request("PUT", SAMPLES, {"Samples": [{"Source": "web"}]})
        assert r.status == 400 and "Samples[0].Destination" in r.text
        assert (await ok(api, "GET", "/v1/config/service-splitter")) == []


async def test_dry_run_needs_the_write_rights_and_filters_samples(
    autojump_clock: Any, tmp_path: Path
) -> None:
    cfg = tmp_path / "acl.json"
    cfg.write_text(
        json.dumps(
            {
                "acl": {
                    "enabled": True,
                    "default_policy": "deny",
                    "tokens": {"initial_management": "root"},
                }
            }
        )
    )
    async with inproc_agent(files=[str(cfg)]) as (agent, anon):
        admin = InprocClient(anon.app, "root")
        await ok(admin, "PUT", "/v1/internal/config/batch", BASE)
        rules = 'service "api" { policy = "write" } service "web" { policy = "read" }'
        await ok(admin, "PUT", "/v1/acl/policy", {"Name": "api-writer", "Rules": rules})
        token = await ok(admin, "PUT", "/v1/acl/token", {"Policies": [{"Name": "api-writer"}]})
        writer = InprocClient(anon.app, token["SecretID"])
        hidden = sample_to_json(Sample("batch", "api", "GET", "/", time=1.0))
        await ok(admin, "PUT", SAMPLES, {"Samples": [*mix(), hidden]})
        r = await writer.request("POST", DRY, PROPOSED)  # intentions need intention:write
        assert r.status == 403, r.text
        out = await ok(writer, "POST", DRY, PROPOSED[:1])
        assert out["Samples"] == 100  # the "batch" caller's sample is not readable
        r = await writer.request("POST", DRY, PROPOSED[:1])
        assert r.headers.get("x-consul-results-filtered-by-acls") == "true"
        r = await anon.request("POST", DRY, PROPOSED[:1])
        assert r.status == 403
        r = await writer.request("PUT", SAMPLES, {"Samples": [hidden]})
        assert r.status == 403 and len(agent.request_samples) == 101


def test_the_agent_keeps_bounded_rings_per_destination() -> None:
    store = SampleStore(per_destination=2, max_destinations=2)
    for i, dest in enumerate(("a", "b", "a", "a", "c", "c", "c")):
        store.ingest([Sample("web", dest, "GET", f"/{i}")])
    # b, updated longest ago, is forgotten; each ring keeps its newest two.
    assert [(s.destination, s.path) for s in store.samples()] == [
        ("a", "/2"),
        ("a", "/3"),
        ("c", "/5"),
        ("c", "/6"),
    ]
    assert len(store.samples(["c", "b"])) == 2 and store.received == 7


def test_the_dry_run_decides_the_newest_samples_per_destination_across_agents() -> None:
    gathered = [Sample("web", d, "GET", "/", time=t) for t in (3.0, 1.0, 2.0) for d in ("a", "b")]
    kept = newest_per_destination(gathered, 2)
    assert sorted((s.destination, s.time) for s in kept) == [
        ("a", 2.0),
        ("a", 3.0),
        ("b", 2.0),
        ("b", 3.0),
    ]


async def test_samples_of_the_other_agents_are_gathered(
    autojump_clock: Any, monkeypatch: Any
) -> None:
    asked: list[tuple[str, dict[str, str]]] = []

    async def peers(_members: Any, _me: str, _port: int, path: str, query: Any, _tok: str) -> Any:
        asked.append((path, query))
        remote = [sample_to_json(Sample("web", "api", "GET", "/", time=2.0))] * 20
        return [{"Samples": [*remote, {"Source": "bad"}]}]  # a peer's odd sample is skipped

    monkeypatch.setattr("meshd.api.dry_run.ask_peers", peers)
    async with inproc_agent() as (_agent, api):
        await ok(api, "PUT", "/v1/internal/config/batch", BASE)
        await ok(api, "PUT", SAMPLES, {"Samples": mix()})
        out = await ok(api, "POST", DRY, PROPOSED[:1])  # a splitter: only api's chain
        assert asked == [(SAMPLES, {"destination": "api"})]
        [svc] = out["Services"]
        assert svc["Requests"] == 120 and svc["Changes"][0]["Requests"] == 12
        listed = await ok(api, "GET", SAMPLES)
        assert len(listed["Samples"]) == 120
        await ok(api, "GET", f"{SAMPLES}?local")
        assert len(asked) == 2  # ?local asks no peer
