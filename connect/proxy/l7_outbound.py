"""The L7 outbound path: an upstream listener that speaks HTTP/1.1.

Every upstream listener follows its destination's discovery chain
(``/v1/discovery-chain/<upstream>``, blocking query). While the chain's
protocol is ``http``, each accepted connection is served here; otherwise
(tcp, or no chain yet after ``CHAIN_WAIT``) it goes to the L4
``OutboundHandler`` unchanged.

Per connection: llhttp (http1.py) parses requests one at a time (keep-alive; pipelined
requests are answered in order, one after the other); a first request
asking for ``Upgrade`` or ``CONNECT`` turns the connection into an L4
splice before any byte is consumed. Per request: ``decide`` picks the
route, split, target and endpoint; the circuit breaker admits it (503 with
``x-envoy-overloaded: true``); a fault may delay or abort it; then
attempts run against pooled keep-alive mTLS connections to the endpoint's
inbound proxy under the route timeout (504 ``upstream request timeout``)
with the retry core deciding between attempts; each answer feeds the
target's outlier detector, whose ejections the next decisions exclude.
A route with the meshd ``Mirror`` extension also hands a shadow copy
(Host ``-shadow``) to the upstream's ``MirrorSender`` (l7_mirror.py),
which sends it in the background; the caller never waits for it.

Endpoints of each chain target come from ``/v1/health/connect/<service>``
with the target's subset filter as ``?filter=`` (the agent evaluates it).
A new chain that brings new targets (a splitter sending a share to a
subset nothing went to before) is applied once each new target's first
endpoints answer has arrived, at most ``WARM_WAIT`` later, as Envoy warms
a new cluster before routes use it: until then the previous chain keeps
serving, so a config change never answers ``no healthy upstream`` for a
subset whose instances are up.

``MESHD_L7_SEED`` (an integer) seeds each upstream's decision randomness,
so a test's split counts are reproducible; unset, it is unpredictable.
"""

from __future__ import annotations

import functools
import math
import os
import random
import socket
import ssl
from collections.abc import Callable, Collection, Mapping
from typing import Any, cast

import trio
from prometheus_client import CollectorRegistry

from connect.l7.breaker import CircuitBreaker, Limits
from connect.l7.decide import NO_HEALTHY_UPSTREAM_BODY, Decider, Decision
from connect.l7.match import apply_header_modifiers
from connect.l7.mirror import shadow_headers
from connect.l7.outlier import OutlierConfig, OutlierDetector
from connect.l7.request import Headers, Request
from connect.l7.retry import (
    TIMEOUT_BODY,
    Failure,
    Outcome,
    RetryBudget,
    RetryState,
    Verdict,
)
from connect.l7.table import TableError, UpstreamLimits, table_from_chain, upstream_limits

from .agent_client import path_segment
from .balancer import Endpoint, endpoints_from_health
from .credentials import Credentials
from .errors import PeerIdentityError, ProxyConfigError
from .http1 import HeaderList, ParsedRequest, RequestReader
from .http_pool import (
    Expired,
    Pool,
    UpstreamReset,
    UpstreamResponse,
    forward_fields,
    serve_requests,
)
from .l7_metrics import Exchange, Flag, Reporter, StandardMetrics, TargetMarks, mark_attempt
from .l7_mirror import MirrorSender
from .l7_samples import RequestSamples
from .l7_tracing import Hop, ProxyTracing
from .logfmt import emit
from .outbound import HANDSHAKE_TIMEOUT, OutboundHandler
from .sockets import Listener, close
from .verdict import VerdictError, speaks_verdict
from .verdict import receive as receive_verdict
from .watchers import Resource, WatchHub

CHAIN_WAIT = 2.0  # how long a connection waits for the first chain answer
WARM_WAIT = 5.0  # how long a new chain waits for its new targets' first endpoints
PEEK_LIMIT = 65536
PEEK_TIMEOUT = 10.0
OVERFLOW_BODY = "upstream connect error or disconnect/reset before headers. reset reason: overflow"
RESET_BODY = "upstream connect error or disconnect/reset before headers. reset reason: "
HTTP_PROTOCOLS = ("http",)
# Envoy's response flags for an attempt that got no answer.
_FAILURE_FLAGS = {Failure.CONNECT_FAILURE: "UF", Failure.PER_TRY_TIMEOUT: "UT"}


def _rng() -> random.Random:
    seed = os.environ.get("MESHD_L7_SEED", "").strip()
    return random.Random(int(seed)) if seed.isdigit() else random.Random()


def chain_resource(service: str) -> Resource:
    return Resource("chain", service, f"/v1/discovery-chain/{path_segment(service)}")


def service_defaults_resource() -> Resource:
    return Resource("config", "service-defaults", "/v1/config/service-defaults")


def target_health_resource(service: str, subset_filter: str) -> Resource:
    query: tuple[tuple[str, str], ...] = (("passing", "1"),)
    if subset_filter:
        query += (("filter", subset_filter),)
    return Resource("health", service, f"/v1/health/connect/{path_segment(service)}", query)


def chain_targets(chain: Mapping[str, Any] | None) -> dict[str, tuple[str, str]]:
    """Target id -> (service, subset filter) of ``chain`` ({} unless http)."""
    if chain is None or str(chain.get("Protocol") or "tcp") not in HTTP_PROTOCOLS:
        return {}
    out: dict[str, tuple[str, str]] = {}
    for tid, t in (chain.get("Targets") or {}).items():
        subset = t.get("Subset") or {}
        out[tid] = (str(t.get("Service") or ""), str(subset.get("Filter") or ""))
    return out


def _chain_from_body(body: Any) -> Mapping[str, Any]:
    chain = body.get("Chain") if isinstance(body, Mapping) else None
    if not isinstance(chain, Mapping):
        raise ProxyConfigError("discovery-chain", "answer has no Chain object")
    return chain


class L7Upstream:
    """One upstream's L7 view: its chain, target endpoints and the cores' state."""

    def __init__(self, source: str, destination: str, rng: random.Random | None = None) -> None:
        self.source = source
        self.destination = destination
        self.rng = rng or _rng()
        self.chain: Mapping[str, Any] | None = None
        self.known = trio.Event()
        self.endpoints: dict[str, list[Endpoint]] = {}
        self._endpoints_changed = trio.Event()
        self.by_address: dict[str, Endpoint] = {}
        self.service_of: dict[str, str] = {}  # endpoint -> the service it fronts
        self.mirrors = MirrorSender(destination)
        self.decider: Decider | None = None
        self.breaker = CircuitBreaker()
        self.budget = RetryBudget()
        self.outlier_config = OutlierConfig()
        self.outliers: dict[str, OutlierDetector] = {}
        # Called when a detector ejects a host (ejections.py reports it).
        self.on_ejection: Callable[[], None] | None = None

    @property
    def protocol(self) -> str:
        return str((self.chain or {}).get("Protocol") or "tcp")

    @property
    def is_http(self) -> bool:
        return self.chain is not None and self.protocol in HTTP_PROTOCOLS

    def targets(self) -> dict[str, tuple[str, str]]:
        """Target id -> (service, subset filter) of the current chain."""
        out: dict[str, tuple[str, str]] = {}
        for tid, t in ((self.chain or {}).get("Targets") or {}).items():
            subset = t.get("Subset") or {}
            out[tid] = (str(t.get("Service") or ""), str(subset.get("Filter") or ""))
        return out

    async def warm(self, target_ids: Collection[str], timeout: float = WARM_WAIT) -> bool:
        """Wait until every target of ``target_ids`` has had an endpoints
        answer (empty counts), at most ``timeout``; whether they all did."""
        with trio.move_on_after(timeout):
            while any(tid not in self.endpoints for tid in target_ids):
                await self._endpoints_changed.wait()
            return True
        return False

    def set_chain(self, chain: Mapping[str, Any]) -> None:
        self.chain = chain
        self.rebuild()
        self.known.set()

    def set_limits(self, limits: UpstreamLimits) -> None:
        """The source's UpstreamConfig for this upstream: a new breaker (in-flight
        requests release into it harmlessly) and outlier settings."""
        wanted = limits.limits or Limits()
        if wanted != self.breaker.limits:
            self.breaker = CircuitBreaker(wanted)
        outlier = limits.outlier or OutlierConfig()
        if outlier != self.outlier_config:
            self.outlier_config = outlier
            self.outliers.clear()
            self.rebuild()

    def set_endpoints(self, target_id: str, endpoints: list[Endpoint]) -> None:
        self.endpoints[target_id] = endpoints
        self.rebuild()
        self._endpoints_changed.set()
        self._endpoints_changed = trio.Event()

    def rebuild(self) -> None:
        """Recompute the decision table from the chain and endpoints."""
        if self.chain is None or not self.is_http:
            self.decider = None
            return
        self.by_address = {str(e): e for eps in self.endpoints.values() for e in eps}
        services = self.targets()
        self.service_of = {
            str(e): services.get(tid, (self.destination, ""))[0] or self.destination
            for tid, eps in self.endpoints.items()
            for e in eps
        }
        addresses = {tid: [str(e) for e in eps] for tid, eps in self.endpoints.items()}
        try:
            table = table_from_chain(self.chain, addresses)
        except TableError as exc:
            emit(40, "chain_invalid", destination=self.destination, reason=str(exc))
            return
        self.decider = Decider(table)
        for tid, hosts in addresses.items():
            self.outlier(tid).set_hosts(hosts)

    def outlier(self, target_id: str) -> OutlierDetector:
        det = self.outliers.get(target_id)
        if det is None:
            det = self.outliers[target_id] = OutlierDetector(self.outlier_config, self.rng)
        return det

    def excluded(self, now: float) -> Any:
        def ejected(target_id: str) -> Collection[str]:
            det = self.outliers.get(target_id)
            if det is None:
                return ()
            if det.due(now):
                det.sweep(now)
            return det.ejected(now)

        return ejected


async def follow_chain(hub: WatchHub, up: L7Upstream) -> None:
    """Follow ``up``'s discovery chain and the health of each of its targets."""
    res = chain_resource(up.destination)
    cell = hub.acquire(res, _chain_from_body)
    scopes: dict[str, tuple[tuple[str, str], trio.CancelScope]] = {}
    try:
        async with trio.open_nursery() as nursery:
            version = 0
            while True:
                chain, version = await cell.wait_newer(version)
                wanted = chain_targets(chain)
                fresh = [tid for tid, spec in wanted.items() if scopes.get(tid, (None,))[0] != spec]
                for tid in fresh:
                    if tid in scopes:  # its filter changed: its endpoints are not the target's
                        scopes.pop(tid)[1].cancel()
                        up.endpoints.pop(tid, None)
                    scope = trio.CancelScope()
                    scopes[tid] = (wanted[tid], scope)
                    nursery.start_soon(_follow_target, hub, up, tid, wanted[tid], scope)
                if up.chain is not None and fresh and not await up.warm(fresh):
                    emit(30, "upstream_chain_cold", destination=up.destination, targets=fresh)
                up.set_chain(chain)
                for tid in [t for t in scopes if t not in wanted]:
                    scopes.pop(tid)[1].cancel()
                    up.endpoints.pop(tid, None)
                emit(20, "upstream_chain", destination=up.destination, protocol=up.protocol)
    finally:
        hub.release(res)


async def follow_limits(hub: WatchHub, up: L7Upstream) -> None:
    """Follow the source's service-defaults (UpstreamConfig Limits and
    PassiveHealthCheck for this upstream)."""
    res = service_defaults_resource()
    cell = hub.acquire(res, lambda body: body if isinstance(body, list) else [])
    try:
        version = 0
        while True:
            entries, version = await cell.wait_newer(version)
            mine = next((e for e in entries if e.get("Name") == up.source), None)
            try:
                up.set_limits(upstream_limits(mine, up.destination))
            except ValueError as exc:
                emit(40, "service_defaults_invalid", service=up.source, reason=str(exc))
    finally:
        hub.release(res)


async def _follow_target(
    hub: WatchHub, up: L7Upstream, tid: str, spec: tuple[str, str], scope: trio.CancelScope
) -> None:
    res = target_health_resource(*spec)
    with scope:
        cell = hub.acquire(res, endpoints_from_health)
        try:
            version = 0
            while True:
                endpoints, version = await cell.wait_newer(version)
                up.set_endpoints(tid, endpoints)
                emit(
                    20,
                    "target_endpoints",
                    destination=up.destination,
                    target=tid,
                    endpoints=",".join(str(e) for e in endpoints) or "-",
                )
        finally:
            hub.release(res)


async def wants_l4(sock: socket.socket) -> bool:
    """Whether the first request on ``sock`` asks for an Upgrade or CONNECT
    (read with MSG_PEEK, so nothing is consumed)."""
    fd = sock.fileno()
    seen = b""
    with trio.move_on_after(PEEK_TIMEOUT):
        while True:
            await trio.lowlevel.wait_readable(fd)
            try:
                data = sock.recv(PEEK_LIMIT, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return False
            if not data:
                return False
            head, sep, _ = data.partition(b"\r\n\r\n")
            if sep or len(data) >= PEEK_LIMIT:
                lower = head.lower()
                return data.startswith(b"CONNECT ") or b"\nupgrade:" in lower
            if data == seen:
                await trio.sleep(0.001)  # more bytes are on their way
            seen = data
    return False


def _outgoing(decision: Decision, request: Request, body: bytes) -> tuple[str, HeaderList]:
    """The request line target and headers to send upstream (as text when
    a mirror copies them)."""
    path = decision.forward_path or request.path
    target_line = f"{path}?{request.query}" if request.query else path
    fields = forward_fields(decision.request_headers, request.method, body, as_text=decision.mirror)
    return target_line, fields


def _local(
    status: int, body: str, headers: list[tuple[str, str]] | None = None
) -> UpstreamResponse:
    hdrs = [("content-type", "text/plain"), *(headers or [])]
    return UpstreamResponse(status, hdrs, body.encode())


class L7OutboundHandler:
    """Serves one upstream listener's connections, L7 when the chain says http."""

    def __init__(
        self,
        creds: Credentials,
        up: L7Upstream,
        l4: OutboundHandler,
        reporter: Reporter | None = None,
    ) -> None:
        self.creds = creds
        self.up = up
        self.l4 = l4
        # Unset (tests of the handler alone): counted in a registry nobody reads.
        self.reporter = reporter or Reporter(
            StandardMetrics(CollectorRegistry()), "source", up.source
        )
        self.pool = Pool(self._dial)
        self._marks = TargetMarks()
        self._listener: Listener | None = None
        self.tracing: ProxyTracing | None = None
        self.samples: RequestSamples | None = None  # for config write --dry-run
        metrics = getattr(l4, "metrics", None)
        if metrics is not None:
            counter = metrics.mirror_requests
            up.mirrors.on_result = lambda result: counter.labels(
                up.source, up.destination, result
            ).inc()

    async def __call__(self, listener: Listener, sock: socket.socket) -> None:
        if not self.up.known.is_set():
            with trio.move_on_after(CHAIN_WAIT):
                await self.up.known.wait()
        if not self.up.is_http or await wants_l4(sock):
            await self.l4(listener, sock)
            return
        self._listener = listener
        try:
            await self._serve(sock)
        finally:
            close(sock)

    async def _dial(self, address: str) -> ssl.SSLSocket:
        endpoint = self.up.by_address.get(address)
        if endpoint is None:
            host, _, port = address.rpartition(":")
            endpoint = Endpoint(host, int(port))
        ctxs = self.creds.current or await self.creds.wait_current()
        if ctxs is None:
            raise PeerIdentityError("no certificate yet")
        assert self._listener is not None
        timeout = self._listener.spec.limits.connect_timeout
        # A split, redirect or mirror may target another service than the
        # upstream's name: the peer must prove to be the one it fronts.
        service = self.up.service_of.get(address, self.up.destination)
        tls = await self.l4._attempt(ctxs, endpoint, service, timeout)
        if speaks_verdict(tls):
            try:
                with trio.fail_after(HANDSHAKE_TIMEOUT):
                    allowed, intention = await receive_verdict(tls)
            except BaseException:
                close(tls)
                raise
            if not allowed:
                close(tls)
                raise VerdictError(f"denied by intention {intention or '-'}")
        return tls

    async def _serve(self, sock: socket.socket) -> None:
        await serve_requests(
            sock, RequestReader(sock), lambda event: self.handle(event, event.body)
        )

    async def handle(self, event: ParsedRequest, body: bytes) -> UpstreamResponse:
        """The answer to one request (from upstream, or local), traced
        (l7_tracing.py) and counted and access-logged as the source reporter
        (l7_metrics.py)."""
        tracing, up = self.tracing, self.up
        if self.samples is not None:
            self.samples.record(
                up.source, up.destination, event.method, event.target, event.headers
            )
        hop = None
        if tracing is not None:
            hop = tracing.client_hop(
                up.source, up.destination, event.method, event.target, event.headers
            )
        ex = self.reporter.begin(
            event.method.decode("ascii"),
            event.target.decode("latin-1"),
            hop.headers if hop is not None else event.headers,
            len(body),
            up.source,
            up.destination,
        )
        if hop is not None:
            ex.trace_id = hop.trace_id
        handle = functools.partial(self._handle, event, body, hop)
        resp = await self.reporter.observe(ex, handle)
        if tracing is not None and hop is not None:
            tracing.finish(hop, resp.status, resp.headers)
        return resp

    async def _handle(
        self, event: ParsedRequest, body: bytes, hop: Hop | None, ex: Exchange
    ) -> UpstreamResponse:
        """The answer to one request (from upstream, or local); marks ``ex``
        (and ``hop``) with the response flags, target and upstream instance."""
        up = self.up
        decider = up.decider
        if decider is None:
            ex.flag(Flag.NO_HEALTHY_UPSTREAM)
            return _local(503, NO_HEALTHY_UPSTREAM_BODY)
        raw = hop.headers if hop is not None else event.headers
        request = Request.from_raw(event.method, event.target, raw, source_service=up.source)
        now = trio.current_time()
        decision = decider.decide(request, rng=up.rng, excluded=up.excluded(now))
        self._marks.mark(ex, up.chain, decision.target)
        status = decision.status_if_local
        if status is not None:
            text = NO_HEALTHY_UPSTREAM_BODY if status == 503 else ""
            ex.flag(Flag.NO_HEALTHY_UPSTREAM if status == 503 else Flag.NO_ROUTE)
            return _local(status, text)
        if up.breaker.try_request().overflow:
            self.reporter.overflowed(ex)
            return _local(503, OVERFLOW_BODY, [("x-envoy-overloaded", "true")])
        try:
            fault = decision.fault
            if fault.delay_s:
                self.reporter.fault(ex, "delay")
                await trio.sleep(fault.delay_s)
            abort = fault.abort_response()
            if abort is not None:
                self.reporter.fault(ex, "abort")
                if hop is not None:
                    hop.flags = "FI"
                return UpstreamResponse(abort[0], abort[1], abort[2].encode())
            target_line, out_headers = _outgoing(decision, request, body)
            if decision.mirror:  # (its headers are text: _outgoing)
                copied = cast(list[tuple[str, str]], out_headers)
                self._mirror(decider, decision, request, target_line, copied, body)
            if fault.delay_s:  # (else ``now``, read before the decision, is a few us old)
                now = trio.current_time()
            resp = await self._attempts(
                decider, decision, request, target_line, out_headers, body, hop, ex, now
            )
        finally:
            up.breaker.release_request()
        if decision.set_cookie is not None:  # a generated ring-hash cookie
            resp = UpstreamResponse(
                resp.status, [*resp.headers, ("set-cookie", decision.set_cookie)], resp.body
            )
        out = None
        for mods in decision.response_modifiers:
            if not mods.is_empty():  # a split without ResponseHeaders: nothing to copy
                base = Headers.view(resp.headers) if out is None else out  # applying copies
                out = apply_header_modifiers(base, mods)
        if out is None:
            return resp
        return UpstreamResponse(resp.status, out.items(), resp.body)

    def _mirror(
        self,
        decider: Decider,
        decision: Decision,
        request: Request,
        target_line: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> None:
        """Send a shadow copy to the mirror target in the background (Host
        gets ``-shadow``); the caller neither waits for it nor sees it."""
        up = self.up
        target = decider.table.targets.get(decision.mirror_target or "")
        endpoint = None
        if target is not None:
            endpoint = decider.balancer(target).pick(
                target.endpoints,
                rng=up.rng,
                request=request,
                excluded=up.excluded(trio.current_time())(target.id),
            )
        if endpoint is None:
            up.mirrors.drop("no healthy upstream")
            return
        shadow = shadow_headers(Headers(headers)).items()
        method = request.method
        up.mirrors.submit(
            lambda: self.pool.request(endpoint, method, target_line, shadow, body),
            decision.timeout_s,
        )

    async def _attempts(
        self,
        decider: Decider,
        decision: Decision,
        request: Request,
        target_line: str,
        out_headers: HeaderList,
        body: bytes,
        hop: Hop | None,
        ex: Exchange,
        now: float,
    ) -> UpstreamResponse:
        """The attempts of one request from ``now`` (the trio clock's time,
        read by the caller with no await since) until an answer to give."""
        up = self.up
        assert decision.endpoint is not None and decision.target is not None
        state = RetryState(
            decision.retry,
            request.method,
            start=now,
            timeout_s=decision.timeout_s,
            rng=up.rng,
            budget=up.budget,
        )
        endpoint, target_id = decision.endpoint, decision.target
        up.budget.request_started()
        try:
            while True:
                per_try = state.start_attempt(now)
                if isinstance(per_try, Verdict):
                    ex.flag(Flag.TIMEOUT)
                    return _local(504, TIMEOUT_BODY)
                ex.upstream = endpoint
                if hop is not None:
                    hop.upstream, hop.attempts = endpoint, hop.attempts + 1
                # The deadline is kept by the pool (expiry.py), not a cancel scope.
                deadline = math.inf if per_try is None else now + per_try
                resp, outcome = await self._exchange(
                    endpoint, request.method, target_line, out_headers, body, deadline
                )
                now = trio.current_time()
                ejected = up.outlier(target_id).report(endpoint, outcome.status, now)
                if ejected is not None:
                    self.reporter.ejected(ex)
                    if up.on_ejection is not None:
                        up.on_ejection()
                verdict = state.after(outcome, now)
                mark_attempt(ex, verdict.verdict, verdict.reason, outcome.failure)
                if verdict.verdict is Verdict.TIMEOUT:
                    return _local(504, TIMEOUT_BODY)
                if verdict.verdict is Verdict.RESPOND:
                    if resp is not None:
                        if hop is not None:
                            hop.from_upstream = True
                        return resp
                    reason = outcome.failure.value if outcome.failure else "reset"
                    if hop is not None:
                        hop.flags = _FAILURE_FLAGS.get(outcome.failure or Failure.RESET, "UR")
                    return _local(503, RESET_BODY + reason)
                self.reporter.retried(ex)
                await trio.sleep(verdict.delay_s)
                now = trio.current_time()
                endpoint = self._repick(decider, target_id, request, endpoint, now)
        finally:
            state.finish()
            up.budget.request_finished()

    async def _exchange(
        self,
        endpoint: str,
        method: str,
        target: str,
        headers: HeaderList,
        body: bytes,
        deadline: float = math.inf,
    ) -> tuple[UpstreamResponse | None, Outcome]:
        try:
            resp = await self.pool.request(endpoint, method, target, headers, body, deadline)
        except Expired:
            return None, Outcome(failure=Failure.PER_TRY_TIMEOUT)
        except UpstreamReset:
            return None, Outcome(failure=Failure.RESET)
        except (OSError, ssl.SSLError, trio.TooSlowError, PeerIdentityError, VerdictError):
            return None, Outcome(failure=Failure.CONNECT_FAILURE)
        return resp, Outcome(resp.status, None, Headers.view(resp.headers))  # read only

    def _repick(
        self, decider: Decider, target_id: str, request: Request, last: str, now: float
    ) -> str:
        target = decider.table.targets.get(target_id)
        if target is None:
            return last
        picked = decider.balancer(target).pick(
            target.endpoints,
            rng=self.up.rng,
            request=request,
            excluded=self.up.excluded(now)(target_id),
        )
        return picked or last
