"""What a server without a leader is waiting for, in words.

Consul answers ``No cluster leader`` and logs little more while servers
gather. Here the join loop records each round (the servers that answered,
the ``retry_join`` addresses that did not and why) and ``describe`` turns it
into one line such as::

    waiting for bootstrap_expect=3 servers, know 2: s1, s2;
    127.0.0.1:8302 unreachable: connection refused

(on one line)

It is logged at most once per ``LOG_INTERVAL`` (``event=waiting_for_servers``)
and appended to the 500 ``No cluster leader`` answers after Consul's text.
Sans-I/O: the clock is a parameter of ``due``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from ..logs import log_event
from .join import Peer
from .members import MemberInfo, member_json

log = logging.getLogger("meshd.agent.peer_wait")

LOG_INTERVAL = 30.0


def _short_reason(reason: str) -> str:
    """``cannot reach 1.2.3.4:8300: [Errno 111] Connection refused`` -> ``connection refused``."""
    text = reason.removeprefix("Unavailable: ")
    if "] " in text:
        text = text.rsplit("] ", 1)[1]
    elif text.startswith("cannot reach ") and ": " in text[13:]:
        text = text[13:].split(": ", 1)[1]
    return text.strip().lower() or "no answer"


class PeerWait:
    """The last join round of a server agent, described on demand."""

    def __init__(self, me: str, expect: int) -> None:
        self.me = me
        self.expect = expect
        self.known: list[str] = [me]
        self.peers: dict[str, Peer] = {}  # node ID -> every server that ever answered
        self.unreachable: dict[str, str] = {}
        self.searched = False
        self._logged_at: float | None = None

    def record(self, peers: Iterable[Peer], unreachable: Mapping[str, str]) -> None:
        """One join round: the servers that answered, and address -> reason of the rest."""
        answered = list(peers)
        self.peers.update((p.node_id, p) for p in answered)
        self.known = sorted({self.me, *(p.node for p in answered)})
        self.unreachable = {a: _short_reason(r) for a, r in unreachable.items()}
        self.searched = True

    def describe(self, *, configured: bool, voters: int) -> str:
        """Why there is no leader yet, as far as this server can tell."""
        if configured:
            text = f"no leader elected yet among {voters} voting servers"
        elif self.expect > 1:
            names = ", ".join(self.known)
            count = len(self.known)
            text = f"waiting for bootstrap_expect={self.expect} servers, know {count}: {names}"
            if not self.searched:
                text += "; no retry_join/start_join address to find the others"
        else:
            text = "not bootstrapped: set bootstrap_expect, or join an existing cluster"
        parts = [f"{addr} unreachable: {why}" for addr, why in sorted(self.unreachable.items())]
        return "; ".join([text, *parts])

    def due(self, now: float) -> bool:
        """Whether to log the wait now (first time, then once per ``LOG_INTERVAL``)."""
        if self._logged_at is not None and now - self._logged_at < LOG_INTERVAL:
            return False
        self._logged_at = now
        return True

    def log(self, now: float, *, configured: bool, voters: int) -> None:
        """Log ``event=waiting_for_servers`` if ``due``."""
        if self.due(now):
            detail = self.describe(configured=configured, voters=voters)
            log_event(log, logging.WARNING, "waiting_for_servers", detail=detail)


def known_members(
    me: dict[str, Any], wait: PeerWait, info: MemberInfo, servers: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Members as this agent knows them without a leader (Consul serves
    /v1/agent/members from the agent's own gossip view): itself, the servers
    that answered its join rounds, and ``servers`` (node ID -> RPC address of
    the Raft configuration), the last two with status alive if they answered
    the last round."""
    out = [me]
    seen = {me["Tags"].get("id")}
    for peer in sorted(wait.peers.values(), key=lambda p: p.node):
        if peer.node_id not in seen:
            seen.add(peer.node_id)
            status = 4 if peer.address in wait.unreachable else 1
            out.append(
                member_json(
                    peer.node,
                    "",
                    info,
                    node_id=peer.node_id,
                    server_address=peer.address,
                    status=status,
                )
            )
    for node_id, address in sorted(servers.items()):
        if node_id not in seen:
            seen.add(node_id)
            out.append(member_json(node_id, "", info, node_id=node_id, server_address=address))
    return out
