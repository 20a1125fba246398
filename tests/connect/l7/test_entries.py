"""Config entries: decoding, Consul's validation texts, JSON round trip."""

from __future__ import annotations

from typing import Any

import pytest

from connect.l7.decode import DecodeError, ValidationError, format_duration, parse_duration
from connect.l7.entries import (
    ProxyDefaultsEntry,
    ServiceDefaultsEntry,
    ServiceIntentionsEntry,
    ServiceResolverEntry,
    ServiceRouterEntry,
    ServiceSplitterEntry,
    parse_entry,
)


def _router(route: dict[str, Any]) -> dict[str, Any]:
    return {"Kind": "service-router", "Name": "web", "Routes": [route]}


def _http(match: dict[str, Any], dest: dict[str, Any] | None = None) -> dict[str, Any]:
    route: dict[str, Any] = {"Match": {"HTTP": match}}
    if dest is not None:
        route["Destination"] = dest
    return _router(route)


def _resolver(**fields: Any) -> dict[str, Any]:
    return {"Kind": "service-resolver", "Name": "web", **fields}


def _sd(**fields: Any) -> dict[str, Any]:
    return {"Kind": "service-defaults", "Name": "web", **fields}


def _ix(*sources: dict[str, Any], name: str = "web") -> dict[str, Any]:
    return {"Kind": "service-intentions", "Name": name, "Sources": list(sources)}


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("unknown kind", {"Kind": "foo", "Name": "x"}, "invalid config entry kind: foo"),
    (
        "no kind",
        {"Name": "x"},
        "Payload does not contain a kind/Kind key at the top level",
    ),
    ("kind not a string", {"Kind": 3, "Name": "x"}, "Kind value in payload is not a string"),
    ("sd no name", {"Kind": "service-defaults"}, "Name is required"),
    (
        "sd meta key length",
        _sd(Meta={"k" * 129: "v"}),
        f'Meta key "{"k" * 129}" exceeds maximum length 128',
    ),
    (
        "sd balance inbound",
        _sd(BalanceInboundConnections="round"),
        "invalid value for balance_inbound_connections: round",
    ),
    ("unknown key", _sd(Protocl="http"), 'invalid config key "Protocl"'),
    # service-defaults
    (
        "sd wildcard name",
        _sd(Name="*"),
        "service-defaults name must be the name of a service, and not a wildcard",
    ),
    (
        "sd upstream and destination",
        _sd(UpstreamConfig={"Defaults": {}}, Destination={"Addresses": ["a.example"]}),
        "UpstreamConfig and Destination are mutually exclusive for service defaults",
    ),
    (
        "sd defaults with name",
        _sd(UpstreamConfig={"Defaults": {"Name": "api"}}),
        "error in upstream defaults: Name must be empty",
    ),
    (
        "sd override wildcard",
        _sd(UpstreamConfig={"Overrides": [{"Name": "*"}]}),
        "error in upstream override for *: Wildcard name is not supported",
    ),
    (
        "sd negative max connections",
        _sd(UpstreamConfig={"Defaults": {"Limits": {"MaxConnections": -1}}}),
        "error in upstream defaults: max connections cannot be negative",
    ),
    (
        "sd negative pending",
        _sd(UpstreamConfig={"Overrides": [{"Name": "api", "Limits": {"MaxPendingRequests": -1}}]}),
        "error in upstream override for api: max pending requests cannot be negative",
    ),
    (
        "sd negative concurrent",
        _sd(UpstreamConfig={"Defaults": {"Limits": {"MaxConcurrentRequests": -2}}}),
        "error in upstream defaults: max concurrent requests cannot be negative",
    ),
    (
        "sd negative interval",
        _sd(UpstreamConfig={"Defaults": {"PassiveHealthCheck": {"Interval": "-1s"}}}),
        "error in upstream defaults: passive health check interval cannot be negative",
    ),
    (
        "sd enforcing out of range",
        _sd(UpstreamConfig={"Defaults": {"PassiveHealthCheck": {"EnforcingConsecutive5xx": 101}}}),
        "error in upstream defaults: passive health check enforcing_consecutive_5xx must be a "
        "percentage between 0 and 100",
    ),
    (
        "sd max ejection out of range",
        _sd(UpstreamConfig={"Defaults": {"PassiveHealthCheck": {"MaxEjectionPercent": -1}}}),
        "error in upstream defaults: passive health check max_ejection_percent must be a "
        "percentage between 0 and 100",
    ),
    (
        "sd negative base ejection",
        _sd(UpstreamConfig={"Defaults": {"PassiveHealthCheck": {"BaseEjectionTime": "-5s"}}}),
        "error in upstream defaults: passive health check base_ejection_time cannot be negative",
    ),
    (
        "sd extension without name",
        _sd(EnvoyExtensions=[{"Arguments": {}}]),
        "invalid EnvoyExtensions[0]: Name is required",
    ),
    (
        "sd fault percentage",
        _sd(
            EnvoyExtensions=[
                {
                    "Name": "builtin/fault-injection",
                    "Arguments": {"Config": {"Abort": {"HttpStatus": 503, "Percentage": 150}}},
                }
            ]
        ),
        "EnvoyExtensions[0].Arguments.Config.Abort.Percentage: "
        "Percentage must be between 0 and 100",
    ),
    # proxy-defaults
    (
        "pd name",
        {"Kind": "proxy-defaults", "Name": "x"},
        'invalid name ("x"), only "global" is supported',
    ),
    # service-router
    (
        "router path exact slash",
        _http({"PathExact": "x"}),
        "Route[0] PathExact doesn't start with '/': \"x\"",
    ),
    (
        "router path prefix slash",
        _http({"PathPrefix": "x"}),
        "Route[0] PathPrefix doesn't start with '/': \"x\"",
    ),
    (
        "router two paths",
        _http({"PathExact": "/a", "PathRegex": "/b.*"}),
        "Route[0] should only contain at most one of PathExact, PathPrefix, or PathRegex",
    ),
    (
        "router header name",
        _http({"Header": [{"Exact": "1"}]}),
        "Route[0] Header[0] missing required Name field",
    ),
    (
        "router header two matchers",
        _http({"Header": [{"Name": "x", "Exact": "1", "Prefix": "2"}]}),
        "Route[0] Header[0] should only contain one of Present, Exact, Prefix, Suffix, or Regex",
    ),
    (
        "router query param name",
        _http({"QueryParam": [{"Exact": "1"}]}),
        "Route[0] QueryParam[0] missing required Name field",
    ),
    (
        "router query two matchers",
        _http({"QueryParam": [{"Name": "q", "Present": True, "Regex": "a"}]}),
        "Route[0] QueryParam[0] should only contain one of Present, Exact, or Regex",
    ),
    (
        "router bad method",
        _http({"Methods": ["FOO"]}),
        'Route[0] Methods contains an invalid method "FOO"',
    ),
    (
        "router duplicate method",
        _http({"Methods": ["GET", "get"]}),
        'Route[0] Methods contains "GET" more than once',
    ),
    (
        "router prefix rewrite",
        _http({"PathRegex": "/a.*"}, {"PrefixRewrite": "/b"}),
        "Route[0] cannot make use of PrefixRewrite without configuring either "
        "PathExact or PathPrefix",
    ),
    (
        "router retry condition",
        _http({}, {"RetryOn": ["x"]}),
        'Route[0] contains an invalid retry condition: "x"',
    ),
    (
        "router mirror percent",
        _http({}, {"Mirror": {"Service": "shadow", "Percent": 101}}),
        "Route[0] Mirror.Percent must be between 0 and 100",
    ),
    (
        "router bad duration",
        _http({}, {"RequestTimeout": "5 s"}),
        'Routes[0].Destination.RequestTimeout: time: invalid duration "5 s"',
    ),
    # service-splitter
    ("splitter empty", {"Kind": "service-splitter", "Name": "web"}, "no splits configured"),
    (
        "splitter sum",
        {"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 90}]},
        "the sum of all split weights must be 100, not 90.000000",
    ),
    (
        "splitter duplicate",
        {
            "Kind": "service-splitter",
            "Name": "web",
            "Splits": [{"Weight": 50, "Service": "a"}, {"Weight": 50, "Service": "a"}],
        },
        'split destination occurs more than once: service="a", subset="", namespace="", '
        'partition=""',
    ),
    # service-resolver
    (
        "resolver subset name",
        _resolver(Subsets={"V1": {}}),
        'Subset "V1" is invalid: must be 63 characters or fewer, begin or end with lower case '
        "alphanumeric characters, and contain lower case alphanumeric characters or '-' in "
        "between",
    ),
    (
        "resolver default subset",
        _resolver(DefaultSubset="v9", Subsets={"v1": {}}),
        'DefaultSubset "v9" is not a valid subset',
    ),
    (
        "resolver redirect and failover",
        _resolver(Redirect={"Service": "a"}, Failover={"*": {"Service": "b"}}),
        "Redirect and Failover cannot both be set",
    ),
    ("resolver empty redirect", _resolver(Redirect={}), "Redirect is empty"),
    (
        "resolver failover subset",
        _resolver(Failover={"v3": {"Service": "b"}}),
        'Bad Failover["v3"]: not a valid subset subset',  # sic, Consul's text
    ),
    (
        "resolver connect timeout",
        _resolver(ConnectTimeout="-1s"),
        "Bad ConnectTimeout '-1s', must be >= 0",
    ),
    (
        "resolver lb policy",
        _resolver(LoadBalancer={"Policy": "x"}),
        'Bad LoadBalancer policy: "x" is not supported',
    ),
    (
        "resolver hash policies need hash lb",
        _resolver(
            LoadBalancer={
                "Policy": "round_robin",
                "HashPolicies": [{"Field": "header", "FieldValue": "x-user"}],
            }
        ),
        "Bad LoadBalancer configuration: HashPolicies specified for non-hash-based Policy: "
        '"round_robin"',
    ),
    (
        "resolver hash field value",
        _resolver(LoadBalancer={"Policy": "maglev", "HashPolicies": [{"Field": "header"}]}),
        'Bad LoadBalancer HashPolicy[0]: Field "header" was specified without a FieldValue',
    ),
    (
        "resolver session cookie ttl",
        _resolver(
            LoadBalancer={
                "Policy": "ring_hash",
                "HashPolicies": [
                    {
                        "Field": "cookie",
                        "FieldValue": "id",
                        "CookieConfig": {"Session": True, "TTL": "10s"},
                    }
                ],
            }
        ),
        "Bad LoadBalancer HashPolicy[0]: a session cookie cannot have an associated TTL",
    ),
    (
        "router header without matcher",
        _http({"Header": [{"Name": "x-a"}]}),
        "Route[0] Header[0] should only contain one of Present, Exact, Prefix, Suffix, or Regex",
    ),
    (
        "resolver redirect subset of self",
        _resolver(Redirect={"Service": "web", "ServiceSubset": "v9"}),
        'Redirect.ServiceSubset "v9" is not a valid subset of "web"',
    ),
    (
        "resolver redirect subset without service",
        _resolver(Redirect={"ServiceSubset": "v1"}, Subsets={"v1": {}}),
        "Redirect.ServiceSubset defined without Redirect.Service",
    ),
    (
        "resolver failover empty",
        _resolver(Failover={"*": {}}),
        'Bad Failover["*"]: one of Service, ServiceSubset, Namespace, Targets, SamenessGroup, '
        "or Datacenters is required",
    ),
    (
        "resolver failover targets and service",
        _resolver(Failover={"*": {"Service": "a", "Targets": [{"Service": "b"}]}}),
        'Bad Failover["*"]: Targets cannot be set with Service',
    ),
    (
        "resolver failover empty dc",
        _resolver(Failover={"*": {"Datacenters": ["dc2", ""]}}),
        'Bad Failover["*"].Datacenters: found empty datacenter',
    ),
    (
        "resolver hash field",
        _resolver(LoadBalancer={"Policy": "maglev", "HashPolicies": [{"Field": "body"}]}),
        'Bad LoadBalancer HashPolicy[0]: "body" is not a supported field',
    ),
    (
        "resolver hash source ip value",
        _resolver(
            LoadBalancer={
                "Policy": "maglev",
                "HashPolicies": [{"SourceIP": True, "FieldValue": "x"}],
            }
        ),
        "Bad LoadBalancer HashPolicy[0]: A FieldValue cannot be specified when hashing SourceIP",
    ),
    (
        "resolver ring hash config on wrong policy",
        _resolver(LoadBalancer={"Policy": "random", "RingHashConfig": {"MinimumRingSize": 1}}),
        "Bad LoadBalancer configuration. RingHashConfig specified for incompatible load "
        'balancing policy "random"',
    ),
    # service-intentions
    ("ix no sources", _ix(), "At least one source is required"),
    (
        "ix action and permissions",
        _ix(
            {
                "Name": "api",
                "Action": "allow",
                "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}],
            }
        ),
        "Sources[0].Action must be omitted if Permissions are specified",
    ),
    (
        "ix wildcard destination",
        _ix(
            {"Name": "api", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]},
            name="*",
        ),
        "Sources[0].Permissions cannot be specified on intentions with wildcarded destinations",
    ),
    (
        "ix permission action",
        _ix({"Name": "api", "Permissions": [{"Action": "maybe", "HTTP": {"PathPrefix": "/"}}]}),
        "Sources[0].Permissions[0].Action must be set to 'allow' or 'deny'",
    ),
    (
        "ix permission http required",
        _ix({"Name": "api", "Permissions": [{"Action": "deny"}]}),
        "Sources[0].Permissions[0].HTTP is required",
    ),
    (
        "ix permission http empty",
        _ix({"Name": "api", "Permissions": [{"Action": "deny", "HTTP": {}}]}),
        "Sources[0].Permissions[0].HTTP should not be empty",
    ),
    (
        "ix permission path",
        _ix({"Name": "api", "Permissions": [{"Action": "deny", "HTTP": {"PathExact": "x"}}]}),
        "Sources[0].Permissions[0].HTTP.PathExact doesn't start with '/': \"x\"",
    ),
    (
        "ix duplicate source",
        _ix({"Name": "api", "Action": "allow"}, {"Name": "api", "Action": "deny"}),
        'Sources[1] defines "api" more than once',
    ),
    ("ix no action", _ix({"Name": "api"}), "Sources[0].Action must be set to 'allow' or 'deny'"),
    (
        "ix partial wildcard",
        _ix({"Name": "api*", "Action": "allow"}),
        "Sources[0].Name: wildcard character '*' cannot be used with partial values",
    ),
    (
        "ix legacy meta",
        _ix({"Name": "api", "Action": "allow", "LegacyID": "abc", "LegacyMeta": {"a": "b"}}),
        "Sources[0].LegacyMeta must be omitted",
    ),
    (
        "ix action case",
        _ix({"Name": "api", "Action": "Allow"}),
        "Sources[0].Action must be set to 'allow' or 'deny'",
    ),
]


@pytest.mark.parametrize(
    ("data", "message"), [(d, m) for _, d, m in REFUSED], ids=[c for c, _, _ in REFUSED]
)
def test_invalid_entry_is_refused_with_consuls_text(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_entry(data)
    assert str(info.value) == message
    assert info.value.message == message


@pytest.mark.parametrize(
    "data",
    [
        {"Name": "x"},
        {"Kind": "nope", "Name": "x"},
        _sd(Protocl="http"),
        _sd(Protocol=3),
        _http({}, {"RequestTimeout": "soon"}),
    ],
)
def test_undecodable_json_raises_decode_error(data: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        parse_entry(data)


def test_invalid_but_decodable_entry_is_not_a_decode_error() -> None:
    with pytest.raises(ValidationError) as info:
        parse_entry(_http({"PathExact": "x"}))
    assert not isinstance(info.value, DecodeError)


def test_validation_error_names_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        parse_entry(_http({"Header": [{"Exact": "1"}]}))
    assert info.value.field == "Routes[0].Match.HTTP.Header[0].Name"


def test_snake_case_aliases_decode_like_camel_case() -> None:
    snake = parse_entry(
        {
            "kind": "service-router",
            "name": "web",
            "routes": [
                {
                    "match": {
                        "http": {
                            "path_prefix": "/api",
                            "query_param": [{"name": "x", "present": True}],
                        }
                    },
                    "destination": {
                        "service": "api",
                        "service_subset": "v2",
                        "request_timeout": "1.5s",
                        "num_retries": 2,
                        "retry_on_connect_failure": True,
                        "retry_on_status_codes": [503],
                        "request_headers": {"set": {"x-a": "1"}},
                    },
                }
            ],
        }
    )
    camel = parse_entry(snake.to_json())
    assert snake == camel
    assert isinstance(snake, ServiceRouterEntry)
    dest = snake.routes[0].destination
    assert dest is not None
    assert (dest.service_subset, dest.request_timeout_ns, dest.num_retries) == (
        "v2",
        1_500_000_000,
        2,
    )
    assert dest.has_retry_features()


ROUND_TRIP: list[dict[str, Any]] = [
    {
        "Kind": "service-defaults",
        "Name": "web",
        "Protocol": "http",
        "UpstreamConfig": {
            "Overrides": [
                {"Name": "api", "ConnectTimeoutMs": 1500, "Limits": {"MaxConnections": 0}}
            ],
            "Defaults": {
                "ConnectTimeoutMs": 5000,
                "Limits": {
                    "MaxConnections": 10,
                    "MaxPendingRequests": 5,
                    "MaxConcurrentRequests": 7,
                },
                "PassiveHealthCheck": {
                    "Interval": "10s",
                    "MaxFailures": 3,
                    "EnforcingConsecutive5xx": 100,
                    "MaxEjectionPercent": 50,
                    "BaseEjectionTime": "30s",
                },
            },
        },
        "LocalConnectTimeoutMs": 1000,
        "LocalRequestTimeoutMs": 2000,
        "MaxInboundConnections": 100,
        "EnvoyExtensions": [
            {
                "Name": "builtin/fault-injection",
                "Arguments": {
                    "Config": {
                        "Abort": {"HttpStatus": 503, "Percentage": 50},
                        "Delay": {"Duration": 100, "Percentage": 25},
                        "Bandwidth": {"Limit": 64, "Percentage": 10},
                    }
                },
            }
        ],
        "Meta": {"owner": "team-a"},
        "MeshGateway": {"Mode": "local"},
    },
    {
        "Kind": "proxy-defaults",
        "Name": "global",
        "Config": {"protocol": "http", "local_request_timeout_ms": 3000},
        "Mode": "transparent",
    },
    {
        "Kind": "service-router",
        "Name": "web",
        "Routes": [
            {
                "Match": {
                    "HTTP": {
                        "PathPrefix": "/api",
                        "Header": [{"Name": "x-debug", "Present": True, "Invert": True}],
                        "QueryParam": [{"Name": "v", "Exact": "2"}],
                        "Methods": ["GET", "POST"],
                    }
                },
                "Destination": {
                    "Service": "api",
                    "ServiceSubset": "v2",
                    "PrefixRewrite": "/",
                    "RequestTimeout": "1m30s",
                    "IdleTimeout": "300ms",
                    "NumRetries": 3,
                    "RetryOnConnectFailure": True,
                    "RetryOn": ["5xx", "reset"],
                    "RetryOnStatusCodes": [503, 504],
                    "RequestHeaders": {"Add": {"x-a": "1"}, "Set": {"x-b": "2"}, "Remove": ["x-c"]},
                    "ResponseHeaders": {"Remove": ["server"]},
                    "Mirror": {"Service": "api-shadow", "Percent": 12.5},
                },
            }
        ],
    },
    {
        "Kind": "service-splitter",
        "Name": "web",
        "Splits": [
            {"Weight": 99.99, "ServiceSubset": "v1", "ResponseHeaders": {"Set": {"x-v": "1"}}},
            {"Weight": 0.01, "ServiceSubset": "v2"},
        ],
    },
    {
        "Kind": "service-resolver",
        "Name": "web",
        "DefaultSubset": "v1",
        "Subsets": {
            "v1": {"Filter": "Service.Meta.version == v1", "OnlyPassing": True},
            "v2": {"Filter": "Service.Meta.version == v2"},
        },
        "Failover": {"*": {"Datacenters": ["dc2", "dc3"]}, "v2": {"Targets": [{"Service": "b"}]}},
        "ConnectTimeout": "15s",
        "RequestTimeout": "1.5s",
        "LoadBalancer": {
            "Policy": "ring_hash",
            "RingHashConfig": {"MinimumRingSize": 1024, "MaximumRingSize": 8192},
            "HashPolicies": [
                {
                    "Field": "cookie",
                    "FieldValue": "sid",
                    "CookieConfig": {"TTL": "1h0m0s", "Path": "/"},
                },
                {"SourceIP": True, "Terminal": True},
            ],
        },
    },
    {
        "Kind": "service-resolver",
        "Name": "old",
        "Redirect": {"Service": "new", "Datacenter": "dc2"},
    },
    {
        "Kind": "service-intentions",
        "Name": "web",
        "Sources": [
            {
                "Name": "api",
                "Permissions": [
                    {"Action": "deny", "HTTP": {"PathPrefix": "/admin"}},
                    {
                        "Action": "allow",
                        "HTTP": {
                            "PathRegex": "/v[0-9]+/.*",
                            "Methods": ["GET"],
                            "Header": [{"Name": "x-role", "Suffix": "admin"}],
                        },
                    },
                ],
                "Precedence": 9,
                "Type": "consul",
            },
            {
                "Name": "*",
                "Action": "deny",
                "Precedence": 8,
                "Type": "consul",
                "Description": "rest",
            },
        ],
    },
]


@pytest.mark.parametrize("data", ROUND_TRIP, ids=[f"{d['Kind']}/{d['Name']}" for d in ROUND_TRIP])
def test_entry_round_trips_to_consuls_json(data: dict[str, Any]) -> None:
    entry = parse_entry(data)
    assert entry.to_json() == data
    assert parse_entry(entry.to_json()) == entry


def test_service_defaults_exposes_typed_resilience_fields() -> None:
    entry = parse_entry(ROUND_TRIP[0])
    assert isinstance(entry, ServiceDefaultsEntry)
    api = entry.upstream_config_for("api")
    other = entry.upstream_config_for("other")
    assert api is not None and api.connect_timeout_ms == 1500
    assert other is not None and other.limits is not None
    assert other.limits.max_pending_requests == 5
    assert other.passive_health_check is not None
    assert other.passive_health_check.base_ejection_time_ns == 30_000_000_000
    fault = entry.envoy_extensions[0].fault_injection
    assert fault is not None
    assert (fault.abort_http_status, fault.abort_percentage, fault.delay_ms) == (503, 50.0, 100)
    assert (fault.bandwidth_kib_s, fault.bandwidth_percentage) == (64, 10.0)


def test_proxy_defaults_name_defaults_to_global() -> None:
    entry = parse_entry({"Kind": "proxy-defaults", "Config": {"local_connect_timeout_ms": "250"}})
    assert isinstance(entry, ProxyDefaultsEntry) and entry.name == "global"


def test_negative_upstream_connect_timeout_means_the_default() -> None:
    entry = parse_entry(_sd(UpstreamConfig={"Defaults": {"ConnectTimeoutMs": -5}}))
    assert isinstance(entry, ServiceDefaultsEntry)
    assert entry.upstream_defaults is not None
    assert entry.upstream_defaults.connect_timeout_ms == 0


def test_protocols_are_lower_cased_on_write() -> None:
    sd = parse_entry(_sd(Protocol="HTTP"))
    pd = parse_entry({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "GRPC"}})
    assert isinstance(sd, ServiceDefaultsEntry) and sd.protocol == "http"
    assert isinstance(pd, ProxyDefaultsEntry) and pd.protocol == "grpc"


def test_intention_precedence_is_computed_not_taken() -> None:
    entry = parse_entry(
        _ix({"Name": "api", "Action": "allow", "Precedence": 1}, {"Name": "*", "Action": "deny"})
    )
    assert isinstance(entry, ServiceIntentionsEntry)
    assert [s.precedence for s in entry.sources] == [9, 8]
    reordered = parse_entry(
        _ix({"Name": "*", "Action": "deny"}, {"Name": "api", "Action": "allow"})
    )
    assert isinstance(reordered, ServiceIntentionsEntry)
    assert [src.name for src in reordered.sources] == ["api", "*"]
    wild = parse_entry(_ix({"Name": "api", "Action": "allow"}, name="*"))
    assert isinstance(wild, ServiceIntentionsEntry) and wild.sources[0].precedence == 6


def test_subset_filter_goes_through_the_callers_validator() -> None:
    def refuse(expr: str) -> None:
        if "==" not in expr:
            raise ValueError("expected ==")

    good = parse_entry(_resolver(Subsets={"v1": {"Filter": "a == b"}}), filter_validator=refuse)
    assert isinstance(good, ServiceResolverEntry) and good.subsets["v1"].filter == "a == b"
    with pytest.raises(ValidationError) as info:
        parse_entry(_resolver(Subsets={"v1": {"Filter": "nonsense"}}), filter_validator=refuse)
    assert str(info.value) == 'Filter for subset "v1" is not a valid expression: expected =='


def test_split_weights_are_normalised_to_a_hundredth() -> None:
    entry = parse_entry(
        {
            "Kind": "service-splitter",
            "Name": "web",
            "Splits": [{"Weight": 33.333, "Service": "a"}, {"Weight": 66.667}],
        }
    )
    assert isinstance(entry, ServiceSplitterEntry)
    assert [s.weight for s in entry.splits] == [33.33, 66.67]
    assert entry.to_json()["Splits"] == [{"Weight": 33.33, "Service": "a"}, {"Weight": 66.67}]


def test_split_weights_are_checked_at_hundredth_resolution() -> None:
    ok = parse_entry(
        {
            "Kind": "service-splitter",
            "Name": "web",
            "Splits": [
                {"Weight": 33.33, "Service": "a"},
                {"Weight": 33.33, "Service": "b"},
                {"Weight": 33.34},
            ],
        }
    )
    assert isinstance(ok, ServiceSplitterEntry) and len(ok.splits) == 3
    with pytest.raises(ValidationError, match=r"not 99\.990000"):
        parse_entry({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 99.99}]})


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1.5s", 1_500_000_000),
        ("300ms", 300_000_000),
        ("1m30s", 90_000_000_000),
        ("2h", 7_200_000_000_000),
        ("10us", 10_000),
        ("0", 0),
        (250_000_000, 250_000_000),
    ],
)
def test_durations_accept_go_strings_and_nanoseconds(text: str | int, ns: int) -> None:
    assert parse_duration(text, "X") == ns


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (5_000_000_000, "5s"),
        (1_500_000_000, "1.5s"),
        (300_000_000, "300ms"),
        (1_500_000, "1.5ms"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (-1_000_000_000, "-1s"),
    ],
)
def test_durations_are_written_like_go(ns: int, text: str) -> None:
    assert format_duration(ns) == text
    assert parse_duration(text, "X") == ns


@pytest.mark.parametrize("bad", ["", "5", "s", "1.5", "1d", True, [1]])
def test_bad_durations_are_refused(bad: Any) -> None:
    with pytest.raises(ValidationError, match="time: invalid duration"):
        parse_duration(bad, "X")


def test_durations_are_exact_and_bounded_like_gos_int64() -> None:
    big = "2562047h47m16.854775807s"  # Go's largest Duration
    assert parse_duration(big, "f") == 2**63 - 1
    assert parse_duration(format_duration(2**63 - 1), "f") == 2**63 - 1
    assert parse_duration("1.000000001s", "f") == 1_000_000_001
    for value in ("2562048h", 1e300, 2**63, "-2562048h"):
        with pytest.raises(DecodeError, match="invalid duration"):
            parse_duration(value, "f")


def test_written_intentions_clear_legacy_fields_and_stored_ones_keep_them() -> None:
    """Consul's normalize: an entry read back (with the intentions API's
    LegacyID and times) can be written again; those fields are cleared."""
    src = {
        "Name": "api",
        "Action": "allow",
        "LegacyID": "abc",
        "LegacyCreateTime": "2020-01-01T00:00:00Z",
        "LegacyUpdateTime": "2020-01-01T00:00:00Z",
    }
    written = parse_entry(_ix(src))
    assert isinstance(written, ServiceIntentionsEntry)
    assert written.sources[0].extra == {}
    stored = parse_entry(_ix(src), stored=True)
    assert isinstance(stored, ServiceIntentionsEntry)
    assert stored.sources[0].extra["LegacyID"] == "abc"
