"""The proxy's flags: one set of defaults, one command line, parsed back unchanged."""

from __future__ import annotations

import pytest

from connect.proxy.flags import DEFAULTS, FLAGS, ProxyFlags, format_host_port, parse_host_port
from connect.proxy.main import build_parser, parse_flags, worker_command

EVERYTHING = ProxyFlags(
    http_addr=("::1", 18500),
    workers=3,
    metrics_addr=("127.0.0.2", 19102),
    idle_timeout=12.5,
    max_connections=77,
    agent_wait=0.25,
    log_level="debug",
    log_json=True,
    sidecar_for=("web", "api-1"),
    worker_id=2,
)


def test_no_flags_parse_to_the_defaults() -> None:
    assert parse_flags([]) == DEFAULTS
    assert (DEFAULTS.http_addr, DEFAULTS.idle_timeout, DEFAULTS.max_connections) == (
        ("127.0.0.1", 8500),
        3600.0,
        10_000,
    )


@pytest.mark.parametrize("flags", [DEFAULTS, EVERYTHING])
def test_the_command_line_parses_back_to_the_same_flags(flags: ProxyFlags) -> None:
    cmd = flags.command("/usr/bin/python3")
    assert cmd[:3] == ["/usr/bin/python3", "-m", "connect.proxy.main"]
    assert parse_flags(cmd[3:]) == flags


def test_a_worker_runs_one_process_without_metrics_and_gets_its_id_from_the_supervisor() -> None:
    cmd = worker_command(EVERYTHING)
    got = parse_flags(cmd[3:])
    assert got == ProxyFlags(
        http_addr=("::1", 18500),
        idle_timeout=12.5,
        max_connections=77,
        agent_wait=0.25,
        log_level="debug",
        log_json=True,
        sidecar_for=("web", "api-1"),
    )


@pytest.mark.parametrize(
    ("text", "addr"),
    [
        ("127.0.0.1:9102", ("127.0.0.1", 9102)),
        (":9102", ("127.0.0.1", 9102)),
        ("[::1]:1", ("::1", 1)),
    ],
)
def test_host_port(text: str, addr: tuple[str, int]) -> None:
    assert parse_host_port(text) == addr
    assert parse_host_port(format_host_port(addr)) == addr


@pytest.mark.parametrize("text", ["9102", "host:", "host:99999", "host:x"])
def test_a_bad_host_port_names_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        parse_host_port(text)


def test_both_parsers_come_from_the_one_table() -> None:
    from meshd.cli.proxy import proxy

    cli = [p.opts[0] for p in proxy.params if p.name not in ("token", "help")]
    assert cli == [f.name for f in FLAGS if not f.internal]
    argparse_flags = [a.option_strings[0] for a in build_parser()._actions[1:]]
    assert argparse_flags == [f.name for f in FLAGS]


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--workers", "0"], "argument --workers: 0 is below the minimum 1"),
        (["--workers", "257"], "argument --workers: 257 is above the maximum 256"),
        (["--idle-timeout", "x"], "argument --idle-timeout: invalid float value: 'x'"),
    ],
)
def test_the_proxy_process_checks_the_tables_ranges(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_flags(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"meshd proxy: error: {error}"
