"""Blocking queries across the API areas, in-process under the autojump clock
(tests/meshd/inproc.py): each test states the fake time a write happens and
the exact fake time the parked GET answers, with no sleeps that could pass
vacuously on a loaded machine.

Consul (https://developer.hashicorp.com/consul/api-docs/features/blocking):
``?index=N&wait=D`` parks until the result's index moves past N or D (plus
up to D/16 of random jitter) elapses, then answers with the current index.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio

from registry import queries as q
from tests.meshd.inproc import InprocResult, b64, block_then_write, inproc_agent, since

DB = {
    "Node": "ext-1",
    "Address": "10.1.1.1",
    "Service": {"ID": "db", "Service": "db", "Port": 5432},
}


def web(node: str, status: str) -> dict[str, Any]:
    return {
        "Node": node,
        "Address": "10.0.0.1",
        "Service": {"ID": "web", "Service": "web", "Port": 80},
        "Check": {"CheckID": "web-alive", "Name": "alive", "Status": status, "ServiceID": "web"},
    }


async def test_kv_blocking_get_written_at_5s_answers_at_5s(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        await api.put("/v1/kv/watched", raw=b"v1")
        index = (await api.get("/v1/kv/watched")).index

        async def writes() -> None:
            await api.put("/v1/kv/other", raw=b"o")  # another key at t=5: no wake-up
            await trio.sleep(1)
            assert (await api.put("/v1/kv/watched", raw=b"v2")).json() is True

        res, written, at = await block_then_write(
            api, f"/v1/kv/watched?index={index}&wait=10s", writes
        )
        assert written == at == 6.0  # the watched key changed at t=6 s, answered at t=6 s
        [entry] = res.json()
        assert b64(entry["Value"]) == b"v2" and res.index > index


async def test_kv_blocking_get_on_a_missing_key_answers_when_it_is_created(
    autojump_clock: Any,
) -> None:
    async with inproc_agent() as (_agent, api):
        r = await api.get("/v1/kv/later")
        assert r.status == 404

        async def create() -> None:
            await api.put("/v1/kv/later", raw=b"now")

        res, written, at = await block_then_write(
            api, f"/v1/kv/later?index={r.index}&wait=10s", create
        )
        assert written == at == 5.0 and res.status == 200
        assert b64(res.json()[0]["Value"]) == b"now"


async def test_kv_blocking_recurse_answers_a_delete_under_the_prefix(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        await api.put("/v1/kv/p/1", raw=b"x")
        await api.put("/v1/kv/p/2", raw=b"x")
        index = (await api.get("/v1/kv/p/?recurse")).index

        async def delete() -> None:
            await api.delete("/v1/kv/p/1")

        res, written, at = await block_then_write(
            api, f"/v1/kv/p/?recurse&index={index}&wait=10s", delete
        )
        assert written == at == 5.0
        assert [e["Key"] for e in res.json()] == ["p/2"]


async def test_kv_blocking_get_without_a_change_answers_after_wait_plus_jitter(
    autojump_clock: Any,
) -> None:
    async with inproc_agent() as (_agent, api):
        await api.put("/v1/kv/still", raw=b"v")
        index = (await api.get("/v1/kv/still")).index
        t0 = trio.current_time()
        r = await api.get(f"/v1/kv/still?index={index}&wait=2s")
        waited = since(t0)
        assert 2.0 <= waited <= 2.0 + 2.0 / 16  # Consul's wait/16 jitter at most
        assert r.status == 200 and r.index == index
        assert b64(r.json()[0]["Value"]) == b"v"


async def test_blocking_get_with_an_older_index_answers_at_once(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        await api.put("/v1/kv/a", raw=b"1")
        old = (await api.get("/v1/kv/a")).index
        await api.put("/v1/kv/a", raw=b"2")
        t0 = trio.current_time()
        r = await api.get(f"/v1/kv/a?index={old}&wait=10s")
        assert trio.current_time() == t0 and r.index > old


async def test_catalog_blocking_service_query_answers_a_registration_at_5s(
    autojump_clock: Any,
) -> None:
    async with inproc_agent() as (_agent, api):
        index = (await api.get("/v1/catalog/service/db")).index

        async def register() -> None:
            assert (await api.put("/v1/catalog/register", DB)).status == 200

        res, written, at = await block_then_write(
            api, f"/v1/catalog/service/db?index={index}&wait=10s", register
        )
        assert written == at == 5.0
        assert res.json()[0]["ServiceName"] == "db" and res.index > index


async def test_health_blocking_passing_query_answers_a_health_change_at_5s(
    autojump_clock: Any,
) -> None:
    async with inproc_agent() as (_agent, api):
        assert (await api.put("/v1/catalog/register", web("n1", "passing"))).status == 200
        assert (await api.put("/v1/catalog/register", web("n2", "critical"))).status == 200
        r = await api.get("/v1/health/service/web?passing")
        assert [e["Node"]["Node"] for e in r.json()] == ["n1"]

        async def heal() -> None:
            assert (await api.put("/v1/catalog/register", web("n2", "passing"))).status == 200

        res, written, at = await block_then_write(
            api, f"/v1/health/service/web?passing&index={r.index}&wait=10s", heal
        )
        assert written == at == 5.0
        assert sorted(e["Node"]["Node"] for e in res.json()) == ["n1", "n2"]
        assert res.index > r.index


async def test_health_blocking_checks_query_times_out_with_the_same_index(
    autojump_clock: Any,
) -> None:
    async with inproc_agent() as (_agent, api):
        assert (await api.put("/v1/catalog/register", web("n1", "passing"))).status == 200
        index = (await api.get("/v1/health/checks/web")).index
        t0 = trio.current_time()
        r = await api.get(f"/v1/health/checks/web?index={index}&wait=300ms")
        assert 0.3 <= since(t0) <= 0.3 + 0.3 / 16
        assert r.status == 200 and r.index == index


async def test_event_list_blocking_answers_a_new_event_at_5s(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        await api.put("/v1/event/fire/one")
        index = (await api.get("/v1/event/list")).index

        async def fire() -> None:
            await api.put("/v1/event/fire/two")

        res, written, at = await block_then_write(
            api, f"/v1/event/list?index={index}&wait=10s", fire
        )
        assert written == at == 5.0
        assert [e["Name"] for e in res.json()] == ["one", "two"]
        t0 = trio.current_time()
        r = await api.get(f"/v1/event/list?index={index}&wait=5s")
        assert trio.current_time() == t0  # index already moved: no wait
        r = await api.get(f"/v1/event/list?index={r.index}&wait=200ms")
        assert since(t0) >= 0.2
        assert r.status == 200 and len(r.json()) == 2


async def test_intention_list_and_match_answer_a_new_intention_at_5s(
    autojump_clock: Any,
) -> None:
    async with inproc_agent() as (_agent, api):

        async def create(src: str, action: str) -> None:
            body = {"SourceName": src, "DestinationName": "db", "Action": action}
            r = await api.request("POST", "/v1/connect/intentions", body)
            assert r.status == 200, r.text

        await create("web", "allow")
        index = (await api.get("/v1/connect/intentions")).index
        res, written, at = await block_then_write(
            api, f"/v1/connect/intentions?index={index}&wait=20s", lambda: create("api", "allow")
        )
        assert written == at == 5.0 and res.index > index
        assert {i["SourceName"] for i in res.json()} == {"web", "api"}
        path = "/v1/connect/intentions/match?by=destination&name=db"
        index = (await api.get(path)).index
        res, written, at = await block_then_write(
            api, f"{path}&index={index}&wait=20s", lambda: create("*", "deny")
        )
        assert written == at == 5.0 and res.index > index
        assert [i["SourceName"] for i in res.json()["db"]] == ["api", "web", "*"]


ROOT = "11111111-2222-4333-8444-555555555555"


async def test_acl_policy_list_answers_a_new_policy_at_5s(
    autojump_clock: Any, tmp_path: Path
) -> None:
    cfg = tmp_path / "acl.json"
    acl = {"enabled": True, "default_policy": "deny", "tokens": {"initial_management": ROOT}}
    cfg.write_text(json.dumps({"acl": acl}))
    async with inproc_agent(files=[str(cfg)]) as (agent, api):
        assert agent.server is not None
        store = agent.server.store
        with trio.fail_after(10):  # fake seconds: the leader's ACL set-up
            while q.acl_token_by_secret(store, None, ROOT)[1] is None:
                await trio.sleep(0.1)
        api.token = ROOT
        index = (await api.get("/v1/acl/policies")).index

        async def make_policy() -> None:
            body = {"Name": "late", "Rules": 'key_prefix "" { policy = "read" }'}
            assert (await api.put("/v1/acl/policy", body)).status == 200

        res, written, at = await block_then_write(
            api, f"/v1/acl/policies?index={index}&wait=10s", make_policy
        )
        assert written == at == 5.0 and res.index > index
        assert "late" in [p["Name"] for p in res.json()]
        api.token = ""  # anonymous under default deny: the list is refused
        assert (await api.get("/v1/acl/policies")).status == 403


async def test_agent_services_hash_block_answers_a_registration_at_5s(
    autojump_clock: Any,
) -> None:
    async with inproc_agent() as (_agent, api):
        digest = (await api.get("/v1/agent/services")).headers["x-consul-contenthash"]
        t0 = trio.current_time()
        timed = await api.get(f"/v1/agent/services?hash={digest}&wait=200ms")
        assert 0.2 <= since(t0) <= 0.2 + 0.2 / 16
        assert timed.headers["x-consul-contenthash"] == digest and timed.json() == {}

        async def register() -> None:
            body = {"Name": "api", "Port": 9000}
            assert (await api.put("/v1/agent/service/register", body)).status == 200

        res, written, at = await block_then_write(
            api, f"/v1/agent/services?hash={digest}&wait=20s", register
        )
        # Answered when the local state changed at t=5 s; the PUT itself
        # returns a little later, once anti-entropy put it in the catalog.
        assert at == 5.0 and at <= written < 6.0, (written, at)
        assert res.headers["x-consul-contenthash"] != digest and "api" in res.json()


async def test_watchers_re_arming_on_the_same_state_share_one_read_and_its_watches(
    autojump_clock: Any, monkeypatch: Any
) -> None:
    """Thousands of clients re-arm at once after a change, all at the same
    state: one read serves them (it cost a read each, holding the loop and
    Raft for as long), and the watches of that read still wake every one of
    them on the next change."""
    reads = 0
    real = q.health_service_nodes

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(q, "health_service_nodes", counted)
    async with inproc_agent() as (_agent, api):
        assert (await api.put("/v1/catalog/register", web("n1", "passing"))).status == 200
        index = (await api.get("/v1/health/service/web")).index
        answers: list[InprocResult] = []

        async def watch() -> None:
            answers.append(await api.get(f"/v1/health/service/web?index={index}&wait=60s"))

        reads = 0
        async with trio.open_nursery() as nursery:
            for _ in range(40):
                nursery.start_soon(watch)
            await trio.sleep(1)
            assert reads == 1 and not answers  # 40 parked on one read
            assert (await api.put("/v1/catalog/register", web("n2", "passing"))).status == 200
        assert len(answers) == 40
        assert all(sorted(e["Node"]["Node"] for e in a.json()) == ["n1", "n2"] for a in answers)
        assert reads <= 2  # the wake-up answers are shared too
