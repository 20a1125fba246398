"""Outbound: a local plain listener per upstream, dialling the destination's proxies over mTLS.

Each accepted connection goes to a healthy instance picked by the
upstream's ``Balancer``; a dial, handshake or identity failure moves on to
another instance (at most ``MAX_ATTEMPTS``). The client presents the local
service's leaf and refuses a server whose SPIFFE ID is not
``svc/<destination>`` in our trust domain, logging why.
"""

from __future__ import annotations

import socket
import ssl

import trio

from .balancer import Balancer, Endpoint, endpoints_from_health
from .credentials import Credentials
from .errors import PeerIdentityError
from .identity import check_server
from .logfmt import emit
from .metrics import ProxyMetrics
from .pump import handshake, run_splice
from .sockets import Listener, close, dial
from .tlsconfig import Contexts
from .verdict import VerdictError, speaks_verdict
from .verdict import receive as receive_verdict
from .watchers import WatchHub, health_resource

MAX_ATTEMPTS = 3
HANDSHAKE_TIMEOUT = 10.0


async def follow_health(hub: WatchHub, destination: str, balancer: Balancer) -> None:
    """Feed ``balancer`` the destination's healthy proxies until cancelled."""
    res = health_resource(destination)
    cell = hub.acquire(res, endpoints_from_health)
    try:
        version = 0
        while True:
            endpoints, version = await cell.wait_newer(version)
            balancer.set_endpoints(endpoints)
            emit(
                20,
                "upstream_endpoints",
                destination=destination,
                endpoints=",".join(str(e) for e in endpoints) or "-",
            )
    finally:
        hub.release(res)


class OutboundHandler:
    """Handles connections accepted by one upstream listener."""

    def __init__(self, creds: Credentials, balancer: Balancer, metrics: ProxyMetrics) -> None:
        self.creds = creds
        self.balancer = balancer
        self.metrics = metrics

    async def __call__(self, listener: Listener, sock: socket.socket) -> None:
        spec = listener.spec
        assert spec.upstream is not None
        dest = spec.upstream.destination
        ctxs = self.creds.current or await self.creds.wait_current()
        if ctxs is None:
            emit(
                30,
                "outbound_refused",
                source=spec.service,
                destination=dest,
                reason="no certificate yet",
            )
            self.metrics.connection("outbound", spec.service, dest, "error")
            return
        picked = await self._connect(listener, ctxs, dest)
        if picked is None:
            self.metrics.connection("outbound", spec.service, dest, "error")
            return
        tls, endpoint = picked
        result = await self._verdict(tls, spec.service, dest, endpoint)
        self.metrics.connection("outbound", spec.service, dest, result)
        if result != "allowed":
            close(tls)
            return
        active = self.metrics.opened("outbound", spec.service, dest)
        self.balancer.acquire(endpoint)
        flush = self.metrics.byte_counter("outbound", spec.service, dest)
        try:
            await run_splice(
                sock,
                tls,
                idle_timeout=spec.limits.idle_timeout,
                on_flush=flush,
                direction="outbound",
                source=spec.service,
                destination=dest,
            )
        finally:
            self.balancer.release(endpoint)
            active.closed()
            close(tls)

    async def _verdict(self, tls: ssl.SSLSocket, source: str, dest: str, endpoint: Endpoint) -> str:
        """``allowed``, ``denied`` or ``error``: what the destination decided,
        when it tells (verdict.py); ``allowed`` for a peer that does not."""
        if not speaks_verdict(tls):
            return "allowed"
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                allowed, intention = await receive_verdict(tls)
        except (VerdictError, OSError, ssl.SSLError, trio.TooSlowError) as exc:
            reason = "no verdict in time" if isinstance(exc, trio.TooSlowError) else str(exc)
            emit(
                30,
                "upstream_closed",
                source=source,
                destination=dest,
                endpoint=str(endpoint),
                reason=reason,
            )
            return "error"
        if allowed:
            return "allowed"
        emit(
            30,
            "denied_by_destination",
            source=source,
            destination=dest,
            endpoint=str(endpoint),
            intention=intention,
        )
        return "denied"

    async def _connect(
        self, listener: Listener, ctxs: Contexts, dest: str
    ) -> tuple[ssl.SSLSocket, Endpoint] | None:
        """An established, verified TLS connection to an instance, or None."""
        tried: list[Endpoint] = []
        limits = listener.spec.limits
        reason = "no healthy instance"
        for _ in range(MAX_ATTEMPTS):
            endpoint = self.balancer.pick(tried)
            if endpoint is None:
                break
            tried.append(endpoint)
            try:
                return await self._attempt(ctxs, endpoint, dest, limits.connect_timeout), endpoint
            except (OSError, ssl.SSLError, trio.TooSlowError, PeerIdentityError) as exc:
                reason = "timed out" if isinstance(exc, trio.TooSlowError) else str(exc)
                emit(
                    30,
                    "upstream_attempt_failed",
                    source=listener.spec.service,
                    destination=dest,
                    endpoint=str(endpoint),
                    reason=reason,
                )
        emit(
            40,
            "upstream_unavailable",
            source=listener.spec.service,
            destination=dest,
            tried=len(tried),
            reason=reason,
        )
        return None

    async def _attempt(
        self, ctxs: Contexts, endpoint: Endpoint, dest: str, connect_timeout: float
    ) -> ssl.SSLSocket:
        with trio.fail_after(connect_timeout):
            raw = await dial(endpoint.host, endpoint.port)
        tls = ctxs.client.wrap_socket(raw, server_side=False, do_handshake_on_connect=False)
        try:
            start = trio.current_time()
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                await handshake(tls)
            self.metrics.handshake.labels("outbound").observe(trio.current_time() - start)
            check_server(tls.getpeercert(), trust_domain=ctxs.trust_domain, destination=dest)
        except BaseException:
            close(tls)
            raise
        return tls
