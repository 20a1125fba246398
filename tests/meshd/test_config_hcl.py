"""HCL agent configurations (Consul's format) load like their JSON equivalent."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshd.config.hcl import HCLSyntaxError, parse_hcl
from meshd.errors import ConfigError
from tests.meshd.config_support import TLS_FILES, load, write

# A Consul server configuration as found in the wild.
CONSUL_SERVER = f"""
# consul.hcl
datacenter = "dc1"
data_dir   = "/opt/consul"
server     = true
bootstrap_expect = 3
retry_join = ["10.0.0.1", "10.0.0.2"]
client_addr = "127.0.0.1"

ports {{
  http = 8500
  dns  = 8600
}}

acl {{
  enabled        = true
  default_policy = "deny"
  tokens {{
    agent = "agent-secret"
  }}
}}

tls {{
  defaults {{
    ca_file   = "{TLS_FILES["ca_file"]}"
    cert_file = "{TLS_FILES["cert_file"]}"
    key_file  = "{TLS_FILES["key_file"]}"
  }}
}}

/* two services, each its own block */
service {{
  name = "redis"
  port = 6379
  tags = ["primary"]
  check {{
    id       = "redis-tcp"
    tcp      = "localhost:6379"
    interval = "10s"
  }}
}}
service {{
  name = "web"
  port = 80
}}

node_meta {{
  rack = "r1"
}}
"""


def test_consul_server_config_in_hcl(tmp_path: Path) -> None:
    cfg, _ = load([write(tmp_path, "consul.hcl", CONSUL_SERVER)])
    assert cfg.server and cfg.bootstrap_expect == 3 and cfg.datacenter == "dc1"
    assert cfg.ports.http == 8500 and cfg.ports.dns == 8600
    assert cfg.acl.enabled and cfg.acl.default_policy == "deny"
    assert cfg.acl.tokens.agent == "agent-secret"
    assert cfg.tls.defaults.cert_file == TLS_FILES["cert_file"]
    assert dict(cfg.node_meta) == {"rack": "r1"}
    assert [s["name"] for s in cfg.services] == ["redis", "web"]
    assert cfg.services[0]["checks"] == [
        {"id": "redis-tcp", "tcp": "localhost:6379", "interval": "10s"}
    ]
    assert [j.host for j in cfg.retry_join] == ["10.0.0.1", "10.0.0.2"]


def test_hcl_and_json_give_the_same_configuration(tmp_path: Path) -> None:
    hcl = write(tmp_path, "a.hcl", 'services { name = "db"\n port = 5432 }\nlog_level = "debug"\n')
    json_file = write(
        tmp_path, "a.json", {"services": [{"name": "db", "port": 5432}], "log_level": "debug"}
    )
    flags = {"data_dir": "/d"}
    assert load([hcl], flags=flags)[0] == load([json_file], flags=flags)[0]


def test_repeated_check_blocks_in_a_service(tmp_path: Path) -> None:
    text = (
        'service {\n  name = "api"\n'
        '  check {\n    ttl = "10s"\n  }\n'
        '  check {\n    http = "http://localhost/h"\n    interval = "5s"\n  }\n}\n'
    )
    cfg, _ = load([write(tmp_path, "api.hcl", text)], flags={"data_dir": "/d"})
    assert cfg.services[0]["checks"] == [
        {"ttl": "10s"},
        {"http": "http://localhost/h", "interval": "5s"},
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("server = true\nports {\n  http = 1\n", "invalid HCL at line 4, column 1"),
        ('datacenter = "dc1\n', 'line 1, column 15: unexpected end of file, expected "'),
        ("ports {\n  http = [1, 2\n}\n", "invalid HCL at line 3, column 1"),
        ('node_meta { "rack" = "r1" }', 'a quoted key belongs in an object: meta = { "key"'),
        ("ports { http = 1 }\nports { dns = 2 }\n", "ports: block given 2 times; give it once"),
    ],
)
def test_hcl_syntax_errors_name_file_line_and_column(
    tmp_path: Path, text: str, reason: str
) -> None:
    path = write(tmp_path, "agent.hcl", text)
    with pytest.raises(ConfigError) as info:
        load([path])
    assert info.value.file == path and info.value.key is None
    assert reason in info.value.reason
    assert "\n" not in str(info.value)


def test_hcl_value_errors_name_the_key_like_json(tmp_path: Path) -> None:
    path = write(tmp_path, "agent.hcl", 'ports {\n  http = "abc"\n}\n')
    with pytest.raises(ConfigError) as info:
        load([path], flags={"data_dir": "/d"})
    assert info.value.file == path and info.value.key == "ports.http"
    json_path = write(tmp_path, "agent.json", '{"ports": {"http": "abc"}}')
    with pytest.raises(ConfigError) as json_info:
        load([json_path], flags={"data_dir": "/d"})
    assert info.value.reason == json_info.value.reason


def test_unknown_key_in_hcl_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(tmp_path, "agent.hcl", 'datacentre = "dc1"\n')
    with pytest.raises(ConfigError) as info:
        load([path])
    assert info.value.key == "datacentre"
    assert 'did you mean "datacenter"' in info.value.reason


def test_parse_hcl_keeps_lists_for_list_keys_and_decodes_strings() -> None:
    decoded = parse_hcl('checks { ttl = "1s" }\nname = "a\\"b"\nsegments = []\n')
    assert decoded == {"checks": [{"ttl": "1s"}], "name": 'a"b', "segments": []}
    with pytest.raises(HCLSyntaxError) as info:
        parse_hcl("@")
    assert info.value.line == 1 and info.value.column == 1


@pytest.mark.slow
def test_read_only_install_keeps_the_grammar_cache_in_the_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from hcl2 import parser as hcl2_parser

    from meshd.config import hcl

    monkeypatch.setattr(hcl2_parser, "PARSER_FILE", Path("/proc/no-such-dir/.lark_cache.bin"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    hcl._parser.cache_clear()
    try:
        assert parse_hcl("ports {\n  http = 18501\n}\n") == {"ports": {"http": 18501}}
    finally:
        hcl._parser.cache_clear()
    assert [p.name.startswith(".lark_cache") for p in tmp_path.iterdir()] == [True]
