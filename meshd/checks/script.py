"""Script checks (Consul agent/checks/check.go ``CheckMonitor``).

``Args`` is run directly (no shell) in its own process group, with stdin
from /dev/null and stdout and stderr merged. Exit status 0 is passing, 1
warning, anything else (including death by a signal) critical. The output is
the last ``OutputMaxSize`` bytes of what the script printed, prefixed with
``Captured N of M bytes`` when it printed more, as Consul's circular buffer
does. When the runner's timeout (30 s by default for scripts) fires, the
whole process group is killed and the result is ``Timed out (30s) running
check``. Only enabled by ``enable_script_checks`` (or, for checks from
configuration files, ``enable_local_script_checks``): see ``check_allowed``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Any

import trio

from ..durations import format_duration
from .base import CRITICAL, PASSING, WARNING, CheckOptions, CheckResult
from .errors import ScriptChecksDisabled

__all__ = ["DEFAULT_SCRIPT_TIMEOUT", "ScriptChecker", "check_allowed"]

DEFAULT_SCRIPT_TIMEOUT = 30.0
# After the script exits, how long its output pipe may stay open (held by a
# child it left running) before the check stops reading and reports.
_DRAIN_GRACE = 0.5


def check_allowed(*, remote: bool, enable_script_checks: bool, enable_local: bool) -> None:
    """Raise ``ScriptChecksDisabled`` unless a script check may be registered.

    ``remote`` is True for the HTTP API, which only ``enable_script_checks``
    opens; configuration files are also allowed by ``enable_local``.
    """
    if enable_script_checks:
        return
    if remote or not enable_local:
        raise ScriptChecksDisabled(remote=remote)


class _Tail:
    """The last ``size`` bytes written, and how many were written in all."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.data = bytearray()
        self.total = 0

    def write(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data += chunk
        if len(self.data) > self.size:
            del self.data[: len(self.data) - self.size]

    def text(self) -> str:
        if self.total <= self.size:
            return self.data.decode("utf-8", "replace")
        prefix = f"Captured {{}} of {self.total} bytes\n...\n"
        keep = max(0, self.size - len(prefix.format(self.size)))
        tail = bytes(self.data[len(self.data) - keep :]).decode("utf-8", "replace")
        return prefix.format(keep) + tail


def _exit_status(code: int) -> str:
    if code == 0:
        return PASSING
    return WARNING if code == 1 else CRITICAL


class ScriptChecker:
    """Run one command and map its exit status; see the module docstring."""

    def __init__(self, spec: dict[str, Any], options: CheckOptions) -> None:
        """Raises ``ValueError`` unless ``Args`` is a non-empty list of strings."""
        args = spec.get("Args")
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            raise ValueError("Args must be a non-empty list of strings")
        self.args: list[str] = args
        self.limit = options.output_max_size

    async def run(self) -> CheckResult:
        """Run the command to completion. On cancellation the process group is
        killed and reaped before ``Cancelled`` propagates."""
        try:
            proc = await trio.lowlevel.open_process(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            return CheckResult(CRITICAL, f"Failed to run {self.args[0]}: {exc.strerror or exc}")
        tail = _Tail(self.limit)
        try:
            await self._collect(proc, tail)
        finally:
            if proc.returncode is None:
                _kill_group(proc.pid)
                with trio.CancelScope(shield=True):
                    await proc.wait()
            if proc.stdout is not None:
                with trio.CancelScope(shield=True):
                    await proc.stdout.aclose()
        assert proc.returncode is not None
        return CheckResult(_exit_status(proc.returncode), tail.text())

    async def _collect(self, proc: trio.Process, tail: _Tail) -> None:
        stdout = proc.stdout
        assert stdout is not None
        drained = trio.Event()

        async def read() -> None:
            try:
                while chunk := await stdout.receive_some(65536):
                    tail.write(bytes(chunk))
            except trio.BrokenResourceError:
                pass
            drained.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await proc.wait()
            with trio.move_on_after(_DRAIN_GRACE):
                await drained.wait()
            nursery.cancel_scope.cancel()

    def timed_out(self, timeout: float) -> CheckResult:
        """Critical, with Consul's wording; the process group is already killed."""
        return CheckResult(CRITICAL, f"Timed out ({format_duration(timeout)}) running check")


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pid, signal.SIGKILL)
