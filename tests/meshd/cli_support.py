"""Running ``meshd`` commands in tests: click's CliRunner in a worker thread
(so a dev agent in the test's trio loop keeps serving), with the address and
token variables cleared unless a test sets them.

A command given no address would talk to the default agent address, where a user's own
agent (``make run``) may be listening: unless the test names an address
(flag or variable), MESHD_HTTP_ADDR points at a port nobody listens on."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import trio
from click.testing import CliRunner, Result

from meshd.cli import cli
from tests.meshd.harness import free_port

CLEAN_ENV: dict[str, str | None] = {
    f"{prefix}_{name}": None
    for prefix in ("MESHD", "CONSUL")
    for name in (
        "HTTP_ADDR",
        "HTTP_TOKEN",
        "HTTP_TOKEN_FILE",
        "CACERT",
        "CLIENT_CERT",
        "CLIENT_KEY",
        "TLS_SERVER_NAME",
    )
}


def invoke(
    args: list[str], *, input: str | bytes | None = None, env: Mapping[str, str] | None = None
) -> Result:
    """Run ``meshd ARGS`` synchronously and return click's result."""
    runner = CliRunner()
    full = {**CLEAN_ENV, **(env or {})}
    if not (full.get("MESHD_HTTP_ADDR") or full.get("CONSUL_HTTP_ADDR")):
        full["MESHD_HTTP_ADDR"] = f"127.0.0.1:{free_port()}"  # never a user's agent
    return runner.invoke(cli, args, input=input, env=full, prog_name="meshd")


async def run_cli(
    args: list[str], *, input: str | bytes | None = None, env: Mapping[str, str] | None = None
) -> Result:
    """``invoke`` in a worker thread, for tests with an agent in the trio loop."""
    call = functools.partial(invoke, args, input=input, env=env)
    return await trio.to_thread.run_sync(call)


def one_error_line(result: Result) -> str:
    """The single stderr line of a failed run (asserting there is exactly one)."""
    assert result.exit_code != 0, result.output
    # A handled error exits through SystemExit; anything else is a crash.
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == "", result.stdout
    return lines[0]
