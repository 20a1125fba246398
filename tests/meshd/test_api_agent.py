"""/v1/agent against a real dev agent, asserting Consul's documented shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from meshd.config import load_config
from tests.meshd.harness import APIClient, dev_agent, dev_flags, free_port
from tests.meshd.inproc import InprocClient, inproc_agent, inproc_flags

WEB = {
    "ID": "web-1",
    "Name": "web",
    "Tags": ["v1"],
    "Port": 8080,
    "Meta": {"team": "a"},
    "Weights": {"Passing": 3, "Warning": 1},
    "Check": {"CheckID": "web-ttl", "Name": "web ttl", "TTL": "30s"},
}


async def wait_for(pred: Any, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not await pred():
            await trio.sleep(0.05)


@pytest.mark.e2e
async def test_self_shows_config_member_and_stats() -> None:
    async with dev_agent() as (agent, api):
        r = await api.get("/v1/agent/self")
        assert r.status == 200
        body = r.json()
        assert set(body) >= {"Config", "DebugConfig", "Coord", "Member", "Stats", "Meta"}
        cfg = body["Config"]
        assert cfg["Datacenter"] == "dc1" and cfg["NodeName"] == "dev-node"
        assert cfg["NodeID"] == agent.node_id and cfg["Server"] is True
        assert cfg["Version"] == agent.version and "Revision" in cfg
        assert body["DebugConfig"]["Ports"]["HTTP"] == agent.config.ports.http
        member = body["Member"]
        assert member["Name"] == "dev-node" and member["Status"] == 1
        assert member["Tags"]["role"] == "consul" and member["Tags"]["dc"] == "dc1"
        assert member["Tags"]["id"] == agent.node_id
        assert body["Stats"]["raft"]["state"] == "Leader"
        assert body["Stats"]["consul"]["server"] == "true"
        assert all(isinstance(v, str) for v in body["Stats"]["agent"].values())


async def test_members_lists_the_server_in_serf_shape(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (agent, api):
        await wait_for(lambda: _catalog_has(api, "dev-node"))
        await api.put("/v1/catalog/register", {"Node": "external", "Address": "10.0.0.1"})
        r = await api.get("/v1/agent/members")
        assert r.status == 200
        [member] = r.json()  # a node registered through the catalog is no member
        assert member["Name"] == "dev-node"
        assert member["Addr"] == "127.0.0.1"
        assert member["Port"] == agent.config.ports.server
        assert member["Status"] == 1
        tags = member["Tags"]
        assert tags["role"] == "consul" and tags["port"] == str(agent.config.ports.server)
        assert tags["id"] == agent.node_id and tags["dc"] == "dc1"
        for key in ("ProtocolMin", "ProtocolMax", "ProtocolCur", "DelegateCur"):
            assert isinstance(member[key], int)
        wan = (await api.get("/v1/agent/members?wan=1")).json()
        assert [m["Name"] for m in wan] == ["dev-node.dc1"]
        r = await api.get("/v1/agent/members?filter=Tags.role%20%3D%3D%20node")
        assert r.json() == []


async def _catalog_has(
    api: APIClient | InprocClient, node: str, service: str | None = None
) -> bool:
    r = await api.get(f"/v1/catalog/node/{node}")
    body = r.json()
    if body is None:
        return False
    return service is None or service in body["Services"]


async def test_service_register_get_and_deregister(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        r = await api.put("/v1/agent/service/register", WEB)
        assert (r.status, r.body) == (200, b"")
        services = (await api.get("/v1/agent/services")).json()
        svc = services["web-1"]
        assert svc["Service"] == "web" and svc["Port"] == 8080 and svc["Tags"] == ["v1"]
        assert svc["Weights"] == {"Passing": 3, "Warning": 1}
        assert svc["Meta"] == {"team": "a"} and svc["Datacenter"] == "dc1"
        r = await api.get("/v1/agent/service/web-1")
        assert r.status == 200 and r.json()["ID"] == "web-1"
        assert r.headers["x-consul-contenthash"] == r.json()["ContentHash"]
        checks = (await api.get("/v1/agent/checks")).json()
        assert checks["web-ttl"]["ServiceID"] == "web-1"
        assert checks["web-ttl"]["Status"] == "critical"
        await wait_for(lambda: _catalog_has(api, "dev-node", "web-1"))
        r = await api.get("/v1/agent/services?filter=Service%20%3D%3D%20other")
        assert r.json() == {}
        assert (await api.get("/v1/agent/service/nope")).status == 404
        r = await api.put("/v1/agent/service/deregister/web-1")
        assert r.status == 200
        assert (await api.get("/v1/agent/services")).json() == {}
        assert "web-ttl" not in (await api.get("/v1/agent/checks")).json()
        r = await api.put("/v1/agent/service/deregister/web-1")
        assert r.status == 404 and "web-1" in r.text


async def test_reregistration_keeps_or_replaces_existing_checks(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        await api.put("/v1/agent/service/register", WEB)
        second = {**WEB, "Check": {"CheckID": "web-ttl-2", "Name": "second", "TTL": "10s"}}
        await api.put("/v1/agent/service/register", second)
        assert {"web-ttl", "web-ttl-2"} <= set((await api.get("/v1/agent/checks")).json())
        third = {**WEB, "Check": {"CheckID": "web-ttl-3", "Name": "third", "TTL": "10s"}}
        r = await api.put("/v1/agent/service/register?replace-existing-checks", third)
        assert r.status == 200
        assert set((await api.get("/v1/agent/checks")).json()) == {"web-ttl-3"}


async def test_bad_service_registrations_get_400_naming_the_field_and_change_nothing(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        cases = [
            ({"Name": "web", "Port": 70000}, "Port"),
            ({"Name": ""}, "Name"),
            ({"Name": "web", "Bogus": 1}, "Bogus"),
            ({"Name": "web", "Tags": "x"}, "Tags"),
            ({"Name": "web", "Check": {"HTTP": "http://x"}}, "Interval"),
            ({"Name": "web", "Check": {"Args": ["/bin/true"], "Interval": "10s"}}, "Args"),
            ({"Name": "p", "Kind": "connect-proxy", "Port": 1}, "DestinationServiceName"),
        ]
        for body, needle in cases:
            r = await api.put("/v1/agent/service/register", body)
            assert r.status == 400 and needle in r.text, (body, r.status, r.text)
        r = await api.put("/v1/agent/service/register", raw=b"{nope")
        assert r.status == 400 and "Request decode failed" in r.text
        assert (await api.get("/v1/agent/services")).json() == {}
        assert (await api.get("/v1/agent/checks")).json() == {}


async def test_check_register_ttl_updates_and_deregister(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        r = await api.put("/v1/agent/check/register", {"Name": "mem", "TTL": "30s"})
        assert r.status == 200
        check = (await api.get("/v1/agent/checks")).json()["mem"]
        assert check["Status"] == "critical" and check["Name"] == "mem"
        assert check["Node"] == "dev-node" and check["Type"] == "ttl"
        for verb, status in (("pass", "passing"), ("warn", "warning"), ("fail", "critical")):
            r = await api.put(f"/v1/agent/check/{verb}/mem?note=from-{verb}")
            assert r.status == 200
            check = (await api.get("/v1/agent/checks")).json()["mem"]
            assert (check["Status"], check["Output"]) == (status, f"from-{verb}")
        r = await api.put("/v1/agent/check/update/mem", {"Status": "passing", "Output": "ok"})
        assert r.status == 200
        check = (await api.get("/v1/agent/checks")).json()["mem"]
        assert (check["Status"], check["Output"]) == ("passing", "ok")

        async def in_catalog() -> bool:
            rows = (await api.get("/v1/health/node/dev-node")).json()
            return any(c["CheckID"] == "mem" and c["Status"] == "passing" for c in rows or [])

        await wait_for(in_catalog)
        r = await api.put("/v1/agent/check/update/mem", {"Status": "bogus"})
        assert r.status == 400 and "Invalid check status" in r.text
        r = await api.put("/v1/agent/check/update/mem", {"Status": "passing", "Extra": 1})
        assert r.status == 400 and "Extra" in r.text
        assert (await api.get("/v1/agent/checks")).json()["mem"]["Output"] == "ok"
        assert (await api.put("/v1/agent/check/pass/nope")).status == 404
        assert (await api.put("/v1/agent/check/deregister/mem")).status == 200
        assert (await api.get("/v1/agent/checks")).json() == {}
        assert (await api.put("/v1/agent/check/deregister/mem")).status == 404


async def test_bad_check_registrations_get_400(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        cases = [
            ({"TTL": "10s", "CheckID": "x"}, "Missing check name"),
            ({"Name": "x"}, "TTL"),
            ({"Name": "x", "TTL": "ten"}, "TTL"),
            ({"Name": "x", "TTL": "10s", "ServiceID": "missing"}, "ServiceID"),
            ({"Name": "x", "Args": ["true"], "Interval": "5s"}, "enable_script_checks"),
        ]
        for body, needle in cases:
            r = await api.put("/v1/agent/check/register", body)
            assert r.status == 400 and needle in r.text, (body, r.status, r.text)
        assert (await api.get("/v1/agent/checks")).json() == {}


async def test_pass_on_a_check_without_ttl_is_refused(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        body = {"Name": "tcp", "TCP": "127.0.0.1:1", "Interval": "10s"}
        assert (await api.put("/v1/agent/check/register", body)).status == 200
        r = await api.put("/v1/agent/check/pass/tcp")
        assert r.status == 404 and "does not have associated TTL" in r.text


async def test_service_and_node_maintenance(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        await api.put("/v1/agent/service/register", WEB)
        r = await api.put("/v1/agent/service/maintenance/web-1?enable=true&reason=deploying")
        assert r.status == 200
        check = (await api.get("/v1/agent/checks")).json()["_service_maintenance:web-1"]
        assert check["Status"] == "critical" and check["Notes"] == "deploying"
        assert check["Name"] == "Service Maintenance Mode" and check["ServiceID"] == "web-1"
        r = await api.put("/v1/agent/service/maintenance/web-1?enable=false")
        assert r.status == 200
        assert "_service_maintenance:web-1" not in (await api.get("/v1/agent/checks")).json()
        r = await api.put("/v1/agent/service/maintenance/web-1")
        assert r.status == 400 and "Missing value for enable" in r.text
        r = await api.put("/v1/agent/service/maintenance/web-1?enable=maybe")
        assert r.status == 400 and "Invalid value for enable" in r.text
        r = await api.put("/v1/agent/service/maintenance/nope?enable=true")
        assert r.status == 404 and "nope" in r.text

        assert (await api.put("/v1/agent/maintenance?enable=true")).status == 200
        check = (await api.get("/v1/agent/checks")).json()["_node_maintenance"]
        assert check["Name"] == "Node Maintenance Mode" and check["ServiceID"] == ""
        assert "no reason was provided" in check["Notes"]

        async def node_critical() -> bool:
            rows = (await api.get("/v1/health/state/critical")).json() or []
            return any(c["CheckID"] == "_node_maintenance" for c in rows)

        await wait_for(node_critical)
        assert (await api.put("/v1/agent/maintenance?enable=false")).status == 200
        assert "_node_maintenance" not in (await api.get("/v1/agent/checks")).json()


async def test_token_endpoint_sets_known_kinds_and_404s_unknown_ones(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (agent, api):
        r = await api.put("/v1/agent/token/default", {"Token": "s3cret"})
        assert r.status == 200
        assert agent.tokens.get("default") == "s3cret"
        assert (await api.put("/v1/agent/token/acl_agent_token", {"Token": "a"})).status == 200
        assert agent.tokens.get("agent") == "a"
        r = await api.put("/v1/agent/token/bogus", {"Token": "x"})
        assert r.status == 404 and "bogus" in r.text
        r = await api.put("/v1/agent/token/default", {"Tokn": "x"})
        assert r.status == 400 and "Tokn" in r.text
        assert agent.tokens.get("default") == "s3cret"


async def test_token_persistence_writes_a_private_file(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    cfg = tmp_path / "acl.json"
    cfg.write_text(json.dumps({"acl": {"enable_token_persistence": True}}))
    flags = {"data_dir": str(tmp_path / "data")}
    async with inproc_agent(files=[str(cfg)], **flags) as (_agent, api):
        assert (await api.put("/v1/agent/token/agent", {"Token": "tok"})).status == 200
    path = tmp_path / "data" / "acl-tokens.json"
    assert json.loads(path.read_text()) == {"agent": "tok"}
    assert path.stat().st_mode & 0o777 == 0o600
    async with inproc_agent(files=[str(cfg)], **flags) as (agent, _api):
        assert agent.tokens.get("agent") == "tok"


async def test_join_validates_the_address_and_reports_unreachable_servers(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        r = await api.put("/v1/agent/join/not%20a%20host")
        assert r.status == 400 and "address" in r.text
        r = await api.put(f"/v1/agent/join/127.0.0.1:{free_port()}")
        assert r.status == 500 and "failed to join" in r.text
        assert (await api.put("/v1/agent/join/127.0.0.1?wan=1")).status == 400


async def test_force_leave_unknown_node_and_the_leader_itself_are_refused(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        r = await api.put("/v1/agent/force-leave/ghost")
        assert r.status == 500 and "No node found with name 'ghost'" in r.text
        await wait_for(lambda: _catalog_has(api, "dev-node"))
        r = await api.put("/v1/agent/force-leave/dev-node")
        assert r.status == 400


async def test_force_leave_deregisters_a_catalog_node(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        await api.put("/v1/catalog/register", {"Node": "gone", "Address": "10.0.0.9"})
        assert (await api.put("/v1/agent/force-leave/gone?prune")).status == 200
        names = {n["Node"] for n in (await api.get("/v1/catalog/nodes")).json()}
        assert "gone" not in names
        members = {m["Name"] for m in (await api.get("/v1/agent/members")).json()}
        assert "gone" not in members


async def test_leave_answers_then_stops_the_agent(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (agent, api):
        await wait_for(lambda: _catalog_has(api, "dev-node"))
        r = await api.put("/v1/agent/leave")
        assert r.status == 200
        with trio.fail_after(5):
            await agent.shutdown.wait()
        assert agent.left
        assert agent.server is not None
        assert all(n.node != "dev-node" for n in _nodes(agent))


def _nodes(agent: Any) -> list[Any]:
    from registry import queries as q

    return q.catalog_nodes(agent.server.store, None)[1]


async def test_reload_applies_service_changes_from_the_config_files(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    path = tmp_path / "svc.json"
    path.write_text(json.dumps({"services": [{"name": "db", "port": 5432}]}))
    flags = inproc_flags()
    async with inproc_agent(files=[str(path)], **flags) as (agent, api):
        agent.config_loader = lambda: load_config([str(path)], [], flags, dev=True)[0]
        assert set((await api.get("/v1/agent/services")).json()) == {"db"}
        await api.put("/v1/agent/service/register", {"Name": "api", "Port": 1})
        path.write_text(json.dumps({"services": [{"name": "cache", "port": 6379}]}))
        assert (await api.put("/v1/agent/reload")).status == 200
        services = (await api.get("/v1/agent/services")).json()
        assert set(services) == {"cache", "api"}  # API-registered ones stay
        path.write_text(json.dumps({"services": [{"name": "cache", "port": "x"}]}))
        r = await api.put("/v1/agent/reload")
        assert r.status == 500 and "services[0]" in r.text
        assert set((await api.get("/v1/agent/services")).json()) == {"cache", "api"}


async def test_metrics_json_and_prometheus(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        await api.put("/v1/agent/service/register", WEB)
        r = await api.get("/v1/agent/metrics")
        body = r.json()
        assert set(body) == {"Timestamp", "Gauges", "Points", "Counters", "Samples"}
        gauges = {g["Name"]: g["Value"] for g in body["Gauges"]}
        assert gauges["meshd.agent.services"] == 1
        assert gauges["meshd.raft.commit_index"] >= 1
        assert gauges["meshd.raft.leader"] == 1
        assert gauges["meshd.catalog.nodes"] == 1  # the dev node
        r = await api.get("/v1/agent/metrics?format=prometheus")
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "# TYPE meshd_raft_commit_index gauge" in r.text
        assert "meshd_agent_services 1.0\n" in r.text


async def test_host_reports_memory_cpu_host_and_disk(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        body = (await api.get("/v1/agent/host")).json()
        assert body["Memory"]["total"] > 0
        assert body["CPU"] and "modelName" in body["CPU"][0]
        assert body["Host"]["hostname"] and body["Host"]["uptime"] > 0
        assert body["Disk"]["total"] > 0 and body["Disk"]["path"] == "/"


@pytest.mark.e2e
async def test_services_survive_a_restart_with_the_same_data_dir(tmp_path: Path) -> None:
    # Real time: with a data_dir the Raft log is SQLite, saved and loaded in
    # worker threads, during which an autojump clock would skip ahead.
    flags = dev_flags(data_dir=str(tmp_path), node_id="2c6f3a51-7f1e-4e8c-9d0b-6a1c2b3d4e5f")
    async with dev_agent(**flags) as (_agent, api):
        assert (await api.put("/v1/agent/service/register", WEB)).status == 200
        await api.put("/v1/agent/check/register", {"Name": "disk", "TTL": "1m"})
        await api.put("/v1/agent/maintenance?enable=true&reason=later")
        before = (await api.get("/v1/agent/services")).json()
    async with dev_agent(**flags) as (agent, api):
        assert agent.node_id == "2c6f3a51-7f1e-4e8c-9d0b-6a1c2b3d4e5f"
        assert (await api.get("/v1/agent/services")).json() == before
        checks = (await api.get("/v1/agent/checks")).json()
        assert {"web-ttl", "disk", "_node_maintenance"} <= set(checks)
        assert checks["_node_maintenance"]["Notes"] == "later"
        await wait_for(lambda: _catalog_has(api, "dev-node", "web-1"))
