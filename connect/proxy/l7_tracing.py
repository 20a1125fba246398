"""Tracing in the proxy's L7 path: one span per request and side, sent to the local agent.

Per request the L7 handlers call ``ProxyTracing.client_hop`` (outbound
listener) or ``server_hop`` (inbound listener) before forwarding, and
``finish`` with the answer. A hop extracts the caller's W3C/B3 context
(``connect.telemetry.propagation``), starts a span as its child, or a new
trace when none arrived (sampled at the service's percentage, or always
with ``x-meshd-force-trace: 1`` / ``x-envoy-force-trace: 1``), and gives
the headers to send on: the old trace headers replaced by the span's
context in every format (``traceparent``/``tracestate``, ``b3``,
``x-b3-*``) and ``x-request-id`` added when absent.

Sampling percentage (0-100, 0.01 resolution, default 1): service-defaults
``TracingSamplingPercentage`` of the service whose proxy starts the trace,
else proxy-defaults ``Config.tracing_sampling_percentage`` (both validated
when written), followed with blocking queries.

Sampled spans go to the local agent (``PUT /v1/internal/traces/spans``),
which keeps them for its trace API and exports them to the configured
collectors. The sink is a bounded queue: ``record`` never blocks; a full
queue, or a batch the agent refused after ``SINK_ATTEMPTS`` tries, is
dropped and counted in ``meshd_proxy_trace_spans_dropped``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio
from prometheus_client import CollectorRegistry, Counter

from connect.telemetry.export import SpanBatcher
from connect.telemetry.propagation import (
    ENVOY_FORCE_TRACE_HEADER,
    FORCE_TRACE_HEADER,
    REQUEST_ID_HEADER,
    TRACE_HEADERS,
    Incoming,
    extract_collected,
    format_tracestate,
    inject_all_bytes,
    new_request_id,
    new_span_id,
    new_trace_id,
    parse_tracestate,
)
from connect.telemetry.sampling import (
    DEFAULT_PERCENT,
    RESOLUTION,
    Sampler,
    SamplingError,
    percent_to_basis,
)
from connect.telemetry.spans import REQUEST_ID, Span, SpanKind, Tracer, http_attributes
from connect.telemetry.wire import span_to_json

from .agent_client import AgentClient
from .errors import AgentError
from .logfmt import emit
from .watchers import Resource, WatchHub

SPANS_PATH = "/v1/internal/traces/spans"
PROXY_DEFAULTS_KEY = "tracing_sampling_percentage"
SERVICE_DEFAULTS_FIELD = "TracingSamplingPercentage"
PEER_SERVICE = "peer.service"  # OTel: the remote side's service name
SINK_ATTEMPTS = 3
SINK_INTERVAL = 0.5
# Header names (bytes, lowercase as h11 gives them): replaced on the way out,
# and read to extract the caller's context.
_REPLACED = frozenset(h.encode() for h in TRACE_HEADERS)
_READ = {
    name.encode(): name
    for name in (*TRACE_HEADERS, REQUEST_ID_HEADER, FORCE_TRACE_HEADER, ENVOY_FORCE_TRACE_HEADER)
}
_NOTHING = Incoming()
_FORCE, _ENVOY_FORCE = FORCE_TRACE_HEADER.encode(), ENVOY_FORCE_TRACE_HEADER.encode()
_HEX = b"0123456789abcdef"
_ODD_HEX = b"13579bdf"  # hex digits with the low bit set
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
_ALL = b""  # (not a header name) the request's headers
_B3_SAMPLED = {False: (b"x-b3-sampled", b"0"), True: (b"x-b3-sampled", b"1")}
# A new trace's draws as one 384-bit number (_fresh): CPython's getrandbits
# fills 32-bit words from the low end, so its bits are, from the low end,
# the trace id (128), the span id (64), random()'s two words (its 53 bits:
# the first word's top 27, the second's top 26) and the request id (128).
_TWO53 = 1.0 / 9007199254740992.0  # random(): (a * 2**26 + b) / 2**53
_UUID_CLEAR = ~(((0xC000 << 48) | (0xF000 << 64)) << 256) & ((1 << 384) - 1)
_UUID_V4 = ((0x8000 << 48) | (4 << 76)) << 256


def proxy_defaults_resource() -> Resource:
    return Resource("config", "proxy-defaults", "/v1/config/proxy-defaults")


def service_defaults_resource() -> Resource:
    return Resource("config", "service-defaults", "/v1/config/service-defaults")


def _entries(body: Any) -> list[Mapping[str, Any]]:
    return [e for e in body if isinstance(e, Mapping)] if isinstance(body, list) else []


def _basis(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return percent_to_basis(float(value))
    except (SamplingError, TypeError, ValueError):
        return None


@dataclass
class SamplingSettings:
    """Per-service sampling basis (hundredths of a percent) from the config entries."""

    default: int = round(DEFAULT_PERCENT * 100)
    per_service: dict[str, int] = field(default_factory=dict)

    def set_proxy_defaults(self, entries: Iterable[Mapping[str, Any]]) -> None:
        found = None
        for entry in entries:
            if entry.get("Name") == "global":
                found = _basis((entry.get("Config") or {}).get(PROXY_DEFAULTS_KEY))
        self.default = round(DEFAULT_PERCENT * 100) if found is None else found

    def set_service_defaults(self, entries: Iterable[Mapping[str, Any]]) -> None:
        out: dict[str, int] = {}
        for entry in entries:
            basis = _basis(entry.get(SERVICE_DEFAULTS_FIELD))
            if basis is not None:
                out[str(entry.get("Name") or "")] = basis
        self.per_service = out

    def basis(self, service: str) -> int:
        return self.per_service.get(service, self.default)


class Hop:
    """One request's trace context and what the handler learns while serving it.

    A sampled hop holds its ``Span`` from the start. An unsampled one (99 %
    of requests at the default 1 %) holds only the ids its headers carry:
    its span is never recorded, so none is built per request (``span``
    makes one on demand, without times, for callers that want to look).
    """

    __slots__ = (
        "_span",
        "attempts",
        "flags",
        "from_upstream",
        "headers",
        "kind",
        "method",
        "parent_span_id",
        "path",
        "peer",
        "request_id",
        "sampled",
        "service",
        "span_id",
        "trace_id",
        "traced_inbound",
        "tracestate",
        "upstream",
    )

    def __init__(
        self,
        headers: list[tuple[bytes, bytes]],
        kind: SpanKind,
        service: str,
        peer: str,
        trace_id: str,
        span_id: str,
        parent_span_id: str | None,
        tracestate: tuple[tuple[str, str], ...],
        request_id: str,
    ) -> None:
        self.headers = headers
        self.kind = kind
        self.service = service
        self.peer = peer
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.tracestate = tracestate
        self.request_id = request_id
        self.sampled = False
        self.method = self.path = b""  # as received; decoded only for a span
        self._span: Span | None = None
        self.upstream = ""
        self.attempts = 0
        self.from_upstream = False
        self.flags = ""
        self.traced_inbound = False  # a SERVER hop whose request carried a trace

    @property
    def span(self) -> Span:
        """The hop's span (an unsampled hop's is made here, not recorded)."""
        if self._span is None:
            method, path = self.method.decode("ascii", "replace"), self.path.decode("latin-1")
            self._span = _span(self, method, path, 0, False, False)
        return self._span


def _span(hop: Hop, method: str, path: str, start_ns: int, sampled: bool, debug: bool) -> Span:
    """The span ``Tracer.start_*`` makes for ``hop`` (same fields, same ids)."""
    attrs = http_attributes(method, path, "")
    attrs[PEER_SERVICE] = hop.peer
    attrs[REQUEST_ID] = hop.request_id
    return Span(
        trace_id=hop.trace_id,
        span_id=hop.span_id,
        parent_span_id=hop.parent_span_id,
        name=f"{method} {path.split('?', 1)[0]}",
        kind=hop.kind,
        service=hop.service,
        start_ns=start_ns,
        attributes=attrs,
        sampled=sampled,
        debug=debug,
        tracestate=hop.tracestate,
    )


def _as_bytes(headers: Any) -> list[tuple[bytes, bytes]]:
    def b(x: str | bytes) -> bytes:
        return x.encode("latin-1") if isinstance(x, str) else x

    return [(b(n), b(v)) for n, v in headers]


def _scan(headers: Any) -> tuple[list[tuple[bytes, bytes]], dict[bytes, Any]]:
    """The request's headers to keep (as bytes, trace headers dropped) and
    each read header's first (name, value) by lowercase name ({} when the
    request carries none: a new trace starts)."""
    kept: list[tuple[bytes, bytes]] = []
    first: dict[bytes, Any] = {}
    for pair in headers:
        name, value = pair
        if name.__class__ is not bytes or value.__class__ is not bytes:
            return _scan(_as_bytes(headers))  # str pairs (tests, other callers)
        low = name if name.islower() else name.lower()  # (no copy: most are lowercase)
        if low in _READ:
            if low not in first:
                first[low] = pair
            if low in _REPLACED:
                continue
        kept.append(pair)
    if first:
        first[_ALL] = headers
    return kept, first


def _values(first: dict[bytes, Any], name: bytes) -> list[str]:
    """Every value of header ``name`` in order, decoded and stripped."""
    return [v.decode("latin-1").strip() for n, v in first[_ALL] if n.lower() == name]


_W3C = tuple[str, str, bool, tuple[tuple[str, str], ...], str | None]


def _read_w3c(first: dict[bytes, Any]) -> _W3C | None:
    """A request's valid version-00 ``traceparent`` in its exact 55-byte form
    (and no force header): its trace id, span id, sampled flag, tracestate
    and request id (None: none came), what ``ProxyTracing._continued`` reads."""
    parent = first.get(b"traceparent")
    if parent is None or _FORCE in first or _ENVOY_FORCE in first:
        return None
    v = parent[1]
    if len(v) != 55 or v[:3] != b"00-" or v[35] != 45 or v[52] != 45:  # 45: "-"
        return None
    if v.translate(None, _HEX) != b"---":
        return None  # (the rest all lowercase hex: only the dashes left)
    trace_id, span_id = v[3:35].decode("ascii"), v[36:52].decode("ascii")
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    state = (
        (parse_tracestate(_values(first, b"tracestate")) or ()) if b"tracestate" in first else ()
    )
    rid = first.get(b"x-request-id")
    request_id = (rid[1].decode("latin-1").strip() if rid else "") or None
    return trace_id, span_id, v[54] in _ODD_HEX, state, request_id  # (flags' sampled bit)


def _incoming(first: dict[bytes, Any]) -> Incoming:
    """``extract_collected(..., formats=False)`` of the request's headers
    (those ``_read_w3c`` leaves: none, B3, a forced or unusual traceparent)."""
    if not first:
        return _NOTHING
    seen = {_READ[n]: _values(first, n) for n in _READ if n in first}
    return extract_collected(seen, formats=False)


def _fresh(rng: random.Random, basis: int) -> tuple[str, str, bool, str] | None:
    """A new trace's trace id, span id, sampling decision (at ``basis``
    hundredths of a percent) and request id: what ``new_trace_id``,
    ``new_span_id``, ``Sampler.decide`` and ``new_request_id`` draw from
    ``rng`` in that order, from one getrandbits and one hex (the numbers and
    the float arithmetic of ``random()`` exactly). None for a zero trace or
    span id (2**-64 odds: the caller draws them one by one, redrawing)."""
    n = rng.getrandbits(384)
    h = ((n & _UUID_CLEAR) | _UUID_V4).to_bytes(48, "big").hex()  # request id first
    trace_id, span_id = h[64:], h[48:64]
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    rid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
    a, b = _BELOW.get(basis) or _below(basis)
    first = (n >> 197) & 0x7FFFFFF  # random()'s first 27 bits
    sampled = first < a if first != a else (n >> 230) & 0x3FFFFFF < b
    return trace_id, span_id, sampled, rid


_BELOW: dict[int, tuple[int, int]] = {}  # basis -> _below(basis)


def _below(basis: int) -> tuple[int, int]:
    """The least 53-bit draw ``k`` of ``random()`` (``a * 2**26 + b``: ``a``
    its first word's top 27 bits, ``b`` its second's top 26) that
    ``Sampler.decide`` does NOT sample at ``basis``, as ``(a, b)``: a draw
    samples iff its ``(a, b)`` is below, the float arithmetic of
    ``random() * RESOLUTION < basis`` (monotone in ``k``) done once per basis."""
    lo, hi = 0, 1 << 53  # every k < lo samples; hi does not (or is 2**53)
    while lo < hi:
        mid = (lo + hi) // 2
        if ((mid >> 26) * 67108864.0 + (mid & 0x3FFFFFF)) * _TWO53 * RESOLUTION < basis:
            lo = mid + 1
        else:
            hi = mid
    _BELOW[basis] = lo >> 26, lo & 0x3FFFFFF
    return _BELOW[basis]


class AgentSpanSink:
    """Bounded queue of finished spans, posted to the local agent in batches."""

    def __init__(self, client: AgentClient, dropped: Callable[[int], None]) -> None:
        self.client = client
        self.batcher = SpanBatcher(max_queue=4096, max_batch=256)
        self._dropped = dropped
        self._wake = trio.Event()
        self.sent = 0
        # (service, upstream) -> outbound calls that started a new trace while
        # the service was serving a traced request (all traffic, sampled or not).
        self.breaks: dict[tuple[str, str], int] = {}

    def record(self, span: Span) -> None:
        """Queue ``span`` (never blocks; a full queue drops and counts it)."""
        if not span.sampled:
            return
        if not self.batcher.offer(span):
            self._dropped(1)
        elif self.batcher.batch_ready():
            self._wake.set()

    async def run(self) -> None:
        """Post batches until cancelled."""
        while True:
            with trio.move_on_after(SINK_INTERVAL):
                await self._wake.wait()
            self._wake = trio.Event()
            while len(self.batcher) or self.breaks:
                await self._post(self.batcher.take())

    def _take_breaks(self) -> list[dict[str, Any]]:
        breaks, self.breaks = self.breaks, {}
        return [{"Service": s, "Upstream": u, "Count": n} for (s, u), n in breaks.items()]

    async def _post(self, batch: list[Span]) -> None:
        body: dict[str, Any] = {"Spans": [span_to_json(s) for s in batch]}
        if self.breaks:
            body["Breaks"] = self._take_breaks()  # lost with the batch if the agent refuses
        for attempt in range(SINK_ATTEMPTS):
            try:
                await self.client.request("PUT", SPANS_PATH, body=body, timeout=5.0)
                self.sent += len(batch)
                return
            except AgentError as exc:
                if attempt == SINK_ATTEMPTS - 1:
                    emit(30, "trace_spans_dropped", count=len(batch), reason=str(exc))
                    break
                await trio.sleep(0.2 * 2**attempt)
        self._dropped(len(batch))


class ProxyTracing:
    """The proxy's tracer, sampling settings and span sink (one per proxy process)."""

    def __init__(
        self,
        client: AgentClient | None,
        registry: CollectorRegistry | None = None,
        *,
        rng: random.Random | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.rng = rng or random.Random()
        self.clock_ns = clock_ns
        self.settings = SamplingSettings()
        self.dropped = Counter(
            "meshd_proxy_trace_spans_dropped",
            "Finished spans dropped before reaching the agent (queue full or agent refusing).",
            registry=registry,
        )
        self.sink = AgentSpanSink(client, self.dropped.inc) if client is not None else None
        self.finished: list[Span] = []  # kept only without a sink (tests)
        self._tracers: dict[str, tuple[int, Tracer]] = {}
        # Traced inbound requests being served, per local service: an outbound
        # call of that service starting a new trace meanwhile did not forward
        # the headers (the propagation lint, counted on all traffic).
        self.inflight: dict[str, int] = {}
        self.breaks: dict[tuple[str, str], int] = {}

    async def run(self, hub: WatchHub) -> None:
        """Follow the sampling settings and post spans until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow, hub, proxy_defaults_resource(), True)
            nursery.start_soon(self._follow, hub, service_defaults_resource(), False)
            if self.sink is not None:
                nursery.start_soon(self.sink.run)

    async def _follow(self, hub: WatchHub, res: Resource, proxy_defaults: bool) -> None:
        cell = hub.acquire(res, lambda body: body if isinstance(body, list) else [])
        try:
            version = 0
            while True:
                entries, version = await cell.wait_newer(version)
                if proxy_defaults:
                    self.settings.set_proxy_defaults(_entries(entries))
                else:
                    self.settings.set_service_defaults(_entries(entries))
        finally:
            hub.release(res)

    def _tracer(self, service: str) -> Tracer:
        basis = self.settings.basis(service)
        cached = self._tracers.get(service)
        if cached is None or cached[0] != basis:
            tracer = Tracer(self.rng, self.clock_ns, Sampler(self.rng, basis))
            cached = self._tracers[service] = (basis, tracer)
        return cached[1]

    def _hop(
        self, server: bool, service: str, peer: str, method: bytes, target: bytes, headers: Any
    ) -> Hop:
        kept, seen = _scan(headers)
        if not seen:  # no trace header (a new trace): most client hops
            fresh = _fresh(self.rng, self.settings.basis(service))
            if fresh is not None:
                return self._new_trace(server, service, peer, method, target, kept, fresh)
        else:  # the common traced request: a plain W3C traceparent
            w3c = _read_w3c(seen)
            if w3c is not None:
                return self._continued(server, service, peer, method, target, kept, w3c)
        tracer = self._tracer(service)
        incoming: Any = _incoming(seen) if seen else _NOTHING
        # The ids, the sampling decision and the request id are drawn from
        # the rng in the order Tracer.start_* draws them; only a sampled
        # hop builds its span (name, attributes, start time).
        ctx, rng = incoming.context, tracer.rng
        hop = Hop(
            kept,
            SpanKind.SERVER if server else SpanKind.CLIENT,
            service,
            peer,
            ctx.trace_id if ctx else new_trace_id(rng),
            new_span_id(rng),
            ctx.span_id if ctx else None,
            ctx.tracestate if ctx else (),
            "",
        )
        sampled = tracer.sampler.decide(incoming)
        hop.request_id = incoming.request_id or new_request_id(rng)
        if sampled:
            hop.sampled = True
            m, path = method.decode("ascii", "replace"), target.decode("latin-1")
            hop._span = _span(hop, m, path, tracer.clock_ns(), True, incoming.force)
        else:
            hop.method, hop.path = method, target
        kept += inject_all_bytes(
            hop.trace_id, hop.span_id, sampled, incoming.force, hop.parent_span_id, hop.tracestate
        )
        if incoming.request_id is None:
            kept.append((b"x-request-id", hop.request_id.encode("latin-1")))
        if server and ctx is not None:
            hop.traced_inbound = True
            self.inflight[service] = self.inflight.get(service, 0) + 1
        elif not server and ctx is None and self.inflight.get(service):
            self._broken(service, peer)
        return hop

    def _new_trace(
        self,
        server: bool,
        service: str,
        peer: str,
        method: bytes,
        target: bytes,
        kept: list[tuple[bytes, bytes]],
        fresh: tuple[str, str, bool, str],
    ) -> Hop:
        """``_hop`` for a request without any header it reads: the ids and
        the decision drawn at once, the headers ``inject_all_bytes`` writes
        (no parent, no tracestate, no debug) formatted as text once."""
        trace_id, span_id, sampled, request_id = fresh
        kind = SpanKind.SERVER if server else SpanKind.CLIENT
        hop = Hop(kept, kind, service, peer, trace_id, span_id, None, (), request_id)
        flag = "1" if sampled else "0"
        b3 = f"{trace_id}-{span_id}-{flag}".encode()  # its parts are the b3 headers
        kept += (
            (b"traceparent", f"00-{trace_id}-{span_id}-0{flag}".encode()),
            (b"b3", b3),
            (b"x-b3-traceid", b3[:32]),
            (b"x-b3-spanid", b3[33:49]),
            _B3_SAMPLED[sampled],
            (b"x-request-id", request_id.encode()),
        )
        self._span_or_names(hop, sampled, method, target)
        if not server and self.inflight.get(service):
            self._broken(service, peer)
        return hop

    def _continued(
        self,
        server: bool,
        service: str,
        peer: str,
        method: bytes,
        target: bytes,
        kept: list[tuple[bytes, bytes]],
        w3c: _W3C,
    ) -> Hop:
        """``_hop`` for a request with a plain W3C traceparent (and no force
        header): its sampled flag decides, no SpanContext, Incoming or
        tracer; the headers ``inject_all_bytes`` writes, formatted as text."""
        trace_id, parent, sampled, state, incoming_rid = w3c
        span_id = self.rng.getrandbits(64).to_bytes(8, "big").hex()  # new_span_id inline:
        if span_id == _ZERO_SPAN:
            span_id = new_span_id(self.rng)  # its redraw of a zero id
        request_id = incoming_rid or new_request_id(self.rng)
        kind = SpanKind.SERVER if server else SpanKind.CLIENT
        hop = Hop(kept, kind, service, peer, trace_id, span_id, parent, state, request_id)
        flag = "1" if sampled else "0"
        b3 = f"{trace_id}-{span_id}-{flag}-{parent}".encode()  # its parts: the b3 headers
        kept.append((b"traceparent", f"00-{trace_id}-{span_id}-0{flag}".encode()))
        if state:
            kept.append((b"tracestate", format_tracestate(state).encode("latin-1")))
        kept += (
            (b"b3", b3),
            (b"x-b3-traceid", b3[:32]),
            (b"x-b3-spanid", b3[33:49]),
            (b"x-b3-parentspanid", b3[52:]),
            _B3_SAMPLED[sampled],
        )
        if incoming_rid is None:
            kept.append((b"x-request-id", request_id.encode("latin-1")))
        self._span_or_names(hop, sampled, method, target)
        if server:
            hop.traced_inbound = True
            self.inflight[service] = self.inflight.get(service, 0) + 1
        return hop

    def _span_or_names(self, hop: Hop, sampled: bool, method: bytes, target: bytes) -> None:
        """A sampled hop's span (no force header); an unsampled one keeps
        the method and target as bytes (decoded only if looked at)."""
        if sampled:
            hop.sampled = True
            m, path = method.decode("ascii", "replace"), target.decode("latin-1")
            hop._span = _span(hop, m, path, self.clock_ns(), True, False)
        else:
            hop.method, hop.path = method, target

    def _broken(self, service: str, upstream: str) -> None:
        key = (service, upstream)
        if self.sink is not None:
            self.sink.breaks[key] = self.sink.breaks.get(key, 0) + 1
        self.breaks[key] = self.breaks.get(key, 0) + 1

    def client_hop(
        self, source: str, destination: str, method: bytes, target: bytes, headers: Any
    ) -> Hop:
        """The CLIENT span of ``source`` calling ``destination`` (outbound listener)."""
        return self._hop(False, source, destination, method, target, headers)

    def server_hop(
        self, destination: str, source: str, method: bytes, target: bytes, headers: Any
    ) -> Hop:
        """The SERVER span of ``destination`` answering ``source`` (inbound listener)."""
        return self._hop(True, destination, source, method, target, headers)

    def release(self, hop: Hop) -> None:
        """The request of a SERVER ``hop`` is over (``finish`` calls it; call it
        from a ``finally`` too, so a cancelled request is not left in flight)."""
        if not hop.traced_inbound:
            return
        hop.traced_inbound = False
        left = self.inflight.get(hop.service, 0) - 1
        if left > 0:
            self.inflight[hop.service] = left
        else:
            self.inflight.pop(hop.service, None)

    def finish(self, hop: Hop, status: int, headers: Iterable[tuple[str, str]] = ()) -> Span | None:
        """End ``hop``'s span with the answer and hand it to the sink; None
        for an unsampled hop (nothing to record)."""
        if hop.traced_inbound:
            self.release(hop)
        span = hop._span
        if not hop.sampled or span is None:
            return None
        flags = hop.flags
        if not flags and not hop.from_upstream:
            flags = local_reply_flags(status, headers)
        tracer = self._tracer(hop.service)
        retries = max(0, hop.attempts - 1)
        span = tracer.end(
            span, status_code=status, flags=flags, upstream=hop.upstream, retries=retries
        )
        if self.sink is not None:
            self.sink.record(span)
        else:
            self.finished.append(span)
        return span


def local_reply_flags(status: int, headers: Iterable[tuple[str, str]]) -> str:
    """Envoy's response flag for a reply the proxy made itself (not the upstream's)."""
    names = {n.lower() for n, _ in headers}
    if status == 503 and "x-envoy-overloaded" in names:
        return "UO"
    if status == 504:
        return "UT"
    if status == 503:
        return "UH"
    return ""
