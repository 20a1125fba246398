"""``meshd proxy``: its defaults are connect.proxy.flags's, and it execs the command
line that connect.proxy.main parses back to the options given."""

from __future__ import annotations

import os
from typing import Any

import pytest
from click.testing import CliRunner

from connect.proxy.flags import DEFAULTS, ProxyFlags, format_host_port
from connect.proxy.main import parse_flags
from meshd.cli.proxy import proxy


def test_the_cli_defaults_are_the_proxys() -> None:
    defaults = {p.name: p.default for p in proxy.params}
    assert defaults["http_addr"] == format_host_port(DEFAULTS.http_addr)
    for name in ("workers", "idle_timeout", "max_connections", "agent_wait", "log_level"):
        assert defaults[name] == getattr(DEFAULTS, name), name


class _Exec(Exception):
    pass


def _run(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> tuple[list[str], dict[str, str]]:
    seen: dict[str, Any] = {}

    def fake_execve(path: str, argv: list[str], env: dict[str, str]) -> None:
        seen.update(argv=argv, env=env)
        raise _Exec

    monkeypatch.setattr(os, "execve", fake_execve)
    for var in ("MESHD_HTTP_ADDR", "CONSUL_HTTP_ADDR", "MESHD_HTTP_TOKEN", "CONSUL_HTTP_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(proxy, args)
    assert isinstance(result.exception, _Exec), result.output
    return seen["argv"], seen["env"]


def test_no_options_exec_the_proxy_with_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    argv, _ = _run(monkeypatch, [])
    assert argv[1:3] == ["-m", "connect.proxy.main"]
    assert parse_flags(argv[3:]) == DEFAULTS


def test_options_reach_the_proxy_and_the_token_stays_off_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv, env = _run(
        monkeypatch,
        [
            "--http-addr=127.0.0.1:18500",
            "--token=s3cret",
            "--workers=2",
            "--metrics-addr=:19102",
            "--idle-timeout=5",
            "--max-connections=9",
            "--agent-wait=1.5",
            "--log-level=debug",
            "--log-json",
            "--sidecar-for=web",
        ],
    )
    assert parse_flags(argv[3:]) == ProxyFlags(
        http_addr=("127.0.0.1", 18500),
        workers=2,
        metrics_addr=("127.0.0.1", 19102),
        idle_timeout=5.0,
        max_connections=9,
        agent_wait=1.5,
        log_level="debug",
        log_json=True,
        sidecar_for=("web",),
    )
    assert "s3cret" not in " ".join(argv)
    assert env["MESHD_HTTP_TOKEN"] == "s3cret"


def test_a_bad_metrics_address_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "execve", lambda *a: pytest.fail("must not exec"))
    result = CliRunner().invoke(proxy, ["--metrics-addr=nope"])
    assert result.exit_code != 0
    assert "--metrics-addr must be HOST:PORT, got 'nope'" in str(result.exception) + result.output
