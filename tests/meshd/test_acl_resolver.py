"""Token resolution on a client agent: the TTL cache, ``acl.down_policy``
when no server answers, unknown tokens, the default and recovery tokens."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from meshd.acl import Permission
from meshd.acl.errors import ACLPermissionDenied
from meshd.agent.acl_resolver import ACLResolver
from meshd.agent.tokens import TokenStore
from meshd.config.model import ACLConfig, ACLTokens
from meshd.errors import ACLNotFound, NoServersError

KV_READER = {
    "accessor_id": "acc-1",
    "policies": [{"id": "p1", "index": 5, "rules": 'key_prefix "app/" { policy = "read" }'}],
    "service_identities": [["web", []]],
    "node_identities": [],
}


class FakeServers:
    def __init__(self) -> None:
        self.calls = 0
        self.consistent: list[bool] = []
        self.down = False
        self.known: dict[str, Mapping[str, Any]] = {"s-reader": KV_READER}

    async def call(self, method: str, args: Mapping[str, Any]) -> Any:
        assert method == "ACL.Resolve"
        self.calls += 1
        self.consistent.append(bool(args.get("consistent")))
        if self.down:
            raise NoServersError()
        answer = self.known.get(args["secret"])
        if answer is None:
            raise ACLNotFound()
        return answer


def resolver(servers: FakeServers, now: list[float], **acl: Any) -> tuple[ACLResolver, TokenStore]:
    tokens = acl.pop("tokens", ACLTokens())
    config = replace(ACLConfig(), enabled=True, default_policy="deny", tokens=tokens, **acl)
    store = TokenStore(config, None)
    r = ACLResolver(
        config, store, node="n1", datacenter="dc1", call=servers.call, clock=lambda: now[0]
    )
    return r, store


async def test_resolution_grants_policies_and_identities_and_is_cached_for_the_ttl() -> None:
    servers, now = FakeServers(), [0.0]
    r, _ = resolver(servers, now, token_ttl=30.0)
    authz = await r.resolve("s-reader")
    assert authz.key_read("app/x") and not authz.key_write("app/x")
    assert authz.service_write("web") and authz.service_write("web-sidecar-proxy")
    assert not authz.service_write("db")
    assert authz.accessor_id == "acc-1"
    now[0] = 29.0
    await r.resolve("s-reader")
    assert servers.calls == 1
    now[0] = 31.0
    await r.resolve("s-reader")
    assert servers.calls == 2


async def test_unknown_token_is_acl_not_found() -> None:
    r, _ = resolver(FakeServers(), [0.0])
    with pytest.raises(ACLNotFound) as info:
        await r.resolve("nope")
    assert info.value.code == "ACLNotFound" and info.value.message == "ACL not found"


@pytest.mark.parametrize(
    ("policy", "cached_reads", "uncached_reads"),
    [
        ("extend-cache", True, False),
        ("async-cache", True, False),
        ("allow", True, True),
        ("deny", False, False),
    ],
)
async def test_down_policy_decides_when_no_server_answers(
    policy: str, cached_reads: bool, uncached_reads: bool
) -> None:
    servers, now = FakeServers(), [0.0]
    r, _ = resolver(servers, now, down_policy=policy, token_ttl=1.0)
    await r.resolve("s-reader")
    servers.down = True
    now[0] = 100.0  # the cached entry is past its TTL
    assert (await r.resolve("s-reader")).key_read("app/x") is cached_reads
    assert (await r.resolve("never-seen")).key_read("app/x") is uncached_reads


async def test_empty_token_uses_the_default_token_then_anonymous() -> None:
    servers, now = FakeServers(), [0.0]
    r, store = resolver(servers, now, tokens=ACLTokens(default="s-reader"))
    assert (await r.resolve("")).key_read("app/x")
    store.set("default", "")
    anonymous = await r.resolve("")  # no anonymous token stored yet: the default policy
    assert not anonymous.key_read("app/x")


async def test_agent_recovery_token_works_without_servers() -> None:
    servers, now = FakeServers(), [0.0]
    servers.down = True
    r, _ = resolver(servers, now, tokens=ACLTokens(agent_recovery="break-glass"))
    authz = await r.resolve("break-glass")
    assert authz.agent_write("n1") and authz.node_read("other")
    assert not authz.agent_write("n2") and not authz.key_read("app/x")
    assert servers.calls == 0
    with pytest.raises(ACLPermissionDenied):
        authz.require(Permission.OPERATOR_WRITE)


async def test_acls_disabled_is_management() -> None:
    servers = FakeServers()
    store = TokenStore(ACLConfig(), None)
    r = ACLResolver(ACLConfig(), store, node="n", datacenter="dc1", call=servers.call)
    assert (await r.resolve("anything")).acl_write()
    assert servers.calls == 0


async def test_cached_token_is_not_used_past_its_expiration_time() -> None:
    servers, now = FakeServers(), [0.0]
    wall = [1_893_455_990.0]  # 10 s before 2030-01-01T00:00:00Z
    servers.known["s-brief"] = {**KV_READER, "expiration_time": "2030-01-01T00:00:00Z"}
    config = replace(ACLConfig(), enabled=True, default_policy="deny", token_ttl=30.0)
    r = ACLResolver(
        config,
        TokenStore(config, None),
        node="n1",
        datacenter="dc1",
        call=servers.call,
        clock=lambda: now[0],
        wall=lambda: wall[0],
    )
    assert (await r.resolve("s-brief")).key_read("app/x")
    now[0], wall[0] = 5.0, wall[0] + 5
    await r.resolve("s-brief")
    assert servers.calls == 1  # inside the TTL and before expiry: cached
    now[0], wall[0] = 10.0, wall[0] + 5  # expired, though the cache TTL has 20 s left
    del servers.known["s-brief"]  # the servers treat it as gone
    with pytest.raises(ACLNotFound):
        await r.resolve("s-brief")
    assert servers.calls == 2


async def test_templated_policies_in_an_answer_are_enforced() -> None:
    servers, now = FakeServers(), [0.0]
    servers.known["s-tmpl"] = {
        "accessor_id": "acc-2",
        "policies": [],
        "templated_policies": [["builtin/service", "api", []], ["builtin/node", "n7", ["dc2"]]],
    }
    r, _ = resolver(servers, now)
    authz = await r.resolve("s-tmpl")
    assert authz.service_write("api") and not authz.service_write("web")
    assert not authz.node_write("n7")  # only in dc2


async def test_after_a_logout_here_the_token_is_resolved_consistently_for_a_while() -> None:
    """Read-your-writes across servers: a follower that has not applied the
    logout yet must not bring the token back on the agent that logged out."""
    servers, now = FakeServers(), [0.0]
    r, _ = resolver(servers, now, token_ttl=30.0)
    await r.resolve("s-reader")
    r.forget("s-reader")
    del servers.known["s-reader"]
    for at in (1.0, 59.0):
        now[0] = at
        with pytest.raises(ACLNotFound):
            await r.resolve("s-reader")
    assert servers.consistent == [False, True, True]
    now[0] = 61.0
    with pytest.raises(ACLNotFound):
        await r.resolve("s-reader")
    assert servers.consistent[-1] is False
