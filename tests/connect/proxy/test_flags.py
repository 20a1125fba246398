"""The proxy's flags: one set of defaults, one command line, parsed back unchanged."""

from __future__ import annotations

import pytest

from connect.proxy.flags import DEFAULTS, ProxyFlags, format_host_port, parse_host_port
from connect.proxy.main import parse_flags, worker_command

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
