"""The discovery chain compiler, after Consul's discoverychain/compile_test.go."""

from __future__ import annotations

from typing import Any

import pytest

from connect.l7.chain import CompileOverrides, compile_chain, parse_overrides
from connect.l7.chain_types import CompiledChain
from connect.l7.chain_validate import EntrySet
from connect.l7.decode import ChainError, ValidationError
from connect.l7.entries import parse_entry

TD = "11111111-2222-3333-4444-555555555555.consul"
HTTP = {"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}}


def entries(*raw: dict[str, Any]) -> EntrySet:
    return EntrySet.of(parse_entry(r) for r in raw)


def chain(service: str, *raw: dict[str, Any], **kw: Any) -> CompiledChain:
    return compile_chain(service, entries(*raw), "dc1", TD, **kw)


def splits(c: CompiledChain, node: str) -> list[tuple[float, str]]:
    return [(s.weight, s.next_node) for s in c.nodes[node].splits]


def test_no_entries_compiles_the_default_chain() -> None:
    out = chain("main").to_json()
    assert out == {
        "ServiceName": "main",
        "Namespace": "default",
        "Partition": "default",
        "Datacenter": "dc1",
        "Default": True,
        "Protocol": "tcp",
        "StartNode": "resolver:main.default.default.dc1",
        "Nodes": {
            "resolver:main.default.default.dc1": {
                "Type": "resolver",
                "Name": "main.default.default.dc1",
                "Resolver": {
                    "Default": True,
                    "ConnectTimeout": "5s",
                    "Target": "main.default.default.dc1",
                },
            }
        },
        "Targets": {
            "main.default.default.dc1": {
                "ID": "main.default.default.dc1",
                "Service": "main",
                "ServiceSubset": "",
                "Namespace": "default",
                "Partition": "default",
                "Datacenter": "dc1",
                "Peer": "",
                "MeshGateway": {"Mode": ""},
                "Subset": {"Filter": "", "OnlyPassing": False},
                "ConnectTimeout": "5s",
                "External": False,
                "SNI": f"main.default.dc1.internal.{TD}",
                "Name": f"main.default.dc1.internal.{TD}",
            }
        },
    }


def test_router_with_no_routes_gets_the_catch_all_route() -> None:
    c = chain("main", HTTP, {"Kind": "service-router", "Name": "main"})
    assert c.start_node == "router:main.default.default"
    assert not c.default
    routes = c.nodes["router:main.default.default"].to_json()["Routes"]
    assert routes == [
        {
            "Definition": {
                "Match": {"HTTP": {"PathPrefix": "/"}},
                "Destination": {"Service": "main", "Namespace": "default", "Partition": "default"},
            },
            "NextNode": "resolver:main.default.default.dc1",
        }
    ]


def test_router_with_subsets_routes_bypass_the_splitter() -> None:
    c = chain(
        "main",
        HTTP,
        {
            "Kind": "service-router",
            "Name": "main",
            "Routes": [
                {"Match": {"HTTP": {"PathPrefix": "/v2"}}, "Destination": {"ServiceSubset": "v2"}},
                {"Match": {"HTTP": {"PathPrefix": "/other"}}, "Destination": {"Service": "other"}},
            ],
        },
        {
            "Kind": "service-splitter",
            "Name": "main",
            "Splits": [
                {"Weight": 60, "ServiceSubset": "v1"},
                {"Weight": 40, "ServiceSubset": "v2"},
            ],
        },
        {
            "Kind": "service-resolver",
            "Name": "main",
            "Subsets": {"v1": {"Filter": "v1"}, "v2": {"Filter": "v2"}},
        },
    )
    nexts = [r.next_node for r in c.nodes["router:main.default.default"].routes]
    assert nexts == [
        "resolver:v2.main.default.default.dc1",
        "resolver:other.default.default.dc1",
        "splitter:main.default.default",
    ]
    assert splits(c, "splitter:main.default.default") == [
        (60, "resolver:v1.main.default.default.dc1"),
        (40, "resolver:v2.main.default.default.dc1"),
    ]
    target = c.targets["v2.main.default.default.dc1"]
    assert target.subset.filter == "v2"
    assert target.sni == f"v2.main.default.dc1.internal.{TD}"
    assert sorted(c.targets) == [
        "other.default.default.dc1",
        "v1.main.default.default.dc1",
        "v2.main.default.default.dc1",
    ]


def test_splitter_of_splitters_is_flattened_with_merged_headers() -> None:
    c = chain(
        "main",
        HTTP,
        {
            "Kind": "service-splitter",
            "Name": "main",
            "Splits": [
                {"Weight": 60, "Service": "main"},
                {
                    "Weight": 40,
                    "Service": "canary",
                    "RequestHeaders": {"Set": {"x-a": "p", "x-b": "p"}},
                },
            ],
        },
        {
            "Kind": "service-splitter",
            "Name": "canary",
            "Splits": [
                {"Weight": 50, "Service": "c1", "RequestHeaders": {"Set": {"x-a": "c"}}},
                {"Weight": 50, "Service": "c2"},
            ],
        },
    )
    assert list(c.nodes) == [
        "resolver:c1.default.default.dc1",
        "resolver:c2.default.default.dc1",
        "resolver:main.default.default.dc1",
        "splitter:main.default.default",
    ]
    assert splits(c, "splitter:main.default.default") == [
        (60, "resolver:main.default.default.dc1"),
        (20, "resolver:c1.default.default.dc1"),
        (20, "resolver:c2.default.default.dc1"),
    ]
    c1 = c.nodes["splitter:main.default.default"].splits[1].definition
    assert c1.request_headers.set == {"x-a": "c", "x-b": "p"}


def test_flattened_weights_keep_summing_to_100() -> None:
    c = chain(
        "main",
        HTTP,
        {
            "Kind": "service-splitter",
            "Name": "main",
            "Splits": [{"Weight": 66.67, "Service": "a"}, {"Weight": 33.33}],
        },
        {
            "Kind": "service-splitter",
            "Name": "a",
            "Splits": [
                {"Weight": 33.33, "Service": "b"},
                {"Weight": 33.33, "Service": "c"},
                {"Weight": 33.34},
            ],
        },
    )
    weights = [w for w, _ in splits(c, "splitter:main.default.default")]
    assert round(sum(weights) * 100) == 10000
    assert weights[1:] == [22.22, 22.23, 33.33]


def test_redirect_is_followed_to_another_service_and_subset() -> None:
    c = chain(
        "main",
        {
            "Kind": "service-resolver",
            "Name": "main",
            "Redirect": {"Service": "other", "ServiceSubset": "v1"},
        },
        {
            "Kind": "service-resolver",
            "Name": "other",
            "Subsets": {"v1": {"OnlyPassing": True}},
            "ConnectTimeout": "33s",
        },
    )
    assert c.start_node == "resolver:v1.other.default.default.dc1"
    assert list(c.targets) == ["v1.other.default.default.dc1"]
    assert c.targets["v1.other.default.default.dc1"].subset.only_passing
    node = c.nodes[c.start_node].to_json()
    assert node["Resolver"] == {
        "Default": False,
        "ConnectTimeout": "33s",
        "Target": "v1.other.default.default.dc1",
    }


def test_default_subset_is_applied() -> None:
    c = chain(
        "main",
        {
            "Kind": "service-resolver",
            "Name": "main",
            "DefaultSubset": "v2",
            "Subsets": {"v1": {}, "v2": {"Filter": "x"}},
        },
    )
    assert c.start_node == "resolver:v2.main.default.default.dc1"


def test_failover_lists_resolved_targets() -> None:
    c = chain(
        "main",
        {
            "Kind": "service-resolver",
            "Name": "main",
            "Subsets": {"v1": {}},
            "Failover": {"*": {"Service": "backup"}, "v1": {"Datacenters": ["dc2", "dc3"]}},
        },
        {"Kind": "service-resolver", "Name": "backup", "Redirect": {"Service": "backup2"}},
    )
    node = c.nodes[c.start_node]
    assert node.resolver is not None
    assert node.resolver.failover_targets == ("backup2.default.default.dc1",)
    assert sorted(c.targets) == ["backup2.default.default.dc1", "main.default.default.dc1"]
    assert list(c.nodes) == ["resolver:main.default.default.dc1"]
    dc = chain(
        "main",
        {
            "Kind": "service-resolver",
            "Name": "main",
            "DefaultSubset": "v1",
            "Subsets": {"v1": {}},
            "Failover": {"v1": {"Datacenters": ["dc2", "dc3"]}},
        },
    )
    assert dc.nodes[dc.start_node].to_json()["Resolver"]["Failover"] == {
        "Targets": ["v1.main.default.default.dc2", "v1.main.default.default.dc3"]
    }
    assert dc.targets["v1.main.default.default.dc3"].sni == f"v1.main.default.dc3.internal.{TD}"


def test_mirror_target_is_compiled_into_targets() -> None:
    c = chain(
        "main",
        HTTP,
        {
            "Kind": "service-router",
            "Name": "main",
            "Routes": [{"Destination": {"Mirror": {"Service": "shadow", "Percent": 10}}}],
        },
    )
    route = c.nodes["router:main.default.default"].routes[0]
    assert route.mirror_target == "shadow.default.default.dc1"
    assert route.to_json()["MirrorTarget"] == "shadow.default.default.dc1"
    assert "shadow.default.default.dc1" in c.targets


NO_ROUTING = (
    'discovery chain "main" uses a protocol "tcp" that does not permit advanced routing or '
    "splitting behavior"
)
GRAPH_ERRORS: list[tuple[str, list[dict[str, Any]], str]] = [
    (
        "router on tcp",
        [{"Kind": "service-router", "Name": "main"}],
        NO_ROUTING,
    ),
    (
        "splitter on tcp",
        [{"Kind": "service-splitter", "Name": "main", "Splits": [{"Weight": 100}]}],
        NO_ROUTING,
    ),
    (
        "inconsistent protocols",
        [
            HTTP,
            {"Kind": "service-defaults", "Name": "b", "Protocol": "grpc"},
            {
                "Kind": "service-router",
                "Name": "main",
                "Routes": [{"Destination": {"Service": "b"}}],
            },
        ],
        'discovery chain "main" uses inconsistent protocols; service "b" has "grpc" which is '
        'not "http"',
    ),
    (
        "circular split",
        [
            HTTP,
            {
                "Kind": "service-splitter",
                "Name": "main",
                "Splits": [{"Weight": 100, "Service": "b"}],
            },
            {
                "Kind": "service-splitter",
                "Name": "b",
                "Splits": [{"Weight": 100, "Service": "main"}],
            },
        ],
        "detected circular reference: [splitter:main.default.default -> "
        "splitter:b.default.default -> splitter:main.default.default]",
    ),
    (
        "circular redirect",
        [
            {"Kind": "service-resolver", "Name": "main", "Redirect": {"Service": "b"}},
            {"Kind": "service-resolver", "Name": "b", "Redirect": {"Service": "main"}},
        ],
        "detected circular resolver redirect: "
        "[main.default.default.dc1 -> b.default.default.dc1 -> main.default.default.dc1]",
    ),
    (
        "missing subset",
        [
            HTTP,
            {
                "Kind": "service-router",
                "Name": "main",
                "Routes": [{"Destination": {"ServiceSubset": "v3"}}],
            },
        ],
        'service "main" does not have a subset named "v3"',
    ),
    (
        "redirect to missing subset",
        [
            {
                "Kind": "service-resolver",
                "Name": "main",
                "Redirect": {"Service": "b", "ServiceSubset": "v9"},
            }
        ],
        'service "b" does not have a subset named "v9"',
    ),
]


@pytest.mark.parametrize(
    ("raw", "message"), [(r, m) for _, r, m in GRAPH_ERRORS], ids=[c for c, _, _ in GRAPH_ERRORS]
)
def test_broken_graphs_are_refused_with_consuls_text(
    raw: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ChainError) as info:
        chain("main", *raw)
    assert str(info.value) == message


def test_service_defaults_protocol_beats_proxy_defaults() -> None:
    c = chain("main", HTTP, {"Kind": "service-defaults", "Name": "main", "Protocol": "tcp"})
    assert c.protocol == "tcp"
    with pytest.raises(ChainError, match="does not permit"):
        chain(
            "main",
            HTTP,
            {"Kind": "service-defaults", "Name": "main", "Protocol": "tcp"},
            {"Kind": "service-router", "Name": "main"},
        )


def test_overrides_change_timeout_protocol_and_gateway_mode() -> None:
    o = parse_overrides(
        {
            "override_connect_timeout": "22s",
            "OverrideProtocol": "grpc",
            "OverrideMeshGateway": {"Mode": "local"},
        }
    )
    assert o == CompileOverrides(22_000_000_000, "grpc", "local")
    c = chain("main", overrides=o)
    t = c.targets["main.default.default.dc1"]
    assert (c.protocol, t.connect_timeout_ns, t.mesh_gateway_mode) == (
        "grpc",
        22_000_000_000,
        "local",
    )
    assert c.customization_hash != ""


def test_tcp_override_drops_routers_and_splitters() -> None:
    c = chain(
        "main",
        HTTP,
        {"Kind": "service-router", "Name": "main"},
        overrides=CompileOverrides(protocol="tcp"),
    )
    assert c.start_node == "resolver:main.default.default.dc1"
    assert c.protocol == "tcp"


def test_bad_mesh_gateway_override_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"^Invalid OverrideMeshGateway\.Mode parameter$"):
        parse_overrides({"OverrideMeshGateway": {"Mode": "sideways"}})


def test_chain_carries_service_meta_and_extensions() -> None:
    c = chain(
        "main",
        {
            "Kind": "service-defaults",
            "Name": "main",
            "Meta": {"team": "a"},
            "EnvoyExtensions": [
                {
                    "Name": "builtin/fault-injection",
                    "Arguments": {"Config": {"Delay": {"Duration": 5, "Percentage": 1}}},
                }
            ],
        },
    )
    out = c.to_json()
    assert out["ServiceMeta"] == {"team": "a"}
    assert out["EnvoyExtensions"][0]["Name"] == "builtin/fault-injection"


def test_redirected_chain_is_not_the_default_chain() -> None:
    c = chain(
        "main", {"Kind": "service-resolver", "Name": "main", "Redirect": {"Service": "other"}}
    )
    assert c.nodes[c.start_node].resolver is not None
    assert c.nodes[c.start_node].resolver.default  # "other" has no resolver entry
    assert not c.default  # but the chain does not resolve "main" itself


def test_redirect_to_a_service_with_another_protocol_is_inconsistent() -> None:
    with pytest.raises(ChainError) as info:
        chain(
            "main",
            {"Kind": "service-defaults", "Name": "main", "Protocol": "http"},
            {"Kind": "service-resolver", "Name": "main", "Redirect": {"Service": "b"}},
        )
    assert str(info.value) == (
        'discovery chain "main" uses inconsistent protocols; service "b" has "tcp" which is '
        'not "http"'
    )


def test_l7_override_on_a_tcp_chain_drops_the_router() -> None:
    c = chain(
        "main",
        {"Kind": "service-router", "Name": "main"},
        overrides=CompileOverrides(protocol="http"),
    )
    assert c.start_node == "resolver:main.default.default.dc1"
    assert c.protocol == "http"


def test_splitter_carries_the_first_hash_based_balancer() -> None:
    c = chain(
        "main",
        HTTP,
        {
            "Kind": "service-splitter",
            "Name": "main",
            "Splits": [{"Weight": 50, "Service": "a"}, {"Weight": 50, "Service": "b"}],
        },
        {"Kind": "service-resolver", "Name": "a", "LoadBalancer": {"Policy": "least_request"}},
        {
            "Kind": "service-resolver",
            "Name": "b",
            "LoadBalancer": {"Policy": "maglev", "HashPolicies": [{"SourceIP": True}]},
        },
    )
    node = c.nodes["splitter:main.default.default"].to_json()
    assert node["LoadBalancer"] == {"Policy": "maglev", "HashPolicies": [{"SourceIP": True}]}


def test_an_empty_resolver_entry_still_compiles_the_default_chain() -> None:
    c = chain("main", {"Kind": "service-resolver", "Name": "main", "Meta": {"a": "b"}})
    assert c.default
    tuned = chain("main", {"Kind": "service-resolver", "Name": "main", "ConnectTimeout": "2s"})
    assert not tuned.default
    assert tuned.targets["main.default.default.dc1"].connect_timeout_ns == 2_000_000_000


def test_router_ignored_due_to_protocol_override() -> None:
    c = chain(
        "main",
        {"Kind": "service-defaults", "Name": "main", "Protocol": "grpc"},
        {"Kind": "service-router", "Name": "main"},
        overrides=CompileOverrides(protocol="tcp"),
    )
    assert (c.protocol, c.start_node, c.default) == (
        "tcp",
        "resolver:main.default.default.dc1",
        True,
    )
    assert c.customization_hash != ""


def test_override_equal_to_the_current_value_is_ignored() -> None:
    sd = {"Kind": "service-defaults", "Name": "main", "Protocol": "http2"}
    same = chain(
        "main", sd, overrides=CompileOverrides(protocol="http2", connect_timeout_ns=5_000_000_000)
    )
    assert (same.protocol, same.customization_hash) == ("http2", "")
    other = chain("main", sd, overrides=CompileOverrides(protocol="grpc"))
    assert other.protocol == "grpc" and other.customization_hash != ""


@pytest.mark.parametrize(
    "raw",
    [
        [  # failover crosses protocols
            {"Kind": "service-defaults", "Name": "main", "Protocol": "grpc"},
            {"Kind": "service-defaults", "Name": "other", "Protocol": "tcp"},
            {"Kind": "service-resolver", "Name": "main", "Failover": {"*": {"Service": "other"}}},
        ],
        [  # redirect crosses protocols
            {"Kind": "service-defaults", "Name": "main", "Protocol": "grpc"},
            {"Kind": "service-defaults", "Name": "other", "Protocol": "tcp"},
            {"Kind": "service-resolver", "Name": "main", "Redirect": {"Service": "other"}},
        ],
    ],
    ids=["failover", "redirect"],
)
def test_crossing_protocols_is_inconsistent(raw: list[dict[str, Any]]) -> None:
    with pytest.raises(ChainError, match="uses inconsistent protocols"):
        chain("main", *raw)


def test_route_to_unroutable_protocol_is_refused() -> None:
    with pytest.raises(ChainError, match="does not permit advanced routing"):
        chain(
            "main",
            {"Kind": "service-defaults", "Name": "main", "Protocol": "tcp"},
            {"Kind": "service-defaults", "Name": "other", "Protocol": "tcp"},
            {
                "Kind": "service-router",
                "Name": "main",
                "Routes": [
                    {
                        "Match": {"HTTP": {"PathExact": "/other"}},
                        "Destination": {"Service": "other"},
                    }
                ],
            },
        )
