"""connect.l7.explain: the proxy's decision on a compiled chain, told in the
chain's terms (route, splits, targets with eligible and ejected instances,
redirect, failover, L4 chains)."""

from __future__ import annotations

import random
from typing import Any

from connect.l7.chain import compile_chain
from connect.l7.chain_validate import EntrySet
from connect.l7.entries import parse_entry
from connect.l7.explain import explain
from connect.l7.request import Request

HTTP = {"Kind": "service-defaults", "Protocol": "http"}


def chain(name: str, *entries: dict[str, Any]) -> dict[str, Any]:
    es = EntrySet.of([parse_entry(e) for e in entries])
    return compile_chain(name, es, "dc1", "consul").to_json()


def get(path: str = "/", **headers: str) -> Request:
    return Request.build("GET", path, headers.items(), source_service="web")


def test_resolver_redirect_is_named_and_failover_takes_over_when_all_are_ejected() -> None:
    c = chain(
        "api",
        {**HTTP, "Name": "api"},
        {**HTTP, "Name": "api2"},
        {**HTTP, "Name": "api3"},
        {"Kind": "service-resolver", "Name": "api", "Redirect": {"Service": "api2"}},
        {
            "Kind": "service-resolver",
            "Name": "api2",
            "Failover": {"*": {"Service": "api3"}},
            "RequestTimeout": "2s",
        },
    )
    a2, a3 = "api2.default.default.dc1", "api3.default.default.dc1"
    endpoints = {a2: ["10.0.0.1:1"], a3: ["10.0.0.3:1"]}
    out = explain(c, endpoints, {}, get(), rng=random.Random(1))
    assert out["Route"] is None and out["Splits"] == [] and out["L7"] is True
    [t] = out["Targets"]
    assert t["ID"] == a2 and t["RedirectedFrom"] == "api" and t["Failover"] == [a3]
    assert out["Endpoint"] == "10.0.0.1:1" and out["TimeoutSeconds"] == 2.0
    # A lone instance is never ejected by the proxy, but a report may say it is
    # (and a target can have no healthy instance): failover answers.
    out = explain(c, endpoints, {a2: {"10.0.0.1:1"}}, get(), rng=random.Random(1))
    assert [t["ID"] for t in out["Targets"]] == [a2, a3]
    assert out["Targets"][0]["Ejected"] == ["10.0.0.1:1"]
    assert out["Targets"][0]["Eligible"] == []
    assert out["Target"] == a3 and out["Endpoint"] == "10.0.0.3:1"
    assert out["Eligible"] == ["10.0.0.3:1"] and out["Ejected"] == []
    # No failover instance either: the proxy answers 503 itself.
    out = explain(c, {a2: ["10.0.0.1:1"]}, {a2: {"10.0.0.1:1"}}, get(), rng=random.Random(1))
    assert out["Outcome"] == "no_healthy_upstream" and out["LocalStatus"] == 503
    assert out["Ejected"] == ["10.0.0.1:1"] and out["Endpoint"] is None


def test_route_match_or_the_catch_all_and_a_tcp_chain_is_l4() -> None:
    router = {
        "Kind": "service-router",
        "Name": "api",
        "Routes": [{"Match": {"HTTP": {"PathPrefix": "/a"}}}],
    }
    c = chain("api", {**HTTP, "Name": "api"}, router)
    out = explain(c, {}, {}, get("/a/b"), rng=random.Random(1))
    assert out["Route"]["Index"] == 0 and out["Route"]["Default"] is False
    assert out["Route"]["Match"] == {"HTTP": {"PathPrefix": "/a"}}
    out = explain(c, {}, {}, get("/zzz"), rng=random.Random(1))
    assert out["Route"]["Default"] is True  # the compiler's catch-all
    assert out["Outcome"] == "no_healthy_upstream"  # no instance known
    tcp = explain(
        chain("db"), {"db.default.default.dc1": ["10.0.0.9:5"]}, {}, get(), rng=random.Random(1)
    )
    assert tcp["L7"] is False and tcp["Protocol"] == "tcp"
    assert tcp["Route"] is None and tcp["Retry"] is None and tcp["TimeoutSeconds"] is None
    assert tcp["Endpoint"] == "10.0.0.9:5"
