"""Agent configuration: loading, merging and validating (meshd/config/)."""

from __future__ import annotations

import ipaddress
import json
import socket
from pathlib import Path

import pytest

from meshd.config import JoinAddress, SystemHost
from meshd.errors import ConfigError
from tests.meshd.config_support import (
    CLIENT,
    SERVER,
    TLS,
    TLS_FILES,
    FakeHost,
    assert_located,
    error_for,
    load,
    load_doc,
    write,
)

# -- ConfigError -----------------------------------------------------------------


def test_config_error_renders_file_key_and_reason() -> None:
    err = ConfigError("/etc/meshd/agent.json", "ports.http", "must be an integer")
    assert str(err) == "config: /etc/meshd/agent.json: ports.http: must be an integer"
    assert str(ConfigError(None, "--http-port", "bad")) == "flag --http-port: bad"
    assert str(ConfigError(None, "data_dir", "required")) == "config: data_dir: required"
    assert str(ConfigError("/a.json", None, "no such file")) == "config: /a.json: no such file"


# -- files and directories -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        (
            "agent.hcl",
            "server = true\nports {\n  http = 1\n",
            "invalid HCL at line 4, column 1: unexpected end of file, expected }",
        ),
        ("agent.yaml", "server: true", "unsupported file extension; use .json, .hcl or .toml"),
        (
            "agent.json",
            '{\n  "server": true,\n  "ports": {http: 1}\n}',
            "invalid JSON at line 3, column 13",
        ),
        ("agent.toml", "server = true\nports = {http = }\n", "invalid TOML at line 2, column"),
        ("agent.json", "[1, 2]", "the top level must be an object"),
        ("agent.json", '{"server": true, "server": false}', 'duplicate key "server"'),
        ("agent.json", '{"ports": {"http": NaN}}', "NaN is not valid JSON"),
        ("agent.json", "", "invalid JSON at line 1, column 1"),
    ],
)
def test_unreadable_file_is_reported_with_its_name(
    tmp_path: Path, name: str, content: str, reason: str
) -> None:
    err = error_for(tmp_path, content, name=name)
    assert err.file == str(tmp_path / name) and err.key is None
    assert reason in err.reason
    assert str(err) == f"config: {tmp_path / name}: {err.reason}"


def test_invalid_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_bytes(b'{"node_name": "\xff"}')
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load([str(path)])


def test_missing_file_and_directory_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load([str(tmp_path / "nope.json")])
    assert str(info.value) == f"config: {tmp_path / 'nope.json'}: no such file"
    with pytest.raises(ConfigError) as info:
        load([], [str(tmp_path / "nodir")])
    assert str(info.value) == f"config: {tmp_path / 'nodir'}: no such directory"


def test_file_over_one_mebibyte_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "big.json", '{"node_name": "' + "x" * (1 << 20) + '"}')
    with pytest.raises(ConfigError, match="larger than 1048576 bytes"):
        load([path])


def test_config_dir_loads_json_and_toml_in_lexical_order(tmp_path: Path) -> None:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "sub").mkdir()
    write(conf, "20-b.json", {"datacenter": "from-b", "node_meta": {"b": "1"}})
    write(conf, "10-a.toml", 'datacenter = "from-a"\nnode_meta = { a = "1" }\n')
    write(conf, "README.md", "not config")
    cfg, warnings = load([], [str(conf)], {"data_dir": "/d"})
    assert cfg.datacenter == "from-b"
    assert dict(cfg.node_meta) == {"a": "1", "b": "1"}
    assert warnings[0] == f"config: {conf / 'README.md'}: skipped: not .json, .hcl or .toml"


def test_config_dir_picks_up_hcl_files(tmp_path: Path) -> None:
    write(tmp_path, "10-a.json", {"datacenter": "from-json"})
    write(tmp_path, "20-b.hcl", 'datacenter = "from-hcl"\nnode_meta { rack = "r1" }\n')
    cfg, _ = load([], [str(tmp_path)], {"data_dir": "/d"})
    assert cfg.datacenter == "from-hcl"
    assert dict(cfg.node_meta) == {"rack": "r1"}


def test_node_meta_refuses_the_key_servers_set_themselves(tmp_path: Path) -> None:
    # "meshd-fb" tells the leader a server applies batched writes: set on an
    # older server by hand, it would stop that server on the first batch.
    write(tmp_path, "a.json", {"node_meta": {"meshd-fb": "1"}})
    with pytest.raises(ConfigError, match=r'node_meta.*"meshd-fb" is reserved'):
        load([str(tmp_path / "a.json")], [], {"data_dir": "/d"})


# -- merging ---------------------------------------------------------------------


def test_merge_order_is_files_then_dirs_then_flags(tmp_path: Path) -> None:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    first = write(
        tmp_path,
        "first.json",
        {**CLIENT, "datacenter": "file", "node_name": "file", "log_level": "DEBUG"},
    )
    write(conf, "a.json", {"datacenter": "dir-a", "node_name": "dir-a"})
    write(conf, "b.json", {"node_name": "dir-b"})
    cfg, _ = load([first], [str(conf)], {"node": "flag"})
    assert (cfg.log_level, cfg.datacenter, cfg.node_name) == ("DEBUG", "dir-a", "flag")


def test_later_file_overrides_scalars_and_merges_sections(tmp_path: Path) -> None:
    a = write(tmp_path, "a.json", {**CLIENT, "ports": {"http": 18500}, "server": False})
    b = write(tmp_path, "b.json", {"ports": {"dns": 18600}, "log_json": True})
    c = write(tmp_path, "c.json", {"ports": {"http": 28500}})
    cfg, _ = load([a, b, c])
    assert (cfg.ports.http, cfg.ports.dns, cfg.ports.server, cfg.log_json) == (
        28500,
        18600,
        8300,
        True,
    )


def test_lists_append_across_sources_and_maps_merge(tmp_path: Path) -> None:
    web = {"name": "web", "port": 80}
    a = write(
        tmp_path,
        "a.json",
        {
            **CLIENT,
            "retry_join": ["a"],
            "services": [web],
            "node_meta": {"rack": "r1", "zone": "z1"},
        },
    )
    b = write(
        tmp_path,
        "b.json",
        {"retry_join": ["b:9300"], "service": {"name": "db"}, "node_meta": {"zone": "z2"}},
    )
    c = write(
        tmp_path,
        "c.json",
        {
            "recursors": ["1.1.1.1"],
            "checks": [{"name": "c", "ttl": "1m"}],
            "check": {"name": "d", "ttl": "1m"},
        },
    )
    cfg, _ = load([a, b, c], flags={"retry_join": ["c"], "recursor": "9.9.9.9"})
    assert cfg.retry_join == (JoinAddress("a"), JoinAddress("b", 9300), JoinAddress("c"))
    assert [s["name"] for s in cfg.services] == ["web", "db"]
    assert [c["name"] for c in cfg.checks] == ["c", "d"]
    assert cfg.recursors == ("1.1.1.1:53", "9.9.9.9:53")
    assert dict(cfg.node_meta) == {"rack": "r1", "zone": "z2"}


def test_error_names_the_file_that_set_the_value(tmp_path: Path) -> None:
    a = write(tmp_path, "a.json", {**CLIENT, "ports": {"http": 8600}})
    b = write(tmp_path, "b.json", {"log_level": "INFO"})
    with pytest.raises(ConfigError) as info:
        load([a, b])
    assert_located(info.value, a, "ports.http", "port 8600 is also used by ports.dns")


# -- flags -----------------------------------------------------------------------


def test_flags_map_to_configuration_keys(tmp_path: Path) -> None:
    flags = {
        "server": True,
        "bootstrap_expect": 3,
        "node": "n1",
        "data_dir": "/var/lib/meshd",
        "bind": "10.0.0.5",
        "client": "0.0.0.0",
        "advertise": "192.0.2.5",
        "datacenter": "dc2",
        "retry_join": ["a", "b"],
        "http_port": "8501",
        "dns_port": 8601,
        "server_port": 8301,
        "log_level": "debug",
        "log_json": True,
        "ui": True,
        "domain": "mesh",
        "node_meta": ["rack:r1", "zone:z1"],
    }
    files = [write(tmp_path, "tls.json", TLS)]
    cfg, warnings = load(files, flags=flags)
    assert (cfg.server, cfg.bootstrap_expect, cfg.node_name, cfg.datacenter) == (
        True,
        3,
        "n1",
        "dc2",
    )
    assert (cfg.bind_addr, cfg.client_addr, cfg.advertise_addr) == (
        "10.0.0.5",
        ("0.0.0.0",),
        "192.0.2.5",
    )
    assert cfg.retry_join == (JoinAddress("a"), JoinAddress("b"))
    assert (cfg.ports.http, cfg.ports.dns, cfg.ports.server) == (8501, 8601, 8301)
    assert (cfg.log_level, cfg.log_json, cfg.ui_config.enabled, cfg.domain) == (
        "DEBUG",
        True,
        True,
        "mesh",
    )
    assert dict(cfg.node_meta) == {"rack": "r1", "zone": "z1"}
    assert warnings == []  # --ui turns the web UI on (meshd/api/ui.py): nothing to warn


def test_flag_error_names_the_flag() -> None:
    with pytest.raises(ConfigError) as info:
        load([], flags={"http_port": "abc", "data_dir": "/d"})
    assert (
        str(info.value)
        == 'flag --http-port: must be an integer between 1 and 65535, got "abc" (-1 disables it)'
    )
    with pytest.raises(ConfigError, match=r'^flag --node-meta: must be "key:value"'):
        load([], flags={"node_meta": ["novalue"]})


def test_cross_field_error_caused_by_a_flag_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load([write(tmp_path, "a.json", CLIENT)], flags={"bootstrap_expect": 3})
    assert str(info.value) == "flag --bootstrap-expect: requires server = true (only servers vote)"


def test_unset_flags_do_not_override_files(tmp_path: Path) -> None:
    path = write(tmp_path, "a.json", SERVER)
    cfg, _ = load(
        [], flags={"config_file": [path], "server": False, "node": None, "retry_join": ()}
    )
    assert cfg.server is True and cfg.data_dir == "/var/lib/meshd"


def test_config_file_and_dir_flags_are_loaded_after_arguments(tmp_path: Path) -> None:
    conf = tmp_path / "conf.d"
    conf.mkdir()
    write(conf, "x.json", {"node_name": "from-dir-flag"})
    first = write(tmp_path, "a.json", {**CLIENT, "node_name": "from-file"})
    second = write(tmp_path, "b.json", {"datacenter": "from-file-flag"})
    cfg, _ = load([first], flags={"config_file": second, "config_dir": [str(conf)]})
    assert (cfg.node_name, cfg.datacenter) == ("from-dir-flag", "from-file-flag")


def test_unknown_flag_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown agent flag 'http-port'"):
        load([], flags={"http-port": 1})


# -- deprecated and ignored keys -------------------------------------------------


def test_deprecated_keys_map_to_new_ones_with_a_warning(tmp_path: Path) -> None:
    doc = {
        **CLIENT,
        "server": True,
        "acl_master_token": "m-token",
        "acl_agent_master_token": "r-token",
        "acl_default_policy": "deny",
        "acl_datacenter": "dc0",
        "ca_file": "/ca.pem",
        "cert_file": "/cert.pem",
        "key_file": "/key.pem",
        "verify_incoming": True,
        "verify_outgoing": True,
        "verify_server_hostname": True,
        "tls_min_version": "tls13",
    }
    path = write(tmp_path, "old.json", doc)
    cfg, warnings = load([path])
    assert (cfg.acl.tokens.initial_management, cfg.acl.tokens.agent_recovery) == (
        "m-token",
        "r-token",
    )
    assert (cfg.acl.default_policy, cfg.acl.enabled, cfg.primary_datacenter) == (
        "deny",
        True,
        "dc0",
    )
    d = cfg.tls.defaults
    assert (d.ca_file, d.cert_file, d.key_file, d.tls_min_version) == (
        "/ca.pem",
        "/cert.pem",
        "/key.pem",
        "TLSv1_3",
    )
    assert d.verify_incoming and d.verify_outgoing and cfg.tls.internal_rpc.verify_server_hostname
    assert (
        f"config: {path}: acl_master_token: deprecated; use acl.tokens.initial_management instead"
        in warnings
    )
    assert (
        f"config: {path}: verify_incoming: deprecated; use tls.defaults.verify_incoming instead"
        in warnings
    )
    assert len(warnings) == len(doc) - 2


def test_nested_deprecated_token_names_map_and_new_key_wins(tmp_path: Path) -> None:
    tokens = {"master": "old", "initial_management": "new", "agent_master": "rec"}
    path = write(tmp_path, "a.json", {**CLIENT, "acl": {"tokens": tokens}})
    cfg, warnings = load([path])
    assert (cfg.acl.tokens.initial_management, cfg.acl.tokens.agent_recovery) == ("new", "rec")
    assert [w.removeprefix(f"config: {path}: ") for w in warnings if "deprecated" in w] == [
        "acl.tokens.master: deprecated; use acl.tokens.initial_management instead",
        "acl.tokens.agent_master: deprecated; use acl.tokens.agent_recovery instead",
    ]


def test_bad_value_under_deprecated_key_names_the_old_key(tmp_path: Path) -> None:
    err = error_for(tmp_path, {**CLIENT, "verify_incoming": "yes"})
    assert_located(err, str(tmp_path / "agent.json"), "verify_incoming", "must be true or false")


def test_unsupported_consul_keys_are_ignored_with_a_warning(tmp_path: Path) -> None:
    doc = {
        **CLIENT,
        "encrypt": "c2VjcmV0",
        "watches": [{"type": "key"}],
        "ports": {"serf_lan": 8301},
        "tls": {"auto_encrypt": {}},
    }
    cfg, warnings = load_doc(tmp_path, doc)
    path = tmp_path / "agent.json"
    assert warnings[:3] == [
        f"config: {path}: encrypt: ignored: meshd has no gossip layer to encrypt",
        f"config: {path}: watches: ignored: watches are not supported by meshd",
        f"config: {path}: ports.serf_lan: ignored: meshd has no gossip (Serf) layer",
    ]
    assert (
        f"config: {path}: tls.auto_encrypt: ignored: auto_encrypt is not supported by meshd"
        in warnings
    )
    assert "c2VjcmV0" not in repr(cfg) + json.dumps(cfg.to_public_dict())


# -- defaults and derived values -------------------------------------------------


def test_dev_defaults() -> None:
    cfg, warnings = load([], dev=True, host=FakeHost("laptop"))
    assert warnings == []
    assert (cfg.dev, cfg.server, cfg.bootstrap, cfg.data_dir) == (True, True, True, None)
    assert (cfg.bind_addr, cfg.advertise_addr, cfg.client_addr) == (
        "127.0.0.1",
        "127.0.0.1",
        ("127.0.0.1",),
    )
    assert (cfg.node_name, cfg.datacenter, cfg.primary_datacenter) == ("laptop", "dc1", "dc1")
    assert cfg.connect.enabled and cfg.ui_config.enabled and not cfg.acl.enabled
    assert (cfg.performance.raft_multiplier, cfg.log_level) == (1, "INFO")
    assert (cfg.ports.http, cfg.ports.dns, cfg.ports.server, cfg.ports.https) == (
        8500,
        8600,
        8300,
        -1,
    )


def test_dev_defaults_can_be_overridden(tmp_path: Path) -> None:
    cfg, _ = load_doc(
        tmp_path, {"bind_addr": "10.0.0.9", "performance": {"raft_multiplier": 3}}, dev=True
    )
    assert (cfg.bind_addr, cfg.advertise_addr, cfg.performance.raft_multiplier) == (
        "10.0.0.9",
        "10.0.0.9",
        3,
    )


def test_consul_defaults_for_a_client(tmp_path: Path) -> None:
    cfg, _ = load_doc(tmp_path, {**CLIENT, **TLS})
    assert (cfg.bind_addr, cfg.advertise_addr) == ("0.0.0.0", "10.1.2.3")
    assert (cfg.leave_on_terminate, cfg.skip_leave_on_interrupt) == (True, False)
    assert (cfg.retry_interval, cfg.acl.default_policy, cfg.acl.down_policy) == (
        30.0,
        "allow",
        "extend-cache",
    )
    assert (
        cfg.dns_config.allow_stale,
        cfg.dns_config.max_stale,
        cfg.dns_config.udp_answer_limit,
    ) == (True, 87600 * 3600.0, 3)
    assert (
        cfg.performance.raft_multiplier,
        cfg.raft_snapshot_threshold,
        cfg.raft_trailing_logs,
    ) == (5, 16384, 10240)
    assert (cfg.limits.http_max_conns_per_client, cfg.limits.kv_max_value_size) == (200, 512 * 1024)
    assert (cfg.connect.default_intention_policy, cfg.connect.ca_config.private_key_bits) == (
        "deny",
        256,
    )
    assert (cfg.telemetry.metrics_prefix, cfg.domain, cfg.disable_remote_exec) == (
        "meshd",
        "consul",
        True,
    )
    assert cfg.tls.internal_rpc.ca_file == TLS_FILES["ca_file"]


def test_server_leave_defaults_and_no_private_address(tmp_path: Path) -> None:
    cfg, _ = load_doc(tmp_path, SERVER, host=FakeHost(ipv4=None))
    assert (cfg.leave_on_terminate, cfg.skip_leave_on_interrupt) == (False, True)
    assert cfg.advertise_addr == "127.0.0.1"


def test_protocol_tls_settings_inherit_and_override_defaults(tmp_path: Path) -> None:
    tls = {
        "defaults": {**TLS_FILES, "verify_incoming": True},
        "https": {"verify_incoming": False},
    }
    cfg, _ = load_doc(tmp_path, {**SERVER, "tls": tls})
    assert cfg.tls.internal_rpc.verify_incoming and not cfg.tls.https.verify_incoming
    assert cfg.tls.https.cert_file == TLS_FILES["cert_file"]


def test_rsa_ca_keys_default_to_2048_bits(tmp_path: Path) -> None:
    cfg, _ = load_doc(tmp_path, {"connect": {"ca_config": {"private_key_type": "rsa"}}}, dev=True)
    assert cfg.connect.ca_config.private_key_bits == 2048


# -- a real Consul configuration, JSON and TOML ----------------------------------

CONSUL_JSON = """{
  "datacenter": "east-aws",
  "data_dir": "/opt/consul",
  "log_level": "INFO",
  "node_name": "consul-server-1",
  "server": true,
  "bootstrap_expect": 3,
  "retry_join": ["10.0.1.11", "10.0.1.12:8300", "consul-3.example.internal"],
  "bind_addr": "10.0.1.10",
  "client_addr": "0.0.0.0",
  "ports": {"http": 8500, "https": 8501, "dns": 8600, "grpc": 8502},
  "tls": {
    "defaults": {
      "ca_file": "/opt/consul/tls/consul-agent-ca.pem",
      "cert_file": "/opt/consul/tls/east-aws-server-consul-0.pem",
      "key_file": "/opt/consul/tls/east-aws-server-consul-0-key.pem",
      "verify_incoming": true,
      "verify_outgoing": true
    },
    "internal_rpc": {"verify_server_hostname": true}
  },
  "acl": {
    "enabled": true,
    "default_policy": "deny",
    "enable_token_persistence": true,
    "tokens": {
      "initial_management": "0b8e6c53-1d3f-4c2b-9d3f-6f0a3f3c1a11",
      "agent": "5a1f2c3d-0000-4b7e-8a9e-2f9c7c1d2e33"
    }
  },
  "connect": {"enabled": true},
  "ui_config": {"enabled": true},
  "performance": {"raft_multiplier": 1},
  "node_meta": {"rack": "r12"},
  "services": [
    {
      "name": "web",
      "port": 80,
      "tags": ["v1"],
      "token": "7c0e1f9a-aaaa-4bbb-8ccc-123456789abc",
      "check": {
        "id": "web-http",
        "http": "http://localhost:80/health",
        "header": {"Authorization": ["Bearer s3cr3t"]},
        "interval": "10s",
        "timeout": "1s"
      }
    },
    {"name": "redis", "port": 6379, "checks": [{"tcp": "localhost:6379", "interval": "10s"}]}
  ]
}
"""

CONSUL_TOML = """
datacenter = "east-aws"
data_dir = "/opt/consul"
log_level = "INFO"
node_name = "consul-server-1"
server = true
bootstrap_expect = 3
retry_join = ["10.0.1.11", "10.0.1.12:8300", "consul-3.example.internal"]
bind_addr = "10.0.1.10"
client_addr = "0.0.0.0"
node_meta = { rack = "r12" }
ports = { http = 8500, https = 8501, dns = 8600, grpc = 8502 }
connect = { enabled = true }
ui_config = { enabled = true }
performance = { raft_multiplier = 1 }

[tls.defaults]
ca_file = "/opt/consul/tls/consul-agent-ca.pem"
cert_file = "/opt/consul/tls/east-aws-server-consul-0.pem"
key_file = "/opt/consul/tls/east-aws-server-consul-0-key.pem"
verify_incoming = true
verify_outgoing = true

[tls.internal_rpc]
verify_server_hostname = true

[acl]
enabled = true
default_policy = "deny"
enable_token_persistence = true

[acl.tokens]
initial_management = "0b8e6c53-1d3f-4c2b-9d3f-6f0a3f3c1a11"
agent = "5a1f2c3d-0000-4b7e-8a9e-2f9c7c1d2e33"

[[services]]
name = "web"
port = 80
tags = ["v1"]
token = "7c0e1f9a-aaaa-4bbb-8ccc-123456789abc"

[services.check]
id = "web-http"
http = "http://localhost:80/health"
header = { Authorization = ["Bearer s3cr3t"] }
interval = "10s"
timeout = "1s"

[[services]]
name = "redis"
port = 6379
checks = [{ tcp = "localhost:6379", interval = "10s" }]
"""


def test_consul_agent_config_loads_unchanged(tmp_path: Path) -> None:
    cfg, warnings = load([write(tmp_path, "consul.json", CONSUL_JSON)])
    # Only the keys that do nothing yet warn (test_config_inert.py).
    assert [w.split(": ")[2] for w in warnings] == ["ports.grpc"]
    assert (cfg.datacenter, cfg.node_name, cfg.server, cfg.bootstrap_expect) == (
        "east-aws",
        "consul-server-1",
        True,
        3,
    )
    assert [str(j) for j in cfg.retry_join] == [
        "10.0.1.11:8300",
        "10.0.1.12:8300",
        "consul-3.example.internal:8300",
    ]
    assert (cfg.bind_addr, cfg.advertise_addr, cfg.client_addr) == (
        "10.0.1.10",
        "10.0.1.10",
        ("0.0.0.0",),
    )
    assert (cfg.ports.http, cfg.ports.https, cfg.ports.dns, cfg.ports.grpc) == (
        8500,
        8501,
        8600,
        8502,
    )
    rpc = cfg.tls.internal_rpc
    assert rpc.verify_server_hostname and rpc.verify_incoming and rpc.key_file.endswith("-key.pem")  # type: ignore[union-attr]
    assert cfg.tls.https.cert_file == "/opt/consul/tls/east-aws-server-consul-0.pem"
    assert (cfg.acl.enabled, cfg.acl.default_policy, cfg.acl.enable_token_persistence) == (
        True,
        "deny",
        True,
    )
    assert cfg.acl.tokens.agent == "5a1f2c3d-0000-4b7e-8a9e-2f9c7c1d2e33"
    assert (cfg.performance.raft_multiplier, dict(cfg.node_meta)) == (1, {"rack": "r12"})
    web, redis = cfg.services
    assert web["checks"][0]["http"] == "http://localhost:80/health" and web["tags"] == ["v1"]
    assert redis["checks"] == [{"tcp": "localhost:6379", "interval": "10s"}]


def test_json_and_toml_equivalents_give_equal_configs(tmp_path: Path) -> None:
    from_json, _ = load([write(tmp_path, "consul.json", CONSUL_JSON)])
    from_toml, _ = load([write(tmp_path, "consul.toml", CONSUL_TOML)])
    assert from_json == from_toml


# -- the public view -------------------------------------------------------------


def test_public_dict_hides_secrets_and_formats_like_consul(tmp_path: Path) -> None:
    cfg, _ = load([write(tmp_path, "consul.json", CONSUL_JSON)])
    public = cfg.to_public_dict()
    text = json.dumps(public)
    for secret in ("0b8e6c53", "5a1f2c3d", "7c0e1f9a", "s3cr3t"):
        assert secret not in text
        assert secret not in repr(cfg)
    assert public["Config"] == {
        "Datacenter": "east-aws",
        "PrimaryDatacenter": "east-aws",
        "NodeName": "consul-server-1",
        "NodeID": "",
        "Server": True,
    }
    debug = public["DebugConfig"]
    assert debug["ACL"]["Tokens"] == {
        "InitialManagement": "hidden",
        "Agent": "hidden",
        "Default": "",
        "AgentRecovery": "",
        "Replication": "",
    }
    assert debug["TLS"]["Defaults"]["KeyFile"] == "/opt/consul/tls/east-aws-server-consul-0-key.pem"
    assert debug["RetryInterval"] == "30s"
    assert debug["Connect"]["CAConfig"]["LeafCertTTL"] == "72h0m0s"
    assert debug["RetryJoin"][0] == "10.0.1.11:8300" and debug["Ports"]["HTTPS"] == 8501
    assert debug["Services"][0]["token"] == "hidden"
    assert debug["Services"][0]["checks"][0]["header"] == {"Authorization": ["hidden"]}
    assert debug["DNSConfig"]["ServiceTTL"] == {}
    assert json.loads(text) == public


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg, _ = load([], dev=True)
    with pytest.raises(AttributeError):
        cfg.server = False  # type: ignore[misc]


def test_system_host_reports_this_host() -> None:
    host = SystemHost()
    assert host.hostname() == socket.gethostname()
    address = host.private_ipv4()
    assert address is None or not ipaddress.ip_address(address).is_loopback
