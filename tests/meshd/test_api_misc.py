"""/v1/coordinate and /v1/event against a real dev agent, and the event helpers."""

from __future__ import annotations

import base64

import pytest
from trio.testing import MockClock

from meshd.values.events import EventRing, UserEvent, accepts, uuid_to_index
from tests.meshd.harness import dev_agent
from tests.meshd.inproc import inproc_agent


def test_uuid_to_index_matches_consuls_fold() -> None:
    # consul/api event.go IDToIndex: lower 16 hex digits XOR upper 16.
    event_id = "b54fe110-7af5-cafc-d1fb-afc8ba432b1c"
    assert uuid_to_index(event_id) == 0xB54FE1107AF5CAFC ^ 0xD1FBAFC8BA432B1C
    assert uuid_to_index("not-a-uuid") == 0


def test_ring_keeps_the_last_256_once_each_with_lamport_times() -> None:
    ring = EventRing()
    first = ring.add(UserEvent.new("e", b"", "", "", ""))
    assert first.ltime == 1
    assert ring.add(first) is first
    remote = UserEvent.new("r", b"", "", "", "")
    remote = UserEvent(**{**remote.__dict__, "ltime": 50})
    ring.add(remote)
    assert ring.add(UserEvent.new("after", b"", "", "", "")).ltime == 51
    for i in range(300):
        ring.add(UserEvent.new(f"n{i}", b"", "", "", ""))
    events = ring.events()
    assert len(events) == 256 and events[-1].name == "n299"
    assert ring.index() == uuid_to_index(events[-1].id)


def test_filters_follow_should_process_user_event() -> None:
    def ev(node: str = "", service: str = "", tag: str = "") -> UserEvent:
        return UserEvent.new("x", b"", node, service, tag)

    services = [("web", ("v1", "blue")), ("db", ("primary",))]
    assert accepts(ev(), "n1", [])
    assert accepts(ev(node="^n"), "n1", [])
    assert not accepts(ev(node="^m"), "n1", [])
    assert accepts(ev(service="we"), "n1", services)
    assert not accepts(ev(service="cache"), "n1", services)
    assert accepts(ev(service="web", tag="blu"), "n1", services)
    assert not accepts(ev(service="db", tag="blue"), "n1", services)
    assert not accepts(ev(node="("), "n1", [])


@pytest.mark.e2e
@pytest.mark.e2e
async def test_coordinates_are_empty_but_shaped_like_consuls() -> None:
    async with dev_agent() as (_agent, api):
        r = await api.get("/v1/coordinate/datacenters")
        assert r.json() == [{"Datacenter": "dc1", "AreaID": "WAN", "Coordinates": []}]
        r = await api.get("/v1/coordinate/nodes")
        assert r.status == 200 and r.json() == [] and r.headers["x-consul-index"] == "1"
        assert (await api.get("/v1/coordinate/node/dev-node")).status == 404
        assert (await api.get("/v1/coordinate/nodes?dc=other")).status == 400


async def test_fire_and_list_events(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        r = await api.get("/v1/event/list")
        assert (r.status, r.json(), r.headers["x-consul-index"]) == (200, [], "1")
        r = await api.put("/v1/event/fire/deploy?service=web&tag=v1", raw=b"v1.2.3")
        assert r.status == 200
        fired = r.json()
        assert fired["Name"] == "deploy" and fired["Version"] == 1 and fired["LTime"] == 0
        assert base64.b64decode(fired["Payload"]) == b"v1.2.3"
        filters = (fired["ServiceFilter"], fired["TagFilter"], fired["NodeFilter"])
        assert filters == ("web", "v1", "")
        # No local "web" service: this agent does not accept the event.
        assert (await api.get("/v1/event/list")).json() == []
        await api.put("/v1/agent/service/register", {"Name": "web", "Tags": ["v1"]})
        listed = (await api.get("/v1/event/list")).json()
        assert [e["ID"] for e in listed] == [fired["ID"]] and listed[0]["LTime"] >= 1

        r = await api.put("/v1/event/fire/restart")
        assert r.json()["Payload"] is None
        r = await api.get("/v1/event/list")
        assert [e["Name"] for e in r.json()] == ["deploy", "restart"]
        assert int(r.headers["x-consul-index"]) == uuid_to_index(r.json()[-1]["ID"])
        assert [e["Name"] for e in (await api.get("/v1/event/list?name=restart")).json()] == [
            "restart"
        ]
        r = await api.put("/v1/event/fire/skipme?node=^other$")
        assert "skipme" not in {e["Name"] for e in (await api.get("/v1/event/list")).json()}


async def test_bad_events_get_400_and_are_not_kept(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        r = await api.put("/v1/event/fire/_internal")
        assert r.status == 400 and "reserved" in r.text
        r = await api.put("/v1/event/fire/x?node=(")
        assert r.status == 400 and "node" in r.text
        r = await api.put("/v1/event/fire/x?dc=dc9")
        assert r.status == 400
        r = await api.put("/v1/event/fire/big", raw=b"x" * (100 * 1024 + 1))
        assert r.status == 413
        assert (await api.put("/v1/event/fire/")).status in (400, 404, 405)
        assert (await api.get("/v1/event/list")).json() == []
