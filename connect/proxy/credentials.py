"""The TLS credentials of each local identity, kept current from the agent.

An identity is a service name: a sidecar presents the leaf of its
``DestinationServiceName`` inbound and outbound. ``follow_credentials``
watches the CA roots (shared) and the identity's leaf (blocking queries)
and swaps in freshly built contexts when either changes. Connections pick
up ``Credentials.current`` when they start, so rotation never touches an
established connection.
"""

from __future__ import annotations

import trio

from .errors import ProxyConfigError
from .logfmt import emit
from .tlsconfig import Contexts, LeafCert, Roots, build_contexts, leaf_from_json, roots_from_json
from .watchers import Watched, WatchHub, leaf_resource, roots_resource


class Credentials:
    """The current contexts of one identity (None until roots and leaf arrived)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.current: Contexts | None = None
        self.ready = trio.Event()

    async def wait_current(self, timeout: float = 10.0) -> Contexts | None:
        """The contexts, waiting up to ``timeout`` s for the first ones (else None)."""
        with trio.move_on_after(timeout):
            await self.ready.wait()
        return self.current


async def follow_credentials(hub: WatchHub, creds: Credentials) -> None:
    """Rebuild ``creds.current`` on every roots or leaf change until cancelled.

    A leaf or roots answer that cannot be loaded is logged and the previous
    contexts stay in use.
    """
    roots_res = roots_resource()
    leaf_res = leaf_resource(creds.service)
    roots_cell = hub.acquire(roots_res, roots_from_json)
    leaf_cell = hub.acquire(leaf_res, leaf_from_json)
    try:
        seen = (0, 0)
        while True:
            if (roots_cell.version, leaf_cell.version) == seen:
                await _wait_either(roots_cell, seen[0], leaf_cell, seen[1])
            seen = (roots_cell.version, leaf_cell.version)
            roots, leaf = roots_cell.value, leaf_cell.value
            if roots is None or leaf is None:
                continue
            try:
                creds.current = build_contexts(roots, leaf)
            except ProxyConfigError as exc:
                emit(40, "credentials_failed", service=creds.service, reason=str(exc))
                continue
            emit(
                20,
                "credentials_loaded",
                service=creds.service,
                serial=leaf.serial,
                trust_domain=roots.trust_domain,
                roots=len(roots.pems),
            )
            creds.ready.set()
    finally:
        hub.release(roots_res)
        hub.release(leaf_res)


async def _wait_either(a: Watched[Roots], av: int, b: Watched[LeafCert], bv: int) -> None:
    async with trio.open_nursery() as nursery:

        async def one(cell: Watched[Roots] | Watched[LeafCert], version: int) -> None:
            await cell.wait_newer(version)
            nursery.cancel_scope.cancel()

        nursery.start_soon(one, a, av)
        nursery.start_soon(one, b, bv)
