"""Session TTL expiry (Consul's session_ttl.go): the timer core under a fake
clock, the leader-only driver under trio's MockClock, and a dev agent driven
in-process (``App.handle``) under the autojump clock, so waiting out Consul's
10 s minimum TTL twice takes no real time."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from meshd.agent.session_ttl import (
    SESSION_TTL_MULTIPLIER,
    SessionTimers,
    SessionTTLController,
    ttl_seconds,
)
from meshd.agent.wire import WriteResult
from registry.commands import SessionDestroy
from registry.records import Session
from registry.results import OK
from tests.meshd.inproc import InprocClient, inproc_agent


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ttl_parses_go_durations_and_none_is_zero() -> None:
    assert ttl_seconds("10s") == 10.0
    assert ttl_seconds("1m30s") == 90.0
    assert ttl_seconds("") == 0.0
    assert ttl_seconds("0s") == 0.0
    assert ttl_seconds("soon") == 0.0


def test_a_session_expires_at_twice_its_ttl_not_before() -> None:
    clock = FakeClock()
    timers = SessionTimers(clock)
    timers.sync([("a", 10.0), ("no-ttl", 0.0)])
    assert len(timers) == 1 and timers.deadline("no-ttl") is None
    assert SESSION_TTL_MULTIPLIER == 2
    clock.now += 19.9
    assert timers.expired() == []
    clock.now += 0.1
    assert timers.expired() == ["a"]


def test_renew_restarts_the_timer_at_the_full_ttl() -> None:
    clock = FakeClock()
    timers = SessionTimers(clock)
    timers.sync([("a", 10.0)])
    clock.now += 15
    timers.renew("a", 10.0)
    clock.now += 15  # 30 s after creation, 15 s after the renew
    assert timers.expired() == []
    timers.sync([("a", 10.0)])  # a sync keeps the renewed deadline
    assert timers.deadline("a") == clock.now + 5
    clock.now += 5
    assert timers.expired() == ["a"]


def test_sync_forgets_destroyed_sessions_and_clear_restarts_all() -> None:
    clock = FakeClock()
    timers = SessionTimers(clock)
    timers.sync([("a", 10.0), ("b", 20.0)])
    clock.now += 18
    timers.sync([("b", 20.0)])
    assert timers.deadline("a") is None and len(timers) == 1
    timers.clear()  # a new leader: every timer afresh
    timers.sync([("b", 20.0)])
    assert timers.deadline("b") == clock.now + 40
    assert timers.next_deadline() == clock.now + 40


def test_expired_stays_listed_until_forgotten_so_a_failed_destroy_is_retried() -> None:
    clock = FakeClock()
    timers = SessionTimers(clock)
    timers.sync([("b", 10.0), ("a", 15.0)])
    clock.now += 100
    assert timers.expired() == ["b", "a"]  # earliest deadline first
    timers.forget("b")
    assert timers.expired() == ["a"]


# -- the driver, under trio's MockClock --------------------------------------------------


@dataclass
class _Table:
    rows: dict[str, Session] = field(default_factory=dict)

    def get(self, key: str) -> Session | None:
        return self.rows.get(key)

    def sorted_records(self) -> list[Session]:
        return [self.rows[k] for k in sorted(self.rows)]


class _Core:
    term = 1


class _Node:
    core = _Core()

    async def wait_state_change(self, timeout: float) -> None:
        await trio.sleep(timeout)


class FakeServer:
    """What the controller uses of ``MeshServer``: store, term, leadership, writes."""

    def __init__(self) -> None:
        self.table = _Table()
        self.store = type("S", (), {"sessions": type("T", (), {"sessions": self.table})()})()
        self.node = _Node()
        self.leader = True
        self.destroyed: list[tuple[str, float]] = []
        self.rpcs: dict[str, Any] = {}

    def is_leader(self) -> bool:
        return self.leader

    def register_rpc(self, name: str, handler: Any) -> None:
        self.rpcs[name] = handler

    async def on_leader(self, method: str, args: Mapping[str, Any], local: Any) -> Any:
        return await local()

    async def write(self, cmd: SessionDestroy) -> WriteResult:
        self.destroyed.append((cmd.id, trio.current_time()))
        self.table.rows.pop(cmd.id, None)
        return WriteResult.from_result(OK, 1)


async def test_the_leader_expires_sessions_after_twice_the_ttl(autojump_clock: Any) -> None:
    server = FakeServer()
    server.table.rows["s1"] = Session(id="s1", ttl="10s")
    server.table.rows["keep"] = Session(id="keep", ttl="")
    ctl = SessionTTLController(server)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ctl.run)
        start = trio.current_time()
        await trio.sleep(19)
        assert server.destroyed == []
        await trio.sleep(2)
        assert [s for s, _ in server.destroyed] == ["s1"]
        assert 20 <= server.destroyed[0][1] - start <= 20.6
        assert "keep" in server.table.rows
        nursery.cancel_scope.cancel()


async def test_renew_over_rpc_postpones_expiry(autojump_clock: Any) -> None:
    server = FakeServer()
    server.table.rows["s1"] = Session(id="s1", ttl="10s")
    ctl = SessionTTLController(server)  # type: ignore[arg-type]
    renew = server.rpcs["Session.Renew"]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ctl.run)
        for _ in range(4):  # renewed every 15 s for a minute: never expires
            await trio.sleep(15)
            assert await renew({"id": "s1"}, None) == {"found": True}
        assert server.destroyed == []
        assert await renew({"id": "nope"}, None) == {"found": False}
        await trio.sleep(21)
        assert [s for s, _ in server.destroyed] == ["s1"]
        nursery.cancel_scope.cancel()


async def test_a_new_leader_restarts_every_timer_at_the_full_ttl(autojump_clock: Any) -> None:
    server = FakeServer()
    server.table.rows["s1"] = Session(id="s1", ttl="10s")
    ctl = SessionTTLController(server)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ctl.run)
        await trio.sleep(15)
        server.leader = False  # leadership lost at 15 s ...
        await trio.sleep(10)
        assert server.destroyed == []  # ... nobody expires it meanwhile
        server.node.core.term = 2  # regained in a new term at 25 s
        server.leader = True
        regained = trio.current_time()
        await trio.sleep(19)
        assert server.destroyed == []  # not at the old deadline (20 s)
        await trio.sleep(3)
        assert [s for s, _ in server.destroyed] == ["s1"]
        assert 20 <= server.destroyed[0][1] - regained <= 21.6
        nursery.cancel_scope.cancel()


# -- a dev agent, in-process ------------------------------------------------------------------


async def _session(api: InprocClient, body: dict[str, Any]) -> str:
    r = await api.put("/v1/session/create", body)
    assert r.status == 200, r.text
    session_id: str = r.json()["ID"]
    return session_id


async def test_a_dev_agent_expires_an_unrenewed_session_and_applies_its_behavior(
    autojump_clock: Any,
) -> None:
    async with inproc_agent() as (agent, api):
        assert agent.sync is not None
        with trio.fail_after(10):
            await agent.sync.in_sync.wait()
        for bad in ("9s", "86401s"):  # Consul's SessionTTLMin / SessionTTLMax
            r = await api.put("/v1/session/create", {"TTL": bad})
            assert r.status == 400 and "TTL" in r.text, (bad, r.status, r.text)
        release = await _session(api, {"TTL": "10s", "LockDelay": "0s", "Name": "r"})
        delete = await _session(api, {"TTL": "10s", "Behavior": "delete", "Name": "d"})
        renewed = await _session(api, {"TTL": "10s", "Name": "kept"})
        start = trio.current_time()
        for key, sid in (("svc/leader", release), ("svc/gone", delete)):
            r = await api.put(f"/v1/kv/{key}?acquire={sid}", "me")
            assert r.json() is True
        while trio.current_time() - start < 60:
            r = await api.put(f"/v1/session/renew/{renewed}")
            assert r.status == 200 and r.json()[0]["ID"] == renewed
            listed = {s["ID"] for s in (await api.get("/v1/session/list")).json()}
            elapsed = trio.current_time() - start
            if elapsed < 9.5:  # never before the TTL
                assert {release, delete} <= listed, elapsed
            if not listed & {release, delete}:
                break
            await trio.sleep(2)
        elapsed = trio.current_time() - start
        assert listed == {renewed}, f"not expired after {elapsed:.1f}s"
        assert elapsed < 30, elapsed  # 2 x TTL and a little
        [entry] = (await api.get("/v1/kv/svc/leader")).json()
        assert "Session" not in entry
        assert base64.b64decode(entry["Value"]) == b'"me"'
        assert (await api.get("/v1/kv/svc/gone")).status == 404
        r = await api.put(f"/v1/session/renew/{release}")
        assert r.status == 404 and release in r.text
