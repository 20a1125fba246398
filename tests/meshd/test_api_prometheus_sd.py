"""/v1/prometheus/sd (Prometheus HTTP SD with consul_sd's labels) and
/v1/internal/ui/service-topology/:service on an in-process dev agent (the
agent's own scrape target over a real socket)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import MockClock

from meshd.api.prometheus_sd import agent_groups, instance_labels, proxy_metrics_target
from meshd.intention_decision import decision
from tests.meshd.harness import APIClient, dev_agent
from tests.meshd.inproc import InprocClient, block_then_write, inproc_agent

e2e = pytest.mark.e2e

WEB = {
    "Name": "web",
    "ID": "web-1",
    "Port": 8080,
    "Address": "127.0.0.2",
    "Tags": ["v1", "canary"],
    "Meta": {"version": "1.2", "team-name": "a"},
    "Connect": {
        "SidecarService": {
            "Proxy": {
                "Upstreams": [{"DestinationName": "api", "LocalBindPort": 19191}],
                "Config": {"envoy_prometheus_bind_addr": "0.0.0.0:19102"},
            }
        }
    },
}
API = {"Name": "api", "Port": 9000, "Connect": {"SidecarService": {}}}


def test_labels_follow_consul_sd() -> None:
    row = {
        "Node": {
            "Node": "n1",
            "Address": "10.0.0.1",
            "Datacenter": "dc1",
            "TaggedAddresses": {"lan": "10.0.0.1", "wan": "1.2.3.4"},
            "Meta": {"rack": "r1"},
        },
        "Service": {"ID": "w1", "Service": "web", "Tags": ["a", "b"], "Port": 80, "Meta": {}},
        "Checks": [{"Status": "passing"}, {"Status": "warning"}],
    }
    labels = instance_labels(row)
    assert labels["__meta_consul_tags"] == ",a,b,"
    assert labels["__meta_consul_health"] == "warning"
    assert labels["__meta_consul_tagged_address_wan"] == "1.2.3.4"
    assert labels["__meta_consul_metadata_rack"] == "r1"
    assert labels["__meta_consul_service_address"] == ""
    no_tags = instance_labels({**row, "Service": {**row["Service"], "Tags": []}})
    assert no_tags["__meta_consul_tags"] == ""
    proxy = {**row, "Service": {"Kind": "connect-proxy", "Proxy": {"Config": {}}}}
    assert proxy_metrics_target(proxy) is None
    proxy["Service"]["Proxy"]["Config"]["envoy_prometheus_bind_addr"] = ":9102"
    assert proxy_metrics_target(proxy) == "10.0.0.1:9102"


async def wait_for(api: APIClient | InprocClient, path: str, pred: Any) -> Any:
    with trio.fail_after(20):
        while True:
            resp = await api.get(path)
            if resp.status == 200 and pred(resp.json()):
                return resp
            await trio.sleep(0.05)


def by_kind(groups: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [g for g in groups if g["labels"]["__meta_meshd_kind"] == kind]


@e2e
async def test_sd_lists_instances_agent_and_proxy_with_consul_labels() -> None:
    async with dev_agent(node_meta=["rack:r1"]) as (agent, api):
        assert (await api.put("/v1/agent/service/register", WEB)).status == 200
        resp = await wait_for(api, "/v1/prometheus/sd", lambda g: len(by_kind(g, "proxy")) == 1)
        groups = resp.json()
        assert int(resp.headers["x-consul-index"]) > 0
        (web,) = [
            g for g in by_kind(groups, "service") if g["labels"]["__meta_consul_service"] == "web"
        ]
        assert web["targets"] == ["127.0.0.2:8080"]
        labels = web["labels"]
        assert labels["__meta_consul_service_id"] == "web-1"
        assert labels["__meta_consul_tags"] == ",v1,canary,"
        assert labels["__meta_consul_service_metadata_team_name"] == "a"
        assert labels["__meta_consul_service_port"] == "8080"
        assert labels["__meta_consul_node"] == "dev-node"
        assert labels["__meta_consul_dc"] == agent.datacenter
        assert labels["__meta_consul_metadata_rack"] == "r1"
        assert labels["__meta_consul_health"] in ("passing", "critical")
        (proxy,) = by_kind(groups, "proxy")
        assert proxy["targets"] == ["127.0.0.2:19102"]
        assert proxy["labels"]["__meta_meshd_proxy_destination"] == "web"
        assert proxy["labels"]["__meta_consul_service"] == "web-sidecar-proxy"
        (own,) = by_kind(groups, "agent")
        host, port = agent.http_addresses[0][:2]
        assert own["targets"] == [f"{host}:{port}"]
        assert own["labels"]["__metrics_path__"] == "/v1/agent/metrics"
        assert own["labels"]["__param_format"] == "prometheus"

        only = (await api.get("/v1/prometheus/sd?kind=agent")).json()
        assert [g["labels"]["__meta_meshd_kind"] for g in only] == ["agent"]
        web_only = (await api.get("/v1/prometheus/sd?service=web&kind=service")).json()
        assert [g["labels"]["__meta_consul_service"] for g in web_only] == ["web"]
        bad = await api.get("/v1/prometheus/sd?kind=pods")
        assert bad.status == 400 and "kind" in bad.text


async def test_sd_blocking_query_written_at_5s_answers_at_5s(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        # Straight after start-up the services table is one index ahead of the
        # nodes and checks tables; the answer's index is the highest, and the
        # next query with it must still park (each table waits from its own).
        first = await wait_for(api, "/v1/prometheus/sd", lambda g: len(g) >= 1)

        async def register() -> None:
            # A catalog write (an agent registration reaches the catalog a
            # moment later, through anti-entropy).
            body = {"Node": "ext-1", "Address": "10.0.0.9", "Service": {"Service": "db"}}
            assert (await api.put("/v1/catalog/register", body)).status == 200

        resp, written, at = await block_then_write(
            api, f"/v1/prometheus/sd?index={first.index}&wait=20s", register
        )
        assert written == at == 5.0  # parked until the registration, answered then
        assert resp.index > first.index
        names = {g["labels"].get("__meta_consul_service") for g in resp.json()}
        assert "db" in names


async def test_service_topology_lists_upstreams_and_downstreams_with_intentions(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (agent, api):
        default_allow = agent.config.connect.default_intention_policy == "allow"
        assert (await api.put("/v1/agent/service/register", WEB)).status == 200
        assert (await api.put("/v1/agent/service/register", API)).status == 200
        deny = {"SourceName": "web", "DestinationName": "api", "Action": "deny"}
        assert (await api.request("POST", "/v1/connect/intentions", deny)).status == 200
        resp = await wait_for(
            api,
            "/v1/internal/ui/service-topology/web?kind=",
            lambda t: (
                [u["Name"] for u in t["Upstreams"]] == ["api"]
                and t["Upstreams"][0]["InstanceCount"] == 1
            ),
        )
        web = resp.json()
        assert web["Downstreams"] == [] and web["FilteredByACLs"] is False
        assert web["Protocol"] == "tcp" and web["TransparentProxy"] is False
        (up,) = web["Upstreams"]
        assert up["Source"] == "proxy-registration"
        assert up["Nodes"] == ["dev-node"] and up["Datacenter"]
        assert up["Intention"] == {
            "DefaultAllow": default_allow,
            "Allowed": False,
            "HasPermissions": False,
            "ExternalSource": "",
            "HasExact": True,
        }
        for key in ("ChecksPassing", "ChecksWarning", "ChecksCritical", "ConnectNative"):
            assert key in up
        api_topo = (await api.get("/v1/internal/ui/service-topology/api?kind=")).json()
        assert api_topo["Upstreams"] == []
        (down,) = api_topo["Downstreams"]
        assert down["Name"] == "web" and down["InstanceCount"] == 1
        assert down["Intention"]["Allowed"] is False and down["Intention"]["HasExact"] is True
        none = (await api.get("/v1/internal/ui/service-topology/nothing?kind=")).json()
        assert none["Upstreams"] == [] and none["Downstreams"] == []
        missing = await api.get("/v1/internal/ui/service-topology/web")
        assert missing.status == 400 and "Missing service kind" in missing.text
        gateway = await api.get("/v1/internal/ui/service-topology/web?kind=mesh-gateway")
        assert gateway.status == 400 and "Unsupported service kind" in gateway.text


def test_decision_follows_precedence_permissions_and_wildcards() -> None:
    wild = {"SourceName": "*", "DestinationName": "api", "Action": "allow", "Precedence": 8}
    exact_l7 = {
        "SourceName": "web",
        "DestinationName": "api",
        "Action": "",
        "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}],
        "Precedence": 9,
        "Meta": {"external-source": "kubernetes"},
    }
    assert decision([wild], "web", "api", False) == {
        "DefaultAllow": False,
        "Allowed": True,
        "HasPermissions": False,
        "ExternalSource": "",
        "HasExact": False,
    }
    l7 = decision([wild, exact_l7], "web", "api", True)
    assert l7["Allowed"] is False and l7["HasPermissions"] is True
    assert l7["HasExact"] is True and l7["ExternalSource"] == "kubernetes"
    assert decision([wild], "web", "db", True)["Allowed"] is True  # default allow


async def test_sd_and_topology_are_filtered_by_acls(
    autojump_clock: MockClock, tmp_path: Any
) -> None:
    cfg = tmp_path / "acl.json"
    cfg.write_text('{"acl": {"enabled": true, "default_policy": "deny"}}')
    async with inproc_agent(files=[str(cfg)]) as (_agent, anon):
        boot = await anon.put("/v1/acl/bootstrap")
        assert boot.status == 200, boot.text
        admin = InprocClient(anon.app, token=boot.json()["SecretID"])
        assert (await admin.put("/v1/agent/service/register", WEB)).status == 200
        assert (await admin.put("/v1/agent/service/register", API)).status == 200
        rules = 'service "web" { policy = "read" }\nnode_prefix "" { policy = "read" }'
        policy = await admin.put("/v1/acl/policy", {"Name": "web-only", "Rules": rules})
        assert policy.status == 200, policy.text
        token = await admin.put("/v1/acl/token", {"Policies": [{"Name": "web-only"}]})
        web_only = InprocClient(anon.app, token=token.json()["SecretID"])
        await wait_for(
            admin,
            "/v1/internal/ui/service-topology/web?kind=",
            lambda t: [u["Name"] for u in t["Upstreams"]] == ["api"],
        )
        resp = await web_only.get("/v1/prometheus/sd")
        assert resp.status == 200
        assert resp.headers.get("x-consul-results-filtered-by-acls") == "true"
        services = {
            g["labels"].get("__meta_consul_service") for g in by_kind(resp.json(), "service")
        }
        assert services == {"web"}
        topo = (await web_only.get("/v1/internal/ui/service-topology/web?kind=")).json()
        assert topo["Upstreams"] == [] and topo["FilteredByACLs"] is True
        denied = await web_only.get("/v1/internal/ui/service-topology/api?kind=")
        assert denied.status == 403
        everything = (await admin.get("/v1/prometheus/sd")).json()
        assert {"web", "api"} <= {g["labels"].get("__meta_consul_service") for g in everything}


def test_agent_targets_are_this_agent_and_nodes_advertising_meshd_metrics_addr() -> None:
    class FakeAgent:
        node_name = "n1"
        http_addresses = [("0.0.0.0", 8500)]

    nodes = [
        {"Node": "n1", "Address": "10.0.0.1", "Datacenter": "dc1", "Meta": {}},
        {"Node": "n2", "Address": "10.0.0.2", "Meta": {"meshd-metrics-addr": "10.0.0.2:8501"}},
        {"Node": "n3", "Address": "10.0.0.3", "Meta": {}},
    ]
    groups = agent_groups(FakeAgent(), nodes)  # type: ignore[arg-type]
    assert [g["targets"] for g in groups] == [["10.0.0.1:8500"], ["10.0.0.2:8501"]]
    assert groups[1]["labels"]["__meta_consul_metadata_meshd_metrics_addr"] == "10.0.0.2:8501"
    assert all(g["labels"]["__meta_meshd_kind"] == "agent" for g in groups)
