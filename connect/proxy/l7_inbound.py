"""The L7 inbound path: L7 intentions enforced on the destination side.

While a local service's protocol is ``http`` (its discovery chain, from
service-defaults or proxy-defaults, followed as the outbound side follows
an upstream's), ``InboundHandler`` hands it the connections it accepts:

- a caller whose winning intention has ``Permissions`` is served here
  without the L4 check (the agent's authorize answers "deny" for an L7
  intention: it cannot judge a request, Consul's ``ConnectAuthorize``);
  one whose winning source is an L4 one of a service-intentions entry
  (which the agent's authorize does not read) is allowed or refused by it;
- any other caller is decided by the L4 gate first, exactly as for a tcp
  service (a deny closes the connection);
- every allowed connection is served here, so a later intention change
  applies to its next request.

Per connection: llhttp (http1.py) parses requests (keep-alive); a first request asking
for ``Upgrade`` or ``CONNECT`` is judged, then spliced to the local app as
L4. Per request (``handle``): ``connect.l7.rbac.evaluate`` decides on the
normalised path with the current intentions. A denied request gets
Envoy's ``403 RBAC: access denied``, one ``event=rbac_denied`` log line
and ``meshd_proxy_rbac_denials_total{source,destination,intention}``; an
allowed one goes to the local app over a pooled keep-alive connection,
with the normalised path (what was judged is what the app sees). Every
request is counted and access-logged as the destination reporter
(l7_metrics.py; response flag ``RBAC`` for a denial).

The rules are the destination's and ``*``'s service-intentions entries
(``/v1/config/service-intentions``, blocking query) plus the intentions
the gate follows (``/v1/connect/intentions/match``), in Consul's
precedence order. A change applies to the next request; no connection is
closed for it. The default behaviour is the agent's
``connect.default_intention_policy`` (``/v1/agent/self``), deny until known.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

import trio

from connect.intentions import Decision, Intention
from connect.l7.decode import ValidationError
from connect.l7.entries import parse_entry
from connect.l7.entries_intentions import (
    SERVICE_INTENTIONS,
    IntentionHTTPPermission,
    IntentionPermission,
    ServiceIntentionsEntry,
    SourceIntention,
    _parse_permission,
)
from connect.l7.match import normalize_path
from connect.l7.rbac import (
    RbacDecision,
    evaluate,
    intention_label,
    order_sources,
    source_matches,
)
from connect.l7.request import Headers, Request
from connect.l7.retry import TIMEOUT_BODY

from .agent_client import AgentClient
from .authz import intentions_from_match
from .errors import AgentError, AgentResponseError
from .http1 import ParsedRequest, ProtocolError, RequestReader, end_to_end_raw, send_bytes
from .http_pool import (
    Expired,
    Pool,
    UpstreamReset,
    UpstreamResponse,
    recv_some,
    serialize,
    serve_requests,
)
from .identity import PeerID
from .l7_metrics import Exchange, Flag, Reporter
from .l7_outbound import CHAIN_WAIT, HTTP_PROTOCOLS, _chain_from_body, chain_resource
from .l7_tracing import ProxyTracing
from .logfmt import emit
from .metrics import ProxyMetrics
from .pump import Splice
from .sockets import Listener, close, dial
from .verdict import send as send_verdict
from .verdict import speaks_verdict
from .watchers import Backoff, Resource, WatchHub, intentions_resource

T = TypeVar("T")
RBAC_DENIED_BODY = "RBAC: access denied"
CONNECT_FAILURE_BODY = (
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
)
RESET_BODY = "upstream connect error or disconnect/reset before headers. reset reason: "
LOCAL_REQUEST_TIMEOUT = 15.0  # Envoy's default route timeout
HEAD_LIMIT = 65536
HEAD_TIMEOUT = 10.0
_BY_SOURCE_MAX = 4096  # sources whose decision is kept (one per calling service)
# A permission no request escapes: what an intention whose Permissions the
# proxy cannot read gets (fail closed).
_DENY_ALL = IntentionPermission("deny", IntentionHTTPPermission(path_prefix="/"))


def intentions_entries_resource() -> Resource:
    return Resource("config", SERVICE_INTENTIONS, f"/v1/config/{SERVICE_INTENTIONS}")


def source_from_intention(ixn: Intention) -> SourceIntention:
    """An intention of ``/v1/connect/intentions`` as a source intention
    (its ID kept as ``LegacyID``, as Consul does for legacy intentions).
    Permissions that do not decode deny every request (fail closed)."""
    perms: tuple[IntentionPermission, ...] = ()
    try:
        perms = tuple(
            _parse_permission(raw, f"Permissions[{i}]") for i, raw in enumerate(ixn.permissions)
        )
    except ValidationError as exc:
        emit(40, "intention_unreadable", intention=ixn.id, reason=exc.message)
        perms = (_DENY_ALL,)
    return SourceIntention(
        name=ixn.source_name,
        namespace="" if ixn.source_ns == "default" else ixn.source_ns,
        action=ixn.action,
        permissions=perms,
        precedence=ixn.precedence,
        extra={"LegacyID": ixn.id},
    )


def _rule_key(src: SourceIntention) -> tuple[str, str, int]:
    return (src.name, src.namespace or "default", src.precedence)


def sources_from_entries(body: Any, destination: str) -> list[SourceIntention]:
    """The sources of ``destination``'s and ``*``'s entries in a
    ``/v1/config/service-intentions`` answer.

    An entry the proxy cannot read (the API validated it, so only a newer
    shape gets here) is logged and becomes one source above every other
    that denies every request: leaving it out could let a lower rule or
    the default allow what it denies (fail closed)."""
    out: list[SourceIntention] = []
    for raw in body if isinstance(body, list) else ():
        if not isinstance(raw, Mapping) or raw.get("Name") not in (destination, "*"):
            continue
        try:
            entry = parse_entry({k: v for k, v in raw.items() if k not in _READ_ONLY}, stored=True)
        except ValidationError as exc:
            name = str(raw.get("Name"))
            emit(40, "intentions_entry_unreadable", name=name, reason=exc.message)
            out.append(
                SourceIntention(
                    name="*",
                    namespace="*",
                    partition="*",
                    permissions=(_DENY_ALL,),
                    precedence=10,
                    extra={"LegacyID": f"unreadable service-intentions {name}"},
                )
            )
            continue
        if isinstance(entry, ServiceIntentionsEntry):
            out.extend(entry.sources)
    return out


_READ_ONLY = ("CreateIndex", "ModifyIndex", "CreateTime", "UpdateTime", "Hash")


def _default_policy(body: Any) -> bool:
    debug = body.get("DebugConfig") if isinstance(body, Mapping) else None
    connect = debug.get("Connect") if isinstance(debug, Mapping) else None
    policy = connect.get("DefaultIntentionPolicy") if isinstance(connect, Mapping) else None
    return policy == "allow"


def _local(status: int, body: str) -> UpstreamResponse:
    return UpstreamResponse(status, [("content-type", "text/plain")], body.encode())


def _local_flags(resp: UpstreamResponse) -> str:
    """Envoy's response flag of a reply this proxy made itself ("" for the app's)."""
    if resp.status not in _LOCAL_STATUSES:  # most answers: no body to look at
        return ""
    body = resp.body.decode("latin-1")
    if resp.status == 403 and body == RBAC_DENIED_BODY:
        return "RBAC"
    if resp.status == 503 and body == CONNECT_FAILURE_BODY:
        return "UF"
    if resp.status == 503 and body.startswith(RESET_BODY):
        return "UR"
    if resp.status == 504 and body == TIMEOUT_BODY:
        return "UT"
    return ""


_LOCAL_STATUSES = frozenset({403, 503, 504})


def _head_wants_l4(data: bytes) -> bool:
    head = data.partition(b"\r\n\r\n")[0]
    return data.startswith(b"CONNECT ") or b"\nupgrade:" in head.lower()


class _Parsed:
    """What the inbound path reads of every request; the ``Request`` (its
    headers decoded) is made only when something needs it: a rule that
    looks at the request, a denial's log line."""

    __slots__ = ("_request", "method", "path", "query", "raw", "source")

    def __init__(
        self, method: str, target: str, raw: list[tuple[bytes, bytes]], source: str
    ) -> None:
        self.method = method
        self.path, _, self.query = target.partition("?")
        self.raw = raw
        self.source = source
        self._request: Request | None = None

    @classmethod
    def of(cls, request: Request) -> _Parsed:
        """``request`` as built by a caller: its headers (as they are now,
        changes included) forwarded encoded."""
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in request.headers]
        parsed = cls(request.method, request.path, raw, request.source_service)
        parsed.query = request.query
        parsed._request = request
        return parsed

    def request(self) -> Request:
        if self._request is None:
            self._request = Request(
                self.method, self.path, self.query, Headers.from_raw(self.raw), self.source
            )
        return self._request


class L7Inbound:
    """One local service's L7 inbound state and the driver of its requests."""

    def __init__(
        self, service: str, metrics: ProxyMetrics, reporter: Reporter | None = None
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.reporter = reporter or Reporter(metrics.standard, "destination", service)
        self.chain: Mapping[str, Any] | None = None
        self.known = trio.Event()
        self.entry_sources: list[SourceIntention] = []
        self.table_sources: list[SourceIntention] = []
        self.rules: tuple[SourceIntention, ...] = ()
        self._default_allow = False
        # The decision for a source whose winning rule cannot look at the
        # request (an L4 rule, or none: the default), by source service;
        # None: an L7 rule, each request is judged. Emptied when the rules
        # or the default change.
        self._by_source: dict[str, RbacDecision | None] = {}
        self._local: tuple[object, str] | None = None  # (spec, "host:port")
        self.pool = Pool(self._dial_local)
        self._listener: Listener | None = None
        self.tracing: ProxyTracing | None = None

    @property
    def protocol(self) -> str:
        return str((self.chain or {}).get("Protocol") or "tcp")

    @property
    def is_http(self) -> bool:
        return self.chain is not None and self.protocol in HTTP_PROTOCOLS

    async def wait_known(self) -> bool:
        """Whether the service is http, waiting up to CHAIN_WAIT for a first answer."""
        if not self.known.is_set():
            with trio.move_on_after(CHAIN_WAIT):
                await self.known.wait()
        return self.is_http

    def set_chain(self, chain: Mapping[str, Any]) -> None:
        self.chain = chain
        self.known.set()

    def set_entry_sources(self, sources: Iterable[SourceIntention]) -> None:
        self.entry_sources = list(sources)
        self._rebuild()

    def set_table(self, intentions: Iterable[Intention]) -> None:
        self.table_sources = [source_from_intention(i) for i in intentions]
        self._rebuild()

    @property
    def default_allow(self) -> bool:
        """The agent's ``connect.default_intention_policy`` is ``allow``."""
        return self._default_allow

    @default_allow.setter
    def default_allow(self, allow: bool) -> None:
        self._default_allow = allow
        self._by_source = {}

    def _rebuild(self) -> None:
        # The intentions API and the entries are one store (an agent of
        # meshd >= the unified store lists every entry source there too):
        # a table intention already read from an entry is not a second rule
        # (same source and precedence: the same destination, this one or *).
        seen = {_rule_key(s) for s in self.entry_sources}
        table = [s for s in self.table_sources if _rule_key(s) not in seen]
        # One tuple swapped at once: a request sees the old rules or the new.
        self.rules = tuple(order_sources([*self.entry_sources, *table]))
        self._by_source = {}

    def connection_decision(self, source: PeerID) -> Decision | None:
        """How a connection from ``source`` is decided before any request.

        ``None`` when the L4 gate decides, as for a tcp service: no rule
        names the caller (the agent knows the default) or the rule is an
        L4 one of ``/v1/connect/intentions``. Otherwise the rule is an L7
        one (allowed: each request is judged) or an L4 one of a
        service-intentions entry, which the agent does not read.
        """
        for src in self.rules:
            if not source_matches(src, source.service, source.namespace):
                continue
            label = intention_label(src, self.service)
            if src.permissions:
                return Decision(True, f"L7 intention {label}: each request is judged", label)
            if "LegacyID" in src.extra:
                return None
            allowed = src.action == "allow"
            return Decision(allowed, f"Matched L4 intention {label} (Action: {src.action})", label)
        return None

    def decide(self, request: Request, namespace: str = "default") -> RbacDecision:
        """The RBAC decision for ``request`` under the current rules."""
        return evaluate(
            self.rules,
            request,
            destination=self.service,
            source=request.source_service,
            default_allow=self.default_allow,
            source_namespace=namespace,
        )

    def _judge(self, parsed: _Parsed) -> RbacDecision:
        """``decide`` for a request whose path normalises (checked by the
        caller), from the per-source cache when its winning rule is not an
        L7 one: such a decision cannot change until the rules or the
        default do (which empty the cache)."""
        try:
            known = self._by_source[parsed.source]
        except KeyError:
            known = self._by_source_decision(parsed)
        return self.decide(parsed.request()) if known is None else known

    def _by_source_decision(self, parsed: _Parsed) -> RbacDecision | None:
        source = parsed.source
        winner = next((s for s in self.rules if source_matches(s, source, "default")), None)
        decision = None
        if winner is None or not winner.permissions:
            decision = self.decide(parsed.request())
        if len(self._by_source) >= _BY_SOURCE_MAX:
            self._by_source = {}
        self._by_source[source] = decision
        return decision

    async def _dial_local(self, address: str) -> ssl.SSLSocket:
        host, _, port = address.rpartition(":")
        assert self._listener is not None
        with trio.fail_after(self._listener.spec.limits.connect_timeout):
            sock = await dial(host, int(port))
        # The pool's sockets are TLS ones towards other proxies; a plain one
        # has the same recv/send/fileno, which is all the pool uses.
        return cast(ssl.SSLSocket, sock)

    def _local_address(self) -> str:
        assert self._listener is not None
        spec = self._listener.spec  # replaced (not changed) by an update
        local = self._local
        if local is None or local[0] is not spec:
            local = self._local = (spec, f"{spec.local_address}:{spec.local_port}")
        return local[1]

    async def serve(self, listener: Listener, tls: ssl.SSLSocket, source: PeerID) -> None:
        """Serve one accepted, authenticated connection until it ends."""
        self._listener = listener
        dest = self.service
        if speaks_verdict(tls):
            try:
                with trio.fail_after(HEAD_TIMEOUT):
                    await send_verdict(tls, True)
            except (OSError, ssl.SSLError, trio.TooSlowError):
                self.metrics.connection("inbound", source.service, dest, "error")
                return
        self.metrics.connection("inbound", source.service, dest, "allowed")
        active = self.metrics.active.labels("inbound", source.service, dest)
        active.inc()
        try:
            first = await self._first_bytes(tls)
            if first and _head_wants_l4(first):
                await self._upgrade(tls, source, first)
            elif first:
                await self._requests(tls, source, first)
        finally:
            active.dec()

    async def _first_bytes(self, tls: ssl.SSLSocket) -> bytes:
        data = b""
        with trio.move_on_after(HEAD_TIMEOUT):
            while b"\r\n\r\n" not in data and len(data) < HEAD_LIMIT:
                try:
                    chunk = await recv_some(tls)
                except (OSError, ssl.SSLError):
                    return b""
                if not chunk:
                    break
                data += chunk
        return data

    def _request(
        self, event: ParsedRequest, source: PeerID, raw: list[tuple[bytes, bytes]] | None = None
    ) -> Request:
        pairs = event.headers if raw is None else raw
        return Request.from_raw(event.method, event.target, pairs, source_service=source.service)

    async def _requests(self, tls: ssl.SSLSocket, source: PeerID, first: bytes) -> None:
        reader = RequestReader(tls)
        reader.feed(first)
        await serve_requests(tls, reader, lambda event: self._traced(event, source, event.body))

    async def _respond(
        self, sock: socket.socket, resp: UpstreamResponse, event: ParsedRequest
    ) -> None:
        """A local reply that ends the connection (it says so)."""
        with contextlib.suppress(OSError, ssl.SSLError, ProtocolError):
            await send_bytes(sock, serialize(resp, event, close=True))

    def _deny(self, request: Request, decision: RbacDecision) -> UpstreamResponse:
        """Envoy's answer to a request its RBAC filter refuses, logged and counted."""
        emit(
            30,
            "rbac_denied",
            source=request.source_service,
            destination=self.service,
            intention=decision.intention,
            permission="-" if decision.permission is None else decision.permission,
            method=request.method,
            path=request.path,
            reason=decision.reason,
        )
        self.metrics.rbac_denied(request.source_service, self.service, decision.intention)
        return _local(403, RBAC_DENIED_BODY)

    async def _traced(self, event: ParsedRequest, source: PeerID, body: bytes) -> UpstreamResponse:
        """``handle`` inside a SERVER span when tracing is on (l7_tracing): the
        local app gets the span's trace headers and ``x-request-id``."""
        tracing = self.tracing
        method = event.method.decode("ascii").upper()
        target = event.target.decode("latin-1")
        if tracing is None:
            return await self._answer(_Parsed(method, target, event.headers, source.service), body)
        hop = tracing.server_hop(
            self.service, source.service, event.method, event.target, event.headers
        )
        try:
            resp = await self._answer(_Parsed(method, target, hop.headers, source.service), body)
        finally:
            tracing.release(hop)
        hop.flags = _local_flags(resp)
        hop.from_upstream, hop.attempts = not hop.flags, 1
        hop.upstream = self._local_address() if self._listener is not None else ""
        tracing.finish(hop, resp.status, resp.headers)
        return resp

    async def handle(self, request: Request, body: bytes) -> UpstreamResponse:
        """The answer to one request, counted and access-logged as the
        destination reporter (l7_metrics.py)."""
        return await self._answer(_Parsed.of(request), body)

    async def _answer(self, parsed: _Parsed, body: bytes) -> UpstreamResponse:
        """``handle`` for a request as parsed."""
        target = f"{parsed.path}?{parsed.query}" if parsed.query else parsed.path
        ex = self.reporter.begin(
            parsed.method, target, parsed.raw, len(body), parsed.source, self.service
        )
        return await self.reporter.observe(ex, functools.partial(self._handle, parsed, body))

    async def _handle(self, parsed: _Parsed, body: bytes, ex: Exchange) -> UpstreamResponse:
        """The answer to one request: 403 from the intentions, or the local
        app's (its headers as received, forwarded as they are)."""
        path = normalize_path(parsed.path)
        if path is None:  # Envoy's path normalisation refuses it before any filter
            return _local(400, "Bad Request")
        decision = self._judge(parsed)
        if not decision.allowed:
            ex.flag(Flag.RBAC_DENIED)
            return self._deny(parsed.request(), decision)
        target = f"{path}?{parsed.query}" if parsed.query else path
        headers = end_to_end_raw(parsed.raw)
        if body or parsed.method in ("POST", "PUT", "PATCH"):
            headers.append((b"content-length", b"%d" % len(body)))
        ex.upstream = self._local_address()
        # The timeout is kept by the pool (expiry.py), not a cancel scope.
        deadline = trio.current_time() + LOCAL_REQUEST_TIMEOUT
        try:
            return await self.pool.request(
                ex.upstream, parsed.method, target, headers, body, deadline
            )
        except Expired:
            ex.flag(Flag.TIMEOUT)
            return _local(504, TIMEOUT_BODY)
        except UpstreamReset as exc:
            ex.flag(Flag.UPSTREAM_RESET)
            return _local(503, RESET_BODY + str(exc))
        except (OSError, ssl.SSLError, trio.TooSlowError):
            ex.flag(Flag.CONNECT_FAILURE)
            return _local(503, CONNECT_FAILURE_BODY)

    async def _upgrade(self, tls: ssl.SSLSocket, source: PeerID, first: bytes) -> None:
        """Judge an Upgrade/CONNECT request, then splice it to the local app (L4)."""
        reader = RequestReader(tls)
        reader.feed(first)
        event = reader.parsed()
        if event is None:
            return
        request = self._request(event, source)
        decision = self.decide(request)
        if not decision.allowed:
            await self._respond(tls, self._deny(request, decision), event)
            return
        assert self._listener is not None
        spec = self._listener.spec
        try:
            with trio.fail_after(spec.limits.connect_timeout):
                up = await dial(spec.local_address, spec.local_port)
        except (OSError, trio.TooSlowError):
            await self._respond(tls, _local(503, CONNECT_FAILURE_BODY), event)
            return
        try:
            await send_bytes(up, first)
            flush = self.metrics.byte_counter("inbound", source.service, self.service)
            await Splice(tls, up, idle_timeout=spec.limits.idle_timeout, on_flush=flush).run()
        except OSError:
            return
        finally:
            close(up)


async def follow_l7_inbound(hub: WatchHub, client: AgentClient, svc: L7Inbound) -> None:
    """Keep ``svc``'s protocol, intentions and default policy current (until cancelled)."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            _follow, hub, chain_resource(svc.service), _chain_from_body, svc.set_chain
        )
        nursery.start_soon(
            _follow,
            hub,
            intentions_entries_resource(),
            lambda body: body if isinstance(body, list) else [],
            lambda body: svc.set_entry_sources(sources_from_entries(body, svc.service)),
        )
        nursery.start_soon(
            _follow,
            hub,
            intentions_resource(svc.service),
            lambda body: intentions_from_match(body, svc.service),
            svc.set_table,
        )
        nursery.start_soon(_learn_default, client, svc)


async def _follow(
    hub: WatchHub, res: Resource, parse: Callable[[Any], T], apply: Callable[[T], None]
) -> None:
    cell = hub.acquire(res, parse)
    try:
        version = 0
        while True:
            value, version = await cell.wait_newer(version)
            apply(value)
    finally:
        hub.release(res)


async def _learn_default(client: AgentClient, svc: L7Inbound) -> None:
    """Read ``connect.default_intention_policy`` once (retrying with backoff)."""
    backoff = Backoff()
    while True:
        try:
            body, _ = await client.get_json("/v1/agent/self")
        except AgentError as exc:
            emit(30, "default_policy_unknown", destination=svc.service, reason=str(exc))
            if isinstance(exc, AgentResponseError) and exc.status < 500:
                return  # e.g. no agent:read for the proxy's token: default deny stays
            await trio.sleep(backoff.next_delay())
            continue
        svc.default_allow = _default_policy(body)
        return
