"""Field checks shared by the command classes' ``validate()`` methods.

Every function raises ``ValidationError(field, message)`` with Consul's JSON
field name, mirroring the limits Consul enforces at its API edge.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

from .errors import ValidationError

# agent/structs: metaKeyMaxLength, metaValueMaxLength, metaMaxKeyPairs.
META_MAX_PAIRS = 64
META_KEY_MAX = 128
META_VALUE_MAX = 512
_META_KEY_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
_META_RESERVED_PREFIX = "consul-"

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str, field: str) -> float:
    """Parse a Go duration (``"10s"``, ``"1m30s"``, ``"1.5h"``) into seconds.

    Raises ``ValidationError(field, ...)`` for anything else.
    """
    if text == "0":
        return 0.0
    pos = 0
    total = 0.0
    sign = 1.0
    if text[:1] in ("+", "-"):
        sign = -1.0 if text[0] == "-" else 1.0
        pos = 1
    if pos == len(text):
        raise ValidationError(field, f"invalid duration {text!r}")
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None:
            raise ValidationError(field, f"invalid duration {text!r}")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def require(value: str, field: str, what: str = "") -> None:
    """Raise unless ``value`` is a non-empty string."""
    if not value:
        raise ValidationError(field, what or "must be set")


def one_of(value: str, allowed: tuple[str, ...] | frozenset[str], field: str) -> None:
    """Raise unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        choices = ", ".join(repr(a) for a in sorted(allowed))
        raise ValidationError(field, f"invalid value {value!r} (expected one of {choices})")


def uint_range(value: int, field: str, low: int = 0, high: int = 2**64 - 1) -> None:
    """Raise unless ``low <= value <= high``."""
    if not low <= value <= high:
        raise ValidationError(field, f"must be between {low} and {high}, got {value}")


def uuid_like(value: str, field: str) -> None:
    """Raise unless ``value`` is a UUID in canonical text form."""
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise ValidationError(field, f"must be a UUID, got {value!r}") from None
    if str(parsed) != value.lower():
        raise ValidationError(field, f"must be a UUID, got {value!r}")


def meta(values: Mapping[str, str], field: str, allow_reserved: bool = False) -> None:
    """Check a Meta map against Consul's key/value limits (structs.ValidateMetadata)."""
    if len(values) > META_MAX_PAIRS:
        raise ValidationError(field, f"more than {META_MAX_PAIRS} key/value pairs")
    for key, value in values.items():
        if not key:
            raise ValidationError(field, "key cannot be blank")
        if not _META_KEY_RE.match(key):
            raise ValidationError(field, f"key {key!r} contains invalid characters")
        if len(key) > META_KEY_MAX:
            raise ValidationError(field, f"key {key[:20]!r}... too long (max {META_KEY_MAX})")
        if not allow_reserved and key.startswith(_META_RESERVED_PREFIX):
            raise ValidationError(field, f"key {key!r} uses reserved prefix 'consul-'")
        if len(value) > META_VALUE_MAX:
            raise ValidationError(field, f"value for {key!r} too long (max {META_VALUE_MAX})")


def no_empty_items(values: tuple[str, ...], field: str) -> None:
    """Raise if a list of names contains an empty string."""
    for i, item in enumerate(values):
        if not item:
            raise ValidationError(f"{field}[{i}]", "cannot be empty")
