"""``meshd --help`` lists the commands in sections, as Consul's help groups them.

A command missing from ``SECTIONS`` is listed under "Other", so a new
command never disappears from the help.
"""

from __future__ import annotations

import click

SECTIONS: list[tuple[str, tuple[str, ...]]] = [
    (
        "Agent & cluster",
        (
            "agent",
            "members",
            "join",
            "leave",
            "force-leave",
            "reload",
            "maint",
            "monitor",
            "info",
            "validate",
            "version",
        ),
    ),
    ("Catalog & KV", ("services", "catalog", "kv", "watch", "lock", "event", "config")),
    ("Connect", ("connect", "intention", "explain", "top", "canary", "ca", "proxy", "tls")),
    ("ACL", ("acl", "login", "logout")),
    ("Operator", ("operator", "snapshot")),
]


def format_sections(group: click.Group, ctx: click.Context, formatter: click.HelpFormatter) -> None:
    """Write ``group``'s commands section by section (click's ``format_commands``)."""
    commands: dict[str, click.Command] = {}
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is not None and not command.hidden:
            commands[name] = command
    if not commands:
        return
    limit = formatter.width - 6 - max(len(name) for name in commands)
    listed: set[str] = set()
    sections = [*SECTIONS, ("Other", tuple(sorted(commands)))]
    for title, names in sections:
        rows = [
            (name, commands[name].get_short_help_str(limit))
            for name in names
            if name in commands and name not in listed
        ]
        listed.update(name for name, _ in rows)
        if rows:
            with formatter.section(f"{title} commands"):
                formatter.write_dl(rows)
