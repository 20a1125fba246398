"""Trace-context headers: W3C Trace Context and B3, extract and inject (pure).

Rules follow the W3C Trace Context recommendation (``traceparent`` version
00; version ``ff`` and all-zero ids invalid; an unparsable ``traceparent``
means ``tracestate`` is ignored too; ``tracestate`` holds at most 32
``key=value`` members, several header lines combined in order) and
openzipkin/b3-propagation (single ``b3`` header wins over the multi-header
form; 64-bit trace ids are left-padded to 128 bits; ``X-B3-Flags: 1`` is
debug and implies sampled; ``b3: 0`` is a bare "do not sample").

Headers come in as ``(name, value)`` pairs, ``str`` or ``bytes`` (h11 and
httptools hand out bytes); names are matched case-insensitively and written
lowercase.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Flag, auto

FORCE_TRACE_HEADER = "x-meshd-force-trace"
ENVOY_FORCE_TRACE_HEADER = "x-envoy-force-trace"  # Envoy's; honoured the same way
REQUEST_ID_HEADER = "x-request-id"
MAX_TRACESTATE_MEMBERS = 32

_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
_HEX2 = re.compile(r"[0-9a-f]{2}")
_TRACEPARENT_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
# W3C tracestate: simple key, or multi-tenant `tenant@system`.
_TS_KEY = re.compile(
    r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
)
_TS_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")
_B3_MULTI = ("x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags")

Header = tuple[str | bytes, str | bytes]


class Format(Flag):
    """Which header formats ``inject`` writes (combine with ``|``)."""

    W3C = auto()
    B3_SINGLE = auto()
    B3_MULTI = auto()
    ALL = W3C | B3_SINGLE | B3_MULTI


@dataclass(frozen=True, slots=True)
class SpanContext:
    """The propagated identity of one span.

    ``trace_id`` is 32 lowercase hex characters (64-bit B3 ids padded),
    ``span_id`` 16. ``sampled`` is None when the sender deferred the
    decision (B3 without ``X-B3-Sampled``). ``tracestate`` keeps the W3C
    members in order, leftmost first.
    """

    trace_id: str
    span_id: str
    sampled: bool | None = None
    debug: bool = False
    parent_span_id: str | None = None
    tracestate: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Incoming:
    """What ``extract`` found on a request.

    ``context`` is the caller's span (None: start a new trace). ``deny`` is
    a bare ``b3: 0``: the caller said "do not sample" without ids. ``force``
    is the debug forcing header (``x-meshd-force-trace: 1``) or B3 debug.
    """

    context: SpanContext | None = None
    deny: bool = False
    force: bool = False
    request_id: str | None = None
    formats: Format = field(default=Format(0))


# Format as plain bits while extracting (enum.Flag arithmetic costs a
# microsecond per operation), and the Format of each combination.
_W3C, _B3_SINGLE, _B3_MULTI_BIT = Format.W3C.value, Format.B3_SINGLE.value, Format.B3_MULTI.value
_FORMATS = tuple(Format(bits) for bits in range(Format.ALL.value + 1))


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _collect(headers: Iterable[Header]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in headers:
        found.setdefault(_text(name).lower(), []).append(_text(value).strip())
    return found


def parse_traceparent(value: str) -> SpanContext | None:
    """Parse a ``traceparent`` value; None when invalid (the header is then ignored).

    Version 00 must be exactly 55 characters; a higher version is parsed
    for its first four fields as the spec asks, ``ff`` is invalid.
    """
    value = value.strip()
    fast = _TRACEPARENT_00.fullmatch(value)  # the common shape: version 00
    if fast is not None:
        trace_id, span_id, flags = fast.groups()
        if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
            return None
        return SpanContext(trace_id, span_id, sampled=bool(int(flags, 16) & 1))
    parts = value.split("-")
    if len(parts) < 4:
        return None
    version, trace_id, span_id, flags = parts[:4]
    if not _HEX2.fullmatch(version) or version == "ff":
        return None
    if version == "00" and len(parts) != 4:
        return None
    if not (_HEX32.fullmatch(trace_id) and _HEX16.fullmatch(span_id) and _HEX2.fullmatch(flags)):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return SpanContext(trace_id, span_id, sampled=bool(int(flags, 16) & 1))


def format_traceparent(ctx: SpanContext) -> str:
    """``00-<trace-id>-<span-id>-<flags>``; debug counts as sampled."""
    flags = "01" if (ctx.sampled or ctx.debug) else "00"
    return f"00-{ctx.trace_id}-{ctx.span_id}-{flags}"


def parse_tracestate(values: Sequence[str]) -> tuple[tuple[str, str], ...] | None:
    """Combine ``tracestate`` lines and parse them; None when any member is invalid.

    Empty members (``a=1,,b=2``) are allowed and skipped; a duplicate key,
    a bad key or value, or more than 32 members make the whole header
    invalid, which the spec lets a participant discard.
    """
    members: list[tuple[str, str]] = []
    seen: set[str] = set()
    for raw in ",".join(values).split(","):
        member = raw.strip(" \t")
        if not member:
            continue
        key, sep, val = member.partition("=")
        if not sep or not _TS_KEY.fullmatch(key) or not _TS_VALUE.fullmatch(val) or key in seen:
            return None
        seen.add(key)
        members.append((key, val))
    if len(members) > MAX_TRACESTATE_MEMBERS:
        return None
    return tuple(members)


def format_tracestate(members: Sequence[tuple[str, str]]) -> str:
    """Members joined in order (at most 32; the rightmost are dropped)."""
    return ",".join(f"{k}={v}" for k, v in list(members)[:MAX_TRACESTATE_MEMBERS])


def _b3_trace_id(value: str) -> str | None:
    value = value.lower()
    if _HEX16.fullmatch(value):
        value = "0" * 16 + value
    if not _HEX32.fullmatch(value) or value == _ZERO_TRACE:
        return None
    return value


def _b3_span_id(value: str) -> str | None:
    value = value.lower()
    return value if _HEX16.fullmatch(value) and value != _ZERO_SPAN else None


def parse_b3_single(value: str) -> SpanContext | bool | None:
    """Parse a ``b3`` header.

    Returns a SpanContext, ``False`` for a bare ``b3: 0`` (deny), ``True``
    for a bare ``b3: 1``/``d`` (accept, no ids), or None when invalid.
    """
    parts = value.strip().split("-")
    if len(parts) == 1:
        return {"0": False, "1": True, "d": True}.get(parts[0].lower())
    if len(parts) > 4:
        return None
    trace_id, span_id = _b3_trace_id(parts[0]), _b3_span_id(parts[1])
    if trace_id is None or span_id is None:
        return None
    sampled: bool | None = None
    debug = False
    if len(parts) >= 3:
        flag = parts[2].lower()
        if flag not in ("0", "1", "d"):
            return None
        debug = flag == "d"
        sampled = flag != "0"
    parent = None
    if len(parts) == 4:
        parent = _b3_span_id(parts[3])
        if parent is None:
            return None
    return SpanContext(trace_id, span_id, sampled, debug, parent)


def parse_b3_multi(found: dict[str, list[str]]) -> SpanContext | None:
    """Parse the ``X-B3-*`` headers (already collected, names lowercase)."""

    def one(name: str) -> str | None:
        values = found.get(name)
        return values[0] if values else None

    raw_trace, raw_span = one("x-b3-traceid"), one("x-b3-spanid")
    if raw_trace is None or raw_span is None:
        return None
    trace_id, span_id = _b3_trace_id(raw_trace), _b3_span_id(raw_span)
    if trace_id is None or span_id is None:
        return None
    raw_parent = one("x-b3-parentspanid")
    parent = _b3_span_id(raw_parent) if raw_parent is not None else None
    if raw_parent is not None and parent is None:
        return None
    debug = one("x-b3-flags") == "1"
    raw_sampled = (one("x-b3-sampled") or "").lower()
    sampled = {"1": True, "true": True, "0": False, "false": False}.get(raw_sampled)
    if debug:
        sampled = True
    return SpanContext(trace_id, span_id, sampled, debug, parent)


def extract(headers: Iterable[Header]) -> Incoming:
    """Read the trace context of an inbound request.

    Precedence: a valid W3C ``traceparent`` (with its ``tracestate``), then
    the single ``b3`` header, then the multi ``X-B3-*`` headers. Invalid
    headers are ignored (a new trace starts), never an error.
    """
    return extract_collected(_collect(headers))


def extract_collected(found: dict[str, list[str]], *, formats: bool = True) -> Incoming:
    """``extract`` of headers already collected: lowercase names, each with
    its stripped values in order (every list non-empty). ``formats=False``:
    the caller has no use for ``Incoming.formats``, so a ``b3`` header after
    a valid ``traceparent`` (which could change nothing else) is not parsed."""
    rid = found.get(REQUEST_ID_HEADER)
    request_id = (rid[0] if rid else "") or None
    force = False
    for name in (FORCE_TRACE_HEADER, ENVOY_FORCE_TRACE_HEADER):
        forced = found.get(name)
        if forced and forced[0].lower() in ("1", "true"):
            force = True
    bits = 0
    context: SpanContext | None = None
    deny = False
    parent = found.get("traceparent")
    if parent:
        context = parse_traceparent(parent[0])
        if context is not None:
            bits |= _W3C
            lines = found.get("tracestate")
            state = parse_tracestate(lines) if lines else None
            if state:
                context = replace(context, tracestate=state)
    b3 = found.get("b3")
    if b3 is not None and (formats or context is None):
        single = parse_b3_single(b3[0]) if b3 else None
        if isinstance(single, SpanContext):
            bits |= _B3_SINGLE
            context = context or single
        elif single is False:
            deny = context is None
    elif b3 is None and context is None and any(n in found for n in _B3_MULTI):
        multi = parse_b3_multi(found)
        if multi is not None:
            bits |= _B3_MULTI_BIT
            context = multi
    if context is not None and context.debug:
        force = True
    return Incoming(context, deny, force, request_id, _FORMATS[bits])


def inject(ctx: SpanContext, formats: Format = Format.ALL) -> list[tuple[str, str]]:
    """Headers carrying ``ctx`` to the next hop (lowercase names).

    ``ctx.span_id`` is the span the receiver should use as its parent (the
    client span); ``ctx.parent_span_id`` becomes B3's ParentSpanId. The
    caller removes the old trace headers (``TRACE_HEADERS``) before adding
    these, so the request never carries two contexts.
    """
    out: list[tuple[str, str]] = []
    bits = formats.value
    if bits & _W3C:
        out.append(("traceparent", format_traceparent(ctx)))
        if ctx.tracestate:
            out.append(("tracestate", format_tracestate(ctx.tracestate)))
    flag = "d" if ctx.debug else ("1" if ctx.sampled else "0")
    if bits & _B3_SINGLE:
        single = f"{ctx.trace_id}-{ctx.span_id}-{flag}"
        if ctx.parent_span_id:
            single += f"-{ctx.parent_span_id}"
        out.append(("b3", single))
    if bits & _B3_MULTI_BIT:
        out.append(("x-b3-traceid", ctx.trace_id))
        out.append(("x-b3-spanid", ctx.span_id))
        if ctx.parent_span_id:
            out.append(("x-b3-parentspanid", ctx.parent_span_id))
        if ctx.debug:
            out.append(("x-b3-flags", "1"))
        else:
            out.append(("x-b3-sampled", "1" if ctx.sampled else "0"))
    return out


def inject_all_bytes(
    trace_id: str,
    span_id: str,
    sampled: bool | None,
    debug: bool,
    parent_span_id: str | None,
    tracestate: Sequence[tuple[str, str]],
) -> list[tuple[bytes, bytes]]:
    """``inject`` of every format for the context these fields make, as the
    bytes a proxy writes (names ASCII, values Latin-1): the same headers in
    the same order, without building a SpanContext (the proxy does this for
    every request)."""
    tid, sid = trace_id.encode("latin-1"), span_id.encode("latin-1")
    flag = b"d" if debug else (b"1" if sampled else b"0")
    out = [(b"traceparent", b"00-%s-%s-%s" % (tid, sid, b"01" if sampled or debug else b"00"))]
    if tracestate:
        out.append((b"tracestate", format_tracestate(tracestate).encode("latin-1")))
    if parent_span_id:
        pid = parent_span_id.encode("latin-1")
        out.append((b"b3", b"%s-%s-%s-%s" % (tid, sid, flag, pid)))
        out += ((b"x-b3-traceid", tid), (b"x-b3-spanid", sid), (b"x-b3-parentspanid", pid))
    else:
        out.append((b"b3", b"%s-%s-%s" % (tid, sid, flag)))
        out += ((b"x-b3-traceid", tid), (b"x-b3-spanid", sid))
    out.append((b"x-b3-flags", b"1") if debug else (b"x-b3-sampled", flag))
    return out


TRACE_HEADERS = frozenset({"traceparent", "tracestate", "b3", *_B3_MULTI})


def without_trace_headers(headers: Iterable[Header]) -> list[Header]:
    """``headers`` minus every W3C/B3 header (before ``inject`` adds fresh ones)."""
    return [(n, v) for n, v in headers if _text(n).lower() not in TRACE_HEADERS]


def new_trace_id(rng: random.Random) -> str:
    """A random, non-zero 128-bit trace id as 32 lowercase hex characters."""
    # getrandbits less its one zero: uniform as randrange(1, 2**128), a
    # fraction of its cost (this runs for every request that starts a trace).
    n = rng.getrandbits(128)
    while not n:
        n = rng.getrandbits(128)
    return n.to_bytes(16, "big").hex()  # f"{n:032x}", in a third of its time


def new_span_id(rng: random.Random) -> str:
    """A random, non-zero 64-bit span id as 16 lowercase hex characters."""
    n = rng.getrandbits(64)  # as new_trace_id: uniform over the non-zero ids
    while not n:
        n = rng.getrandbits(64)
    return n.to_bytes(8, "big").hex()  # f"{n:016x}"


_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_UUID_V4 = (0x8000 << 48) | (4 << 76)


def new_request_id(rng: random.Random) -> str:
    """A UUID-4-shaped ``x-request-id`` (what Envoy generates), from ``rng``."""
    # What str(uuid.UUID(int=..., version=4)) gives, without the UUID object.
    h = ((rng.getrandbits(128) & _UUID_CLEAR) | _UUID_V4).to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def ensure_request_id(incoming: Incoming, rng: random.Random) -> tuple[str, bool]:
    """The request's ``x-request-id`` and whether it was generated (header to add)."""
    if incoming.request_id:
        return incoming.request_id, False
    return new_request_id(rng), True
