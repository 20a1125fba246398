"""Bounds every JSON value in a registration must keep, whatever its field.

Service and check definitions carry free-form parts (``Proxy.Config``,
``Meta``, a check's ``Definition``) that the agent stores, persists with
msgpack and sends to the servers. msgpack cannot encode integers outside
[-2**63, 2**64), strings holding lone UTF-16 surrogates (``"\\ud800"``, which
Python's JSON decoder accepts) or values nested more than a few hundred
levels deep, and JSON cannot carry infinities back out. One such value used
to pass the API and then kill anti-entropy (and the agent with it), so
``check_json_value`` refuses it at the edge with a ``ValidationError``
naming the field (HTTP 400).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registry.errors import ValidationError

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
MAX_DEPTH = 32  # nesting levels below the body; Consul's own shapes need < 10


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _short(path: str) -> str:
    return path if len(path) <= 200 else path[:200] + "..."


def check_json_value(value: Any, path: str, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise ``ValidationError(path...)`` unless ``value`` (decoded JSON) keeps
    the bounds above: integers within 64 bits, finite numbers, text that is
    valid Unicode (keys too) and at most ``max_depth`` levels of nesting.
    Iterative, so a deeply nested value cannot exhaust the stack here."""
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, int):
            if not INT_MIN <= item <= INT_MAX:
                raise ValidationError(_short(where), "integer out of the 64-bit range")
        elif isinstance(item, float):
            if item != item or item in (float("inf"), float("-inf")):
                raise ValidationError(_short(where), "number out of range")
        elif isinstance(item, str):
            if _has_lone_surrogate(item):
                raise ValidationError(_short(where), "text is not valid Unicode (lone surrogate)")
        elif isinstance(item, Mapping | list):
            if depth >= max_depth:
                raise ValidationError(_short(where), f"nested more than {max_depth} levels deep")
            if isinstance(item, list):
                stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(item))
                continue
            for key, v in item.items():
                if not isinstance(key, str) or _has_lone_surrogate(key):
                    raise ValidationError(_short(where), "keys must be valid Unicode text")
                stack.append((v, f"{where}.{key}" if where else key, depth + 1))
        else:
            raise ValidationError(_short(where), f"unsupported value of type {type(item).__name__}")
