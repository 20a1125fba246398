"""Walking the dataclass schema: checking one source against it, and building the result.

``normalize`` turns one source's decoded JSON/TOML into typed values (or
raises ``ConfigError`` naming the source and the full dotted key);
``build`` turns the merged values into the frozen dataclasses. The schema
itself is the dataclass tree in ``model.py``.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from meshd.config.model import Extra
from meshd.config.values import Invalid, shown
from meshd.errors import ConfigError

__all__ = ["Origin", "build", "field_at", "file_keys", "normalize", "section_class"]

T = TypeVar("T")


@dataclass(frozen=True)
class Origin:
    """Where a value came from: a file, a command-line flag, or neither (defaults)."""

    file: str | None = None
    flag: str | None = None

    def error(self, key: str, reason: str) -> ConfigError:
        """A ``ConfigError`` for ``key`` set by this origin."""
        if self.flag is not None:
            return ConfigError(None, self.flag, reason)
        return ConfigError(self.file, key, reason)

    def warning(self, key: str, text: str) -> str:
        """A warning line for ``key`` set by this origin, formatted like errors."""
        err = self.error(key, text)
        return ConfigError.describe(err.file, err.key, text)


def section_class(f: dataclasses.Field[Any]) -> type | None:
    """The nested dataclass a field holds (``ports`` -> ``Ports``), or None for a value."""
    factory = f.default_factory
    if isinstance(factory, type) and dataclasses.is_dataclass(factory):
        return factory
    return None


@cache
def file_keys(cls: type) -> Mapping[str, dataclasses.Field[Any]]:
    """The fields of ``cls`` a configuration file may set, by key name."""
    return {
        f.name: f
        for f in dataclasses.fields(cls)
        if "parse" in f.metadata or section_class(f) is not None
    }


def extra_keys(cls: type) -> Mapping[str, Extra]:
    """Keys accepted besides the fields (ignored ones, singular ``service``...)."""
    extras: Mapping[str, Extra] = getattr(cls, "EXTRA_KEYS", {})
    return extras


def field_at(cls: type, path: str) -> dataclasses.Field[Any]:
    """The field at a dotted path (``acl.tokens.agent``); KeyError if there is none."""
    head, _, rest = path.partition(".")
    f = file_keys(cls)[head]
    if not rest:
        return f
    sub = section_class(f)
    if sub is None:
        raise KeyError(path)
    return field_at(sub, rest)


def unknown_key(name: str, known: list[str]) -> str:
    """The reason for an unknown key, with the closest known one as a hint."""
    close = difflib.get_close_matches(name, known, n=1)
    return f'unknown key (did you mean "{close[0]}"?)' if close else "unknown key"


def normalize(
    raw: Mapping[str, Any], cls: type, origin: Origin, warnings: list[str], prefix: str = ""
) -> dict[str, Any]:
    """Check one source's values for section ``cls``; return them parsed.

    ``null`` values are skipped (unset). Raises ``ConfigError`` for an unknown
    key or a bad value, naming ``origin`` and the dotted key. Extra keys that
    meshd ignores add a line to ``warnings`` and are dropped.
    """
    known, extras = file_keys(cls), extra_keys(cls)
    out: dict[str, Any] = {}
    for name, value in raw.items():
        path = prefix + name
        if value is None:
            continue
        if name not in known and name not in extras:
            raise origin.error(path, unknown_key(name, [*known, *extras]))
        try:
            if name in extras:
                extra = extras[name]
                parsed = extra.parse(value)
                if extra.warning is not None:
                    warnings.append(origin.warning(path, extra.warning))
                    continue
                out[name] = parsed
                continue
            sub = section_class(known[name])
            if sub is None:
                out[name] = known[name].metadata["parse"](value)
            elif isinstance(value, dict):
                out[name] = normalize(value, sub, origin, warnings, path + ".")
            else:
                raise Invalid(f"must be an object, got {shown(value)}")
        except Invalid as err:
            raise origin.error(path + err.suffix, err.reason) from None
    return out


def build(cls: type[T], values: Mapping[str, Any]) -> T:
    """Construct ``cls`` from merged values; missing keys take the field defaults."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        sub = section_class(f)
        if sub is not None:
            kwargs[f.name] = build(sub, values.get(f.name, {}))
        elif f.name in values:
            kwargs[f.name] = values[f.name]
    return cls(**kwargs)
