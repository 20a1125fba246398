"""Forming and joining a cluster without gossip.

Every agent pings the addresses in ``retry_join`` (servers' RPC ports) until
one answers. A server with no Raft state then either

* asks the leader of an existing cluster to add it (``Operator.JoinServer``:
  it enters as a non-voter and is promoted once caught up), or
* with ``bootstrap_expect = N``, once it knows N servers of its datacenter
  that have no state either, bootstraps Raft with exactly those N (sorted by
  ID, so every one of them writes the same configuration).

Client agents only need one reachable server; the pool then learns the rest
from the Raft configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import trio

from raft.errors import ConfigChangeError
from raft.types import Configuration
from raft.types import Server as RaftServer

from ..rpc import RPCClient, RPCError, RPCUnavailable

log = logging.getLogger("meshd.join")


@dataclass(frozen=True)
class Peer:
    node_id: str
    node: str
    datacenter: str
    address: str
    leader: str | None
    bootstrapped: bool


def failure_reason(exc: BaseException) -> str:
    """The root cause of a failed call in a few words (``connection refused``)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.rsplit(": ", 1)[-1].lower()
        if isinstance(seen, BaseExceptionGroup) and seen.exceptions:
            seen = seen.exceptions[0]
            continue
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, trio.TooSlowError):
        return "no answer in time"
    return str(exc) or type(exc).__name__


async def ping(
    rpc: RPCClient, address: str, timeout: float = 3.0, failures: dict[str, str] | None = None
) -> Peer | None:
    """The server at ``address``, or None (its reason then in ``failures``)."""
    try:
        r: dict[str, Any] = await rpc.call(address, "Status.Ping", {}, timeout=timeout)
    except (RPCUnavailable, RPCError, trio.TooSlowError) as exc:
        if failures is not None:
            failures[address] = failure_reason(exc)
        # A certificate problem will not heal by retrying: say so loudly.
        level = logging.WARNING if "certificate" in str(exc).lower() else logging.DEBUG
        log.log(level, "event=join_ping_failed address=%s reason=%s", address, exc)
        return None
    return Peer(
        str(r["node_id"]),
        str(r["node"]),
        str(r["datacenter"]),
        str(r["address"]),
        r.get("leader") or None,
        bool(r.get("bootstrapped")),
    )


def bootstrap_set(me: Peer, peers: Sequence[Peer], expect: int) -> Configuration | None:
    """The configuration to bootstrap with, or None if not (yet) allowed:
    every known server must be unbootstrapped and there must be ``expect``."""
    if any(p.bootstrapped or p.leader for p in peers):
        return None
    unique = {p.node_id: p for p in (*peers, me)}
    if len(unique) < expect:
        return None
    chosen = sorted(unique.values(), key=lambda p: p.node_id)[:expect]
    if me.node_id not in {p.node_id for p in chosen}:
        return None
    return Configuration(tuple(RaftServer(p.node_id, p.address) for p in chosen))


async def join_servers(
    rpc: RPCClient,
    addresses: Sequence[str],
    *,
    datacenter: str,
    failures: dict[str, str] | None = None,
) -> list[Peer]:
    """Ping every address; returns the servers of ``datacenter`` that answered
    (and the reasons of the others in ``failures``)."""
    found: list[Peer] = []

    async def one(addr: str) -> None:
        peer = await ping(rpc, addr, failures=failures)
        if peer is None:
            return
        if peer.datacenter != datacenter:
            log.warning(
                "event=join_wrong_datacenter address=%s theirs=%s ours=%s",
                addr,
                peer.datacenter,
                datacenter,
            )
            if failures is not None:
                failures[addr] = f"in datacenter {peer.datacenter}, not {datacenter}"
            return
        found.append(peer)

    async with trio.open_nursery() as nursery:
        for addr in addresses:
            nursery.start_soon(one, addr)
    return found


async def ask_leader_to_add(rpc: RPCClient, leader: str, node_id: str, address: str) -> bool:
    try:
        await rpc.call(
            leader, "Operator.JoinServer", {"id": node_id, "address": address}, timeout=60
        )
        return True
    except (RPCUnavailable, RPCError, trio.TooSlowError) as exc:
        log.info("event=join_server_failed leader=%s reason=%s", leader, exc)
        return False


class NotBootstrappable(ConfigChangeError):
    pass
