"""Decoding Consul config-entry JSON: field lookup, durations, errors.

Consul decodes entries with mapstructure plus ``alias`` tags, so a field is
found under its CamelCase name, its snake_case alias, or any case variant
(``PathPrefix``, ``path_prefix``, ``pathprefix``). ``Fields`` does the same
by comparing keys lower-cased with underscores removed, and refuses keys an
entry does not know, as Consul's decoder does (``ErrorUnused``).

Durations follow Go's ``time.Duration`` in JSON: a string such as ``"1.5s"``,
``"300ms"``, ``"1m30s"`` or an integer number of nanoseconds. They are kept
as integer nanoseconds and written back in Go's ``Duration.String()`` form,
which is what Consul's API answers with.
"""

from __future__ import annotations

import builtins
import json
import math
import re
from collections.abc import Iterable
from typing import Any

from connect.errors import ConnectError

JSON = Any


class ValidationError(ConnectError, ValueError):
    """A config entry (or a set of them) is refused.

    ``field`` is the path of the offending field (``Routes[0].Match.HTTP``),
    empty for graph errors; ``message`` is Consul's text, which is also
    ``str(err)`` so the API layer can answer with it unchanged.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class DecodeError(ValidationError):
    """The JSON does not decode into an entry: no or unknown Kind, an unknown
    key, a value of the wrong type, a malformed duration. Consul answers
    these with 400 ``Request decoding failed: <message>``; other
    ValidationErrors come from its Validate() and graph checks (500)."""


class ChainError(ValidationError):
    """A discovery chain cannot be compiled (Consul's ConfigEntryGraphError):
    protocol does not permit routing, inconsistent protocols, circular
    references, a missing subset."""

    def __init__(self, message: str) -> None:
        super().__init__("", message)


def goq(s: str) -> str:
    """Go's ``%q`` for the strings config entries hold."""
    return json.dumps(s, ensure_ascii=False)


def norm_key(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_DUR_PART = re.compile(r"(\d*\.?\d*)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(value: JSON, field: str) -> int:
    """Go duration (string or integer nanoseconds) to nanoseconds.

    Raises ValidationError with Go's ``time: invalid duration "x"`` text.
    """
    if isinstance(value, bool):
        raise DecodeError(field, f"{field}: time: invalid duration {goq(str(value))}")
    if isinstance(value, int | float) and (isinstance(value, int) or value.is_integer()):
        if not _INT64_MIN <= value <= _INT64_MAX:  # Go's time.Duration is an int64
            raise DecodeError(field, f"{field}: time: invalid duration {goq(str(value))}")
        return int(value)
    if not isinstance(value, str):
        raise DecodeError(field, f"{field}: time: invalid duration {goq(str(value))}")
    return _parse_duration_str(value, field)


def _parse_duration_str(text: str, field: str) -> int:
    bad = DecodeError(field, f"{field}: time: invalid duration {goq(text)}")
    s = text
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise bad
    total = 0
    pos = 0
    while pos < len(s):
        m = _DUR_PART.match(s, pos)
        if m is None or m.group(1) in ("", "."):
            raise bad
        # Integer arithmetic as Go's time.ParseDuration: exact, so a duration
        # always reads back as the nanoseconds it was written from.
        unit = _UNITS_NS[m.group(2)]
        whole, _, frac = m.group(1).partition(".")
        total += int(whole or "0") * unit
        if frac:
            total += int(frac) * unit // 10 ** len(frac)
        pos = m.end()
    if not _INT64_MIN <= sign * total <= _INT64_MAX:
        raise bad
    return sign * total


def format_duration(ns: int) -> str:
    """Go's ``time.Duration.String()``: ``5s``, ``1.5s``, ``300ms``, ``1m30s``, ``1h0m0s``."""
    if ns == 0:
        return "0s"
    neg = ns < 0
    u = -ns if neg else ns
    if u < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if u >= size:
                out = _frac(u, size) + unit
                break
    else:
        secs, frac_ns = divmod(u, 1_000_000_000)
        hours, rem = divmod(secs, 3600)
        mins, s = divmod(rem, 60)
        sec_text = str(s) + (("." + f"{frac_ns:09d}".rstrip("0")) if frac_ns else "") + "s"
        if hours:
            out = f"{hours}h{mins}m{sec_text}"
        elif mins:
            out = f"{mins}m{sec_text}"
        else:
            out = sec_text
    return "-" + out if neg else out


def _frac(u: int, size: int) -> str:
    whole, rest = divmod(u, size)
    if not rest:
        return str(whole)
    width = len(str(size)) - 1
    return f"{whole}." + f"{rest:0{width}d}".rstrip("0")


class Fields:
    """One JSON object being decoded: typed getters by Consul field name.

    ``path`` prefixes field names in errors. ``finish`` refuses keys that no
    getter asked for, except the ``passthrough`` ones, which it returns raw
    (kept so that /v1/config answers with what was stored).
    """

    def __init__(self, raw: JSON, path: builtins.str) -> None:
        if not isinstance(raw, dict):
            raise DecodeError(path, f"{path or 'config entry'} must be a JSON object")
        self.path = path
        self._items: dict[builtins.str, tuple[builtins.str, JSON]] = {}
        for key, value in raw.items():
            if not isinstance(key, builtins.str):
                raise DecodeError(path, f"{path}: keys must be strings")
            self._items[norm_key(key)] = (key, value)
        self._used: set[builtins.str] = set()

    def sub(self, name: builtins.str) -> builtins.str:
        return f"{self.path}.{name}" if self.path else name

    def raw(self, name: builtins.str) -> JSON:
        key = norm_key(name)
        self._used.add(key)
        item = self._items.get(key)
        return None if item is None else item[1]

    def has(self, name: builtins.str) -> builtins.bool:
        return self.raw(name) is not None

    def str(self, name: builtins.str) -> builtins.str:
        value = self.raw(name)
        if value is None:
            return ""
        if not isinstance(value, builtins.str):
            raise DecodeError(self.sub(name), f"{self.sub(name)} must be a string")
        return value

    def bool(self, name: builtins.str) -> builtins.bool:
        value = self.raw(name)
        if value is None:
            return False
        if not isinstance(value, builtins.bool):
            raise DecodeError(self.sub(name), f"{self.sub(name)} must be a boolean")
        return value

    def int(self, name: builtins.str) -> builtins.int | None:
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, builtins.float) and value.is_integer():
            value = int(value)
        if isinstance(value, builtins.bool) or not isinstance(value, builtins.int):
            raise DecodeError(self.sub(name), f"{self.sub(name)} must be an integer")
        return value

    def float(self, name: builtins.str) -> builtins.float | None:
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, builtins.bool) or not isinstance(
            value, (builtins.int, builtins.float)
        ):
            raise DecodeError(self.sub(name), f"{self.sub(name)} must be a number")
        if not math.isfinite(value):
            raise DecodeError(self.sub(name), f"{self.sub(name)} must be a finite number")
        return float(value)

    def duration(self, name: builtins.str) -> builtins.int:
        value = self.raw(name)
        return 0 if value is None else parse_duration(value, self.sub(name))

    def obj(self, name: builtins.str) -> Fields | None:
        value = self.raw(name)
        return None if value is None else Fields(value, self.sub(name))

    def list(self, name: builtins.str) -> list[JSON]:
        value = self.raw(name)
        if value is None:
            return []
        if not isinstance(value, builtins.list):
            raise DecodeError(self.sub(name), f"{self.sub(name)} must be a list")
        return value

    def str_list(self, name: builtins.str) -> tuple[builtins.str, ...]:
        out = []
        for i, item in enumerate(self.list(name)):
            if not isinstance(item, builtins.str):
                field = f"{self.sub(name)}[{i}]"
                raise DecodeError(field, f"{field} must be a string")
            out.append(item)
        return tuple(out)

    def str_map(self, name: builtins.str) -> dict[builtins.str, builtins.str]:
        value = self.raw(name)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(
            isinstance(k, builtins.str) and isinstance(v, builtins.str) for k, v in value.items()
        ):
            raise DecodeError(self.sub(name), f"{self.sub(name)} must map strings to strings")
        return dict(value)

    def any_map(self, name: builtins.str) -> dict[builtins.str, JSON]:
        value = self.raw(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise DecodeError(self.sub(name), f"{self.sub(name)} must be a JSON object")
        return dict(value)

    def finish(self, passthrough: Iterable[builtins.str] = ()) -> dict[builtins.str, JSON]:
        """Refuse unknown keys; return the passthrough ones that are present."""
        extra: dict[builtins.str, JSON] = {}
        for name in passthrough:
            value = self.raw(name)
            if value is not None:
                extra[name] = value
        for key, (original, _) in self._items.items():
            if key not in self._used:
                raise DecodeError(self.sub(original), f"invalid config key {goq(original)}")
        return extra


ENTRY_INDEXES = ("CreateIndex", "ModifyIndex")


def finish_entry(f: Fields, passthrough: Iterable[builtins.str] = ()) -> dict[builtins.str, JSON]:
    """``f.finish`` for a whole entry: the raft indexes a read answered with
    (CreateIndex, ModifyIndex) are accepted and dropped; returns the
    passthrough keys present."""
    extra = f.finish((*passthrough, *ENTRY_INDEXES))
    for key in ENTRY_INDEXES:
        extra.pop(key, None)
    return extra


def check_meta(meta: dict[str, str], field: str = "Meta") -> None:
    """Consul's ``validateConfigEntryMeta``: at most 64 pairs, keys of at most
    128 bytes, values of at most 512."""
    if len(meta) > 64:
        raise ValidationError(field, "Meta exceeds maximum element count 64")
    for k, v in meta.items():
        if len(k.encode()) > 128:
            raise ValidationError(field, f"Meta key {goq(k)} exceeds maximum length 128")
        if len(v.encode()) > 512:
            raise ValidationError(field, f"Meta value for key {goq(k)} exceeds maximum length 512")


def put(out: dict[str, JSON], key: str, value: JSON) -> None:
    """Add ``key`` unless ``value`` is empty (Go ``omitempty``)."""
    if value is None or value == "" or value == 0 or value is False:
        return
    if isinstance(value, (dict, list, tuple)) and not value:
        return
    out[key] = list(value) if isinstance(value, tuple) else value


def put_service_ref(
    out: dict[str, JSON], service: str, subset: str, namespace: str, partition: str = ""
) -> None:
    """Service, ServiceSubset, Namespace, Partition, each left out when empty:
    how a redirect, a failover, a route destination and a split name a service."""
    put(out, "Service", service)
    put(out, "ServiceSubset", subset)
    put(out, "Namespace", namespace)
    put(out, "Partition", partition)


def put_entry_tail(
    out: dict[str, JSON],
    meta: dict[str, str],
    namespace: str,
    partition: str,
    extra: dict[str, JSON] | None = None,
) -> dict[str, JSON]:
    """The fields every entry's JSON ends with: Meta, Namespace, Partition,
    then the passthrough keys kept verbatim; returns ``out``."""
    put(out, "Meta", dict(meta))
    put(out, "Namespace", namespace)
    put(out, "Partition", partition)
    if extra:
        out.update(extra)
    return out
