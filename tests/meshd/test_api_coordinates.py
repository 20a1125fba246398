"""Coordinates are replicated state: PUT /v1/coordinate/update queues them on
the server, one Raft write per period carries the batch, and the reads block
on the coordinates index."""

from __future__ import annotations

import trio
from trio.testing import MockClock

from meshd.agent.coordinates import MAX_PENDING
from registry.records import Coordinate
from registry.state.coordinates import coordinate_list
from tests.meshd.inproc import inproc_agent


def coord(x: float) -> dict[str, object]:
    return {"Vec": [x] * 8, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-5}


async def test_many_updates_become_one_raft_write_and_wake_blocking_reads(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (agent, api):
        assert agent.server is not None
        for i in range(5):
            reg = {"Node": f"n{i}", "Address": f"10.0.0.{i + 1}"}
            assert (await api.put("/v1/catalog/register", reg)).status == 200
        first = await api.get("/v1/coordinate/nodes")
        assert first.json() == []
        index = int(first.headers["x-consul-index"])
        woke: list[object] = []

        async def blocked() -> None:
            r = await api.get(f"/v1/coordinate/nodes?index={index}&wait=30s")
            woke.append(r.json())

        before = agent.server.coordinates.flushes
        async with trio.open_nursery() as nursery:
            nursery.start_soon(blocked)
            await trio.sleep(0.01)
            for i in range(50):
                body = {"Node": f"n{i % 5}", "Coord": coord(i / 100)}
                assert (await api.put("/v1/coordinate/update", body)).status == 200
        assert agent.server.coordinates.flushes - before == 1
        [nodes] = woke
        assert isinstance(nodes, list)
        assert [n["Node"] for n in nodes] == ["n0", "n1", "n2", "n3", "n4"]
        assert nodes[4]["Coord"]["Vec"] == [0.49] * 8  # the last update of n4 won
        _, rows = coordinate_list(agent.server.store, None)  # the replicated table
        assert [c.node for c in rows] == ["n0", "n1", "n2", "n3", "n4"]
        r = await api.get("/v1/coordinate/node/n2")
        assert r.status == 200 and [c["Node"] for c in r.json()] == ["n2"]
        assert int(r.headers["x-consul-index"]) > index
        assert (await api.get("/v1/coordinate/node/nope")).status == 404
        # Deregistering a node drops its coordinates, as Consul does.
        assert (await api.put("/v1/catalog/deregister", {"Node": "n2"})).status == 200
        assert (await api.get("/v1/coordinate/node/n2")).status == 404


async def test_a_flood_beyond_the_pending_limit_is_refused(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (agent, api):
        assert agent.server is not None
        for i in range(MAX_PENDING):
            agent.server.coordinates.queue(Coordinate(f"n{i}", vec=(0.0,) * 8))
        r = await api.put("/v1/coordinate/update", {"Node": "late", "Coord": coord(0.1)})
        assert r.status == 429
        # An update for a node already queued replaces it and is accepted.
        r = await api.put("/v1/coordinate/update", {"Node": "n1", "Coord": coord(0.1)})
        assert r.status == 200


async def test_segment_query_keeps_that_segment_only(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (agent, api):
        assert agent.server is not None
        assert (
            await api.put("/v1/catalog/register", {"Node": "n", "Address": "10.0.0.9"})
        ).status == 200
        for seg, x in (("", 0.1), ("alpha", 0.2)):
            r = await api.put(
                "/v1/coordinate/update", {"Node": "n", "Segment": seg, "Coord": coord(x)}
            )
            assert (r.status, r.body) == (200, b"")  # Consul answers no body
        await agent.server.coordinates.flush()
        every = (await api.get("/v1/coordinate/nodes")).json()
        assert [(c["Node"], c["Segment"]) for c in every] == [("n", ""), ("n", "alpha")]
        only = (await api.get("/v1/coordinate/nodes?segment=alpha")).json()
        assert [c["Coord"]["Vec"][0] for c in only] == [0.2]
        default = (await api.get("/v1/coordinate/node/n?segment=")).json()
        assert [c["Segment"] for c in default] == [""]
        assert (await api.get("/v1/coordinate/node/n?segment=beta")).status == 404
        assert (await api.get("/v1/coordinate/nodes?segment=beta")).json() == []
