"""Errors of the ``meshd`` command line.

Every failure a user can cause or meet (an agent that is down, a 4xx/5xx
answer, a bad file) is a ``CLIError``: click prints it as exactly one line on
stderr, verbatim (Consul's CLI style: ``Error querying agent: ...``,
``Unexpected response code: 400 (...)``, ``Error! No key exists at: k``), and
the command exits with status 1. Usage errors (an unknown flag, a missing
argument, a bad value) are one line too, ``Error: <what> (try 'meshd kv put
-h')``, with click's exit status 2: see ``one_line_usage``.
"""

from __future__ import annotations

from typing import IO, Any

import click
from click.exceptions import NoArgsIsHelpError

__all__ = ["AgentUnreachable", "CLIError", "UnexpectedResponse", "UsageLine", "one_line_usage"]


class CLIError(click.ClickException):
    """A one-line error printed as given (click would prefix ``Error: ``)."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(self.format_message(), err=file is None, file=file)


class AgentUnreachable(CLIError):
    """No HTTP answer: refused, timed out, unresolvable host, TLS failure."""

    def __init__(self, reason: str, address: str, hint: str = "") -> None:
        text = f"Error querying agent: {reason} ({address})"
        super().__init__(f"{text}: {hint}" if hint else text)
        self.reason = reason
        self.address = address


class UnexpectedResponse(CLIError):
    """The agent answered with a status outside 2xx (Consul's api.Client text)."""

    def __init__(self, status: int, body: str) -> None:
        text = f"Unexpected response code: {status}"
        super().__init__(f"{text} ({body})" if body else text)
        self.status = status
        self.body = body


class UsageLine(CLIError):
    """A usage error as one line (click prints usage, a hint and the error)."""

    exit_code = 2


def one_line_usage(exc: click.UsageError) -> click.ClickException:
    """``exc`` as a one-line error pointing at the command's help; a bare
    group invocation (which prints the help on purpose) is left alone."""
    if isinstance(exc, NoArgsIsHelpError):
        return exc
    hint = f" (try '{exc.ctx.command_path} -h')" if exc.ctx is not None else ""
    return UsageLine(f"Error: {exc.format_message()}{hint}")
