"""The ``meshd`` command line: one module per command group.

Commands that talk to an agent use its HTTP API (address from
``--http-addr``, ``MESHD_HTTP_ADDR`` or ``CONSUL_HTTP_ADDR``; token from
``--token``, ``MESHD_HTTP_TOKEN`` or ``CONSUL_HTTP_TOKEN``). Errors are one
line on stderr and a non-zero exit status. Shell completion is click's:
``eval "$(_MESHD_COMPLETE=bash_source meshd)"`` (or ``zsh_source``,
``fish_source``).

Command modules are imported only when their command runs (``COMMANDS``
names them), so ``meshd kv get`` does not load the agent, trio or the TLS
code: a call takes well under 100 ms. A new command adds one line to
``COMMANDS``; ``cli.add_command`` works too, at the price of an import.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import click

from .errors import one_line_usage
from .sections import format_sections
from .single_dash import consul_spelling

# Command name -> "module:attribute" under meshd.cli, imported on first use.
COMMANDS: Mapping[str, str] = {
    "acl": "acl:acl",
    "agent": "agent:agent",
    "ca": "ca:ca",
    "canary": "canary:canary",
    "catalog": "catalog:catalog",
    "config": "config:config",
    "connect": "connect:connect",
    "event": "event:event",
    "explain": "explain:explain",
    "force-leave": "join:force_leave",
    "info": "info:info",
    "intention": "intention:intention",
    "join": "join:join",
    "kv": "kv:kv",
    "leave": "leave:leave",
    "lock": "lock:lock",
    "login": "login:login",
    "logout": "login:logout",
    "maint": "maint:maint",
    "members": "members:members",
    "monitor": "monitor:monitor",
    "operator": "operator:operator",
    "proxy": "proxy:proxy",
    "reload": "reload:reload",
    "services": "services:services",
    "snapshot": "snapshot:snapshot",
    "tls": "tls:tls",
    "top": "top:top",
    "validate": "validate:validate",
    "version": "version:version",
    "watch": "watch:watch",
}
# Subcommands that live in a module of their own, added to their group when
# the group is first loaded: group name -> "module:attribute" entries.
SUBCOMMANDS: Mapping[str, tuple[str, ...]] = {
    "acl": ("acl_auth:auth_method", "acl_auth:binding_rule"),
    "operator": ("operator_autopilot:autopilot",),
}


def _load(spec: str) -> click.Command:
    module, _, attribute = spec.partition(":")
    found = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    assert isinstance(found, click.Command), spec
    return found


class MeshdGroup(click.Group):
    """The root group: Consul's single-dash flags work for every command below
    it (see ``single_dash``), every usage error is printed as one line, the
    commands of ``lazy`` are imported only when used, and the help lists them
    in sections (``sections``)."""

    def __init__(self, *args: Any, lazy: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = self.commands.get(cmd_name)
        if found is None and cmd_name in self.lazy:
            found = _load(self.lazy[cmd_name])
            if isinstance(found, click.Group):
                for spec in SUBCOMMANDS.get(cmd_name, ()):
                    found.add_command(_load(spec))
            self.commands[cmd_name] = found
        return found

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

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        format_sections(self, ctx, formatter)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from .version import print_version

    print_version()
    ctx.exit()


@click.group(
    cls=MeshdGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]}
)
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


def main() -> None:
    cli(prog_name="meshd")
