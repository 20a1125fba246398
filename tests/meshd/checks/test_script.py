"""Script checks: real processes, exit statuses, output, timeouts, permission."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from meshd.checks.base import CRITICAL, OUTPUT_MAX_SIZE, PASSING, WARNING, CheckOptions
from meshd.checks.errors import ScriptChecksDisabled
from meshd.checks.script import ScriptChecker, check_allowed

pytestmark = pytest.mark.e2e


def script(command: str, **opts: int) -> ScriptChecker:
    return ScriptChecker({"Args": ["sh", "-c", command]}, CheckOptions(**opts))


@pytest.mark.parametrize(
    ("code", "status"), [(0, PASSING), (1, WARNING), (2, CRITICAL), (127, CRITICAL)]
)
async def test_exit_status_maps_to_health(code: int, status: str) -> None:
    result = await script(f"echo hi; exit {code}").run()
    assert result.status == status
    assert result.output == "hi\n"


async def test_stdout_and_stderr_are_combined_in_order() -> None:
    result = await script("echo one; echo two >&2; echo three").run()
    assert result.output == "one\ntwo\nthree\n"


async def test_killed_by_a_signal_is_critical() -> None:
    assert (await script("kill -9 $$").run()).status == CRITICAL


async def test_missing_program_is_critical() -> None:
    checker = ScriptChecker({"Args": ["/nonexistent/check"]}, CheckOptions())
    result = await checker.run()
    assert result.status == CRITICAL
    assert "No such file or directory" in result.output


async def test_no_shell_is_involved() -> None:
    checker = ScriptChecker({"Args": ["echo", "$HOME;", "exit 2"]}, CheckOptions())
    result = await checker.run()
    assert (result.status, result.output) == (PASSING, "$HOME; exit 2\n")


async def test_long_output_keeps_the_tail_within_the_limit() -> None:
    result = await script("seq 1 5000").run()
    assert len(result.output.encode()) <= OUTPUT_MAX_SIZE
    assert result.output.startswith("Captured ")
    total = sum(len(f"{i}\n") for i in range(1, 5001))
    assert f" of {total} bytes\n...\n" in result.output
    assert result.output.endswith("4999\n5000\n")


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    checker = script(f"sleep 30 & echo $! > {pidfile}; sleep 30")
    start = trio.current_time()
    with trio.move_on_after(0.5):
        await checker.run()
        pytest.fail("the script was not cancelled")
    assert trio.current_time() - start < 2.0
    child = int(pidfile.read_text())
    with trio.fail_after(3):
        while _alive(child):
            await trio.sleep(0.02)
    result = checker.timed_out(0.5)
    assert (result.status, result.output) == (CRITICAL, "Timed out (500ms) running check")


async def test_a_background_child_holding_stdout_does_not_stall_the_check() -> None:
    with trio.fail_after(5):
        result = await script("(sleep 3; echo late) & echo now").run()
    assert (result.status, result.output) == (PASSING, "now\n")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead


def test_scripts_refused_unless_enabled_with_consuls_message() -> None:
    with pytest.raises(ScriptChecksDisabled) as err:
        check_allowed(remote=False, enable_script_checks=False, enable_local=False)
    assert str(err.value) == (
        "Scripts are disabled on this agent; to enable, configure "
        "'enable_script_checks' or 'enable_local_script_checks' to true"
    )


def test_local_script_checks_do_not_open_the_api() -> None:
    check_allowed(remote=False, enable_script_checks=False, enable_local=True)
    with pytest.raises(ScriptChecksDisabled, match="from remote calls"):
        check_allowed(remote=True, enable_script_checks=False, enable_local=True)
    check_allowed(remote=True, enable_script_checks=True, enable_local=False)


def test_args_must_be_a_list_of_strings() -> None:
    with pytest.raises(ValueError, match="Args"):
        ScriptChecker({"Args": "echo hi"}, CheckOptions())
    assert os.environ  # the checker inherits the agent's environment
