"""Go-style durations ("10s", "1m30s", "500ms", "72h"), as Consul's configuration uses them.

``parse_duration`` follows Go's ``time.ParseDuration``
(https://pkg.go.dev/time#ParseDuration): a sequence of decimal numbers, each
with an optional fraction and a unit (``ns``, ``us``/``µs``, ``ms``, ``s``,
``m``, ``h``); a bare ``"0"`` is zero. Unlike Go, negative durations are
refused: no meshd setting means anything with one. ``format_duration`` is
the inverse, matching Go's ``Duration.String()`` so values read back through
``/v1/agent/self`` look like Consul's.
"""

from __future__ import annotations

import json
import re
from fractions import Fraction

from meshd.errors import DurationError

__all__ = ["MAX_DURATION_NS", "format_duration", "parse_duration"]

# Go's time.Duration is an int64 count of nanoseconds; larger values overflow.
MAX_DURATION_NS = (1 << 63) - 1

_UNIT_NS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # µ MICRO SIGN
    "\u03bcs": 1_000,  # μ GREEK SMALL LETTER MU
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}

# One component: digits, an optional fraction, then the unit (anything up to
# the next digit or dot). ASCII digits only: Go does not accept others.
_COMPONENT = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
# The common case ("60s", "500ms"), parsed without Fractions: every blocking
# query's ?wait= goes through here.
_SIMPLE = re.compile(r"([0-9]+)(ns|us|ms|s|m|h)")


def _parse_ns(text: str) -> int:
    body = text[1:] if text.startswith("+") else text
    if text.startswith("-"):
        raise DurationError(text, "negative durations are not allowed")
    if body == "0":
        return 0
    if not body:
        raise DurationError(text, "empty duration")
    simple = _SIMPLE.fullmatch(body)
    if simple is not None:
        ns = int(simple[1]) * _UNIT_NS[simple[2]]
        if ns > MAX_DURATION_NS:
            raise DurationError(text, "too large (the maximum is about 2562047h)")
        return ns
    total = Fraction(0)
    pos = 0
    while pos < len(body):
        match = _COMPONENT.match(body, pos)
        assert match is not None  # the pattern matches the empty string
        whole, frac, unit = match.groups()
        if not whole and not frac:
            raise DurationError(text, "expected a number")
        if not unit:
            raise DurationError(text, 'missing unit (use one of "ns", "us", "ms", "s", "m", "h")')
        if unit not in _UNIT_NS:
            raise DurationError(text, f"unknown unit {json.dumps(unit, ensure_ascii=False)}")
        value = Fraction(int(whole or "0"))
        if frac:
            value += Fraction(int(frac), 10 ** len(frac))
        total += value * _UNIT_NS[unit]
        if total > MAX_DURATION_NS:
            raise DurationError(text, "too large (the maximum is about 2562047h)")
        pos = match.end()
    return int(total)  # Go truncates sub-nanosecond fractions


def parse_duration(text: str) -> float:
    """Parse a Go duration string and return it in seconds.

    Raises ``DurationError`` (a ``ValueError``) for an empty string, a missing
    or unknown unit, surrounding whitespace, a negative value or one larger
    than Go's int64 nanoseconds. Pure function; no I/O.
    """
    if not isinstance(text, str):
        raise DurationError(repr(text), "must be a string")
    return _parse_ns(text) / 1_000_000_000


def parse_duration_ns(text: str) -> int:
    """Like ``parse_duration`` but return whole nanoseconds (exact, no float rounding)."""
    if not isinstance(text, str):
        raise DurationError(repr(text), "must be a string")
    return _parse_ns(text)


def _frac(value: int, digits: int) -> tuple[str, int]:
    # Split value into a "." + fraction string of `digits` places (trailing
    # zeros dropped) and the whole part, as Go's fmtFrac does.
    whole, rest = divmod(value, 10**digits)
    text = f"{rest:0{digits}d}".rstrip("0")
    return (f".{text}" if text else ""), whole


def format_duration(seconds: float) -> str:
    """Format seconds like Go's ``Duration.String()``: "0s", "500ms", "1m30s", "72h0m0s"."""
    ns = round(seconds * 1_000_000_000)
    if ns == 0:
        return "0s"
    sign, u = ("-" if ns < 0 else ""), abs(ns)
    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        frac, whole = _frac(u, 3)
        return f"{sign}{whole}{frac}\u00b5s"
    if u < 1_000_000_000:
        frac, whole = _frac(u, 6)
        return f"{sign}{whole}{frac}ms"
    frac, secs = _frac(u, 9)
    minutes, secs = divmod(secs, 60)
    text = f"{secs}{frac}s"
    if minutes:
        hours, minutes = divmod(minutes, 60)
        text = f"{minutes}m{text}"
        if hours:
            text = f"{hours}h{text}"
    return f"{sign}{text}"
