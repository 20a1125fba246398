"""/v1/internal/ui/mesh-graph and the proxy-stats pushes behind it, in-process
(tests/meshd/inproc.py): snapshots pushed at fake times, the graph's figures,
intentions, nodes and versions, bad input, and ACL filtering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from connect.proxy.l7_stats import EdgeStats
from tests.meshd.inproc import InprocClient, inproc_agent
from tests.meshd.test_api_acl import acl_inproc, ok

GRAPH = "/v1/internal/ui/mesh-graph"
STATS = "/v1/internal/telemetry/proxy-stats"
FILTERED = "x-consul-results-filtered-by-acls"


async def register(api: InprocClient) -> None:
    for name, version in (("web", ""), ("api", "v1"), ("db", "")):
        svc: dict[str, Any] = {"Name": name, "ID": f"{name}-1", "Port": 8000}
        if version:
            svc["Meta"] = {"version": version}
        svc["Check"] = {"TTL": "60s", "Status": "passing"}
        assert (await api.put("/v1/agent/service/register", svc)).status == 200
    r = await api.put(
        "/v1/connect/intentions/exact?source=web&destination=api", {"Action": "allow"}
    )
    assert r.status == 200


async def drive(api: InprocClient, seconds: int, rate: int) -> EdgeStats:
    """``rate`` requests/s web -> api (v1, 3 ms; one 503 in ten) and api -> db
    (20 ms) on both reporters for ``seconds``, pushed every 5 fake seconds (the
    proxies' clock is the fake one too, as a real proxy's runs with its agent's)."""
    src, dst = EdgeStats(wall=trio.current_time), EdgeStats(wall=trio.current_time)
    assert (await api.put(STATS, src.snapshot())).status == 200
    for second in range(seconds):
        for i in range(rate):
            status = 503 if i % 10 == 0 else 200
            src.request("source", "web", "api", "v1", status, set(), 3.0)
            dst.request("destination", "web", "api", "", status, set(), 2.0)
            src.request("source", "api", "db", "", 200, set(), 20.0)
        await trio.sleep(1)
        if second % 5 == 4:
            for stats in (src, dst):
                r = await api.put(STATS, stats.snapshot())
                assert r.status == 200 and r.json() == {"Accepted": True}
    return src


async def test_graph_shows_each_edge_with_rates_quantiles_and_intentions(
    autojump_clock: Any,
) -> None:
    async with inproc_agent() as (_agent, api):
        await register(api)
        await drive(api, 30, 10)
        r = await api.get(f"{GRAPH}?window=20s")
        assert r.status == 200, r.text
        body = r.json()
        assert body["Window"] == "20s" and body["GeneratedAt"].endswith("Z")
        edges = {(e["Source"], e["Destination"]): e for e in body["Edges"]}
        assert set(edges) == {("web", "api"), ("api", "db")}
        web_api, api_db = edges["web", "api"], edges["api", "db"]
        assert (web_api["Source"], web_api["Destination"], web_api["Reporter"]) == (
            "web",
            "api",
            "destination",
        )
        # The window starts at the newest push at or before now - 20 s: 20 s of
        # pushes when the query runs at a push's fake time, 25 s when the clock
        # has moved on a little (autojump while the agent waits on a worker
        # thread, on a loaded machine). The rate is the same either way.
        n = web_api["Requests"]
        assert n in (200, 250) and (web_api["Errors"], web_api["ErrorRate"]) == (n // 10, 0.1)
        assert web_api["RequestsPerSecond"] == 10.0 and web_api["MTLS"] is True
        assert web_api["P50Ms"] == 1 + 4 * 0.5  # 2 ms observations, all in the (1, 5] bucket
        assert [(s["Subset"], s["Requests"]) for s in web_api["Subsets"]] == [("v1", n)]
        assert web_api["Intention"] == {
            "Allowed": True,
            "HasPermissions": False,
            "DefaultAllow": False,  # connect.default_intention_policy, as service-topology
            "HasExact": True,
        }
        assert (api_db["Requests"], api_db["Errors"], api_db["Reporter"]) == (n, 0, "source")
        nodes = {n["Name"]: n for n in body["Nodes"]}
        assert set(nodes) == {"web", "api", "db"}
        assert nodes["api"]["Versions"] == ["v1"] and nodes["api"]["Instances"] == 1
        assert nodes["api"]["ChecksPassing"] == 1 + 1  # its TTL check and the node's serfHealth
        whole = (await api.get(f"{GRAPH}?window=1h")).json()
        assert [e["Requests"] for e in whole["Edges"]] == [300, 300]
        only_db = (await api.get(f"{GRAPH}?service=db")).json()
        assert [(e["Source"], e["Destination"]) for e in only_db["Edges"]] == [("api", "db")]
        assert {n["Name"] for n in only_db["Nodes"]} == {"api", "db"}
        await trio.sleep(15)  # nothing pushed since: the last push is older than the window
        idle = (await api.get(f"{GRAPH}?window=10s")).json()
        assert idle["Edges"] == []


async def test_bad_window_and_bad_pushes_are_400_naming_the_field(autojump_clock: Any) -> None:
    async with inproc_agent() as (agent, api):
        for window in ("soon", "500ms", "2h", "-1s"):
            r = await api.get(f"{GRAPH}?window={window}")
            assert r.status == 400 and "window" in r.text, (window, r.text)
        r = await api.get(f"{STATS}?window=0s")
        assert r.status == 400 and "window" in r.text
        r = await api.put(STATS, {"ID": "p", "Edges": [{"Reporter": "x"}]})
        assert r.status == 400 and "Reporter" in r.text
        assert (await api.put(STATS, raw=b"{nope")).status == 400
        assert agent.mesh_stats.series == {}


async def test_acl_leaves_out_edges_and_nodes_the_token_cannot_read(
    tmp_path: Path, autojump_clock: Any
) -> None:
    async with acl_inproc(tmp_path) as (_agent, api):
        await register(api)
        await drive(api, 10, 2)
        rules = 'service "web" { policy = "read" }\nservice "api" { policy = "read" }\n'
        policy = await ok(api, "PUT", "/v1/acl/policy", {"Name": "webapi", "Rules": rules})
        token = await ok(api, "PUT", "/v1/acl/token", {"Policies": [{"ID": policy["ID"]}]})
        r = await api.get(GRAPH, headers={"X-Consul-Token": token["SecretID"]})
        assert r.status == 200 and r.headers.get(FILTERED) == "true"
        body = r.json()
        assert [(e["Source"], e["Destination"]) for e in body["Edges"]] == [("web", "api")]
        assert {n["Name"] for n in body["Nodes"]} == {"web", "api"}
        # No traffic in the window: db is hidden by the catalog read alone.
        await trio.sleep(30)
        quiet = await api.get(f"{GRAPH}?window=5s", headers={"X-Consul-Token": token["SecretID"]})
        assert quiet.json()["Edges"] == [] and quiet.headers.get(FILTERED) == "true"
        assert {n["Name"] for n in quiet.json()["Nodes"]} == {"web", "api"}
        assert quiet.json()["FilteredByACLs"] is True
        full = (await api.get(GRAPH)).json()  # the management token
        assert len(full["Edges"]) == 2 and FILTERED not in (await api.get(GRAPH)).headers
        r = await api.put(STATS, EdgeStats().snapshot(), headers={"X-Consul-Token": "nope"})
        assert r.status == 403
        pusher = EdgeStats()
        pusher.request("source", "db", "web", "", 200, set(), 1.0)
        r = await api.put(STATS, pusher.snapshot(), headers={"X-Consul-Token": token["SecretID"]})
        assert r.status == 403  # pushing needs service:write on db


class FakePorts:
    node_name = "a1"

    async def read(self, name: str, args: Any, opts: Any) -> Any:
        class Result:
            value: Any = [] if name != "catalog.services" else {}
            filtered = False

        return Result()

    async def members(self) -> list[dict[str, Any]]:
        return [{"Name": "a1", "Status": 1, "Addr": "10.0.0.1"}]


async def test_graph_merges_the_other_agents_part_asked_with_the_right_token(
    autojump_clock: Any, monkeypatch: Any
) -> None:
    from meshd.agent import mesh_stats
    from meshd.values.mesh_window import parse_push

    def stats(edges: list[tuple[str, str, str, int]]) -> mesh_stats.MeshStats:
        ms = mesh_stats.MeshStats(FakePorts(), lambda: 8500, lambda: True, own_token=lambda: "own")
        agg = EdgeStats(wall=trio.current_time)
        ms.ingest(parse_push(agg.snapshot()))
        for reporter, src, dst, n in edges:
            for _ in range(n):
                agg.request(reporter, src, dst, "v1", 200, set(), 4.0)
        ms.ingest(parse_push(agg.snapshot()))
        return ms

    here = stats([("source", "web", "api", 30)])
    there = stats([("destination", "web", "api", 30), ("source", "api", "db", 7)])
    asked: list[str] = []

    async def ask_peers(_m: Any, _n: str, _p: int, path: str, q: Any, token: str) -> list[Any]:
        asked.append(token)
        assert path == "/v1/internal/telemetry/proxy-stats" and q == {"window": "1m0s"}
        return [{"Records": [d.to_json() for d in there.local(60.0)]}, {"Records": [{"x": 1}]}]

    monkeypatch.setattr(mesh_stats, "ask_peers", ask_peers)
    g = await here.graph(60.0)
    edges = {(e["Source"], e["Destination"]): e for e in g["Edges"]}
    assert set(edges) == {("web", "api"), ("api", "db")}
    assert (edges["web", "api"]["Reporter"], edges["web", "api"]["Requests"]) == (
        "destination",
        30,
    )
    assert edges["web", "api"]["Subsets"][0]["Requests"] == 30  # the source side, from here
    assert edges["api", "db"]["Requests"] == 7
    sub = await here.subset_stats("api", "v1", 60.0, token="")
    assert (sub.requests, sub.errors, sub.error_rate) == (30, 0, 0.0)
    assert sub.p99_ms is not None and 1 < sub.p99_ms <= 5
    assert asked == ["own", ""]  # internal callers use the agent's token; a request its own
