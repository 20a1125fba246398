"""meshd.metrics: one registry per agent, scraped as Prometheus text and as Consul's JSON."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import Any

import dns.message
import dns.rcode
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio.testing import MockClock

from meshd.agent.live_metrics import agent_metrics
from meshd.agent.local import LocalState
from meshd.agent.sync import AntiEntropy, NodeInfo
from meshd.agent.wire import ReadOptions, ReadResult, WriteResult
from meshd.dns import DNSHandler, DNSSettings
from meshd.dns.wire_labels import dns_qtype, dns_rcode
from meshd.errors import MeshdError
from meshd.metrics.live import Live
from meshd.metrics.prometheus import Metrics
from meshd.rpc import RPCError
from registry.commands import Command
from tests.meshd.dns._support import row
from tests.meshd.dns.test_handler import CountingLookup
from tests.meshd.harness import APIClient, dev_agent
from tests.meshd.inproc import InprocClient, inproc_agent

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

JSON_AGGREGATE_KEYS = {"Name", "Count", "Rate", "Sum", "Min", "Max", "Mean", "Stddev", "Labels"}


def parse(text: str) -> Samples:
    """Every sample of a text exposition, keyed by (sample name, labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 for a labelled series that does not exist yet."""
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(api: APIClient | InprocClient) -> Samples:
    r = await api.get("/v1/agent/metrics?format=prometheus")
    assert r.status == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(r.text)


# ------------------------------------------------------------------ units


def test_metric_names_use_the_configured_prefix_with_dots_as_underscores() -> None:
    m = Metrics("consul.dc1", lambda: [Live("raft.term", "term", 7)])
    m.check_result("http", "passing", 0.02)
    samples = parse(m.prometheus_text().decode())
    assert value(samples, "consul_dc1_raft_term") == 7
    assert value(samples, "consul_dc1_checks_runs_total", kind="http", status="passing") == 1
    gauges = {g["Name"]: g["Value"] for g in m.summary(0)["Gauges"]}
    assert gauges["consul.dc1.raft.term"] == 7


def test_check_results_and_liveness_changes_are_counted_by_label() -> None:
    m = Metrics()
    m.check_result("http", "passing", 0.01)
    m.check_result("http", "critical", 2.0)
    m.check_result("tcp", "passing", 0.001)
    m.liveness_change("node-a", "failed")
    m.liveness_change("node-b", "failed")
    m.liveness_change("node-a", "alive")
    samples = parse(m.prometheus_text().decode())
    assert value(samples, "meshd_checks_runs_total", kind="http", status="critical") == 1
    assert value(samples, "meshd_checks_runs_total", kind="tcp", status="passing") == 1
    assert value(samples, "meshd_checks_run_duration_seconds_count", kind="http") == 2
    assert value(samples, "meshd_checks_run_duration_seconds_sum", kind="http") == 2.01
    assert value(samples, "meshd_liveness_changes_total", status="failed") == 2
    assert value(samples, "meshd_liveness_changes_total", status="alive") == 1


def test_json_summary_has_consul_shape_with_histogram_spread_from_buckets() -> None:
    now = [100.0]
    m = Metrics(clock=lambda: now[0])
    m.raft_commit(0.003)
    m.raft_commit(0.003)
    m.http_request("catalog.nodes", "GET", 200, 0.001)
    now[0] += 10
    doc = m.summary(1136214245)  # 2006-01-02 15:04:05 UTC
    assert doc["Timestamp"] == "2006-01-02 15:04:05 +0000 UTC"
    assert set(doc) == {"Timestamp", "Gauges", "Points", "Counters", "Samples"}
    assert doc["Points"] == []
    [commit] = [s for s in doc["Samples"] if s["Name"] == "meshd.raft.commit_time_seconds"]
    assert set(commit) == JSON_AGGREGATE_KEYS
    assert commit["Count"] == 2
    assert commit["Sum"] == pytest.approx(0.006)
    assert commit["Mean"] == pytest.approx(0.003)
    # Both in the (0.0025, 0.005] bucket: its bounds, its midpoint's distance.
    assert (commit["Min"], commit["Max"]) == (0.0025, 0.005)
    assert commit["Stddev"] == pytest.approx(0.00075)
    [http] = [c for c in doc["Counters"] if c["Name"] == "meshd.http.requests"]
    assert set(http) == JSON_AGGREGATE_KEYS
    assert http["Labels"] == {"route": "catalog.nodes", "method": "GET", "code": "200"}
    assert (http["Count"], http["Sum"], http["Rate"]) == (1, 1.0, pytest.approx(0.1))


def test_http_label_values_stay_bounded() -> None:
    m = Metrics()
    m.http_request(None, "BREW", 404, 0.0)
    samples = parse(m.prometheus_text().decode())
    assert value(samples, "meshd_http_requests_total", route="unrouted", method="other", code="404")


def test_dns_qtype_and_rcode_are_read_from_the_wire() -> None:
    srv = dns.message.make_query("web.service.consul", "SRV")
    assert dns_qtype(srv.to_wire()) == "SRV"
    assert dns_qtype(dns.message.make_query("x.consul", "HINFO").to_wire()) == "other"
    assert dns_qtype(b"\x00" * 5) == "none"
    assert dns_qtype(srv.to_wire()[:-3]) == "malformed"
    reply = dns.message.make_response(srv)
    reply.set_rcode(dns.rcode.NXDOMAIN)
    assert dns_rcode(reply.to_wire()) == "NXDOMAIN"
    assert dns_rcode(None) == "dropped"


async def test_dns_handler_counts_every_answer_once_by_qtype_and_rcode() -> None:
    m = Metrics()
    h = DNSHandler(
        CountingLookup([row("a", "10.0.0.1")]),
        DNSSettings(),
        rng=random.Random(1),
        metrics=m,
    )
    a_query = dns.message.make_query("web.service.consul", "A").to_wire()
    assert await h.reply(a_query, "udp") is not None  # looked up
    assert h.cached_reply(a_query, "udp") is not None  # from the cache
    assert await h.reply(a_query, "udp") is not None  # from the cache, through reply
    outside = dns.message.make_query("example.org", "AAAA").to_wire()
    assert await h.reply(outside, "udp") is not None  # no recursors: REFUSED
    assert await h.reply(b"\x00\x01", "udp") is None  # not a query: dropped
    samples = parse(m.prometheus_text().decode())
    assert value(samples, "meshd_dns_queries_total", qtype="A", rcode="NOERROR") == 3
    assert value(samples, "meshd_dns_queries_total", qtype="AAAA", rcode="REFUSED") == 1
    assert value(samples, "meshd_dns_queries_total", qtype="none", rcode="dropped") == 1


class _FailingBackend:
    async def write(self, cmd: Command) -> WriteResult:
        raise MeshdError("no server")

    async def read(self, name: str, args: Mapping[str, Any], opts: ReadOptions) -> ReadResult:
        raise MeshdError("no server")


async def test_failed_anti_entropy_passes_are_counted_as_errors(autojump_clock: Any) -> None:
    m = Metrics()
    node = NodeInfo("n1", "id-1", "127.0.0.1", "dc1", {}, {})
    sync = AntiEntropy(LocalState("n1", None), _FailingBackend(), node, metrics=m)
    with trio.move_on_after(2):  # retries after 0.5 s, then 1 s
        await sync.run()
    samples = parse(m.prometheus_text().decode())
    assert value(samples, "meshd_agent_sync_runs_total", kind="full", result="error") == 3
    assert value(samples, "meshd_agent_sync_duration_seconds_count", kind="full") == 3


# ------------------------------------------------------- a real dev agent


@pytest.mark.e2e
async def test_prometheus_scrape_reports_raft_and_catalog_of_a_dev_agent() -> None:
    async with dev_agent() as (agent, api):
        before = (await api.get("/v1/agent/self")).json()["Stats"]["raft"]
        samples = await scrape(api)
        after = (await api.get("/v1/agent/self")).json()["Stats"]["raft"]
        for gauge, stat in [("commit_index", "commit_index"), ("applied_index", "applied_index")]:
            got = value(samples, f"meshd_raft_{gauge}")
            assert int(before[stat]) <= got <= int(after[stat])
        assert value(samples, "meshd_raft_applied_index") >= 1
        assert value(samples, "meshd_raft_term") == int(after["term"])
        assert value(samples, "meshd_raft_state", state="leader") == 1
        assert value(samples, "meshd_raft_state", state="follower") == 0
        assert value(samples, "meshd_raft_leader_changes_total") >= 1
        assert value(samples, "meshd_catalog_nodes") == 1
        assert value(samples, "meshd_catalog_nodes_by_health", status="passing") == 1
        assert value(samples, "meshd_catalog_service_instances") == 0
        assert agent.server is not None


async def test_http_requests_are_counted_by_route_method_and_status(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        labels = {"route": "catalog.nodes", "method": "GET", "code": "200"}
        first = await scrape(api)
        assert value(first, "meshd_http_requests_total", **labels) == 0
        assert (await api.get("/v1/catalog/nodes")).status == 200
        assert (await api.get("/v1/nope")).status == 404
        samples = await scrape(api)
        assert value(samples, "meshd_http_requests_total", **labels) == 1
        duration = "meshd_http_request_duration_seconds_count"
        assert value(samples, duration, route="catalog.nodes", method="GET") == 1
        missing = {"route": "unrouted", "method": "GET", "code": "404"}
        assert value(samples, "meshd_http_requests_total", **missing) == 1
        # The first scrape itself was counted by the time of the second.
        scrapes = {"route": "agent.metrics", "method": "GET", "code": "200"}
        assert value(samples, "meshd_http_requests_total", **scrapes) == 1


async def test_a_kv_write_is_observed_by_the_raft_commit_and_apply_histograms(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        before = await scrape(api)
        assert (await api.put("/v1/kv/metrics-test", raw=b"v")).status == 200
        after = await scrape(api)
        for name in ["meshd_raft_commit_time_seconds_count", "meshd_raft_fsm_apply_seconds_count"]:
            assert value(after, name) >= value(before, name) + 1
        assert value(after, "meshd_raft_commit_index") > value(before, "meshd_raft_commit_index")


@pytest.mark.e2e
async def test_service_health_and_anti_entropy_show_up_after_a_registration() -> None:
    service = {"ID": "web-1", "Name": "web", "Port": 80, "Check": {"TTL": "30s"}}
    async with dev_agent() as (agent, api):
        assert (await api.put("/v1/agent/service/register", service)).status == 200
        await agent.wait_synced(5)
        samples = await scrape(api)
        assert value(samples, "meshd_agent_services") == 1
        assert value(samples, "meshd_catalog_services") == 1
        assert value(samples, "meshd_catalog_service_instances") == 1
        # A TTL check starts critical, and the instance with it.
        by_health = "meshd_catalog_service_instances_by_health"
        assert value(samples, by_health, status="critical") == 1
        assert value(samples, by_health, status="passing") == 0
        assert value(samples, "meshd_catalog_checks", status="critical") == 1
        assert value(samples, "meshd_agent_sync_runs_total", kind="changes", result="ok") >= 1
        assert value(samples, "meshd_agent_sync_writes_total") >= 1


async def test_blocking_queries_in_flight_are_a_gauge(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        put = await api.put("/v1/kv/watched", raw=b"1")
        assert put.status == 200
        index = (await api.get("/v1/kv/watched")).headers["x-consul-index"]
        via_http = {"via": "http"}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(api.get, f"/v1/kv/watched?index={index}&wait=20s")
            with trio.fail_after(10):
                while value(await scrape(api), "meshd_rpc_queries_blocking", **via_http) != 1:
                    await trio.sleep(0.02)
            await api.put("/v1/kv/watched", raw=b"2")  # wakes the query
        samples = await scrape(api)
        assert value(samples, "meshd_rpc_queries_blocking", **via_http) == 0


async def test_rpc_requests_are_counted_by_method_and_result(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (agent, api):
        rpc = agent.rpc
        assert rpc is not None
        assert await rpc.call(agent.rpc_address, "Status.Leader", {}) == agent.rpc_address
        with pytest.raises(RPCError, match="UnknownMethod"):
            await rpc.call(agent.rpc_address, "No.Such", {})
        samples = await scrape(api)
        ok = {"method": "Status.Leader", "result": "ok"}
        assert value(samples, "meshd_rpc_requests_total", **ok) == 1
        unknown = {"method": "unknown", "result": "UnknownMethod"}
        assert value(samples, "meshd_rpc_requests_total", **unknown) == 1
        count = "meshd_rpc_request_duration_seconds_count"
        assert value(samples, count, method="Status.Leader") == 1


async def test_json_metrics_have_consul_shape_from_the_same_registry(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        await api.get("/v1/catalog/nodes")
        body = (await api.get("/v1/agent/metrics")).json()
        assert set(body) == {"Timestamp", "Gauges", "Points", "Counters", "Samples"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000 UTC", body["Timestamp"])
        gauges = {g["Name"]: g for g in body["Gauges"]}
        assert set(gauges["meshd.raft.commit_index"]) == {"Name", "Value", "Labels"}
        assert gauges["meshd.catalog.nodes"]["Value"] == 1
        [nodes] = [
            c
            for c in body["Counters"]
            if c["Name"] == "meshd.http.requests" and c["Labels"]["route"] == "catalog.nodes"
        ]
        assert set(nodes) == JSON_AGGREGATE_KEYS and nodes["Count"] == 1
        names = {s["Name"] for s in body["Samples"]}
        assert {"meshd.http.request_duration_seconds", "meshd.raft.fsm_apply_seconds"} <= names
        assert all(set(s) == JSON_AGGREGATE_KEYS for s in body["Samples"])


async def test_two_agents_in_one_process_have_independent_registries(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (agent_a, api_a), inproc_agent() as (agent_b, api_b):
        for _ in range(3):
            await api_a.get("/v1/catalog/nodes")
        labels = {"route": "catalog.nodes", "method": "GET", "code": "200"}
        assert value(await scrape(api_a), "meshd_http_requests_total", **labels) == 3
        assert value(await scrape(api_b), "meshd_http_requests_total", **labels) == 0
        assert agent_metrics(agent_a).registry is not agent_metrics(agent_b).registry
