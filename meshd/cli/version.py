"""``meshd version``."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version

import click


def meshd_version() -> str:
    try:
        return dist_version("meshd")
    except PackageNotFoundError:
        return "0.0.0+unknown"


@click.command()
def version() -> None:
    """Print meshd's version and the protocol it speaks."""
    click.echo(f"meshd v{meshd_version()}")
    click.echo("Consul HTTP API: v1 compatible; Raft protocol 1; RPC protocol 1")
    click.echo(f"Python {platform.python_version()} on {platform.system().lower()}")
