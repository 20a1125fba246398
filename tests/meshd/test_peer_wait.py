"""A server without a leader says what it waits for; members works without one."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from meshd.agent.agent import Agent
from meshd.agent.join import Peer
from meshd.agent.members import MemberInfo, member_json
from meshd.agent.peer_wait import LOG_INTERVAL, PeerWait, known_members
from meshd.agent_tls import create_ca
from meshd.api.common import no_leader_text
from meshd.config import load_config
from meshd.logs import record_fields
from tests.meshd.cli_support import run_cli
from tests.meshd.harness import APIClient, free_port
from tests.meshd.test_api_status_operator import _write_config, wait_for


def _peer(name: str, port: int) -> Peer:
    return Peer(f"id-{name}", name, "dc1", f"127.0.0.1:{port}", None, False)


def test_describe_names_the_known_servers_and_the_unreachable_ones() -> None:
    wait = PeerWait("s1", 3)
    refused = "Unavailable: cannot reach 127.0.0.1:8302: [Errno 111] Connection refused"
    wait.record([_peer("s2", 8301)], {"127.0.0.1:8302": refused})
    assert wait.describe(configured=False, voters=0) == (
        "waiting for bootstrap_expect=3 servers, know 2: s1, s2; "
        "127.0.0.1:8302 unreachable: connection refused"
    )
    assert wait.describe(configured=True, voters=3).startswith(
        "no leader elected yet among 3 voting servers"
    )


def test_without_join_addresses_it_says_so() -> None:
    text = PeerWait("s1", 3).describe(configured=False, voters=0)
    assert text == (
        "waiting for bootstrap_expect=3 servers, know 1: s1; "
        "no retry_join/start_join address to find the others"
    )


def test_wait_is_logged_at_most_once_per_interval() -> None:
    wait = PeerWait("s1", 3)
    assert wait.due(100.0)
    assert not wait.due(100.0 + LOG_INTERVAL - 1)
    assert wait.due(100.0 + LOG_INTERVAL)


def test_no_leader_answer_keeps_consuls_text_first() -> None:
    assert no_leader_text("") == "No cluster leader"
    assert no_leader_text("waiting for x").startswith("No cluster leader: ")


def test_known_members_lists_self_and_answered_servers() -> None:
    info = MemberInfo("dc1", "1.0.0", bootstrap_expect=3)
    me = member_json("s1", "127.0.0.1", info, node_id="id-s1", server_address="127.0.0.1:18300")
    wait = PeerWait("s1", 3)
    wait.record([_peer("s2", 8301)], {})
    found = known_members(me, wait, info, {"id-s3": "127.0.0.1:8302"})
    assert [(m["Name"], m["Status"]) for m in found] == [("s1", 1), ("s2", 1), ("id-s3", 1)]
    assert all(m["Tags"]["role"] == "consul" for m in found)


@pytest.mark.e2e
@pytest.mark.slow
async def test_two_of_three_servers_explain_the_wait_and_list_members(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="meshd.agent.peer_wait")
    pems = create_ca()
    join = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    apis: list[APIClient] = []
    async with trio.open_nursery() as nursery:
        for name in ("s0", "s1"):
            path = _write_config(tmp_path / name, name, True, 3, join, pems)
            config, _ = load_config([str(path)], [], {}, dev=False)
            agent = Agent(config)
            await nursery.start(agent.run)
            host, port = agent.http_addresses[0]
            apis.append(APIClient(host, port))

        expected = (
            f"No cluster leader: waiting for bootstrap_expect=3 servers, know 2: s0, s1; "
            f"{join[2]} unreachable: connection refused"
        )
        last = ""

        async def explained() -> bool:
            nonlocal last
            r = await apis[0].get("/v1/kv/anything")
            last = r.text
            return r.status == 500 and r.text == expected

        await wait_for(explained, 60)
        assert last == expected
        with trio.fail_after(20):
            members = (await apis[1].get("/v1/agent/members")).json()
        assert sorted(m["Name"] for m in members) == ["s0", "s1"]
        assert all(m["Tags"]["role"] == "consul" and m["Status"] == 1 for m in members)
        cli = await run_cli(["members", "-http-addr", f"{apis[0].host}:{apis[0].port}"])
        assert cli.exit_code == 0, cli.output
        rows = [line.split() for line in cli.stdout.splitlines()[1:]]
        assert [(r[0], r[2], r[3]) for r in rows] == [
            ("s0", "alive", "server"),
            ("s1", "alive", "server"),
        ]
        nursery.cancel_scope.cancel()
    waits = [record_fields(r) for r in caplog.records if r.name == "meshd.agent.peer_wait"]
    assert waits and waits[0]["event"] == "waiting_for_servers"
    assert "waiting for bootstrap_expect=3 servers" in str(waits[-1]["detail"])
