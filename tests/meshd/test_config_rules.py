"""Agent configuration: per-value checks and rules that span keys (meshd/config/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from meshd.errors import ConfigError
from tests.meshd.config_support import (
    CLIENT,
    SERVER,
    TLS,
    assert_located,
    error_for,
    load,
    load_doc,
    write,
)

# -- single values ---------------------------------------------------------------

VALUE_ERRORS: list[tuple[dict[str, Any], str, str]] = [
    ({"ports": {"http": "abc"}}, "ports.http", 'must be an integer between 1 and 65535, got "abc"'),
    ({"ports": {"http": 70000}}, "ports.http", "between 1 and 65535, got 70000"),
    ({"ports": {"server": -1}}, "ports.server", "between 1 and 65535, got -1"),
    ({"ports": {"dns": 53.5}}, "ports.dns", "got 53.5"),
    ({"ports": {"htpp": 8500}}, "ports.htpp", 'unknown key (did you mean "http"?)'),
    ({"datacentre": "dc1"}, "datacentre", 'unknown key (did you mean "datacenter"?)'),
    ({"frobnicate": 1}, "frobnicate", "unknown key"),
    ({"datacenter": "dc 1"}, "datacenter", "only lowercase letters, digits, '-' and '_'"),
    ({"server": "true"}, "server", 'must be true or false, got "true"'),
    ({"bootstrap_expect": -1}, "bootstrap_expect", "at least 0, got -1"),
    ({"bootstrap_expect": True}, "bootstrap_expect", "must be an integer"),
    ({"retry_interval": 30}, "retry_interval", 'must be a duration string such as "10s"'),
    ({"retry_interval": "30"}, "retry_interval", "missing unit"),
    ({"retry_interval": "-5s"}, "retry_interval", "negative durations are not allowed"),
    ({"retry_interval": "0s"}, "retry_interval", "must be longer than 0s"),
    ({"dns_config": {"max_stale": "10x"}}, "dns_config.max_stale", 'unknown unit "x"'),
    ({"node_id": "abc"}, "node_id", "must be a UUID"),
    ({"bind_addr": "{{ GetPrivateIP }}"}, "bind_addr", "go-sockaddr templates are not supported"),
    ({"bind_addr": "10.0.0.300"}, "bind_addr", 'must be an IP address, got "10.0.0.300"'),
    ({"advertise_addr": "0.0.0.0"}, "advertise_addr", "not 0.0.0.0 or ::"),
    ({"client_addr": "127.0.0.1 nope"}, "client_addr", 'must be an IP address, got "nope"'),
    ({"retry_join": ["10.0.0.1:99999"]}, "retry_join[0]", "port must be between 1 and 65535"),
    ({"retry_join": "10.0.0.1"}, "retry_join", "must be a list"),
    ({"retry_join": ["ok", "provider=aws tag_key=x"]}, "retry_join[1]", "cloud auto-join"),
    ({"retry_join": ["bad host!"]}, "retry_join[0]", "must be a host name or IP address"),
    ({"recursors": ["dns.google"]}, "recursors[0]", "must be an IP address"),
    (
        {"log_level": "verbose"},
        "log_level",
        'must be one of "TRACE", "DEBUG", "INFO", "WARN", "ERR"',
    ),
    ({"acl": {"default_policy": "maybe"}}, "acl.default_policy", 'one of "allow", "deny"'),
    ({"acl": {"down_policy": "x"}}, "acl.down_policy", '"extend-cache", "async-cache"'),
    ({"acl": {"tokens": {"agnet": "t"}}}, "acl.tokens.agnet", 'did you mean "agent"?'),
    ({"acl": "yes"}, "acl", 'must be an object, got "yes"'),
    (
        {"tls": {"defaults": {"tls_min_version": "TLSv1_0"}}},
        "tls.defaults.tls_min_version",
        "not supported",
    ),
    ({"tls": {"https": {"verify_incoming": 1}}}, "tls.https.verify_incoming", "true or false"),
    ({"connect": {"ca_provider": "vault"}}, "connect.ca_provider", 'only the built-in "consul"'),
    (
        {"connect": {"default_intention_policy": "permit"}},
        "connect.default_intention_policy",
        "one of",
    ),
    (
        {"connect": {"ca_config": {"private_key_type": "dsa"}}},
        "connect.ca_config.private_key_type",
        '"ec", "rsa"',
    ),
    ({"performance": {"raft_multiplier": 11}}, "performance.raft_multiplier", "between 1 and 10"),
    ({"performance": {"raft_multiplier": 0}}, "performance.raft_multiplier", "between 1 and 10"),
    ({"node_meta": {"consul-x": "1"}}, "node_meta.consul-x", "reserved"),
    ({"node_meta": {"rack": "x" * 513}}, "node_meta.rack", "at most 512 characters"),
    ({"node_meta": {"bad key": "1"}}, 'node_meta["bad key"]', "letters, digits, '-' or '_'"),
    ({"node_meta": {f"k{i}": "v" for i in range(65)}}, "node_meta", "at most 64 keys, got 65"),
    ({"dns_config": {"service_ttl": {"*": "5"}}}, "dns_config.service_ttl.*", "missing unit"),
    ({"dns_config": {"udp_answer_limit": 0}}, "dns_config.udp_answer_limit", "at least 1"),
    ({"limits": {"kv_max_value_size": 0}}, "limits.kv_max_value_size", "at least 1"),
    ({"telemetry": {"metrics_prefix": "9x"}}, "telemetry.metrics_prefix", "metric name prefix"),
    ({"domain": "bad_domain!"}, "domain", "must be a DNS name"),
    ({"services": [{"port": 80}]}, "services[0].name", "required"),
    ({"services": [{"name": "web", "port": "80"}]}, "services[0].port", "between 0 and 65535"),
    ({"services": [{"name": "web", "prot": 80}]}, "services[0].prot", 'did you mean "port"?'),
    ({"services": {"name": "web"}}, "services", "must be a list"),
    (
        {"services": [{"name": "web", "checks": [{"http": "http://x"}]}]},
        "services[0].checks[0].interval",
        "required for http checks",
    ),
    (
        {"services": [{"name": "web", "check": {"http": "x", "tcp": "y", "interval": "9s"}}]},
        "services[0].check",
        "exactly one of args, http, tcp",
    ),
    ({"service": {"name": "web", "port": "x"}}, "service.port", 'got "x"'),
    ({"checks": [{"ttl": "30s"}]}, "checks[0].name", "required"),
    ({"check": {"name": "c", "ttl": "abc"}}, "check.ttl", "expected a number"),
    (
        {"checks": [{"name": "c", "ttl": "3s", "interval": "1s"}]},
        "checks[0].interval",
        "no interval",
    ),
    (
        {"checks": [{"name": "c", "http": "x", "interval": "10s", "header": {"A": "b"}}]},
        "checks[0].header.A",
        "must be a list",
    ),
    ({"ports": {"serf_lan": "x"}}, "ports.serf_lan", "between 1 and 65535"),
]


@pytest.mark.parametrize(("doc", "key", "reason"), VALUE_ERRORS)
def test_bad_value_is_reported_with_file_key_and_reason(
    tmp_path: Path, doc: dict[str, Any], key: str, reason: str
) -> None:
    err = error_for(tmp_path, {**CLIENT, **doc})
    assert_located(err, str(tmp_path / "agent.json"), key, reason)


def test_bad_token_value_is_not_echoed(tmp_path: Path) -> None:
    err = error_for(tmp_path, {**CLIENT, "acl": {"tokens": {"agent": 12345678}}})
    assert_located(err, str(tmp_path / "agent.json"), "acl.tokens.agent", "must be a string")
    assert "12345678" not in str(err)


def test_null_values_are_treated_as_unset(tmp_path: Path) -> None:
    cfg, _ = load_doc(tmp_path, {**CLIENT, "node_id": None, "ports": {"http": None}})
    assert (cfg.node_id, cfg.ports.http) == (None, 8500)


def test_values_are_normalised(tmp_path: Path) -> None:
    doc = {
        **CLIENT,
        "datacenter": "DC-East",
        "log_level": "warning",
        "domain": "Mesh.Example.",
        "node_id": "9F2E1C1A-5B6D-4C8E-9A0B-1C2D3E4F5A6B",
        "ports": {"http": 8501.0},
        "client_addr": "127.0.0.1 ::1",
        "recursors": ["8.8.8.8", "[2001:db8::1]:5353"],
        "retry_join": ["10.0.0.1", "srv.example:8301", "::1", "[fe80::1]:9000"],
    }
    cfg, _ = load_doc(tmp_path, doc)
    assert cfg.datacenter == "dc-east"
    assert cfg.log_level == "WARN"
    assert cfg.domain == "mesh.example"
    assert cfg.node_id == "9f2e1c1a-5b6d-4c8e-9a0b-1c2d3e4f5a6b"
    assert cfg.ports.http == 8501
    assert cfg.client_addr == ("127.0.0.1", "::1")
    assert cfg.recursors == ("8.8.8.8:53", "[2001:db8::1]:5353")
    assert [str(j) for j in cfg.retry_join] == [
        "10.0.0.1:8300",
        "srv.example:8301",
        "[::1]:8300",
        "[fe80::1]:9000",
    ]


# -- cross-field rules -----------------------------------------------------------

CROSS_ERRORS: list[tuple[dict[str, Any], str, str]] = [
    (
        {**SERVER, "bootstrap": True, "bootstrap_expect": 3},
        "bootstrap_expect",
        "cannot be combined with bootstrap = true",
    ),
    ({**CLIENT, "bootstrap_expect": 3}, "bootstrap_expect", "requires server = true"),
    ({**CLIENT, "bootstrap": True}, "bootstrap", "requires server = true"),
    ({**CLIENT, "ports": {"dns": 8500}}, "ports.dns", "port 8500 is also used by ports.http"),
    ({**CLIENT, "ports": {"server": 8600}}, "ports.server", "port 8600 is also used by ports.dns"),
    ({**CLIENT, "ports": {"grpc": 8300}}, "ports.grpc", "port 8300 is also used by ports.server"),
    (
        {**CLIENT, "ports": {"sidecar_min_port": 22000}},
        "ports.sidecar_min_port",
        "must not be greater than ports.sidecar_max_port (21255)",
    ),
    (
        {**CLIENT, "tls": {"defaults": {"verify_incoming": True}}},
        "tls.defaults.verify_incoming",
        "needs tls.defaults.ca_file or ca_path",
    ),
    (
        {**CLIENT, "tls": {"internal_rpc": {"verify_outgoing": True}}},
        "tls.internal_rpc.verify_outgoing",
        "to verify servers against",
    ),
    (
        {**CLIENT, "tls": {"defaults": {"cert_file": "/c.pem"}}},
        "tls.defaults.cert_file",
        "needs key_file as well",
    ),
    (
        {**CLIENT, **TLS, "ports": {"https": 8501}, "tls": {"https": {"cert_file": "/c"}}},
        "tls.https.cert_file",
        "needs key_file",
    ),
    (
        {**CLIENT, "ports": {"https": 8501}},
        "ports.https",
        "needs tls.https (or tls.defaults) cert_file and key_file",
    ),
    (
        {**CLIENT, "connect": {"ca_config": {"leaf_cert_ttl": "30m"}}},
        "connect.ca_config.leaf_cert_ttl",
        "between 1h and 8760h",
    ),
    (
        {**CLIENT, "connect": {"ca_config": {"leaf_cert_ttl": "4000h"}}},
        "connect.ca_config.intermediate_cert_ttl",
        "at least 3 times leaf_cert_ttl (12000h0m0s)",
    ),
    (
        {**CLIENT, "connect": {"ca_config": {"root_cert_ttl": "100h"}}},
        "connect.ca_config.root_cert_ttl",
        "not be shorter than intermediate_cert_ttl",
    ),
    (
        {**CLIENT, "connect": {"ca_config": {"private_key_bits": 2048}}},
        "connect.ca_config.private_key_bits",
        "ec keys must be 224, 256, 384 or 521 bits",
    ),
    (
        {**CLIENT, "connect": {"ca_config": {"private_key_type": "rsa", "private_key_bits": 1024}}},
        "connect.ca_config.private_key_bits",
        "rsa keys must be 2048",
    ),
    (
        {
            **CLIENT,
            "services": [{"name": "w", "checks": [{"args": ["/bin/true"], "interval": "5s"}]}],
        },
        "services[0].checks[0].args",
        "script checks are disabled",
    ),
    (
        {**CLIENT, "check": {"name": "c", "args": ["/bin/true"], "interval": "5s"}},
        "check.args",
        "script checks are disabled",
    ),
]


@pytest.mark.parametrize(("doc", "key", "reason"), CROSS_ERRORS)
def test_cross_field_rule_is_reported_with_file_key_and_reason(
    tmp_path: Path, doc: dict[str, Any], key: str, reason: str
) -> None:
    err = error_for(tmp_path, doc)
    assert_located(err, str(tmp_path / "agent.json"), key, reason)


def test_data_dir_is_required_unless_dev(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load([write(tmp_path, "a.json", {"datacenter": "dc1"})])
    assert_located(
        info.value, None, "data_dir", "required (only a -dev agent keeps its state in memory)"
    )
    cfg, _ = load([], dev=True)
    assert cfg.data_dir is None and cfg.dev


def test_non_dev_server_requires_rpc_certificates(tmp_path: Path) -> None:
    partial = {**CLIENT, "server": True, "tls": {"defaults": {"ca_file": "/ca.pem"}}}
    err = error_for(tmp_path, partial)
    assert_located(
        err,
        str(tmp_path / "agent.json"),
        "tls.defaults",
        "cert_file and key_file are required on a server",
    )
    assert "server RPC is mutual TLS only" in str(err) and "`meshd tls ca create`" in str(err)
    rpc_only = {
        **CLIENT,
        "server": True,
        "tls": {"internal_rpc": {"ca_path": "/ca", "cert_file": "/c", "key_file": "/k"}},
    }
    cfg, _ = load_doc(tmp_path, rpc_only)
    assert cfg.tls.internal_rpc.cert_file == "/c" and cfg.tls.defaults.cert_file is None


def test_bootstrap_expect_in_dev_is_refused(tmp_path: Path) -> None:
    err = error_for(tmp_path, {"bootstrap_expect": 3}, dev=True)
    assert_located(err, str(tmp_path / "agent.json"), "bootstrap_expect", "not allowed in dev mode")


@pytest.mark.parametrize(
    ("expect", "warning"),
    [
        (1, "1 is the same as bootstrap mode: a single server, no failure tolerance"),
        (2, "a cluster of 2 servers tolerates no failure; use 3 or 5"),
        (4, "4 servers tolerate no more failures than 3; use an odd number"),
        (3, None),
        (5, None),
    ],
)
def test_bootstrap_expect_warns_for_weak_cluster_sizes(
    tmp_path: Path, expect: int, warning: str | None
) -> None:
    cfg, warnings = load_doc(tmp_path, {**SERVER, "bootstrap_expect": expect})
    assert cfg.bootstrap_expect == expect
    expected = (
        [f"config: {tmp_path / 'agent.json'}: bootstrap_expect: {warning}"] if warning else []
    )
    assert [w for w in warnings if "bootstrap_expect" in w] == expected


def test_script_check_allowed_when_another_file_enables_local_scripts(tmp_path: Path) -> None:
    svc = write(
        tmp_path,
        "svc.json",
        {
            **CLIENT,
            **TLS,
            "service": {"name": "w", "check": {"args": ["/bin/true"], "interval": "5s"}},
        },
    )
    opt = write(tmp_path, "z.json", {"enable_local_script_checks": True})
    cfg, warnings = load([svc, opt])
    assert cfg.services[0]["checks"] == [{"args": ["/bin/true"], "interval": "5s"}]
    assert warnings == []


def test_enable_script_checks_without_acls_warns(tmp_path: Path) -> None:
    _, warnings = load_doc(tmp_path, {**CLIENT, **TLS, "enable_script_checks": True})
    path = tmp_path / "agent.json"
    assert warnings == [
        f"config: {path}: enable_script_checks: lets anyone who can reach the HTTP API run "
        "commands on this host; enable ACLs or use enable_local_script_checks instead"
    ]


def test_client_without_certificates_gets_a_warning(tmp_path: Path) -> None:
    _, warnings = load_doc(tmp_path, CLIENT)
    assert warnings == [
        "config: tls.defaults: ca_file, cert_file and key_file are not set, "
        "but servers accept only mutual TLS"
    ]


def test_node_meta_limit_applies_after_merge(tmp_path: Path) -> None:
    a = write(tmp_path, "a.json", {**CLIENT, "node_meta": {f"a{i}": "v" for i in range(40)}})
    b = write(tmp_path, "b.json", {"node_meta": {f"b{i}": "v" for i in range(40)}})
    with pytest.raises(ConfigError) as info:
        load([a, b])
    assert_located(info.value, b, "node_meta", "must have at most 64 keys, got 80")


def test_node_name_that_is_not_a_dns_label_warns(tmp_path: Path) -> None:
    _, warnings = load_doc(tmp_path, {**CLIENT, **TLS, "node_name": "web_1"})
    path = tmp_path / "agent.json"
    assert warnings == [
        f"config: {path}: node_name: is not a valid DNS label; "
        "this node will not be found through DNS"
    ]
