"""Parsers for single configuration values.

A parser takes the value as decoded from JSON or TOML and returns the typed
value, or raises ``Invalid(reason)``. Parsers never know the file or key:
the caller adds them. ``Invalid.suffix`` lets a parser of a list or map say
which element was wrong (``[2]``, ``.rack``).

Types are strict, as Consul's decoder is: ``"8500"`` is not a port and ``1``
is not ``true``. JSON numbers with an integral value (``8500.0``) are
accepted as integers because JSON does not distinguish them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from meshd.durations import parse_duration
from meshd.errors import DurationError
from meshd.version import BATCH_META

Parser = Callable[[object], Any]

# Longest string accepted where no tighter rule applies (paths, names, tokens).
MAX_STRING = 4096


class Invalid(Exception):
    """A value is invalid; ``suffix`` locates it inside the key being parsed."""

    def __init__(self, reason: str, suffix: str = "") -> None:
        super().__init__(reason, suffix)
        self.reason = reason
        self.suffix = suffix

    def under(self, prefix: str) -> Invalid:
        """The same problem, located one level deeper (``prefix`` + own suffix)."""
        return Invalid(self.reason, prefix + self.suffix)


def shown(value: object, limit: int = 60) -> str:
    """The value as it would appear in JSON, shortened for an error message."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def kind_of(value: object) -> str:
    """A JSON type name for the value, for messages that must not echo it."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def child_key(key: str) -> str:
    """The suffix naming a map entry: ``.rack`` or ``["odd key"]``."""
    if re.fullmatch(r"[A-Za-z0-9_\-*]+", key):
        return f".{key}"
    return f"[{json.dumps(key, ensure_ascii=False)}]"


def boolean(value: object) -> bool:
    """true or false."""
    if isinstance(value, bool):
        return value
    raise Invalid(f"must be true or false, got {shown(value)}")


def as_int(value: object) -> int | None:
    """The value as an int if it is one (bools are not), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def integer(low: int, high: int | None = None) -> Parser:
    """An integer in [low, high] (no upper bound when high is None)."""
    if high is None:
        wanted = f"must be an integer of at least {low}"
    else:
        wanted = f"must be an integer between {low} and {high}"

    def parse(value: object) -> int:
        number = as_int(value)
        if number is None or number < low or (high is not None and number > high):
            raise Invalid(f"{wanted}, got {shown(value)}")
        return number

    return parse


def port(*, disable: bool) -> Parser:
    """A TCP/UDP port 1..65535; with ``disable``, -1 turns the listener off."""
    ranged = integer(1, 65535)

    def parse(value: object) -> int:
        if disable and as_int(value) == -1:
            return -1
        try:
            return int(ranged(value))
        except Invalid as err:
            if disable:
                raise Invalid(f"{err.reason} (-1 disables it)") from None
            raise

    return parse


def string(*, max_len: int = MAX_STRING, empty: bool = False) -> Parser:
    """A string, non-empty unless ``empty``, at most ``max_len`` characters."""

    def parse(value: object) -> str:
        if not isinstance(value, str):
            raise Invalid(f"must be a string, got {shown(value)}")
        if not value and not empty:
            raise Invalid("must not be empty")
        if len(value) > max_len:
            raise Invalid(f"must be at most {max_len} characters, got {len(value)}")
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise Invalid("must not contain control characters")
        return value

    return parse


def secret(value: object) -> str:
    """A token: a printable string without spaces. Never echoed in messages."""
    if not isinstance(value, str):
        raise Invalid(f"must be a string, got {kind_of(value)}")
    if not value or len(value) > 256 or not value.isprintable() or " " in value:
        raise Invalid("must be 1 to 256 printable characters without spaces")
    return value


def choice(*options: str, fold: bool = False, aliases: Mapping[str, str] | None = None) -> Parser:
    """One of ``options``; ``fold`` compares case-insensitively; aliases map to options."""
    listed = ", ".join(json.dumps(o) for o in options)

    def parse(value: object) -> str:
        if isinstance(value, str):
            key = value.upper() if fold else value
            key = (aliases or {}).get(key, key)
            for option in options:
                if key == (option.upper() if fold else option):
                    return option
        raise Invalid(f"must be one of {listed}, got {shown(value)}")

    return parse


def pattern(regex: str, rule: str, *, lower: bool = False, max_len: int = 63) -> Parser:
    """A string matching ``regex`` (described by ``rule``); ``lower`` lowercases first."""
    compiled = re.compile(regex)
    base = string(max_len=max_len)

    def parse(value: object) -> str:
        text = str(base(value))
        if lower:
            text = text.lower()
        if not compiled.fullmatch(text):
            raise Invalid(f"{rule}, got {shown(value)}")
        return text

    return parse


def duration(*, positive: bool = False) -> Parser:
    """A Go duration string, returned in seconds; ``positive`` refuses zero."""

    def parse(value: object) -> float:
        if not isinstance(value, str):
            raise Invalid(f'must be a duration string such as "10s" or "1m30s", got {shown(value)}')
        try:
            seconds = parse_duration(value)
        except DurationError as err:
            raise Invalid(f"{err.reason}, got {shown(value)}") from None
        if positive and seconds <= 0:
            raise Invalid(f"must be longer than 0s, got {shown(value)}")
        return seconds

    return parse


def list_of(item: Parser, *, max_items: int = 1024) -> Parser:
    """A JSON array whose elements ``item`` parses; returns a tuple."""

    def parse(value: object) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise Invalid(f"must be a list, got {shown(value)}")
        if len(value) > max_items:
            raise Invalid(f"must have at most {max_items} elements, got {len(value)}")
        out = []
        for index, element in enumerate(value):
            try:
                out.append(item(element))
            except Invalid as err:
                raise err.under(f"[{index}]") from None
        return tuple(out)

    return parse


def obj(value: object) -> dict[str, Any]:
    """Any JSON object, returned as is (for sections meshd passes through)."""
    if not isinstance(value, dict):
        raise Invalid(f"must be an object, got {shown(value)}")
    return value


def map_of(value_parser: Parser, *, key: Parser | None = None, max_keys: int = 1024) -> Parser:
    """A JSON object of string keys to values ``value_parser`` accepts."""

    def parse(value: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise Invalid(f"must be an object, got {shown(value)}")
        if len(value) > max_keys:
            raise Invalid(f"must have at most {max_keys} keys, got {len(value)}")
        out: dict[str, Any] = {}
        for name, element in value.items():
            where = child_key(str(name))
            try:
                if key is not None:
                    key(name)
                out[name] = value_parser(element)
            except Invalid as err:
                raise err.under(where) from None
        return out

    return parse


def node_meta_key(name: object) -> str:
    """A metadata key as Consul allows it (structs.ValidateMetadata)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_\-]{1,128}", name):
        raise Invalid("keys must be 1 to 128 letters, digits, '-' or '_'")
    if name.startswith("consul-"):
        raise Invalid('keys starting with "consul-" are reserved')
    return name


def own_node_meta_key(name: object) -> str:
    """A key of the agent's own ``node_meta``: also not one meshd sets itself."""
    key = node_meta_key(name)
    if key == BATCH_META:
        raise Invalid(f'"{BATCH_META}" is reserved: each server sets it on its own node')
    return key


# Consul: at most 64 pairs, keys <= 128 characters, values <= 512.
NODE_META_MAX_KEYS = 64
node_meta = map_of(
    string(max_len=512, empty=True), key=own_node_meta_key, max_keys=NODE_META_MAX_KEYS
)
