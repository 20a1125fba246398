"""Propagation lint: which services start new traces while serving a traced request (pure).

A proxy cannot join an application's inbound and outbound requests: the
application must copy the trace headers across. When it does not, each of
its outbound calls starts a new trace (a CLIENT span without parent) while
it is handling an inbound request that carried a trace, and traces break
into fragments. One agent sees both sides of its local services, so it can
tell: a root CLIENT span of service S that starts inside the time window of
an inbound request to S of another trace, the window being S's SERVER span
or, where only the caller's side is known, a CLIENT span whose
``peer.service`` is S (spans from the same agent's proxies).

Spans arrive when they end, so an outbound call (inside the window) comes
before the window's own span: both kinds are kept in bounded per-service
rings and each new one is checked against the other kind.

The proxy, which serves both sides of its host's services, also counts such
calls on all traffic, sampled or not, and reports them (``report``): a
SERVER hop whose request carried a trace is in flight while a CLIENT hop of
the same service starts a new one.

False positives are possible when an application starts its own
background calls while it serves other traced requests; the count and
example trace ids let a user judge.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .spans import Span, SpanKind

PEER_SERVICE = "peer.service"
RING = 128  # per service and kind
MAX_SERVICES = 1024


@dataclass(slots=True)
class Finding:
    """One service seen dropping trace headers."""

    service: str
    upstreams: set[str] = field(default_factory=set)
    count: int = 0
    first_seen_ns: int = 0
    last_seen_ns: int = 0
    inbound_trace: str = ""
    new_trace: str = ""
    reported: int = 0  # counted by the proxy on all traffic (``report``)

    def to_json(self) -> dict[str, object]:
        """Consul-style CamelCase answer (``BrokenCalls``: at least this many)."""
        return {
            "Service": self.service,
            "Upstreams": sorted(self.upstreams),
            "BrokenCalls": max(self.count, self.reported),
            "FirstSeenNs": self.first_seen_ns,
            "LastSeenNs": self.last_seen_ns,
            "ExampleInboundTrace": self.inbound_trace,
            "ExampleNewTrace": self.new_trace,
        }


@dataclass(frozen=True, slots=True)
class _Window:
    trace_id: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class _Root:
    trace_id: str
    start_ns: int
    upstream: str


class _Rings:
    def __init__(self) -> None:
        self.windows: deque[_Window] = deque(maxlen=RING)
        self.roots: deque[_Root] = deque(maxlen=RING)
        self.matched: set[str] = set()  # root trace ids already counted


class PropagationLint:
    """Feed every span with ``observe``; ``findings()`` lists the offenders.

    ``on_new`` is called once per service the first time it is found (the
    agent logs a line there).
    """

    def __init__(self, on_new: Callable[[Finding], None] | None = None) -> None:
        self._rings: OrderedDict[str, _Rings] = OrderedDict()
        self._findings: dict[str, Finding] = {}
        self._announced: set[str] = set()
        self._on_new = on_new

    def _ring(self, service: str) -> _Rings:
        ring = self._rings.get(service)
        if ring is None:
            ring = self._rings[service] = _Rings()
            if len(self._rings) > MAX_SERVICES:
                self._rings.popitem(last=False)
        return ring

    def observe(self, span: Span) -> None:
        """Take one finished span into account."""
        if span.kind is SpanKind.SERVER and span.parent_span_id is not None:
            self._window(span.service, _Window(span.trace_id, span.start_ns, span.end_ns))
        elif span.kind is SpanKind.CLIENT:
            peer = str(span.attributes.get(PEER_SERVICE, ""))
            if peer:
                self._window(peer, _Window(span.trace_id, span.start_ns, span.end_ns))
            if span.parent_span_id is None:
                self._root(span.service, _Root(span.trace_id, span.start_ns, peer))

    def _window(self, service: str, window: _Window) -> None:
        ring = self._ring(service)
        ring.windows.append(window)
        for root in ring.roots:
            self._check(service, ring, window, root)

    def _root(self, service: str, root: _Root) -> None:
        ring = self._ring(service)
        ring.roots.append(root)
        for window in ring.windows:
            self._check(service, ring, window, root)

    def _check(self, service: str, ring: _Rings, window: _Window, root: _Root) -> None:
        if root.trace_id == window.trace_id or root.trace_id in ring.matched:
            return
        if not window.start_ns <= root.start_ns <= (window.end_ns or window.start_ns):
            return
        ring.matched.add(root.trace_id)
        if len(ring.matched) > 4 * RING:
            ring.matched.clear()
        found = self._finding(service, root.start_ns)
        found.count += 1
        found.last_seen_ns = max(found.last_seen_ns, root.start_ns)
        found.inbound_trace, found.new_trace = window.trace_id, root.trace_id
        if root.upstream:
            found.upstreams.add(root.upstream)
        self._announce(found)

    def _finding(self, service: str, now_ns: int) -> Finding:
        found = self._findings.get(service)
        if found is None:
            found = self._findings[service] = Finding(service, first_seen_ns=now_ns)
        return found

    def _announce(self, found: Finding) -> None:
        if found.service not in self._announced:
            self._announced.add(found.service)
            if self._on_new is not None:
                self._on_new(found)

    def report(self, service: str, upstream: str, count: int, now_ns: int) -> None:
        """A proxy counted ``count`` calls of ``service`` to ``upstream`` that started
        a new trace while ``service`` served a traced request (it sees every
        request, not only sampled ones)."""
        if count <= 0:
            return
        found = self._finding(service, now_ns)
        found.reported += count
        found.last_seen_ns = max(found.last_seen_ns, now_ns)
        if upstream:
            found.upstreams.add(upstream)
        self._announce(found)

    def findings(self) -> list[Finding]:
        """Offending services, most broken calls first."""
        return sorted(self._findings.values(), key=lambda f: (-max(f.count, f.reported), f.service))
