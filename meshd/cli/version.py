"""``meshd version``."""

from __future__ import annotations

import platform

import click

from ..version import meshd_version


@click.command()
def version() -> None:
    """Print meshd's version and the protocol it speaks."""
    click.echo(f"meshd v{meshd_version()}")
    click.echo("Consul HTTP API: v1 compatible; Raft protocol 1; RPC protocol 1")
    click.echo(f"Python {platform.python_version()} on {platform.system().lower()}")
