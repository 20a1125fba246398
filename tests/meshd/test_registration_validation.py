"""Bad registrations answer 400 naming the field and store nothing (issue 13,
items 3, 5, 6 and 7): wrong types, oversized values, values the wire format
cannot carry, unusable proxy upstreams and listener takeovers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from trio.testing import MockClock

from meshd.agent.agent import Agent
from meshd.api.routes import build_app
from meshd.http import App, Request
from tests.meshd.inproc import inproc_agent

SERVICE = "/v1/agent/service/register"
CHECK = "/v1/agent/check/register"
CATALOG = "/v1/catalog/register"
NODE = {"Node": "ext", "Address": "10.0.0.1"}


@asynccontextmanager
async def agent_app() -> AsyncIterator[tuple[Agent, App]]:
    async with inproc_agent() as (agent, _):
        yield agent, build_app(agent)


async def put(app: App, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, str]:
    data = raw if raw is not None else json.dumps(body).encode()
    resp = await app.handle(Request.build("PUT", path, body=data))
    return resp.status, bytes(resp.body).decode("utf-8", "replace")


def sidecar(upstreams: Any, port: int | None = None) -> dict[str, Any]:
    side: dict[str, Any] = {"Proxy": {"Upstreams": upstreams}}
    if port is not None:
        side["Port"] = port
    return {"SidecarService": side}


BAD: list[tuple[str, Any, str]] = [
    (SERVICE, {"Name": "web", "EnableTagOverride": "false"}, "EnableTagOverride"),
    (SERVICE, {"Name": "web", "EnableTagOverride": 1}, "EnableTagOverride"),
    (SERVICE, {"Name": "w" * 300}, "Name"),
    (SERVICE, {"Name": "web", "ID": "i" * 600}, "ID"),
    (SERVICE, {"Name": "web", "Tags": "a"}, "Tags"),
    (SERVICE, {"Name": "web", "Tags": ["a", 1]}, "Tags[1]"),
    (SERVICE, {"Name": "web", "Tags": ["\ud800"]}, "Tags[0]"),
    (SERVICE, {"Name": "web", "Address": ["x"]}, "Address"),
    (SERVICE, {"Name": "web", "Port": "80"}, "Port"),
    (SERVICE, {"Name": "web", "Port": 1.5}, "Port"),
    (SERVICE, {"Name": "web", "Port": 2**70}, "Port"),
    (SERVICE, {"Name": "web", "Meta": {"a": 1}}, "Meta.a"),
    (SERVICE, {"Name": "web", "Meta": {"a": "\udfff"}}, "Meta.a"),
    (SERVICE, {"Name": "web", "Weights": {"Passing": "x"}}, "Weights.Passing"),
    (SERVICE, {"Name": "web", "Weights": {"Passing": 2**70}}, "Weights.Passing"),
    (SERVICE, {"Name": "web", "Weights": [1]}, "Weights"),
    (SERVICE, {"Name": "web", "TaggedAddresses": {"lan": 5}}, "TaggedAddresses.lan"),
    (SERVICE, {"Name": "web", "Connect": {"Native": "yes"}}, "Connect.Native"),
    (SERVICE, {"Name": "web", "Proxy": {"Config": {"x": 2**64}}}, "Proxy.Config.x"),
    (SERVICE, {"Name": "web", "Proxy": {"Config": {"\ud800": 1}}}, "Proxy.Config"),
    (SERVICE, {"Name": "web", "Checks": {"TTL": "1s"}}, "Checks"),
    # (an integer TTL is nanoseconds, which Consul accepts; a boolean is not)
    (SERVICE, {"Name": "web", "Check": {"TTL": True}}, "Checks[0].TTL"),
    (SERVICE, {"Name": "web", "Port": 1, "Connect": sidecar(-1)}, "Proxy.Upstreams"),
    (SERVICE, {"Name": "web", "Port": 1, "Connect": sidecar(True)}, "Proxy.Upstreams"),
    (SERVICE, {"Name": "web", "Port": 1, "Connect": sidecar(1.5)}, "Proxy.Upstreams"),
    (SERVICE, {"Name": "web", "Port": 1, "Connect": sidecar([7])}, "Upstreams[0]"),
    (SERVICE, {"Name": "web", "Port": 1, "Connect": {"SidecarService": {"Proxy": -1}}}, "Proxy"),
    (SERVICE, {"Name": "web", "Port": 1, "Connect": {"SidecarService": {"ID": 5}}}, "ID"),
    (CHECK, {"Name": "c", "HTTP": 5, "Interval": "10s"}, "HTTP"),
    (CHECK, {"Name": "c", "TTL": "10s", "Notes": ["x"]}, "Notes"),
    (CHECK, {"Name": "c", "TTL": "10s", "TLSSkipVerify": "true"}, "TLSSkipVerify"),
    (CHECK, {"Name": "c", "TTL": "10s", "Header": {"a": "b"}}, "Header.a"),
    (CHECK, {"Name": "c", "TTL": "10s", "FailuresBeforeCritical": -1}, "FailuresBeforeCritical"),
    (CATALOG, {**NODE, "Datacenter": ["x"]}, "Datacenter"),
    (CATALOG, {**NODE, "SkipNodeUpdate": "false"}, "SkipNodeUpdate"),
    (CATALOG, {**NODE, "NodeMeta": {"a": 2**70}}, "NodeMeta.a"),
    (CATALOG, {**NODE, "Service": {"Service": "s", "Port": "80"}}, "Service.Port"),
    (CATALOG, {**NODE, "Service": {"Service": "s" * 300}}, "Service.Service"),
    (CATALOG, {**NODE, "Checks": [{"Name": "c", "Status": 3}]}, "Checks[0].Status"),
    (CATALOG, {**NODE, "Checks": [{"Name": "c", "Definition": {"x": 2**70}}]}, "Definition.x"),
]


async def test_bad_fields_answer_400_naming_the_field_and_store_nothing(
    autojump_clock: MockClock,
) -> None:
    async with agent_app() as (agent, app):
        for path, body, field in BAD:
            status, text = await put(app, path, body)
            assert status == 400 and field in text, (path, body, status, text)
        assert agent.local.services == {} and agent.local.checks == {}
        resp = await app.handle(Request.build("GET", "/v1/catalog/nodes"))
        assert [n["Node"] for n in json.loads(bytes(resp.body))] == [agent.node_name]


async def test_huge_and_deep_bodies_answer_400(autojump_clock: MockClock) -> None:
    async with agent_app() as (agent, app):
        status, text = await put(app, SERVICE, {"Name": "w" * (4 * 1024 * 1024 - 100)})
        assert status == 400 and "Name" in text and len(text) < 500
        deep = b'{"Name":"web","Proxy":{"Config":' + b"[" * 500 + b"]" * 500 + b"}}"
        status, text = await put(app, SERVICE, raw=deep)
        assert status == 400 and "Proxy.Config" in text and "nested" in text
        big = b'{"Name":"web","Meta":{"a":"x"},"Port":123456789012345678901234567890}'
        status, text = await put(app, SERVICE, raw=big)
        assert status == 400 and "Port" in text
        assert agent.local.services == {}


async def test_valid_fields_are_stored_with_their_types(autojump_clock: MockClock) -> None:
    async with agent_app() as (agent, app):
        body = {
            "Name": "web",
            "Port": 80,
            "EnableTagOverride": True,
            "Weights": {"Passing": 3},
            "TaggedAddresses": {"lan": {"Address": "10.0.0.2", "Port": 80}},
        }
        assert (await put(app, SERVICE, body))[0] == 200
        svc = agent.local.services["web"].service
        assert svc.enable_tag_override is True and svc.weights.passing == 3
        assert svc.weights.warning == 1


def _proxy(pid: str, port: int, bind: int) -> dict[str, Any]:
    return {
        "ID": pid,
        "Name": pid,
        "Kind": "connect-proxy",
        "Port": port,
        "Proxy": {
            "DestinationServiceName": pid,
            "Upstreams": [{"DestinationName": "api", "LocalBindPort": bind}],
        },
    }


async def test_a_registration_cannot_take_another_sidecars_listener(
    autojump_clock: MockClock,
) -> None:
    async with agent_app() as (agent, app):
        web = {"Name": "web", "Port": 8080, "Connect": sidecar([_up(9191)], port=21000)}
        assert (await put(app, SERVICE, web))[0] == 200
        # An ID that sorts first, wanting web's upstream port.
        status, text = await put(app, SERVICE, _proxy("a-evil", 21001, 9191))
        assert status == 400 and "Proxy.Upstreams[0].LocalBindPort" in text
        assert '127.0.0.1:9191 is already bound by the upstream "api"' in text
        assert "web-sidecar-proxy" in text
        # Or its public port, or the same through a sidecar.
        status, text = await put(app, SERVICE, _proxy("a-evil", 21000, 9300))
        assert status == 400 and "Port" in text and "public port" in text
        evil = {"Name": "evil", "Port": 1, "Connect": sidecar([_up(9191)])}
        status, text = await put(app, SERVICE, evil)
        assert status == 400 and "Connect.SidecarService.Proxy.Upstreams[0]" in text
        assert set(agent.local.services) == {"web", "web-sidecar-proxy"}
        # Re-registering the owner itself is fine, and so is another port.
        assert (await put(app, SERVICE, web))[0] == 200
        assert (await put(app, SERVICE, _proxy("a-ok", 21002, 9192)))[0] == 200
        # A new sidecar's automatic port skips ports upstreams bind.
        spot = {"Name": "spot", "Port": 2, "Connect": sidecar([_up(21003)])}
        assert (await put(app, SERVICE, spot))[0] == 200
        nxt = {"Name": "next", "Port": 3, "Connect": {"SidecarService": {}}}
        assert (await put(app, SERVICE, nxt))[0] == 200
        assert agent.local.services["next-sidecar-proxy"].service.port not in (21003, 21000)
        # Nor a port its own upstream binds.
        own = {"Name": "own", "Port": 4, "Connect": sidecar([_up(21005), _up(21006)])}
        assert (await put(app, SERVICE, own))[0] == 200
        assert agent.local.services["own-sidecar-proxy"].service.port not in (21005, 21006)


def _up(port: int) -> dict[str, Any]:
    return {"DestinationName": "api", "LocalBindPort": port}


async def test_the_agent_keeps_syncing_after_bad_input(autojump_clock: MockClock) -> None:
    async with agent_app() as (_agent, app):
        for path, body, _ in BAD:
            await put(app, path, body)
        assert (await put(app, SERVICE, {"Name": "after", "Port": 1}))[0] == 200
        with trio.fail_after(20):
            while True:
                resp = await app.handle(Request.build("GET", "/v1/catalog/service/after"))
                if json.loads(bytes(resp.body)):
                    break
                await trio.sleep(0.05)
