"""What every agent-talking command shares: address parsing, flag/env
precedence, one-line errors, tables, and shell completion."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from meshd.agent_tls import create_ca, create_cert
from meshd.cli.client import Address, AgentClient, parse_address
from meshd.cli.errors import AgentUnreachable, CLIError
from meshd.cli.output import table
from tests.meshd.cli_support import invoke, one_error_line, run_cli
from tests.meshd.harness import dev_agent, free_port


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Address("http", "127.0.0.1", 8500)),
        ("127.0.0.1:8500", Address("http", "127.0.0.1", 8500)),
        ("localhost", Address("http", "localhost", 8500)),
        ("http://agent.example:9000", Address("http", "agent.example", 9000)),
        ("HTTP://agent.example", Address("http", "agent.example", 80)),
        ("https://agent.example", Address("https", "agent.example", 443)),
        ("https://10.0.0.1:8501/", Address("https", "10.0.0.1", 8501)),
        ("[::1]:8500", Address("http", "::1", 8500)),
        ("unix:///run/meshd/http.sock", Address("unix", path="/run/meshd/http.sock")),
    ],
)
def test_address_forms_match_consul_http_addr(text: str, expected: Address) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("ftp://host:21", "unsupported scheme 'ftp'"),
        ("host:99999", "port must be a number"),
        ("host:http", "port must be a number"),
        ("http://host:8500/v1", "without a path"),
        ("unix://", "needs a path"),
        ("http://:8500", "missing host"),
    ],
)
def test_bad_addresses_are_named(text: str, why: str) -> None:
    with pytest.raises(CLIError, match=why):
        parse_address(text)


def test_address_prints_back_in_the_form_it_was_given() -> None:
    assert str(parse_address("[::1]:8500")) == "[::1]:8500"
    assert str(parse_address("https://h")) == "https://h:443"
    assert str(parse_address("unix:///s")) == "unix:///s"


def test_table_aligns_columns_without_trailing_blanks() -> None:
    text = table(["Node", "Voter", "Tags"], [["a", True, {"b": 1, "a": "x"}], ["long-name", False]])
    assert text.splitlines() == [
        "Node       Voter  Tags",
        "a          true   a=x, b=1",
        "long-name  false",
    ]


def test_connection_refused_is_one_line_naming_the_address() -> None:
    port = free_port()
    result = invoke(["members", "-http-addr", f"127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert one_error_line(result) == (
        f"Error querying agent: connection refused (127.0.0.1:{port}): is the agent running?"
    )


def test_bad_address_is_one_line() -> None:
    result = invoke(["catalog", "services", "--http-addr", "host:notaport"])
    assert one_error_line(result) == (
        "Error: invalid HTTP address 'host:notaport': port must be a number between 1 and 65535"
    )


def test_plain_http_to_a_non_http_listener_is_one_line() -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]

        def close_at_once() -> None:
            conn, _ = srv.accept()
            conn.recv(1024)
            conn.close()

        t = threading.Thread(target=close_at_once)
        t.start()
        result = invoke(["members", "-http-addr", f"127.0.0.1:{port}"])
        t.join()
    line = one_error_line(result)
    assert line.startswith(
        f"Error querying agent: the connection closed without an HTTP answer (127.0.0.1:{port})"
    )


@pytest.mark.e2e
async def test_address_precedence_is_flag_then_meshd_then_consul() -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with dev_agent() as (_agent, api):
        live = f"{api.host}:{api.port}"
        cases = [
            (["--http-addr", live], {"MESHD_HTTP_ADDR": dead, "CONSUL_HTTP_ADDR": dead}, True),
            (["--http-addr", dead], {"MESHD_HTTP_ADDR": live, "CONSUL_HTTP_ADDR": live}, False),
            ([], {"MESHD_HTTP_ADDR": live, "CONSUL_HTTP_ADDR": dead}, True),
            ([], {"MESHD_HTTP_ADDR": dead, "CONSUL_HTTP_ADDR": live}, False),
            ([], {"CONSUL_HTTP_ADDR": live}, True),
            ([], {"CONSUL_HTTP_ADDR": f"http://{live}"}, True),
        ]
        for flags, env, reaches_agent in cases:
            result = await run_cli(["catalog", "datacenters", *flags], env=env)
            if reaches_agent:
                assert (result.exit_code, result.stdout) == (0, "dc1\n"), (flags, env)
            else:
                assert f"connection refused ({dead})" in one_error_line(result), (flags, env)


@contextmanager
def token_echo_server(tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """An HTTP(S) server answering /v1/catalog/datacenters with the token it got."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps([self.headers.get("X-Consul-Token", "<none>")]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_token_precedence_is_flag_then_meshd_then_consul() -> None:
    with token_echo_server() as addr:
        env = {"MESHD_HTTP_TOKEN": "meshd-tok", "CONSUL_HTTP_TOKEN": "consul-tok"}
        cases = [
            (["-token", "flag-tok"], env, "flag-tok"),
            ([], env, "meshd-tok"),
            ([], {"CONSUL_HTTP_TOKEN": "consul-tok"}, "consul-tok"),
            ([], {}, "<none>"),
        ]
        for flags, variables, seen in cases:
            result = invoke(["catalog", "datacenters", "-http-addr", addr, *flags], env=variables)
            assert (result.exit_code, result.stdout) == (0, f"{seen}\n"), (flags, variables)


def test_https_agent_verified_with_ca_file_and_server_name(tmp_path: Path) -> None:
    ca_cert, ca_key = create_ca()
    cert, key = create_cert(ca_cert, ca_key, kind="server")  # SAN: server.dc1.consul
    (tmp_path / "ca.pem").write_text(ca_cert)
    (tmp_path / "srv.pem").write_text(cert + key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "srv.pem")
    with token_echo_server(ctx) as hostport:
        url = f"https://{hostport}"
        ok = ["-ca-file", str(tmp_path / "ca.pem"), "-tls-server-name", "server.dc1.consul"]
        result = invoke(["catalog", "datacenters", "-http-addr", url, "-token", "t", *ok])
        assert (result.exit_code, result.stdout) == (0, "t\n"), result.output
        env = {"CONSUL_HTTP_ADDR": url, "CONSUL_CACERT": str(tmp_path / "ca.pem")}
        env["MESHD_TLS_SERVER_NAME"] = "server.dc1.consul"
        result = invoke(["catalog", "datacenters"], env=env)
        assert (result.exit_code, result.stdout) == (0, "<none>\n"), result.output
        result = invoke(["catalog", "datacenters", "-http-addr", url])  # system CAs only
        line = one_error_line(result)
        assert line.startswith("Error querying agent: TLS certificate not trusted: ")
        assert line.endswith(f"({url})")
        result = invoke(["catalog", "datacenters", "-http-addr", url, "-ca-file", str(tmp_path)])
        assert one_error_line(result).startswith("Error: cannot load TLS files: ")


@pytest.mark.e2e
async def test_non_2xx_answer_is_consuls_unexpected_response_line() -> None:
    async with dev_agent() as (_agent, api):
        result = await run_cli(
            ["catalog", "nodes", "-filter", "Node ==", "-http-addr", f"{api.host}:{api.port}"]
        )
    line = one_error_line(result)
    assert line.startswith("Unexpected response code: 400 (")
    assert line.endswith(")")


def test_every_command_of_the_issue_is_registered() -> None:
    expected = [
        ["agent"],
        ["members"],
        ["catalog", "services"],
        ["catalog", "nodes"],
        ["services", "register"],
        ["services", "deregister"],
        ["kv", "get"],
        ["kv", "put"],
        ["kv", "delete"],
        ["operator", "raft", "list-peers"],
        ["operator", "raft", "remove-peer"],
        ["operator", "raft", "transfer-leader"],
        ["snapshot", "save"],
        ["snapshot", "restore"],
        ["snapshot", "inspect"],
        ["tls", "ca", "create"],
        ["tls", "cert", "create"],
        ["reload"],
        ["leave"],
        ["info"],
        ["version"],
    ]
    for path in expected:
        result = invoke([*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert f"Usage: meshd {' '.join(path)}" in result.stdout


def test_single_dash_and_double_dash_flags_are_both_accepted() -> None:
    port = free_port()
    for spelling in (["-http-addr", f"127.0.0.1:{port}"], [f"--http-addr=127.0.0.1:{port}"]):
        result = invoke(["kv", "get", "-recurse", "--detailed", "app/", *spelling])
        assert f"connection refused (127.0.0.1:{port})" in one_error_line(result)


def test_bash_completion_script_is_printed() -> None:
    result = invoke([], env={"_MESHD_COMPLETE": "bash_source"})
    assert result.exit_code == 0
    assert "_meshd_completion()" in result.stdout
    assert "complete -o nosort -F _meshd_completion meshd" in result.stdout


def test_completion_offers_subcommands_and_flags() -> None:
    env = {"_MESHD_COMPLETE": "bash_complete", "COMP_WORDS": "meshd kv ", "COMP_CWORD": "2"}
    result = invoke([], env=env)
    assert result.stdout.split() == [
        "plain,delete",
        "plain,export",
        "plain,get",
        "plain,import",
        "plain,put",
    ]
    env = {"_MESHD_COMPLETE": "bash_complete", "COMP_WORDS": "meshd kv put --mo", "COMP_CWORD": "3"}
    assert invoke([], env=env).stdout.split() == ["plain,--modify-index"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["kv", "put"], "Error: Missing argument 'KEY'. (try 'meshd kv put -h')"),
        (["kv", "nope"], "Error: No such command 'nope'. (try 'meshd kv -h')"),
        (
            ["kv", "put", "-cas", "-modify-index", "abc", "k"],
            "Error: Invalid value for '-modify-index' / '--modify-index': "
            "'abc' is not a valid integer range. (try 'meshd kv put -h')",
        ),
        (
            ["catalog", "nodes", "--format", "xml"],
            "Error: Invalid value for '-format' / '--format': 'xml' is not one of 'table', 'json'."
            " (try 'meshd catalog nodes -h')",
        ),
    ],
)
def test_usage_errors_are_one_line_with_a_pointer_to_help(args: list[str], expected: str) -> None:
    result = invoke(args)
    assert result.exit_code == 2
    assert one_error_line(result) == expected


def test_an_agent_that_never_answers_times_out_with_one_line() -> None:
    with socket.socket() as silent:  # accepts (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        client = AgentClient(parse_address(f"127.0.0.1:{port}"), timeout=0.2)
        with pytest.raises(AgentUnreachable) as info:
            client.get_json("/v1/agent/self")
    assert info.value.message == f"Error querying agent: no answer within 0.2s (127.0.0.1:{port})"
