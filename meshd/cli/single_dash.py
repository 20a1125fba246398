"""Consul's single-dash flags (``-dev``, ``-http-addr=...``) for every command.

Consul's CLI spells every flag with one dash; click would read ``-dev`` as
the short options ``-d -e -v`` and answer ``No such option: -d``.
``consul_spelling(root, args)`` rewrites the command line before click
parses it: it follows the words that name the command (``kv get``) down the
command tree and, for the command being invoked, turns ``-name`` and
``-name=value`` into ``--name``/``--name=value`` when ``--name`` is one of
its long options. An option spelt exactly as declared (``-h``, ``-id``), a
negative number, an option's value and everything after ``--`` are left
alone. Go's boolean syntax for flags is accepted too: ``-stale=true`` is
``--stale``, ``-stale=false`` drops the flag.

The root group calls it once for the whole command line, so a command added
later gets the same treatment without doing anything.
"""

from __future__ import annotations

import re

import click

__all__ = ["consul_spelling"]

# A word that can only be a flag: a letter after the dash (so "-1" and "-"
# stay values), then letters, digits, dashes or underscores.
_SINGLE_DASH = re.compile(r"-[A-Za-z][A-Za-z0-9_-]+(=.*)?", re.DOTALL)
# strconv.ParseBool, which Go's flag package uses for boolean flags.
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def _options(command: click.Command, ctx: click.Context) -> dict[str, click.Option]:
    found: dict[str, click.Option] = {}
    for param in command.get_params(ctx):
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                found[name] = param
    return found


def _takes_value(option: click.Option) -> bool:
    return not (option.is_flag or option.count)


def _go_boolean(option: click.Option, value: str) -> list[str] | None:
    """``-flag=true``/``-flag=false`` for an on/off flag: [its long name] or
    []; None when ``value`` is not Go boolean syntax (click will refuse it)."""
    if _takes_value(option) or option.secondary_opts:
        return None
    if value in _TRUE:
        return [max(option.opts, key=len)]
    if value in _FALSE:
        return []
    return None


def _rewrite(word: str, options: dict[str, click.Option]) -> list[str]:
    """``word`` as click should see it: [] to drop it, [option, value] for a
    short option given ``-n=2``, one word otherwise."""
    name, equals, value = word.partition("=")
    declared = options.get(name)
    if declared is not None:
        if equals and _takes_value(declared) and len(name) == 2:
            return [name, value]  # click would take "=2" as the value of a short -n
        as_bool = _go_boolean(declared, value) if equals else None
        return [word] if as_bool is None else as_bool
    if not _SINGLE_DASH.fullmatch(word):
        return [word]
    option = options.get(f"-{name}")
    if option is None:
        # Unknown either way: let click name the whole flag, not its first
        # letter, unless the first letter is a real short option ("-n5").
        return [word] if name[:2] in options else [f"-{word}"]
    as_bool = _go_boolean(option, value) if equals else None
    return [f"-{word}"] if as_bool is None else as_bool


def _next_command(
    group: click.Group, ctx: click.Context, word: str
) -> tuple[click.Command, click.Context] | None:
    sub = group.get_command(ctx, word)
    if sub is None:
        return None
    return sub, click.Context(sub, info_name=word, parent=ctx)


def consul_spelling(root: click.Command, args: list[str]) -> list[str]:
    """``args`` (the words after the program name) with Consul's single-dash
    flags spelt as click declares them, for the command they invoke."""
    command: click.Command = root
    ctx = click.Context(root, info_name="meshd", **root.context_settings)
    options = _options(command, ctx)
    out: list[str] = []
    words = iter(args)
    for word in words:
        if word == "--":
            out.append(word)
            out.extend(words)
            break
        if word.startswith("-") and len(word) > 1:
            rewritten = _rewrite(word, options)
            out.extend(rewritten)
            option = options.get(rewritten[0].partition("=")[0]) if len(rewritten) == 1 else None
            if option is not None and _takes_value(option) and "=" not in rewritten[0]:
                for _ in range(max(option.nargs, 1)):
                    value = next(words, None)
                    if value is not None:
                        out.append(value)
            continue
        out.append(word)
        if isinstance(command, click.Group):
            found = _next_command(command, ctx, word)
            if found is not None:
                command, ctx = found
                options = _options(command, ctx)
    return out
