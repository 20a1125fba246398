"""How a client agent reaches the servers: a pool of RPC addresses with
failover, and the read/write backend that forwards through it."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import trio

from registry.commands import Command, encode_command, stamped

from ..acl import request as acl_context
from ..errors import NoServersError
from ..rpc import RPCClient, RPCConnectionLost, RPCError, RPCUnavailable
from .server import error_from_rpc
from .wire import ReadOptions, ReadResult, WriteResult

log = logging.getLogger("meshd.pool")


class ServerPool:
    """Known server RPC addresses, the one in use first. A server that does
    not answer moves to the back; ``refresh`` learns the current set from
    any server's Raft configuration."""

    def __init__(self, rpc: RPCClient, rng: random.Random | None = None) -> None:
        self.rpc = rpc
        self._rng = rng or random.Random()
        self._servers: list[str] = []
        self._shuffled = False

    def add(self, addresses: Iterable[str]) -> None:
        for addr in addresses:
            if addr and addr not in self._servers:
                self._servers.append(addr)
        if len(self._servers) > 1 and not self._shuffled:
            # Spread clients over servers the first time the list fills.
            self._rng.shuffle(self._servers)
            self._shuffled = True

    def replace(self, addresses: Iterable[str]) -> None:
        current = self._servers[0] if self._servers else None
        fresh = [a for a in addresses if a]
        self._servers = sorted(fresh, key=lambda a: a != current)

    def servers(self) -> list[str]:
        return list(self._servers)

    async def call(
        self,
        method: str,
        args: Mapping[str, Any],
        *,
        timeout: float = 30.0,
        token: str | None = None,
        idempotent: bool = True,
    ) -> Any:
        """Call ``method`` on the first server that answers, acting with
        ``token`` (default: the RPC client's, i.e. the request's or the
        agent's). Raises ``NoServersError`` when none does, ``RPCError`` for
        an answered error. A call that is not ``idempotent`` (a write) is
        not sent again after its connection broke mid-call: it raises that
        ``RPCConnectionLost`` (the write may have been applied; Consul's
        agents likewise retry only reads then)."""
        tried = 0
        last: RPCUnavailable | None = None
        while tried < max(1, len(self._servers)) and self._servers:
            addr = self._servers[0]
            try:
                return await self.rpc.call(addr, method, args, timeout=timeout, token=token)
            except RPCUnavailable as exc:
                if not idempotent and isinstance(exc, RPCConnectionLost):
                    raise
                last = exc
                log.info("event=server_unreachable server=%s reason=%s", addr, exc.message)
                if self._servers and self._servers[0] == addr:
                    self._servers.append(self._servers.pop(0))
                tried += 1
        raise NoServersError(
            "No known Consul servers" + (f" (last error: {last.message})" if last else "")
        )

    async def refresh(self) -> None:
        """Replace the pool with the servers in the cluster's configuration."""
        try:
            peers = await self.call("Status.Peers", {}, timeout=5)
        except (NoServersError, RPCError, trio.TooSlowError):
            return
        if isinstance(peers, list) and peers:
            self.replace(str(p) for p in peers)


class ClientBackend:
    """Reads and writes of a client agent, forwarded to a server."""

    def __init__(
        self,
        pool: ServerPool,
        token: Callable[[], str] = lambda: "",
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.pool = pool
        self._token = token
        self.wall_clock = wall_clock  # a command's unset ``now`` (see MeshServer.write)

    async def write(self, cmd: Command) -> WriteResult:
        """Forward ``cmd`` to a server, with the token of the request being
        handled, else the agent's own (``token()``): the server checks the
        command against it when ACLs are on."""
        cmd = stamped(cmd, self.wall_clock())
        cmd.validate()
        token = acl_context.secret.get() or self._token()
        try:
            resp = await self.pool.call(
                "Registry.Apply", {"cmd": encode_command(cmd)}, token=token, idempotent=False
            )
        except RPCError as exc:
            raise error_from_rpc(exc) from None
        return WriteResult.from_wire(resp)

    async def read(self, name: str, args: Mapping[str, Any], opts: ReadOptions) -> ReadResult:
        timeout = opts.wait + 30 if opts.index else 30
        try:
            resp = await self.pool.call(
                "Registry.Read",
                {"name": name, "args": dict(args), "opts": opts.to_wire()},
                timeout=timeout,
            )
        except RPCError as exc:
            raise error_from_rpc(exc) from None
        return ReadResult.from_wire(resp)
