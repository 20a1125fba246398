"""Leaf certificates the agent holds for its services (Consul's agent leaf cache).

``GET /v1/agent/connect/ca/leaf/:service`` is answered from here. The first
request for a service makes an EC P-256 key and a CSR on this agent (the key
never leaves it) and has a server sign it (``ConnectCA.Sign``). A task per
service then keeps the certificate fresh: it re-signs at a random point
between 40% and 50% of the lifetime (before half-life, so a failed attempt
has time to be retried), and at once when the active root changes (a
rotation). Each new certificate gets a higher ``ModifyIndex``, so a blocking
query on the endpoint (``?index=``) returns when it changes, which is how
proxies pick up renewals. Signing failures are retried with capped backoff
while the old certificate, if any, keeps being served.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import trio

from connect import ca as ca_core
from connect.rotation import parse_rfc3339
from connect.spiffe import ServiceID

from ..acl.errors import ACLPermissionDenied
from ..errors import Internal, MeshdError, RequestError
from .wire import ReadOptions, ReadResult

log = logging.getLogger("meshd.leaf")

ServerCall = Callable[[str, Mapping[str, Any]], Awaitable[Any]]
Read = Callable[[str, Mapping[str, Any], ReadOptions], Awaitable[ReadResult]]
Clock = Callable[[], datetime]

MAX_BACKOFF = 30.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Entry:
    service: str
    token: str = ""  # the requester's ACL token: servers check service:write with it
    cert: dict[str, Any] | None = None
    error: Exception | None = None
    changed: trio.Event = field(default_factory=trio.Event)
    renew_now: trio.Event = field(default_factory=trio.Event)


class LeafCache:
    """Per-service leaf certificates, signed by the servers and kept fresh.

    ``run()`` must be running (the agent starts it) for ``get`` to make
    progress; it owns the per-service renewal tasks.
    """

    def __init__(
        self,
        call: ServerCall,
        read: Read,
        datacenter: str,
        *,
        rng: random.Random | None = None,
        clock: Clock = _utcnow,
    ) -> None:
        self._call = call
        self._read = read
        self._datacenter = datacenter
        self._rng = rng or random.Random()
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._index = 0
        self._start_send, self._start_recv = trio.open_memory_channel[_Entry](math.inf)
        self._trust_domain = ""
        self._active_root = ""
        self._roots_known = trio.Event()

    async def run(self) -> None:
        """Watch the roots and run one renewal task per requested service."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_roots)
            async for entry in self._start_recv:
                nursery.start_soon(self._maintain, entry)

    async def get(
        self, service: str, index: int = 0, wait: float = 300.0, *, token: str = ""
    ) -> dict[str, Any]:
        """The current leaf of ``service`` as Consul's ``IssuedCert`` JSON.
        With ``index`` > 0, wait up to ``wait`` seconds for one whose
        ``ModifyIndex`` is higher. Raises the ``RequestError`` signing failed
        with when there is no certificate yet (e.g. 429 when rate limited)."""
        entry = self._entries.get(service)
        if entry is None:
            entry = self._entries[service] = _Entry(service, token)
            self._start_send.send_nowait(entry)
        elif token and (not entry.token or entry.cert is None):
            entry.token = token  # a failing entry retries with the newest caller's token
        if index > self._index:
            index = 0  # an index from before this agent restarted: answer now
        with trio.move_on_after(max(wait, 0.0) if index > 0 else 60.0):
            while entry.cert is None or (index > 0 and entry.cert["ModifyIndex"] <= index):
                if entry.cert is None and entry.error is not None:
                    raise entry.error
                await entry.changed.wait()
        if entry.cert is None:
            if entry.error is not None:
                raise entry.error
            raise Internal(f"no leaf certificate for {service!r} yet; the CA is not ready")
        return entry.cert

    # -------------------------------------------------------------- roots

    async def _watch_roots(self) -> None:
        index, backoff = 0, 0.5
        while True:
            try:
                result = await self._read("ca.roots", {}, ReadOptions(index=index, wait=300.0))
            except (MeshdError, RequestError) as exc:
                log.warning("event=leaf_roots_watch_failed reason=%s", exc)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = 0.5
            index = result.index if result.index > index else 0
            value = result.value or {}
            active = str(value.get("ActiveRootID") or "")
            self._trust_domain = str(value.get("TrustDomain") or "")
            if active and active != self._active_root:
                rotated = bool(self._active_root)
                self._active_root = active
                if rotated:
                    log.info("event=leaf_root_changed active=%s", active)
                    for entry in self._entries.values():
                        entry.renew_now.set()
            if self._trust_domain and active:
                self._roots_known.set()

    # ------------------------------------------------------------ renewal

    async def _maintain(self, entry: _Entry) -> None:
        backoff = 0.5
        while True:
            await self._roots_known.wait()
            try:
                await self._sign(entry)
                backoff = 0.5
            except (MeshdError, RequestError, ValueError) as exc:
                keep = isinstance(exc, RequestError | ACLPermissionDenied)
                entry.error = exc if keep else Internal(str(exc))
                self._wake(entry)
                log.warning("event=leaf_sign_failed service=%s reason=%s", entry.service, exc)
                with trio.move_on_after(backoff * (0.5 + self._rng.random())):
                    await entry.renew_now.wait()
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            entry.renew_now = trio.Event()
            with trio.move_on_after(self._renew_delay(entry)):
                await entry.renew_now.wait()

    def _renew_delay(self, entry: _Entry) -> float:
        assert entry.cert is not None
        start = parse_rfc3339(entry.cert["ValidAfter"])
        end = parse_rfc3339(entry.cert["ValidBefore"])
        life = (end - start).total_seconds()
        at = start.timestamp() + life * (0.4 + 0.1 * self._rng.random())
        return max(1.0, at - self._clock().timestamp())

    async def _sign(self, entry: _Entry) -> None:
        spiffe = ServiceID(self._trust_domain, self._datacenter, entry.service)
        key_pem = await trio.to_thread.run_sync(ca_core.generate_private_key, "ec", 256)
        csr = ca_core.make_csr(key_pem, spiffe)
        args = {"csr": csr, "service": entry.service, "token": entry.token}
        answer = await self._call("ConnectCA.Sign", args)
        self._index += 1
        create = entry.cert["CreateIndex"] if entry.cert else self._index
        entry.cert = {
            "SerialNumber": answer["SerialNumber"],
            "CertPEM": answer["CertPEM"],
            "PrivateKeyPEM": key_pem,
            "Service": answer["Service"],
            "ServiceURI": answer["ServiceURI"],
            "ValidAfter": answer["ValidAfter"],
            "ValidBefore": answer["ValidBefore"],
            "CreateIndex": create,
            "ModifyIndex": self._index,
        }
        entry.error = None
        log.info(
            "event=leaf_signed service=%s serial=%s valid_before=%s",
            entry.service,
            answer["SerialNumber"],
            answer["ValidBefore"],
        )
        self._wake(entry)

    @staticmethod
    def _wake(entry: _Entry) -> None:
        entry.changed.set()
        entry.changed = trio.Event()
