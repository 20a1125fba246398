"""A follower forwards writes to the leader in batches (WriteBatcher,
Registry.ApplyBatch); each write keeps its own answer."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import pytest
import trio

from meshd.agent.write_batch import WriteBatcher
from meshd.errors import NoLeaderError
from raft.errors import ProposalDroppedError
from registry.commands import KVRequest, encode_command
from tests.meshd.inproc import inproc_agent


async def test_writes_gather_while_a_batch_is_in_flight(autojump_clock: Any) -> None:
    calls: list[list[bytes]] = []

    async def send(addr: str, batch: Sequence[bytes]) -> Sequence[Any]:
        calls.append(list(batch))
        await trio.sleep(0.005)  # the round trip to the leader
        return [{"e": "Validation"} if d == b"bad" else {"w": d.upper()} for d in batch]

    batcher = WriteBatcher(send)
    answers: dict[bytes, Any] = {}

    async def write(data: bytes) -> None:
        answers[data] = await batcher.submit("leader:8300", data)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        # Alone on an idle batcher: sent at once, no window to wait out.
        started = trio.current_time()
        await write(b"first")
        assert trio.current_time() - started == pytest.approx(0.005)
        async with trio.open_nursery() as writers:
            for i in range(200):
                writers.start_soon(write, b"bad" if i == 7 else f"w{i:03d}".encode())
                await trio.sleep(0.0005)  # arriving over 0.1 s
        nursery.cancel_scope.cancel()
    assert calls[0] == [b"first"]
    # 200 writes over 0.1 s with a 5 ms round trip: about one call per round trip.
    assert len(calls) <= 25, len(calls)
    sent = [d for batch in calls[1:] for d in batch]
    assert len(sent) == 200 and sent[7] == b"bad"
    assert sent[:7] + sent[8:] == [f"w{i:03d}".encode() for i in range(200) if i != 7]
    assert answers[b"bad"] == {"e": "Validation"}  # fails alone
    assert answers[b"w199"] == {"w": b"W199"} and answers[b"first"] == {"w": b"FIRST"}
    assert len(answers) == 201


async def test_an_idle_sender_sends_at_once_and_busy_ones_gather(autojump_clock: Any) -> None:
    """With two calls allowed in flight, a write finding a sender idle goes
    at once; writes arriving while both are busy go together in the next."""
    calls: list[tuple[float, list[bytes]]] = []

    async def send(addr: str, batch: Sequence[bytes]) -> Sequence[Any]:
        calls.append((trio.current_time(), list(batch)))
        await trio.sleep(0.005)
        return [{"w": d} for d in batch]

    batcher = WriteBatcher(send, max_inflight=2)
    answers: list[Any] = []

    async def write(data: bytes) -> None:
        answers.append(await batcher.submit("leader:8300", data))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        await trio.sleep(0.001)
        t0 = trio.current_time()
        async with trio.open_nursery() as writers:
            for data in (b"a", b"b", b"c", b"d"):
                writers.start_soon(write, data)
                await trio.sleep(0.001)  # a at t0, b at +1 ms, c +2 ms, d +3 ms
        nursery.cancel_scope.cancel()
    assert [(round((t - t0) * 1000), b) for t, b in calls] == [
        (0, [b"a"]),
        (1, [b"b"]),
        (5, [b"c", b"d"]),  # when a's call returned
    ]
    assert sorted(a["w"] for a in answers) == [b"a", b"b", b"c", b"d"]
    assert batcher.batches == 3


async def test_a_failed_call_fails_only_the_writes_it_carried(autojump_clock: Any) -> None:
    fail = [True]

    async def send(addr: str, batch: Sequence[bytes]) -> Sequence[Any]:
        await trio.sleep(0.005)
        if fail[0]:
            fail[0] = False
            raise NoLeaderError()
        return [{"w": addr} for _ in batch]

    batcher = WriteBatcher(send)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        with pytest.raises(NoLeaderError):
            await batcher.submit("old-leader", b"a")
        assert await batcher.submit("new-leader", b"a") == {"w": "new-leader"}
        nursery.cancel_scope.cancel()


def _kv(op: str, key: str, value: bytes = b"", cas: int = 0) -> bytes:
    return encode_command(KVRequest(op=op, key=key, value=value, cas=cas))


async def test_the_leader_answers_each_command_of_a_batch(autojump_clock: Any) -> None:
    """Proposed together as one Raft entry, in order; a failed CAS, an
    invalid command, a non-command and bytes that are no command fail alone
    (those two are not stored)."""
    async with inproc_agent() as (agent, api):
        server = agent.server
        assert server is not None
        cmds: list[Any] = [
            _kv("set", "b/k", b"1"),
            _kv("cas", "b/k", b"lost", cas=999_999),  # a failed CAS: plain false
            _kv("set", "b/k", b"2"),
            _kv("set", "", b"x"),  # invalid: no key
            "not bytes",
            _kv("cas", "b/new", b"3", cas=0),  # create-only
            b"\x93\x03\x01\xc0",  # no command: must not reach the log
        ]
        answer = await server.call_local("Registry.ApplyBatch", {"cmds": cmds, "fwd": True})
        res = answer["results"]
        assert len(res) == 7
        assert res[0]["w"]["ok"] is True and res[2]["w"]["ok"] is True
        assert res[1]["w"]["ok"] is False and res[1]["w"]["e"] == "cas_conflict"
        assert res[3]["w"]["ok"] is False and res[3]["w"]["e"] == "invalid", res[3]
        assert res[4]["e"] == "InvalidArgument"
        assert res[5]["w"]["ok"] is True
        assert res[6]["e"] == "InvalidArgument" and res[6]["d"] == {"field": "cmds"}
        got = (await api.get("/v1/kv/b/k")).json()[0]
        assert base64.b64decode(got["Value"]) == b"2"  # order kept
        new = (await api.get("/v1/kv/b/new")).json()[0]
        # b/k written again starts a new entry (one index never names two
        # values of a key): its last write shares the last entry with b/new.
        assert got["ModifyIndex"] == new["ModifyIndex"] <= res[5]["w"]["i"]
        assert res[0]["w"]["i"] < got["ModifyIndex"]


async def test_commands_raft_did_not_take_are_retried_once_each(autojump_clock: Any) -> None:
    """A leadership transfer drops a batch before Raft takes it: each command
    is retried on its own, as a single forwarded write is, and applied once
    (a create-only CAS applied twice would answer false)."""
    async with inproc_agent() as (agent, api):
        server = agent.server
        assert server is not None
        real = server.node.apply
        dropped: list[Any] = []

        async def transfer_once(data: bytes, *, decoded: Any = None) -> Any:
            if not dropped:
                dropped.append(decoded)
                raise ProposalDroppedError("leadership transfer in progress")
            return await real(data, decoded=decoded)

        server.node.apply = transfer_once  # type: ignore[method-assign]
        cmds = [_kv("cas", f"once/{i}", b"v", cas=0) for i in range(3)]
        answer = await server.call_local("Registry.ApplyBatch", {"cmds": cmds, "fwd": True})
        assert [len(d.commands) for d in dropped] == [3]  # the whole batch, as one entry
        assert [r["w"]["ok"] for r in answer["results"]] == [True, True, True]
        indexes = [r["w"]["i"] for r in answer["results"]]
        assert indexes == sorted(indexes)  # retried in order
        for i in range(3):
            assert (await api.get(f"/v1/kv/once/{i}")).status == 200


async def test_the_leaders_own_writes_of_one_round_share_an_entry(autojump_clock: Any) -> None:
    """KV writes sent to the leader at once: the first is proposed alone,
    the others gathered into shared entries, each with its own answer (a
    failed CAS fails alone) and every value stored; a lone write goes alone."""
    async with inproc_agent() as (agent, api):
        server = agent.server
        assert server is not None
        batches_before = server.local_batcher.batches
        answers: dict[int, Any] = {}

        async def put(i: int) -> None:
            path = f"/v1/kv/own/{i:02d}" + ("?cas=999999" if i == 7 else "")
            answers[i] = (await api.put(path, raw=str(i).encode())).json()

        async with trio.open_nursery() as writers:
            for i in range(20):
                writers.start_soon(put, i)
        assert answers == {i: i != 7 for i in range(20)}
        batches = server.local_batcher.batches - batches_before
        assert batches >= 1
        stored = (await api.get("/v1/kv/own/?recurse")).json()
        assert {e["Key"]: base64.b64decode(e["Value"]) for e in stored} == {
            f"own/{i:02d}": str(i).encode() for i in range(20) if i != 7
        }
        indexes = {e["ModifyIndex"] for e in stored}
        # The first alone, the others gathered (a writer that arrives after
        # the first committed may go alone too): far fewer entries than writes.
        assert len(indexes) < 10, indexes
        r = await api.put("/v1/kv/own/alone", raw=b"x")
        assert r.json() is True
        assert server.local_batcher.batches - batches_before == batches  # sent alone


async def test_each_gathered_write_answers_its_own_entrys_index(autojump_clock: Any) -> None:
    """Writes gathered into one call but cut into two entries (a key written
    twice): each answers the index its own entry applied at, not the call's
    last one."""
    async with inproc_agent() as (agent, api):
        server = agent.server
        assert server is not None
        cmds = [
            KVRequest(op="set", key=key, value=str(i).encode())
            for i, key in enumerate(("idx/a", "idx/b", "idx/b"))
        ]
        batches = server.local_batcher.batches
        answers: list[Any] = [None] * 3

        async def submit(i: int) -> None:  # all three queued before the sender runs
            answers[i] = await server.local_batcher.submit("", (encode_command(cmds[i]), cmds[i]))

        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(submit, i)
        assert server.local_batcher.batches == batches + 1  # one call
        assert [result.ok for result, _ in answers] == [True] * 3
        index = [i for _, i in answers]
        assert len(set(index)) == 2  # a key written twice: two entries
        got = (await api.get("/v1/kv/idx/b")).json()[0]
        last = int(base64.b64decode(got["Value"]))  # the idx/b write queued last
        first = 3 - last  # the other one (1 or 2)
        assert index[last] == got["ModifyIndex"]
        assert index[first] < index[last]  # its own entry's index, not the call's last
