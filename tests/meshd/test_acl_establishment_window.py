"""Client agents in the window before the leader has established leadership:
``Status.Leader`` (what a client's /v1/status/leader asks) names no leader
yet, and ``ACL.Resolve`` waits (bounded) for the ``initial_management`` token
instead of answering "ACL not found" (issue 16 item 3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from meshd.agent.acl_resolver import ESTABLISHMENT_WAIT, ACLResolver
from meshd.agent.tokens import TokenStore
from meshd.config.model import ACLConfig
from meshd.errors import ACLNotFound
from registry.commands import ACLTokenDelete, ACLTokenSet
from registry.fsm import RegistryFSM
from registry.records import ACLToken
from tests.meshd.inproc import inproc_agent

SECRET = "5a1f2e3d-0000-4000-8000-00000000cafe"


class FakeServer:
    """What ``ACLResolver.attach_server`` uses of a server."""

    def __init__(self) -> None:
        self.fsm = RegistryFSM()
        self.store = self.fsm.store
        self.handlers: dict[str, Any] = {}
        self.token_resolver: Any = None
        self.leader = True
        self.pending: ACLToken | None = None  # committed, not yet applied here
        self.pending_delete: str | None = None  # a token's delete, the same

    def is_leader(self) -> bool:
        return self.leader

    async def barrier(self, *, strict: bool) -> None:
        await trio.sleep(0.01)  # the leader's read index, then applying up to it
        if self.pending is not None:
            assert self.fsm.apply_command(2, ACLTokenSet(tokens=(self.pending,))).ok
        if self.pending_delete is not None:
            delete = ACLTokenDelete(accessor_ids=(self.pending_delete,))
            assert self.fsm.apply_command(3, delete).ok

    def register_rpc(self, name: str, handler: Any, *, blocking: bool = False) -> None:
        self.handlers[name] = handler


def _resolver(initialized: Any) -> FakeServer:
    config = ACLConfig(enabled=True, default_policy="deny")
    r = ACLResolver(config, TokenStore(config, None), node="s1", datacenter="dc1", call=None)  # type: ignore[arg-type]
    server = FakeServer()
    r.attach_server(server, initialized=initialized)  # type: ignore[arg-type]
    return server


async def test_resolve_waits_for_the_token_the_leader_is_establishing(
    autojump_clock: MockClock,
) -> None:
    done = [False]
    server = _resolver(lambda: done[0])
    resolve = server.handlers["ACL.Resolve"]

    async def establish() -> None:
        await trio.sleep(1.5)
        token = ACLToken("00000000-0000-4000-8000-0000000000aa", SECRET)
        assert server.fsm.apply_command(1, ACLTokenSet(tokens=(token,))).ok
        done[0] = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(establish)
        start = trio.current_time()
        answer = await resolve({"secret": SECRET}, None)
    assert answer["accessor_id"] == "00000000-0000-4000-8000-0000000000aa"
    assert 1.5 <= trio.current_time() - start < 2


async def test_resolve_waits_at_most_the_bound_then_says_not_found(
    autojump_clock: MockClock,
) -> None:
    server = _resolver(lambda: False)
    start = trio.current_time()
    with pytest.raises(ACLNotFound):
        await server.handlers["ACL.Resolve"]({"secret": SECRET}, None)
    assert ESTABLISHMENT_WAIT <= trio.current_time() - start < ESTABLISHMENT_WAIT + 1


async def test_an_unknown_token_after_establishment_fails_at_once(
    autojump_clock: MockClock,
) -> None:
    server = _resolver(lambda: True)
    start = trio.current_time()
    with pytest.raises(ACLNotFound):
        await server.handlers["ACL.Resolve"]({"secret": SECRET}, None)
    assert trio.current_time() == start


async def test_a_follower_applies_what_was_committed_before_saying_not_found(
    autojump_clock: MockClock,
) -> None:
    """A token created through another server a moment ago works here too."""
    server = _resolver(lambda: True)
    server.leader = False
    server.pending = ACLToken("00000000-0000-4000-8000-0000000000bb", SECRET)
    answer = await server.handlers["ACL.Resolve"]({"secret": SECRET}, None)
    assert answer["accessor_id"] == "00000000-0000-4000-8000-0000000000bb"
    server.pending = None
    with pytest.raises(ACLNotFound):
        await server.handlers["ACL.Resolve"]({"secret": "no-such-secret"}, None)


async def test_a_consistent_resolve_on_a_follower_sees_a_logout_committed_before_it(
    autojump_clock: MockClock,
) -> None:
    """A client agent that logged a token out asks with ``consistent``: the
    follower applies the committed delete first instead of answering from
    its state before it (a plain resolve may still find the token)."""
    server = _resolver(lambda: True)
    accessor = "00000000-0000-4000-8000-0000000000cc"
    assert server.fsm.apply_command(1, ACLTokenSet(tokens=(ACLToken(accessor, SECRET),))).ok
    server.leader = False
    server.pending_delete = accessor
    answer = await server.handlers["ACL.Resolve"]({"secret": SECRET}, None)
    assert answer["accessor_id"] == accessor  # not consistent: this server's state
    with pytest.raises(ACLNotFound):
        await server.handlers["ACL.Resolve"]({"secret": SECRET, "consistent": True}, None)


async def test_status_leader_rpc_names_no_leader_until_establishment(
    autojump_clock: MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "acl.json"
    acl = {"enabled": True, "default_policy": "deny", "tokens": {"initial_management": SECRET}}
    cfg.write_text(json.dumps({"acl": acl}))
    async with inproc_agent(files=[str(cfg)]) as (agent, _api):
        assert agent.server is not None
        leader = await agent.server.call_local("Status.Leader", {})
        assert leader and leader == agent.server.leader_address()
        # The window between the election and the leader's ACL/CA set-up.
        monkeypatch.setattr(agent, "initialized", lambda: False)
        assert await agent.server.call_local("Status.Leader", {}) == ""
        monkeypatch.undo()
        assert await agent.server.call_local("Status.Leader", {}) == leader
