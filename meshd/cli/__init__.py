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
from .agent import agent
from .ca import ca
from .catalog import catalog
from .errors import one_line_usage
from .info import info
from .intention import intention
from .kv import kv
from .leave import leave
from .members import members
from .operator import operator
from .proxy import proxy
from .reload import reload
from .services import services
from .single_dash import consul_spelling
from .snapshot import snapshot
from .tls import tls
from .version import version


class MeshdGroup(click.Group):
    """The root group: Consul's single-dash flags work for every command below
    it (see ``single_dash``), and every usage error is printed as one line."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        if parent is None:
            args = consul_spelling(self, list(args))
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise one_line_usage(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise one_line_usage(exc) from None


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from .version import print_version

    print_version()
    ctx.exit()


@click.group(cls=MeshdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print the version (as `meshd version`) and exit.",
)
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
    members,
    operator,
    proxy,
    reload,
    services,
    snapshot,
    tls,
    version,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="meshd")
