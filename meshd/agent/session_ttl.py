"""Session TTL expiry: the leader's timers (Consul's agent/consul/session_ttl.go).

A session with a ``TTL`` must be renewed (``PUT /v1/session/renew/:id``)
within it or the leader destroys it, which releases or deletes the keys it
holds as its ``Behavior`` says. As in Consul the timer runs for
``TTL x SESSION_TTL_MULTIPLIER`` (2): the contract is that a session is
never invalidated *before* its TTL, and the grace absorbs network and
processing delays. The timers live in the leader's memory only: a new
leader starts every session's timer afresh at the full (multiplied) TTL
(Consul's ``initializeSessionTimers``), so a leader change can delay an
expiry but never lose it. Expiry is written through Raft as the same
``SessionDestroy`` a user's destroy is.

``SessionTimers`` is the sans-I/O core (a clock parameter, no trio);
``SessionTTLController`` is the thin leader-only driver.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import trio

from raft.transport import PeerInfo
from registry.commands import SessionDestroy

from ..durations import parse_duration_ns
from ..errors import MeshdError

if TYPE_CHECKING:
    from .server import MeshServer

log = logging.getLogger("meshd.session_ttl")

# Consul's structs.SessionTTLMultiplier.
SESSION_TTL_MULTIPLIER = 2
# The longest the driver sleeps between looks at the store (new sessions,
# destroyed ones, a lost leadership), so a timer starts at most this late.
MAX_POLL = 0.5


def ttl_seconds(ttl: str) -> float:
    """A session's ``TTL`` field in seconds; 0 for none (``""``, ``"0s"``) or
    one that does not parse (the API validated it; an old record must not
    stop the timers of the others)."""
    if not ttl:
        return 0.0
    try:
        return parse_duration_ns(ttl) / 1e9
    except ValueError:
        return 0.0


class SessionTimers:
    """One deadline per TTL session, under an injected ``clock``.

    ``sync`` starts a full timer for every TTL session not yet tracked and
    forgets sessions that are gone; ``renew`` restarts one; ``expired`` lists
    the sessions past their deadline (still tracked until ``forget``, so a
    failed destroy is retried)."""

    def __init__(
        self, clock: Callable[[], float], *, multiplier: float = SESSION_TTL_MULTIPLIER
    ) -> None:
        self._clock = clock
        self._multiplier = multiplier
        self._deadline: dict[str, float] = {}
        self._ttl: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._deadline)

    def deadline(self, session_id: str) -> float | None:
        """When ``session_id`` expires (clock time), or None when untracked."""
        return self._deadline.get(session_id)

    def renew(self, session_id: str, ttl: float) -> None:
        """(Re)start the timer of ``session_id`` at the full ``ttl`` x multiplier;
        a ``ttl`` of 0 (no TTL) removes it."""
        if ttl <= 0:
            self.forget(session_id)
            return
        self._ttl[session_id] = ttl
        self._deadline[session_id] = self._clock() + ttl * self._multiplier

    def forget(self, session_id: str) -> None:
        self._deadline.pop(session_id, None)
        self._ttl.pop(session_id, None)

    def clear(self) -> None:
        """Drop every timer (leadership lost: the next leader starts afresh)."""
        self._deadline.clear()
        self._ttl.clear()

    def sync(self, sessions: Iterable[tuple[str, float]]) -> None:
        """Track exactly ``sessions`` ((id, ttl seconds) pairs): a new TTL
        session gets a full timer, a known one keeps its deadline, one no
        longer listed (destroyed) is forgotten."""
        seen: set[str] = set()
        for session_id, ttl in sessions:
            if ttl <= 0:
                continue
            seen.add(session_id)
            if session_id not in self._deadline:
                self.renew(session_id, ttl)
        for session_id in [s for s in self._deadline if s not in seen]:
            self.forget(session_id)

    def expired(self) -> list[str]:
        """Sessions whose deadline has passed, earliest first."""
        now = self._clock()
        due = [(d, s) for s, d in self._deadline.items() if d <= now]
        return [s for _, s in sorted(due)]

    def next_deadline(self) -> float | None:
        return min(self._deadline.values(), default=None)


class SessionTTLController:
    """The leader's session timers: started afresh on every new term, synced
    with the store, renewed by the ``Session.Renew`` RPC (forwarded to the
    leader like ``Node.Heartbeat``), expired through Raft."""

    def __init__(
        self, server: MeshServer, *, clock: Callable[[], float] = trio.current_time
    ) -> None:
        self.server = server
        self.timers = SessionTimers(clock)
        self._clock = clock
        self._term_seen: int | None = None
        self.expired_count = 0
        server.register_rpc("Session.Renew", self._rpc_renew)

    def _ttl_sessions(self) -> list[tuple[str, float]]:
        records = self.server.store.sessions.sessions.sorted_records()
        return [(s.id, ttl_seconds(s.ttl)) for s in records]

    async def _rpc_renew(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        """Restart the timer of session ``id`` on the leader; ``{"found": bool}``."""
        session_id = str(args.get("id", ""))

        async def local() -> Any:
            session = self.server.store.sessions.sessions.get(session_id)
            if session is None:
                return {"found": False}
            self._follow_term()
            self.timers.renew(session_id, ttl_seconds(session.ttl))
            return {"found": True}

        return await self.server.on_leader("Session.Renew", {"id": session_id}, local)

    def _follow_term(self) -> None:
        term = self.server.node.core.term
        if self._term_seen != term:
            # A new leadership: every timer restarts at the full TTL.
            self._term_seen = term
            self.timers.clear()

    async def run(self) -> None:
        """Expire sessions while this server leads; runs until cancelled."""
        while True:
            if not self.server.is_leader():
                self._term_seen = None
                self.timers.clear()
                await self.server.node.wait_state_change(1.0)
                continue
            try:
                await self.step()
            except MeshdError as exc:  # retried on the next pass
                log.warning("event=session_ttl_failed reason=%s", exc)
            except Exception:
                log.exception("event=session_ttl_crashed")
            await trio.sleep(self._pause())

    def _pause(self) -> float:
        nxt = self.timers.next_deadline()
        if nxt is None:
            return MAX_POLL
        return max(0.01, min(MAX_POLL, nxt - self._clock()))

    async def step(self) -> None:
        """One pass: follow the term, sync with the store, destroy the expired."""
        self._follow_term()
        self.timers.sync(self._ttl_sessions())
        for session_id in self.timers.expired():
            if not self.server.is_leader():
                return
            result = await self.server.write(SessionDestroy(id=session_id))
            if not result.ok:
                raise MeshdError(f"session {session_id} expiry refused: {result.message}")
            self.timers.forget(session_id)
            self.expired_count += 1
            log.info("event=session_expired session=%s", session_id)
