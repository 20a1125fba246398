"""The ``meshd`` command line: one module per command group.

Commands that talk to an agent use its HTTP API (address from
``--http-addr``, ``MESHD_HTTP_ADDR`` or ``CONSUL_HTTP_ADDR``; token from
``--token``, ``MESHD_HTTP_TOKEN`` or ``CONSUL_HTTP_TOKEN``). Errors are one
line on stderr and a non-zero exit status. Shell completion is click's:
``eval "$(_MESHD_COMPLETE=bash_source meshd)"`` (or ``zsh_source``,
``fish_source``).
"""

from __future__ import annotations

from typing import Any

import click

from .acl import acl
from .acl_auth import login, logout
from .agent import agent
from .ca import ca
from .catalog import catalog
from .config import config
from .connect import connect
from .errors import one_line_usage
from .event import event
from .info import info
from .intention import intention
from .join import force_leave, join
from .kv import kv
from .leave import leave
from .lock import lock
from .login import login, logout
from .maint import maint
from .members import members
from .monitor import monitor
from .operator import operator
from .operator_autopilot import autopilot
from .proxy import proxy
from .reload import reload
from .sections import format_sections
from .services import services
from .snapshot import snapshot
from .tls import tls
from .validate import validate
from .version import version
from .watch import watch


class MeshdGroup(click.Group):
    """The root group: every usage error below it is printed as one line."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise one_line_usage(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise one_line_usage(exc) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        format_sections(self, ctx, formatter)


@click.group(cls=MeshdGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """meshd: service discovery, health checks and an mTLS mesh for VMs."""


for command in (
    acl,
    agent,
    ca,
    catalog,
    info,
    intention,
    kv,
    leave,
    login,
    logout,
    members,
    operator,
    proxy,
    reload,
    services,
    snapshot,
    tls,
    version,
    config,
    connect,
    event,
    force_leave,
    join,
    lock,
    login,
    logout,
    maint,
    monitor,
    validate,
    watch,
):
    cli.add_command(command)
operator.add_command(autopilot)


def main() -> None:
    cli(prog_name="meshd")
