"""The ``meshd`` command line: one module per command group.

Commands that talk to an agent use its HTTP API (address from
``--http-addr``, ``MESHD_HTTP_ADDR`` or ``CONSUL_HTTP_ADDR``; token from
``--token``, ``MESHD_HTTP_TOKEN`` or ``CONSUL_HTTP_TOKEN``). Errors are one
line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import click

from .agent import agent
from .tls import tls
from .version import version


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """meshd: service discovery, health checks and an mTLS mesh for VMs."""


cli.add_command(agent)
cli.add_command(tls)
cli.add_command(version)


def main() -> None:
    cli(prog_name="meshd")
