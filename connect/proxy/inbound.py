"""Inbound: mTLS from other proxies, authorized by intentions, piped to the local service.

Per connection: TLS 1.3 handshake with a required client certificate
(verified against the current roots), the client's SPIFFE ID names the
source service, ``Gatekeeper`` decides, and an allowed connection is
spliced to ``LocalServiceAddress:LocalServicePort``. A denied one is closed
and logged as one ``event=denied`` line with source, destination, the
intention ID (or ``default``) and the reason.

Live connections are tracked with their (source, destination) so that an
intentions change re-decides them and closes the ones now denied
(``follow_intentions``, driven by a blocking query: well under a second).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from dataclasses import dataclass, field

import trio

from ..intentions import Decision
from .agent_client import AgentClient, answer_json
from .authz import Authorizer, intentions_from_match
from .credentials import Credentials
from .errors import AgentError, PeerIdentityError
from .identity import PeerID, peer_serial, peer_service
from .l7_inbound import L7Inbound
from .logfmt import emit
from .metrics import ProxyMetrics
from .pump import handshake, run_splice
from .sockets import Listener, close, dial
from .verdict import send as send_verdict
from .verdict import speaks_verdict
from .watchers import WatchHub, intentions_resource

HANDSHAKE_TIMEOUT = 10.0
AUTHORIZE_TIMEOUT = 5.0


@dataclass(eq=False)
class LiveConn:
    """An established inbound connection and the scope that ends it."""

    source: PeerID
    destination: str
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    revoked: Decision | None = None


class Gatekeeper:
    """Decides inbound connections and re-decides live ones on intention changes."""

    def __init__(self, client: AgentClient, metrics: ProxyMetrics) -> None:
        self.client = client
        self.metrics = metrics
        self.authorizer = Authorizer()
        self.live: dict[str, set[LiveConn]] = {}
        self._inflight: dict[tuple[str, str, int], trio.Event] = {}

    async def decide(self, source: PeerID, destination: str, serial: str = "") -> Decision:
        """Local decision, else the agent's (cached per intentions generation).

        Fails closed: an agent error denies (and is not cached).
        """
        while True:
            found = self.authorizer.decide(source.service, destination)
            if found is not None:
                return found
            key = (source.service, destination, self.authorizer.generation(destination))
            pending = self._inflight.get(key)
            if pending is None:
                break
            await pending.wait()
        event = self._inflight[key] = trio.Event()
        try:
            return await self._ask_agent(source, destination, serial, key[2])
        finally:
            del self._inflight[key]
            event.set()

    async def _ask_agent(self, source: PeerID, destination: str, serial: str, gen: int) -> Decision:
        body = {
            "Target": destination,
            "ClientCertURI": source.uri(),
            "ClientCertSerial": serial,
        }
        try:
            resp = await self.client.request(
                "POST", "/v1/agent/connect/authorize", body=body, timeout=AUTHORIZE_TIMEOUT
            )
            answer = answer_json(resp)
        except AgentError as exc:
            return Decision(False, f"authorize call failed: {exc}", None)
        if not isinstance(answer, dict):
            return Decision(False, "authorize answer is not an object", None)
        decision = Decision(bool(answer.get("Authorized")), str(answer.get("Reason") or ""), None)
        self.authorizer.remember(source.service, destination, decision, gen)
        return decision

    def track(self, conn: LiveConn) -> None:
        self.live.setdefault(conn.destination, set()).add(conn)

    def untrack(self, conn: LiveConn) -> None:
        conns = self.live.get(conn.destination)
        if conns is not None:
            conns.discard(conn)

    async def recheck(self, destination: str) -> int:
        """Re-decide the live connections to ``destination``; returns how many were closed."""
        closed = 0
        for conn in list(self.live.get(destination, ())):
            # Any DER will do for an authorize call: only the cache may be cold here.
            decision = self.authorizer.decide(conn.source.service, destination)
            if decision is None:
                decision = await self._recheck_remote(conn)
            if not decision.allowed and conn.revoked is None:
                conn.revoked = decision
                conn.scope.cancel()
                closed += 1
        return closed

    async def _recheck_remote(self, conn: LiveConn) -> Decision:
        gen = self.authorizer.generation(conn.destination)
        body = {
            "Target": conn.destination,
            "ClientCertURI": conn.source.uri(),
            "ClientCertSerial": "",
        }
        try:
            resp = await self.client.request(
                "POST", "/v1/agent/connect/authorize", body=body, timeout=AUTHORIZE_TIMEOUT
            )
            answer = answer_json(resp)
        except AgentError:
            # Keep a live connection when the agent cannot answer: new ones fail closed.
            return Decision(True, "agent unavailable", None)
        decision = Decision(bool(answer.get("Authorized")), str(answer.get("Reason") or ""), None)
        self.authorizer.remember(conn.source.service, conn.destination, decision, gen)
        return decision


async def follow_intentions(hub: WatchHub, gate: Gatekeeper, destination: str) -> None:
    """Keep ``destination``'s intentions current and close live connections
    they now deny. Runs until cancelled."""
    res = intentions_resource(destination)
    cell = hub.acquire(res, lambda body: intentions_from_match(body, destination))
    try:
        version = 0
        while True:
            intentions, version = await cell.wait_newer(version)
            gate.authorizer.set_intentions(destination, intentions)
            closed = await gate.recheck(destination)
            emit(
                20,
                "intentions_updated",
                destination=destination,
                count=len(intentions),
                closed=closed,
            )
    finally:
        hub.release(res)
        gate.authorizer.forget(destination)


def _deny_fields(decision: Decision) -> dict[str, str]:
    return {"intention": decision.intention_id or "default", "reason": decision.reason}


async def _tell_denied(tls: ssl.SSLSocket, decision: Decision) -> None:
    """Tell a calling proxy that speaks it why it is refused; best effort."""
    if not speaks_verdict(tls):
        return
    with trio.move_on_after(1.0), contextlib.suppress(OSError, ssl.SSLError):
        await send_verdict(tls, False, decision.intention_id or "default")


class InboundHandler:
    """Handles connections accepted by one sidecar's inbound listener."""

    def __init__(
        self,
        creds: Credentials,
        gate: Gatekeeper,
        metrics: ProxyMetrics,
        l7: L7Inbound | None = None,
    ) -> None:
        self.creds = creds
        self.gate = gate
        self.metrics = metrics
        self.l7 = l7

    async def __call__(self, listener: Listener, sock: socket.socket) -> None:
        spec = listener.spec
        dest = spec.service
        ctxs = self.creds.current or await self.creds.wait_current()
        if ctxs is None:
            emit(30, "inbound_refused", destination=dest, reason="no certificate yet")
            self.metrics.connection("inbound", "", dest, "error")
            return
        tls = ctxs.server.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        try:
            peer = await self._handshake(tls, ctxs.trust_domain, dest)
            if peer is None:
                return
            source, serial = peer
            # An http service: a caller under an L7 intention (or one of a
            # service-intentions entry) is decided there, not by the agent's
            # L4 answer (which denies L7 intentions); every request is judged.
            l7 = self.l7 if self.l7 is not None and await self.l7.wait_known() else None
            decision = l7.connection_decision(source) if l7 is not None else None
            if decision is None:
                decision = await self.gate.decide(source, dest, serial)
            if not decision.allowed:
                emit(
                    30, "denied", source=source.service, destination=dest, **_deny_fields(decision)
                )
                self.metrics.connection("inbound", source.service, dest, "denied")
                self.metrics.denied(source.service, dest, decision.intention_id or "default")
                await _tell_denied(tls, decision)
                return
            if l7 is not None:
                await l7.serve(listener, tls, source)
                return
            await self._proxy(listener, tls, source)
        finally:
            close(tls)

    async def _handshake(
        self, tls: ssl.SSLSocket, trust_domain: str, dest: str
    ) -> tuple[PeerID, str] | None:
        start = trio.current_time()
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                await handshake(tls)
            cert = tls.getpeercert()
            source = peer_service(cert, trust_domain)
        except (ssl.SSLError, OSError, trio.TooSlowError, PeerIdentityError) as exc:
            if isinstance(exc, ssl.SSLEOFError):
                # Closed before a handshake: typically the sidecar's own TCP
                # health check (Consul's "Connect Sidecar Listening"). Not a
                # failed connection: counted apart, logged at debug level.
                emit(10, "closed_before_handshake", direction="inbound", destination=dest)
                self.metrics.closed_before_handshake.labels(dest).inc()
                return None
            reason = "handshake timed out" if isinstance(exc, trio.TooSlowError) else str(exc)
            emit(30, "handshake_failed", direction="inbound", destination=dest, reason=reason)
            self.metrics.connection("inbound", "", dest, "error")
            return None
        self.metrics.handshake.labels("inbound").observe(trio.current_time() - start)
        return source, peer_serial(cert)

    async def _proxy(self, listener: Listener, tls: ssl.SSLSocket, source: PeerID) -> None:
        spec = listener.spec
        dest = spec.service
        try:
            with trio.fail_after(spec.limits.connect_timeout):
                up = await dial(spec.local_address, spec.local_port)
        except (OSError, trio.TooSlowError) as exc:
            emit(
                40,
                "local_dial_failed",
                destination=dest,
                local=f"{spec.local_address}:{spec.local_port}",
                reason=str(exc) or "timeout",
            )
            self.metrics.connection("inbound", source.service, dest, "error")
            return
        try:
            if speaks_verdict(tls):
                with trio.fail_after(HANDSHAKE_TIMEOUT):
                    await send_verdict(tls, True)
        except (OSError, ssl.SSLError, trio.TooSlowError):
            close(up)
            self.metrics.connection("inbound", source.service, dest, "error")
            return
        live = LiveConn(source, dest)
        self.gate.track(live)
        self.metrics.connection("inbound", source.service, dest, "allowed")
        active = self.metrics.opened("inbound", source.service, dest)
        flush = self.metrics.byte_counter("inbound", source.service, dest)
        try:
            await run_splice(
                tls,
                up,
                idle_timeout=spec.limits.idle_timeout,
                on_flush=flush,
                direction="inbound",
                source=source.service,
                destination=dest,
                scope=live.scope,
            )
        finally:
            self.gate.untrack(live)
            active.closed()
            close(up)
        if live.revoked is not None:
            emit(
                30,
                "denied",
                source=source.service,
                destination=dest,
                closed_existing=True,
                **_deny_fields(live.revoked),
            )
            self.metrics.denied(source.service, dest, live.revoked.intention_id or "default")
