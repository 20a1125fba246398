"""Consul's single-dash spellings work for every command (meshd/cli/single_dash.py)."""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from meshd.cli import MeshdGroup, cli
from meshd.cli.single_dash import consul_spelling
from tests.meshd.cli_support import invoke, one_error_line

SPELLINGS = [
    (["agent", "-dev"], ["agent", "--dev"]),
    (["agent", "-config-file=x.hcl", "-dev"], ["agent", "--config-file=x.hcl", "--dev"]),
    (
        ["agent", "-config-dir", "/etc/d", "-server"],
        ["agent", "--config-dir", "/etc/d", "--server"],
    ),
    (["agent", "-bootstrap-expect=3"], ["agent", "--bootstrap-expect=3"]),
    (["agent", "-log-json=true", "-ui=false"], ["agent", "--log-json"]),
    (["tls", "cert", "create", "-server"], ["tls", "cert", "create", "--server"]),
    (
        ["tls", "cert", "create", "-dc=east", "-days", "9"],
        ["tls", "cert", "create", "--dc=east", "--days", "9"],
    ),
    (["kv", "get", "-stale", "k"], ["kv", "get", "-stale", "k"]),
    (["kv", "get", "-stale=true", "k"], ["kv", "get", "--stale", "k"]),
    (["kv", "get", "-stale=false", "k"], ["kv", "get", "k"]),
    # Declared as -http-addr/-token already: left as written.
    (
        ["kv", "get", "-http-addr=h:1", "-token=t", "k"],
        ["kv", "get", "-http-addr=h:1", "-token=t", "k"],
    ),
    (["members", "-wan"], ["members", "-wan"]),
    (["members", "-wan=1"], ["members", "--wan"]),
    (["-version"], ["--version"]),
    (["kv", "get", "-help"], ["kv", "get", "--help"]),
    # Short options, negative numbers, option values and words after -- are left alone.
    (["kv", "get", "-h"], ["kv", "get", "-h"]),
    (["agent", "-bootstrap-expect", "-1"], ["agent", "--bootstrap-expect", "-1"]),
    (["agent", "-node", "-dev"], ["agent", "--node", "-dev"]),
    (["kv", "put", "k", "--", "-recurse"], ["kv", "put", "k", "--", "-recurse"]),
    (["kv", "put", "k", "-"], ["kv", "put", "k", "-"]),
    # An unknown flag is named whole, not by its first letter.
    (["kv", "get", "-bogus"], ["kv", "get", "--bogus"]),
]


@pytest.mark.parametrize(("args", "expected"), SPELLINGS)
def test_consul_spelling_is_rewritten_for_the_invoked_command(
    args: list[str], expected: list[str]
) -> None:
    assert consul_spelling(cli, args) == expected


# Consul's spellings, as its docs write them, per command. Each line is
# parsed down to its command, values converted, without running anything.
CONSUL_LINES = [
    "agent -dev -server -bootstrap -bootstrap-expect=3 -config-file=a.hcl -config-dir=/etc/d"
    " -node=n1 -node-id=x -data-dir=/var/lib/meshd -datacenter=dc1 -domain=consul"
    " -bind=10.0.0.1 -advertise=10.0.0.1 -client=127.0.0.1 -retry-join=10.0.0.2 -join=10.0.0.3"
    " -http-port=18500 -dns-port=18600 -server-port=18300 -log-level=debug -log-json -ui"
    " -enable-script-checks",
    "kv get -stale -recurse -detailed -keys -separator=/ -base64 -http-addr=127.0.0.1:1"
    " -token=t -ca-file=ca.pem -client-cert=c.pem -client-key=k.pem -tls-server-name=n k",
    "kv put -flags=42 -cas -modify-index=7 -acquire -session=s k v",
    "kv delete -recurse -cas -modify-index=3 k",
    "members -wan -detailed -status=alive -format=json",
    "tls ca create -domain=consul -days=30 -name-constraint",
    "tls cert create -server -dc=dc1 -domain=consul -days=30 -additional-ipaddress=10.0.0.1"
    " -additional-dnsname=node1.example",
    "tls cert create -client -ca=ca.pem -key=ca-key.pem",
    "operator raft list-peers -stale",
    "snapshot save -stale backup.snap",
    "services register -name=web -id=web-1 -address=10.0.0.1 -port=80 -tag=v1 -meta=a=b",
    "catalog services -node=n1 -node-meta=rack=r1 -tags -filter=x",
    "intention create -deny -replace -description=d -meta=a=b web api",
    "acl policy create -name=p -description=d -rules-file=r.hcl -valid-datacenter=dc1",
    "proxy -http-addr=127.0.0.1:1 -workers=2 -metrics-addr=127.0.0.1:0 -sidecar-for=web"
    " -log-level=info -log-json=true",
    "watch -type=key -key=k -token-file=t.txt",
    "lock -n=2 -name=n -ttl=15s -timeout=1s -try=5s -verbose p true",
    "maint -enable -reason=r -service=web",
    "event -name=deploy -node=n -service=s -tag=t",
    "monitor -log-level=debug -log-json",
    "join -wan 10.0.0.1",
    "force-leave -prune n1",
    "validate -quiet agent.hcl",
    "config read -kind=service-defaults -name=web",
    "kv import -prefix=p",
    "operator autopilot set-config -cleanup-dead-servers=false -max-trailing-logs=250",
    "login -method=m -meta=a=b",
]


def parse_only(args: list[str]) -> click.Context:
    """Parse ``meshd ARGS`` as click would before running it; the leaf's context."""
    ctx = cli.make_context("meshd", args)
    command: click.Command = cli
    while isinstance(command, click.Group):
        # click 8.2 keeps the subcommand's words in _protected_args (public until 9.0)
        protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
        words = [*protected, *ctx.args]
        name, sub, rest = command.resolve_command(ctx, words)
        assert name is not None and sub is not None
        command, ctx = sub, sub.make_context(name, rest, parent=ctx)
    return ctx


@pytest.mark.parametrize("line", CONSUL_LINES, ids=lambda line: " ".join(line.split()[:2]))
def test_consul_flag_spellings_parse_for_every_command(line: str) -> None:
    ctx = parse_only(line.split())
    assert ctx.info_name in line.split() and ctx.params


def test_parsed_consul_spellings_carry_their_values() -> None:
    agent = parse_only(CONSUL_LINES[0].split()).params
    assert agent["dev"] and agent["http_port"] == 18500 and agent["config_file"] == ("a.hcl",)
    assert agent["log_json"] and agent["bootstrap_expect"] == 3
    lock = parse_only(["lock", "-n=2", "-ttl=15s", "p", "true"]).params
    assert lock["limit"] == 2 and lock["ttl"] == "15s"
    members = parse_only(["members", "-wan=false", "-status=alive"]).params
    assert not members["wan"] and members["status"] == "alive"


def test_agent_dev_and_config_file_with_one_dash(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    line = one_error_line(invoke(["agent", "-dev", f"-config-file={missing}"]))
    assert line == f"Error: config: {missing}: no such file"


def test_unknown_single_dash_flag_is_named_whole() -> None:
    line = one_error_line(invoke(["kv", "get", "-bogus", "k"]))
    assert "--bogus" in line and "'-b'" not in line


def test_tls_cert_create_server_with_one_dash(tmp_path: Path) -> None:
    runner = CliRunner()
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert runner.invoke(cli, ["tls", "ca", "create", "-days=30"]).exit_code == 0
        res = runner.invoke(cli, ["tls", "cert", "create", "-server", "-dc=east"])
    finally:
        os.chdir(old)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "east-server-meshd-0.pem").exists()


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("X-Consul-Token", "")))
        if self.path.startswith("/v1/kv/"):
            body = [{"Key": "k", "Value": base64.b64encode(b"v").decode(), "Flags": 0}]
        else:
            body = []
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def fake_agent() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", _Recorder.seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.e2e
def test_kv_get_stale_token_and_members_wan_reach_the_agent(
    fake_agent: tuple[str, list[tuple[str, str]]],
) -> None:
    addr, seen = fake_agent
    res = invoke(["kv", "get", "-stale", f"-http-addr={addr}", "-token=s3cret", "k"])
    assert res.exit_code == 0, res.output
    assert res.stdout == "v\n"
    res = invoke(["members", "-wan", "-http-addr", addr])
    assert res.exit_code == 0, res.output
    assert seen == [("/v1/kv/k?stale", "s3cret"), ("/v1/agent/members?wan", "")]


def test_a_command_added_later_gets_single_dash_flags() -> None:
    @click.group(cls=MeshdGroup)
    def root() -> None:
        pass

    @root.command()
    @click.option("--shiny-new", is_flag=True)
    @click.option("--count", type=int, default=0)
    def later(shiny_new: bool, count: int) -> None:
        click.echo(f"shiny={shiny_new} count={count}")

    res = CliRunner().invoke(root, ["later", "-shiny-new", "-count=-3"])
    assert res.exit_code == 0, res.output
    assert res.output == "shiny=True count=-3\n"
