"""``meshd validate FILE_OR_DIR...`` (like ``consul validate``): check agent
configuration files and directories with the agent's own loader (merged in
order, as ``meshd agent --config-file/--config-dir`` would read them, service
and check definitions included) without starting anything.

Prints ``Configuration is valid!`` and exits 0, or prints one line, ``Config
validation failed: <file, key and problem>``, and exits 1.
https://developer.hashicorp.com/consul/commands/validate
"""

from __future__ import annotations

from pathlib import Path

import click

from .errors import CLIError
from .options import flag


def _check(paths: tuple[str, ...]) -> list[str]:
    """Load ``paths`` as the agent would; returns the loader's warnings.

    Raises ``CLIError`` with the first problem."""
    # Imported here: the loader and the definitions parser are not needed by
    # any other command, and ``meshd --help`` stays fast.
    from ..defs.definitions import parse_check, parse_service
    from ..errors import ConfigError

    files = [p for p in paths if not Path(p).is_dir()]
    dirs = [p for p in paths if Path(p).is_dir()]
    for path in files:
        if not Path(path).exists():
            raise CLIError(f"Config validation failed: {path}: no such file or directory")
    from ..config import load_config

    try:
        config, warnings = load_config(files, dirs, {}, dev=False)
    except ConfigError as exc:
        raise CLIError(f"Config validation failed: {exc}") from None
    for kind, items, parse in (
        ("services", config.services, parse_service),
        ("checks", config.checks, parse_check),
    ):
        for i, raw in enumerate(items):
            try:
                parse(raw, node=config.node_name or "validate")
            except Exception as exc:  # any definition error is one line, as at start
                raise CLIError(f"Config validation failed: {kind}[{i}]: {exc}") from None
    return warnings


@click.command()
@click.argument("paths", nargs=-1)
@flag("quiet", "Print nothing on success.")
def validate(paths: tuple[str, ...], quiet: bool) -> None:
    """Check the configuration in FILE_OR_DIR... without starting an agent."""
    if not paths:
        raise CLIError("Must specify at least one config file or directory")
    for warning in _check(paths):
        click.echo(f"Warning: {warning}", err=True)
    if not quiet:
        click.echo("Configuration is valid!")
