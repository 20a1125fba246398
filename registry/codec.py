"""Typed msgpack conversion for registry dataclasses (commands and records).

A converter is compiled once per type from its annotations and cached:

* *map form* (commands): a dataclass becomes ``{field: value}``; decoding
  checks every type, fills missing fields from defaults and rejects unknown
  fields, so a command either decodes exactly or not at all.
* *row form* (snapshots): a dataclass becomes ``[value, ...]`` in field order,
  which is smaller and faster for the hundreds of thousands of records a
  snapshot holds.

Dicts are written with sorted keys, recursively, so equal values always give
equal bytes (snapshot equality and replay determinism rely on this). Strings
are interned on decode: node and service names repeat across many records.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import sys
import threading
import types
import typing
from collections.abc import Callable
from typing import Any

import msgpack

Conv = Callable[[Any], Any]


class CodecError(Exception):
    """An object does not have the shape its type annotation requires."""


_local = threading.local()


# A result above this size drops the thread's Packer, so its buffer (kept at
# its largest size) does not pin a big transaction's memory for good.
_PACKER_KEEP = 1 << 20


def pack(obj: Any) -> bytes:
    """Encode plain data (already converted) with msgpack: one ``Packer``
    per thread, reused (``packb`` builds one per call, half the cost of
    packing a KV write's command). Not re-entrant: no Python code runs while
    it packs (plain dicts, lists and scalars, no ``default`` hook)."""
    try:
        packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(use_bin_type=True)
    out: bytes = packer.pack(obj)
    if len(out) > _PACKER_KEEP:
        del _local.packer
    return out


def unpack(data: bytes) -> Any:
    """Decode msgpack bytes; raise ``CodecError`` on any malformed input."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise CodecError(f"undecodable msgpack: {exc}") from exc


def canonical(obj: Any) -> Any:
    """Return ``obj`` with every dict rebuilt in sorted key order (tuples become lists)."""
    if isinstance(obj, dict):
        try:
            keys = sorted(obj)
        except TypeError:
            keys = sorted(obj, key=repr)
        return {k: canonical(obj[k]) for k in keys}
    if isinstance(obj, list | tuple):
        return [canonical(v) for v in obj]
    return obj


def _fail(expected: str, got: Any) -> CodecError:
    return CodecError(f"expected {expected}, got {type(got).__name__}")


def _dec_int(o: Any) -> int:
    if type(o) is not int:
        raise _fail("int", o)
    return o


def _dec_float(o: Any) -> float:
    if type(o) is float:
        return o
    if type(o) is int:
        return float(o)
    raise _fail("float", o)


def _dec_str(o: Any) -> str:
    if type(o) is not str:
        raise _fail("str", o)
    return sys.intern(o)


def _dec_bool(o: Any) -> bool:
    if type(o) is not bool:
        raise _fail("bool", o)
    return o


def _dec_bytes(o: Any) -> bytes:
    if type(o) is not bytes:
        raise _fail("bytes", o)
    return o


def _identity(o: Any) -> Any:
    return o


_PRIMITIVES: dict[Any, Conv] = {
    int: _dec_int,
    float: _dec_float,
    str: _dec_str,
    bool: _dec_bool,
    bytes: _dec_bytes,
}


class _Converters:
    """Encoder and decoder for one type, in map or row form."""

    __slots__ = ("dec", "enc", "plain")

    def __init__(self, enc: Conv, dec: Conv, plain: bool) -> None:
        self.enc = enc
        self.dec = dec
        self.plain = plain  # encoding is the identity (no conversion needed)


_CACHE: dict[tuple[Any, bool], _Converters] = {}


def converters(tp: Any, rows: bool = False) -> _Converters:
    """Return (and cache) the converters for type ``tp``."""
    key = (tp, rows)
    conv = _CACHE.get(key)
    if conv is None:
        conv = _build(tp, rows)
        _CACHE[key] = conv
    return conv


def _build(tp: Any, rows: bool) -> _Converters:
    if tp in _PRIMITIVES:
        return _Converters(_identity, _PRIMITIVES[tp], True)
    if tp is Any or tp is object:
        return _Converters(canonical, _identity, False)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _build_dataclass(tp, rows)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return _Converters(_identity, _PRIMITIVES[type(args[0])], True)
    if origin in (types.UnionType, typing.Union):
        return _build_optional(tp, args, rows)
    if origin in (list, tuple):
        return _build_sequence(origin, args, rows)
    if origin is dict:
        return _build_dict(args, rows)
    raise TypeError(f"codec cannot handle type {tp!r}")


def _build_optional(tp: Any, args: tuple[Any, ...], rows: bool) -> _Converters:
    inner_types = [a for a in args if a is not type(None)]
    if len(inner_types) != 1 or len(args) != 2:
        raise TypeError(f"codec only handles X | None unions, not {tp!r}")
    inner = converters(inner_types[0], rows)

    def enc(o: Any) -> Any:
        return None if o is None else inner.enc(o)

    def dec(o: Any) -> Any:
        return None if o is None else inner.dec(o)

    return _Converters(enc, dec, inner.plain)


def _build_sequence(origin: Any, args: tuple[Any, ...], rows: bool) -> _Converters:
    if origin is tuple and (len(args) != 2 or args[1] is not Ellipsis):
        raise TypeError("codec only handles tuple[X, ...]")
    item = converters(args[0], rows)
    item_enc, item_dec = item.enc, item.dec
    make = tuple if origin is tuple else list

    def enc(o: Any) -> Any:
        return [item_enc(v) for v in o]

    def dec(o: Any) -> Any:
        if type(o) is not list:
            raise _fail("array", o)
        return make(item_dec(v) for v in o)

    return _Converters(enc, dec, False)


def _build_dict(args: tuple[Any, ...], rows: bool) -> _Converters:
    if args[0] is not str:
        raise TypeError("codec only handles dict[str, X]")
    value = converters(args[1], rows)
    val_enc, val_dec = value.enc, value.dec

    def enc(o: Any) -> Any:
        return {k: val_enc(o[k]) for k in sorted(o)}

    def dec(o: Any) -> Any:
        if type(o) is not dict:
            raise _fail("map", o)
        out = {}
        for k, v in o.items():
            if type(k) is not str:
                raise _fail("str key", k)
            out[sys.intern(k)] = val_dec(v)
        return out

    return _Converters(enc, dec, False)


def _build_dataclass(cls: type, rows: bool) -> _Converters:
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = tuple(f.name for f in fields)
    convs = tuple(converters(hints[f.name], rows) for f in fields)
    required = frozenset(
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    if rows:
        makers = _trailing_defaults(fields)
        tail = list(zip(makers, (c.enc for c in convs[len(convs) - len(makers) :]), strict=True))
        return _row_converters(cls, names, convs, tail)
    return _map_converters(cls, names, convs, required)


def _constant(value: Any) -> Any:
    return value


def _trailing_defaults(fields: list[dataclasses.Field[Any]]) -> list[Callable[[], Any]]:
    """Makers of the defaults of the fields after the last required one, so a
    row written before those fields were added still decodes."""
    makers: list[Callable[[], Any]] = []
    for f in reversed(fields):
        if f.default is not dataclasses.MISSING:
            makers.append(functools.partial(_constant, f.default))
        elif f.default_factory is not dataclasses.MISSING:
            makers.append(f.default_factory)
        else:
            break
    makers.reverse()
    return makers


def _row_converters(
    cls: type,
    names: tuple[str, ...],
    convs: tuple[_Converters, ...],
    tail: list[tuple[Callable[[], Any], Callable[[Any], Any]]],
) -> _Converters:
    """Rows skip per-field type checks on plain fields: snapshots come from
    ``StateStore.snapshot`` and their integrity is checked by raft/ storage.
    Strings are still interned, nested values still converted. A row shorter
    than the record by fields that have defaults (a snapshot written before
    they were added) gets those defaults."""
    getter = operator.attrgetter(*names) if len(names) > 1 else None
    width = len(names)
    nested = tuple((i, c.enc, c.dec) for i, c in enumerate(convs) if not c.plain)
    strings = tuple(i for i, c in enumerate(convs) if c.plain and c.dec is _dec_str)
    intern = sys.intern

    def enc(o: Any) -> Any:
        row = list(getter(o)) if getter is not None else [getattr(o, names[0])]
        for i, e, _ in nested:
            row[i] = e(row[i])
        return row

    def dec(o: Any) -> Any:
        if type(o) is not list or len(o) != width:
            missing = width - len(o) if type(o) is list else -1
            if not 0 < missing <= len(tail):
                raise _fail(f"{cls.__name__} row", o)
            # Padded with encoded defaults: the loop below decodes them like the rest.
            o.extend(enc_of(make()) for make, enc_of in tail[len(tail) - missing :])
        for i, _, d in nested:
            o[i] = d(o[i])
        for i in strings:
            o[i] = intern(o[i])
        return cls(*o)

    return _Converters(enc, dec, False)


def _defaults(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _map_converters(
    cls: type, names: tuple[str, ...], convs: tuple[_Converters, ...], required: frozenset[str]
) -> _Converters:
    table = dict(zip(names, convs, strict=True))
    defaults = _defaults(cls)

    def enc(o: Any) -> Any:
        # Fields equal to their default are left out: smaller log entries, faster decoding.
        out = {}
        for n, c in table.items():
            value = getattr(o, n)
            if n in defaults and value == defaults[n]:
                continue
            out[n] = c.enc(value)
        return out

    def dec(o: Any) -> Any:
        if type(o) is not dict:
            raise _fail(f"{cls.__name__} map", o)
        kwargs = {}
        for k, v in o.items():
            conv = table.get(k)
            if conv is None:
                raise CodecError(f"{cls.__name__} has no field {k!r}")
            kwargs[k] = conv.dec(v)
        missing = required - kwargs.keys()
        if missing:
            raise CodecError(f"{cls.__name__} misses {sorted(missing)}")
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise CodecError(f"{cls.__name__}: {exc}") from exc

    return _Converters(enc, dec, False)


def to_obj(value: Any, tp: Any, rows: bool = False) -> Any:
    """Convert ``value`` of type ``tp`` to msgpack-ready plain data."""
    return converters(tp, rows).enc(value)


def from_obj(obj: Any, tp: Any, rows: bool = False) -> Any:
    """Convert plain data back to type ``tp``; raise ``CodecError`` on a shape mismatch."""
    try:
        return converters(tp, rows).dec(obj)
    except CodecError:
        raise
    except (TypeError, ValueError, AttributeError) as exc:
        raise CodecError(str(exc)) from exc
