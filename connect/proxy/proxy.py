"""The proxy: every sidecar registered on the local agent, kept in sync.

``Proxy.serve`` watches ``/v1/agent/services`` (hash-based blocking query)
and after each change diffs the listeners it runs against the ones the
sidecars need (config.py): new ones start, removed ones stop (their
connections end with them), changed ones are updated in place. Each local
identity's credentials, each destination's intentions and each upstream's
instances are followed by one shared blocking-query loop (watchers.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from .access_log import AccessLogger, follow_access_logs
from .agent_client import AgentClient
from .balancer import Balancer
from .config import (
    Limits,
    ListenerSpec,
    desired_listeners,
    diff_listeners,
    only_sidecars_for,
    sidecars_from_services,
)
from .credentials import Credentials, follow_credentials
from .ejections import EjectionReporter
from .errors import AgentError, AgentUnavailableError, ProxyConfigError
from .inbound import Gatekeeper, InboundHandler, follow_intentions
from .l7_inbound import L7Inbound, follow_l7_inbound
from .l7_metrics import Reporter
from .l7_outbound import L7OutboundHandler, L7Upstream, follow_chain, follow_limits
from .l7_samples import RequestSamples
from .l7_stats import EdgeStats, StatsPusher
from .l7_tracing import ProxyTracing
from .logfmt import emit
from .metrics import ProxyMetrics
from .outbound import OutboundHandler, follow_health
from .sockets import Handler, Listener
from .watchers import Backoff, WatchHub, services_resource


@dataclass(frozen=True, slots=True)
class ProxyOptions:
    """Process-wide settings (per-sidecar ones come from ``Proxy.Config``)."""

    reuse_port: bool = False
    limits: Limits = field(default_factory=Limits)
    wait: float = 30.0
    # Consul's ``-sidecar-for``: serve only the sidecars of these services
    # (by DestinationServiceID or DestinationServiceName); empty = all.
    sidecar_for: frozenset[str] = frozenset()


@dataclass(eq=False)
class _Running:
    spec: ListenerSpec
    listener: Listener
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    ready: trio.Event = field(default_factory=trio.Event)
    done: trio.Event = field(default_factory=trio.Event)
    l7: L7Upstream | None = None


@dataclass(eq=False)
class _SharedCreds:
    creds: Credentials
    scope: trio.CancelScope
    refs: int = 0


def _services(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ProxyConfigError("services", "answer is not an object")
    return body


def _same_role(a: ListenerSpec, b: ListenerSpec) -> bool:
    """Whether ``b`` can replace ``a`` in place (same identity and target)."""
    if a.kind != b.kind or a.service != b.service:
        return False
    if a.upstream is None or b.upstream is None:
        return a.upstream is b.upstream
    return (a.upstream.destination, a.upstream.balance) == (
        b.upstream.destination,
        b.upstream.balance,
    )


async def wait_for_agent(
    client: AgentClient, *, timeout: float = 30.0, interval: float = 1.0
) -> None:
    """Return once the agent answers ``/v1/agent/services``; retry (logging)
    for ``timeout`` seconds, then raise ``AgentUnavailableError``."""
    deadline = trio.current_time() + timeout
    while True:
        try:
            await client.request("GET", "/v1/agent/services", timeout=min(10.0, timeout))
            return
        except AgentError as exc:
            if trio.current_time() + interval >= deadline:
                raise AgentUnavailableError(
                    f"cannot reach the agent at {client.address} after {timeout:g}s: {exc}"
                ) from None
            emit(30, "agent_unreachable", agent=client.address, reason=str(exc), retry_in=interval)
        await trio.sleep(interval)


class Proxy:
    """Serves every sidecar of one agent. Create, then ``await serve()``."""

    def __init__(
        self,
        client: AgentClient,
        options: ProxyOptions | None = None,
        metrics: ProxyMetrics | None = None,
    ) -> None:
        self.client = client
        self.options = options or ProxyOptions()
        self.metrics = metrics or ProxyMetrics()
        self.gate = Gatekeeper(client, self.metrics)
        self.access = AccessLogger()
        self.tracing = ProxyTracing(client, self.metrics.registry)
        # The per-edge aggregate behind the agent's mesh graph (l7_stats.py).
        self.metrics.standard.edges = EdgeStats()
        self.stats = StatsPusher(client, self.metrics.standard.edges, self.metrics.registry)
        self.samples = RequestSamples(client)  # recent request shapes (l7_samples.py)
        self.running: dict[tuple[str, int], _Running] = {}
        self.applied = 0
        self._changed = trio.Event()
        self._creds: dict[str, _SharedCreds] = {}
        self._errors: dict[str, str] = {}
        self._conflicts: set[str] = set()
        self._hub: WatchHub | None = None
        self._nursery: trio.Nursery | None = None
        self.ejections = EjectionReporter(client)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the agent until cancelled; ``started`` once the watch runs."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._hub = hub = WatchHub(self.client, nursery, wait=self.options.wait)
            cell = hub.acquire(services_resource(), _services)
            nursery.start_soon(follow_access_logs, hub, self.access.settings)
            nursery.start_soon(self.tracing.run, hub)
            nursery.start_soon(self.samples.run)
            nursery.start_soon(self.ejections.run)
            nursery.start_soon(self.stats.run)
            task_status.started()
            version = 0
            while True:
                services, version = await cell.wait_newer(version)
                await self.apply(services)

    async def wait_applied(self, count: int = 1) -> None:
        """Wait until ``count`` service lists have been applied (for tests and the CLI)."""
        while self.applied < count:
            await self._changed.wait()

    async def wait_listening(self, host: str, port: int) -> tuple[str, int]:
        """Wait for the listener on ``host:port`` to be bound; its address."""
        while (host, port) not in self.running:
            await self._changed.wait()
        entry = self.running[(host, port)]
        await entry.ready.wait()
        return entry.listener.address

    async def wait_credentials(self, service: str) -> None:
        """Wait until ``service``'s certificates are loaded."""
        while service not in self._creds:
            await self._changed.wait()
        await self._creds[service].creds.ready.wait()

    def credentials(self, service: str) -> Credentials | None:
        """The live credentials of ``service`` (None when no sidecar uses it)."""
        shared = self._creds.get(service)
        return None if shared is None else shared.creds

    def _notify(self) -> None:
        self.applied += 1
        self._changed.set()
        self._changed = trio.Event()

    async def apply(self, services: Mapping[str, Any]) -> None:
        """Bring the listeners in line with ``services`` (an agent services answer)."""
        sidecars, errors = sidecars_from_services(services, self.options.limits)
        sidecars = only_sidecars_for(sidecars, services, self.options.sidecar_for)
        for sid, exc in errors.items():
            if self._errors.get(sid) != str(exc):
                emit(40, "sidecar_invalid", proxy=sid, field=exc.field, reason=exc.message)
        self._errors = {sid: str(exc) for sid, exc in errors.items()}
        running = {k: r.spec for k, r in self.running.items()}
        desired, conflicts = desired_listeners(sidecars, running)
        for text in conflicts:
            if text not in self._conflicts:  # one line per conflict, not per change
                emit(40, "listener_conflict", detail=text)
        self._conflicts = set(conflicts)
        diff = diff_listeners(running, desired)
        restart = [s for s in diff.update if not _same_role(self.running[s.key].spec, s)]
        for key in (*diff.stop, *(s.key for s in restart)):
            await self._stop(key)
        for spec in diff.update:
            if spec not in restart:
                self.running[spec.key].spec = spec
                self.running[spec.key].listener.spec = spec
        for spec in (*diff.start, *restart):
            self._start(spec)
        self._notify()

    def _acquire_creds(self, service: str) -> Credentials:
        shared = self._creds.get(service)
        if shared is None:
            assert self._nursery is not None and self._hub is not None
            shared = _SharedCreds(Credentials(service), trio.CancelScope())
            self._creds[service] = shared
            self._nursery.start_soon(self._follow_creds, shared)
        shared.refs += 1
        return shared.creds

    async def _follow_creds(self, shared: _SharedCreds) -> None:
        assert self._hub is not None
        with shared.scope:
            await follow_credentials(self._hub, shared.creds)

    def _release_creds(self, service: str) -> None:
        shared = self._creds.get(service)
        if shared is None:
            return
        shared.refs -= 1
        if shared.refs <= 0:
            del self._creds[service]
            shared.scope.cancel()

    def _start(self, spec: ListenerSpec) -> None:
        assert self._nursery is not None
        creds = self._acquire_creds(spec.service)
        handler: Handler
        l7_in: L7Inbound | None = None
        if spec.kind == "inbound":
            # L7 intentions are enforced here while the service is http (l7_inbound.py).
            reporter = Reporter(
                self.metrics.standard, "destination", spec.service, self.access, trio.current_time
            )
            l7_in = L7Inbound(spec.service, self.metrics, reporter)
            l7_in.tracing = self.tracing
            handler = InboundHandler(creds, self.gate, self.metrics, l7_in)
            balancer = None
            l7 = None
        else:
            assert spec.upstream is not None
            balancer = Balancer(spec.upstream.balance)
            # The L4 handler serves tcp chains; the L7 one takes over while
            # the upstream's discovery chain says http (l7_outbound.py).
            l4 = OutboundHandler(creds, balancer, self.metrics)
            l7 = L7Upstream(spec.service, spec.upstream.destination)
            reporter = Reporter(
                self.metrics.standard, "source", spec.service, self.access, trio.current_time
            )
            handler = L7OutboundHandler(creds, l7, l4, reporter)
            handler.tracing = self.tracing
            handler.samples = self.samples
        listener = Listener(
            spec, handler, reuse_port=self.options.reuse_port, on_reject=self._rejected
        )
        entry = _Running(spec, listener, l7=l7)
        self.running[spec.key] = entry
        if l7 is not None:
            self.ejections.add(spec.proxy_id, spec.service, l7)
        self._nursery.start_soon(self._run_listener, entry, balancer, l7, l7_in)

    def _rejected(self, spec: ListenerSpec) -> None:
        src, dst = (
            (spec.service, spec.upstream.destination) if spec.upstream else ("", spec.service)
        )
        emit(
            30,
            "connection_limit",
            listener=f"{spec.host}:{spec.port}",
            limit=spec.limits.max_connections,
        )
        self.metrics.connection(spec.kind, src, dst, "error")

    async def _run_listener(
        self,
        entry: _Running,
        balancer: Balancer | None,
        l7: L7Upstream | None,
        l7_in: L7Inbound | None = None,
    ) -> None:
        assert self._hub is not None
        spec = entry.spec
        try:
            with entry.scope:
                async with trio.open_nursery() as nursery:
                    if l7_in is not None:
                        nursery.start_soon(follow_l7_inbound, self._hub, self.client, l7_in)
                    if balancer is None:
                        nursery.start_soon(follow_intentions, self._hub, self.gate, spec.service)
                    else:
                        assert spec.upstream is not None
                        nursery.start_soon(
                            follow_health, self._hub, spec.upstream.destination, balancer
                        )
                    if l7 is not None:
                        await nursery.start(l7.mirrors.run)
                        nursery.start_soon(follow_chain, self._hub, l7)
                        nursery.start_soon(follow_limits, self._hub, l7)
                    await self._bind(entry, nursery)
        finally:
            entry.done.set()

    async def _bind(self, entry: _Running, nursery: trio.Nursery) -> None:
        spec = entry.spec
        backoff = Backoff()
        while True:
            try:
                address = await nursery.start(entry.listener.serve)
                break
            except OSError as exc:
                emit(
                    40,
                    "listen_failed",
                    kind=spec.kind,
                    address=f"{spec.host}:{spec.port}",
                    proxy=spec.proxy_id,
                    reason=exc.strerror or str(exc),
                )
                await trio.sleep(backoff.next_delay())
        emit(
            20,
            "listening",
            kind=spec.kind,
            address=f"{address[0]}:{address[1]}",
            proxy=spec.proxy_id,
            service=spec.service,
            upstream=spec.upstream.destination if spec.upstream else "-",
        )
        entry.ready.set()

    async def _stop(self, key: tuple[str, int]) -> None:
        entry = self.running.pop(key, None)
        if entry is None:
            return
        entry.scope.cancel()
        await entry.done.wait()
        if entry.l7 is not None:
            self.ejections.remove(entry.spec.proxy_id, entry.l7)
        self._release_creds(entry.spec.service)
        emit(
            20,
            "stopped",
            kind=entry.spec.kind,
            address=f"{key[0]}:{key[1]}",
            proxy=entry.spec.proxy_id,
        )
