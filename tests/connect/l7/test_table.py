"""connect.l7.table: a compiled chain's JSON to the decision table."""

from __future__ import annotations

import random
from typing import Any

import pytest

from connect.l7.chain import compile_chain
from connect.l7.chain_validate import EntrySet
from connect.l7.decide import Decider
from connect.l7.entries import parse_entry
from connect.l7.request import Request
from connect.l7.table import TableError, table_from_chain, upstream_limits

V1 = "v1.web.default.default.dc1"
V2 = "v2.web.default.default.dc1"

RESOLVER: dict[str, Any] = {
    "Kind": "service-resolver",
    "Name": "web",
    "DefaultSubset": "v1",
    "Subsets": {
        "v1": {"Filter": 'Service.Meta.version == "v1"'},
        "v2": {"Filter": 'Service.Meta.version == "v2"'},
    },
    "Failover": {"v2": {"ServiceSubset": "v1"}},
    "RequestTimeout": "3s",
    "LoadBalancer": {
        "Policy": "ring_hash",
        "HashPolicies": [{"Field": "header", "FieldValue": "x-user"}],
    },
}
ENTRIES: list[dict[str, Any]] = [
    {
        "Kind": "service-defaults",
        "Name": "web",
        "Protocol": "http",
        "EnvoyExtensions": [
            {
                "Name": "builtin/fault-injection",
                "Arguments": {"Config": {"Abort": {"HttpStatus": 418, "Percentage": 25}}},
            }
        ],
    },
    RESOLVER,
    {
        "Kind": "service-splitter",
        "Name": "web",
        "Splits": [
            {"Weight": 90, "ServiceSubset": "v1"},
            {
                "Weight": 10,
                "ServiceSubset": "v2",
                "RequestHeaders": {"Set": {"x-canary": "1"}},
            },
        ],
    },
    {
        "Kind": "service-router",
        "Name": "web",
        "Routes": [
            {
                "Match": {"HTTP": {"Header": [{"Name": "x-version", "Exact": "v2"}]}},
                "Destination": {
                    "ServiceSubset": "v2",
                    "RequestTimeout": "200ms",
                    "NumRetries": 3,
                    "RetryOnStatusCodes": [503],
                },
            },
            {
                "Match": {"HTTP": {"PathPrefix": "/old"}},
                "Destination": {"PrefixRewrite": "/new"},
            },
        ],
    },
]


def chain_json(entries: list[dict[str, Any]]) -> dict[str, Any]:
    lookup = EntrySet.of(parse_entry(e) for e in entries)
    return compile_chain("web", lookup, "dc1", "consul").to_json()


ENDPOINTS = {V1: ["10.0.0.1:1", "10.0.0.2:1"], V2: ["10.0.0.3:1"]}


def test_router_split_and_targets_convert_with_their_policies() -> None:
    table = table_from_chain(chain_json(ENTRIES), ENDPOINTS)
    assert table.router is not None
    assert [r.next_node for r in table.router.routes] == [
        V2,
        "splitter:web.default.default",
        "splitter:web.default.default",
    ]
    first = table.route_policies[0]
    assert first.request_timeout_s == pytest.approx(0.2)
    assert first.retry.max_retries() == 3 and first.retry.retry_on_status_codes == (503,)
    assert table.router.routes[1].prefix_rewrite == "/new"
    splitter = table.splitters["splitter:web.default.default"]
    assert splitter.buckets == ((V1, 90.0), (V2, 10.0))
    v2 = table.targets[V2]
    assert v2.endpoints == ("10.0.0.3:1",) and v2.failover == (V1,)
    assert v2.request_timeout_s == pytest.approx(3.0)
    assert v2.load_balancer.policy == "ring_hash"
    assert v2.load_balancer.hash_policies[0].field_value == "x-user"
    assert v2.fault is not None and v2.fault.abort is not None
    assert (v2.fault.abort.http_status, v2.fault.abort.percentage) == (418, 25)


def test_decisions_on_the_converted_table_follow_the_entries() -> None:
    decider = Decider(table_from_chain(chain_json(ENTRIES), ENDPOINTS))
    rng = random.Random(7)
    hidden = decider.decide(Request.build("GET", "/", [("x-version", "v2")]), rng=rng)
    assert (hidden.outcome, hidden.target, hidden.timeout_s) == ("ok", V2, 0.2)
    picks = [decider.decide(Request.build("GET", "/a"), rng=rng) for _ in range(4000)]
    share = sum(d.target == V2 for d in picks) / len(picks)
    assert 0.085 < share < 0.115
    canary = next(d for d in picks if d.target == V2)
    assert canary.request_headers.get("x-canary") == "1"
    old = decider.decide(Request.build("GET", "/old/x"), rng=rng)
    assert old.forward_path == "/new/x"
    # v2 without endpoints fails over to v1.
    empty = Decider(table_from_chain(chain_json(ENTRIES), {V1: ["10.0.0.1:1"]}))
    d = empty.decide(Request.build("GET", "/", [("x-version", "v2")]), rng=rng)
    assert (d.outcome, d.target, d.endpoint) == ("ok", V1, "10.0.0.1:1")


def test_default_chain_is_one_target_without_router() -> None:
    chain = chain_json([])
    table = table_from_chain(chain, {"web.default.default.dc1": ["a:1"]})
    assert table.router is None and table.start == "web.default.default.dc1"
    d = Decider(table).decide(Request.build("GET", "/"), rng=random.Random(1))
    assert (d.outcome, d.endpoint, d.timeout_s) == ("ok", "a:1", 15.0)
    none = Decider(table_from_chain(chain)).decide(Request.build("GET", "/"), rng=random.Random(1))
    assert none.outcome == "no_healthy_upstream" and none.status_if_local == 503


def test_a_chain_referencing_a_missing_node_is_a_table_error() -> None:
    chain = chain_json(ENTRIES)
    chain["StartNode"] = "router:nope"
    with pytest.raises(TableError, match="router:nope"):
        table_from_chain(chain)


def test_upstream_limits_prefer_the_override_for_the_upstream() -> None:
    sd = {
        "Kind": "service-defaults",
        "Name": "front",
        "UpstreamConfig": {
            "Defaults": {"Limits": {"MaxConcurrentRequests": 50}},
            "Overrides": [
                {
                    "Name": "web",
                    "Limits": {"MaxPendingRequests": 2, "MaxConcurrentRequests": 4},
                    "PassiveHealthCheck": {
                        "Interval": "1s",
                        "MaxFailures": 3,
                        "BaseEjectionTime": "2s",
                    },
                }
            ],
        },
        "CreateIndex": 5,
        "ModifyIndex": 5,
    }
    web = upstream_limits(sd, "web")
    assert web.limits is not None and web.limits.max_concurrent_requests == 4
    assert web.limits.max_pending_requests == 2
    assert web.outlier is not None
    assert (web.outlier.max_failures, web.outlier.base_ejection_time_s) == (3, 2.0)
    other = upstream_limits(sd, "db")
    assert other.limits is not None and other.limits.max_concurrent_requests == 50
    assert other.outlier is None
    assert upstream_limits(None, "web").limits is None
