"""``meshd version`` (and ``meshd --version``)."""

from __future__ import annotations

import platform

import click

from ..version import PROTOCOL_MAX, PROTOCOL_MIN, PROTOCOL_VERSION, RAFT_PROTOCOL, meshd_version


def print_version() -> None:
    """Print the version and protocols as ``consul version`` does."""
    click.echo(f"meshd v{meshd_version()}")
    click.echo(
        f"Protocol {PROTOCOL_VERSION} spoken by default, understands {PROTOCOL_MIN} to "
        f"{PROTOCOL_MAX} (agent will automatically use protocol >{PROTOCOL_VERSION} when "
        "speaking to compatible agents)"
    )
    click.echo(f"Raft protocol {RAFT_PROTOCOL}; Consul HTTP API v1 compatible")
    click.echo(f"Python {platform.python_version()} on {platform.system().lower()}")


@click.command()
def version() -> None:
    """Print meshd's version and the protocols it speaks."""
    print_version()
