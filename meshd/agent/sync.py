"""Anti-entropy: make the catalog's view of this node match the local state.

Changes are pushed as they happen (batched for ``batch_delay``), and a full
comparison runs every ``interval`` and after every failure, repairing
whatever a server lost or someone changed through the catalog API. Only
differences are written, so a steady cluster costs no Raft writes here.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from registry import shapes
from registry.commands import Command, DeregisterRequest, RegisterRequest
from registry.errors import RegistryError
from registry.records import HealthCheck, ServiceInstance

from ..acl import request as acl_context
from ..acl.errors import ACLError
from ..errors import MeshdError, RemoteError
from ..metrics.recorder import NO_METRICS, Recorder
from .consul_service import CONSUL_SERVICE
from .liveness import SERF_HEALTH, serf_check
from .local import LocalState
from .wire import ReadOptions, ReadResult, WriteResult

log = logging.getLogger("meshd.sync")
_IGNORED = ("CreateIndex", "ModifyIndex")
# Server answers that refuse one item for good (retrying cannot help until
# the item or the token changes): sync skips that item and keeps going.
_REFUSAL_CODES = frozenset(
    {"PermissionDenied", "ACLNotFound", "Validation", "InvalidArgument", "NotFound"}
)


class WriteRefused(MeshdError):
    """The servers refused one write for a reason of its own (ACL, validation)."""


def _refusal(exc: BaseException) -> str | None:
    """Why ``exc`` refuses one item for good, or None when it is transient
    (no leader, no server, a network failure, or a token the servers do not
    know yet: Consul's "ACL not found" while a rollout is still creating
    tokens), which fails the whole pass and is retried with the backoff."""
    if "ACL not found" in str(exc):
        return None
    if isinstance(exc, RemoteError):
        return str(exc) if exc.code in _REFUSAL_CODES else None
    if isinstance(exc, WriteRefused | ACLError | RegistryError):
        return str(exc)
    if isinstance(exc, ValueError | TypeError | OverflowError) and not isinstance(exc, MeshdError):
        # A value the wire format cannot encode (the API refuses these; a
        # definition from an older version or a file might still hold one).
        return f"cannot encode: {exc}"
    return None


class Backend(Protocol):
    async def write(self, cmd: Command) -> WriteResult: ...
    async def read(self, name: str, args: Mapping[str, Any], opts: ReadOptions) -> ReadResult: ...


@dataclass(frozen=True)
class NodeInfo:
    name: str
    id: str
    address: str
    datacenter: str
    tagged_addresses: Mapping[str, str]
    meta: Mapping[str, str]


def _strip(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in _IGNORED}


def scaled_interval(base: float, nodes: int) -> float:
    """Consul's anti-entropy scaling (agent/ae ``scaleFactor``): up to 128
    nodes the base interval, then one more multiple per doubling, so that a
    large cluster's servers see a bounded rate of full syncs."""
    if nodes <= 128:
        return base
    return base * (math.ceil(math.log2(nodes) - math.log2(128)) + 1)


class AntiEntropy:
    def __init__(
        self,
        local: LocalState,
        backend: Backend,
        node: NodeInfo,
        *,
        interval: float = 60.0,
        batch_delay: float = 0.02,
        rng: random.Random | None = None,
        cluster_size: Callable[[], int] = lambda: 1,
        metrics: Recorder | None = None,
        authorize: Callable[[Command, str], Awaitable[None]] | None = None,
    ) -> None:
        self.local = local
        # On a server agent, writes go to its own Raft, not through the RPC
        # rules: ``authorize(cmd, token)`` applies them to an item's own token.
        self.authorize = authorize
        self.backend = backend
        self.node = node
        self.interval = interval
        self.batch_delay = batch_delay
        self.rng = rng or random.Random()
        self.cluster_size = cluster_size
        self.synced_version = -1
        self.last_full_sync: float | None = None
        self.syncs = 0
        self.in_sync = trio.Event()
        self.refused: dict[str, str] = {}  # item -> why the servers refused it
        self._seen_items: set[str] = set()
        self._kick = trio.Event()
        self._synced = trio.Event()
        self.metrics = metrics if metrics is not None else NO_METRICS  # passes and durations

    def trigger_full(self) -> None:
        """Run a full sync now (after a reconnect or a reload)."""
        self.synced_version = -1
        self._kick.set()
        self.local.poke()  # the loop may be parked on local changes

    async def wait_synced(self, version: int, timeout: float) -> bool:
        """Wait (at most ``timeout``) until the local state as of ``version``
        is in the catalog; returns whether it is. Lets the agent API give a
        registering client read-your-writes without making it depend on the
        servers being reachable."""
        with trio.move_on_after(timeout):
            while self.synced_version < version:
                await self._synced.wait()
        return self.synced_version >= version

    async def run(self) -> None:
        """Sync until cancelled; never raises for a server being unreachable.
        Also watches this node's catalog entry, so a change made behind the
        agent's back (a catalog deregister) is repaired at once, not at the
        next full sync."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_catalog)
            await self._sync_loop()

    async def _watch_catalog(self) -> None:
        index = 0
        while True:
            opts = ReadOptions(index=index, wait=300.0, consistency="stale")
            try:
                res = await self.backend.read("health.node", {"name": self.node.name}, opts)
            except (MeshdError, trio.TooSlowError, OSError):
                await trio.sleep(1.0)
                continue
            if index and res.index != index:
                self._kick.set()
                self.local.poke()
            index = res.index if res.index >= index else 0

    async def _sync_loop(self) -> None:
        next_full = 0.0
        backoff = 0.5
        while True:
            now = trio.current_time()
            full = now >= next_full or self.synced_version < 0
            try:
                writes = await self.sync(full=full)
                elapsed = trio.current_time() - now
                self.metrics.anti_entropy_sync(full=full, ok=True, seconds=elapsed, writes=writes)
                backoff = 0.5
                if full:
                    jitter = self.rng.uniform(0, 0.1)
                    base = scaled_interval(self.interval, self.cluster_size())
                    next_full = trio.current_time() + base * (1 + jitter)
            except Exception as exc:  # anti-entropy must outlive any one bad pass
                elapsed = trio.current_time() - now
                self.metrics.anti_entropy_sync(full=full, ok=False, seconds=elapsed, writes=0)
                expected = isinstance(exc, MeshdError | RegistryError | trio.TooSlowError | OSError)
                log.warning(
                    "event=sync_failed reason=%s retry_in=%.1fs",
                    exc if expected else f"{type(exc).__name__}: {exc}",
                    backoff,
                    exc_info=not expected,
                )
                self.synced_version = -1
                kick = self._kick = trio.Event()
                with trio.move_on_after(backoff):
                    await kick.wait()  # a join or reload retries at once
                backoff = min(backoff * 2, 15.0)
                continue
            with trio.move_on_at(next_full):
                while self.local.version == self.synced_version and not self._kick.is_set():
                    await self.local.wait_changed()
                self._kick = trio.Event()
                await trio.sleep(self.batch_delay)  # let a burst of changes land together

    async def sync(self, *, full: bool) -> int:
        """One pass; returns how many writes it made. Raises on failure."""
        version = self.local.version
        writes = 0
        self._seen_items = set()
        catalog = await self._catalog_view()
        node_json, services, checks = catalog
        serf = checks.get(SERF_HEALTH)
        # serfHealth is the leader's verdict once it exists: a critical one
        # turns passing with this agent's next heartbeat. Rewriting it here
        # would fight the leader (each late heartbeat two Raft writes, which
        # slow the next heartbeats further), so only a missing one is written.
        if node_json is None or not self._node_matches(node_json) or serf is None:
            await self._write(self._register_node())
            writes += 1
        for sid, defn in list(self.local.services.items()):
            want = _strip(shapes.service_json(defn.service))
            have = services.pop(sid, None)
            local_checks = self.local.service_checks(sid)
            checks_ok = all(
                _strip(shapes.check_json(c)) == _strip(checks.get(c.check_id, {}))
                for c in local_checks
            )
            if have is None or _strip(have) != want or not checks_ok:
                cmd = self._register_service(defn.service, local_checks)
                writes += await self._write_item(f"service:{sid}", cmd, token=defn.token)
            for c in local_checks:
                checks.pop(c.check_id, None)
        for c in self.local.node_checks():
            have_check = checks.pop(c.check_id, None)
            if have_check is None or _strip(have_check) != _strip(shapes.check_json(c)):
                cmd = self._register_check(c)
                writes += await self._write_item(f"check:{c.check_id}", cmd)
        # The leader manages the servers' ``consul`` service (Consul's local
        # state skips ``structs.ConsulServiceID`` the same way).
        services.pop(CONSUL_SERVICE, None)
        for sid in services:
            # The agent token: the service (and its token) is gone locally.
            dereg = DeregisterRequest(node=self.node.name, service_id=sid)
            writes += await self._write_item(f"deregister-service:{sid}", dereg)
        for cid, have_check in checks.items():
            if cid == SERF_HEALTH or have_check.get("ServiceID") in services:
                continue
            dereg = DeregisterRequest(node=self.node.name, check_id=cid)
            writes += await self._write_item(f"deregister-check:{cid}", dereg)
        self._forget_refusals()
        self.synced_version = version
        self._synced.set()
        self._synced = trio.Event()
        self.syncs += 1
        if full:
            self.last_full_sync = time.time()
        self.in_sync.set()
        if writes:
            log.info("event=sync_done writes=%d full=%s", writes, full)
        return writes

    async def _catalog_view(
        self,
    ) -> tuple[dict[str, Any] | None, dict[str, Any], dict[str, Any]]:
        opts = ReadOptions(consistency="stale")
        res = await self.backend.read("catalog.node", {"name": self.node.name}, opts)
        if res.value is None:
            return None, {}, {}
        services = dict(res.value.get("Services") or {})
        res_checks = await self.backend.read("health.node", {"name": self.node.name}, opts)
        checks = {c["CheckID"]: c for c in res_checks.value or []}
        return res.value.get("Node"), services, checks

    def _node_matches(self, node_json: Mapping[str, Any]) -> bool:
        n = self.node
        return (
            node_json.get("ID") == n.id
            and node_json.get("Address") == n.address
            and dict(node_json.get("TaggedAddresses") or {}) == dict(n.tagged_addresses)
            and dict(node_json.get("Meta") or {}) == dict(n.meta)
        )

    def _base(self) -> dict[str, Any]:
        n = self.node
        return {
            "node": n.name,
            "id": n.id,
            "address": n.address,
            "datacenter": n.datacenter,
            "tagged_addresses": dict(n.tagged_addresses),
            "node_meta": dict(n.meta),
            "now": time.time(),
        }

    def _register_node(self) -> RegisterRequest:
        # A live agent vouches for its node with Consul's serfHealth check
        # (sessions require it by default); the leader's liveness tracking
        # marks it critical when the agent stops heartbeating.
        return RegisterRequest(**self._base(), checks=(serf_check(self.node.name, "passing"),))

    def _register_service(self, svc: ServiceInstance, checks: list[HealthCheck]) -> RegisterRequest:
        # The node is registered first; a service's token (Consul uses the
        # registration's) need not be allowed to rewrite the node.
        return RegisterRequest(
            **self._base(), service=svc, checks=tuple(checks), skip_node_update=True
        )

    def _register_check(self, check: HealthCheck) -> RegisterRequest:
        return RegisterRequest(**self._base(), checks=(check,), skip_node_update=True)

    async def _write(self, cmd: Command, *, token: str = "") -> None:
        """Write ``cmd`` acting with ``token`` (a service's registration
        token), else the agent's token (see ``ClientBackend``)."""
        acl_context.secret.set(token or None)
        if token and self.authorize is not None:
            await self.authorize(cmd, token)
        result = await self.backend.write(cmd)
        if not result.ok:
            raise WriteRefused(f"catalog write refused: {result.error}: {result.message}")

    async def _write_item(self, key: str, cmd: Command, *, token: str = "") -> int:
        """Write one item; returns 1 when written, 0 when the servers refused
        it for good. A refused item is logged once (again only if the reason
        changes) and retried at every pass, so the rest of the node keeps
        syncing (Consul's anti-entropy likewise skips an item it cannot
        sync). Transient failures raise and fail the pass."""
        self._seen_items.add(key)
        try:
            await self._write(cmd, token=token)
        except Exception as exc:
            reason = _refusal(exc)
            if reason is None:
                raise
            if self.refused.get(key) != reason:
                log.warning("event=sync_item_refused item=%s reason=%s", key, reason)
            self.refused[key] = reason
            return 0
        if self.refused.pop(key, None) is not None:
            log.info("event=sync_item_accepted item=%s", key)
        return 1

    def _forget_refusals(self) -> None:
        """Drop refusals of items this pass no longer tried (gone or in sync)."""
        for key in [k for k in self.refused if k not in self._seen_items]:
            del self.refused[key]
        self._seen_items = set()
