"""``Connect.SidecarService`` registration and hash-blocking on the agent's
service endpoints, against a real dev agent (Consul's
https://developer.hashicorp.com/consul/docs/connect/proxies/deploy-sidecar-services)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import MockClock

from meshd.defs.definitions import parse_service
from meshd.defs.sidecar import expand
from registry.errors import ValidationError
from tests.meshd.harness import dev_agent
from tests.meshd.inproc import inproc_agent

e2e = pytest.mark.e2e

WEB = {
    "Name": "web",
    "Port": 8080,
    "Tags": ["v1"],
    "Meta": {"team": "a"},
    "Connect": {
        "SidecarService": {
            "Proxy": {"Upstreams": [{"DestinationName": "api", "LocalBindPort": 9191}]}
        }
    },
}


def test_sidecar_gets_consul_defaults_and_parent_loses_sidecar_service() -> None:
    parent, proxy = expand(parse_service(WEB, node="n1"), {}, node="n1")
    assert parent.service.connect is None
    assert proxy is not None
    svc = proxy.service
    assert (svc.id, svc.service, svc.kind, svc.port) == (
        "web-sidecar-proxy",
        "web-sidecar-proxy",
        "connect-proxy",
        21000,
    )
    assert svc.tags == ("v1",) and svc.meta == {"team": "a"}
    assert svc.proxy is not None
    assert svc.proxy["DestinationServiceName"] == "web"
    assert svc.proxy["DestinationServiceID"] == "web"
    assert svc.proxy["LocalServiceAddress"] == "127.0.0.1"
    assert svc.proxy["LocalServicePort"] == 8080
    (up,) = svc.proxy["Upstreams"]
    assert up == {
        "DestinationName": "api",
        "DestinationType": "service",
        "LocalBindAddress": "127.0.0.1",
        "LocalBindPort": 9191,
        "Config": {},
    }
    names = {c.check.name: c for c in proxy.checks}
    assert names["Connect Sidecar Listening"].spec["TCP"] == "127.0.0.1:21000"
    assert names["Connect Sidecar Aliasing web"].spec["AliasService"] == "web"


def test_snake_case_from_configuration_files_is_understood() -> None:
    raw = {
        "name": "db",
        "port": 5432,
        "connect": {"sidecar_service": {"port": 21500, "proxy": {"upstreams": []}}},
    }
    _, proxy = expand(parse_service(raw, node="n1"), {}, node="n1")
    assert proxy is not None and proxy.service.port == 21500


def test_ports_skip_ones_in_use_and_reregistration_keeps_the_port() -> None:
    first_parent, first = expand(parse_service(WEB, node="n"), {}, node="n")
    assert first is not None
    services = {"web": first_parent, first.service.id: first}
    other = {**WEB, "Name": "api", "Port": 9000}
    _, second = expand(parse_service(other, node="n"), services, node="n")
    assert second is not None and second.service.port == 21001
    _, again = expand(parse_service(WEB, node="n"), services, node="n")
    assert again is not None and again.service.port == 21000


@pytest.mark.parametrize(
    ("sidecar", "field"),
    [
        ({"Proxy": {"Upstreams": [{"LocalBindPort": 1}]}}, "Upstreams[0].DestinationName"),
        ({"Proxy": {"Upstreams": [{"DestinationName": "x"}]}}, "Upstreams[0].LocalBindPort"),
        ({"Kind": "mesh-gateway"}, "Connect.SidecarService.Kind"),
        ("yes", "Connect.SidecarService"),
    ],
)
def test_bad_sidecar_definitions_name_the_field(sidecar: Any, field: str) -> None:
    spec = {"Name": "web", "Port": 1, "Connect": {"SidecarService": sidecar}}
    with pytest.raises(ValidationError) as info:
        expand(parse_service(spec, node="n"), {}, node="n")
    assert field in str(info.value)


@e2e
@pytest.mark.e2e
async def test_register_and_deregister_through_the_api_include_the_sidecar() -> None:
    async with dev_agent() as (_agent, api):
        assert (await api.put("/v1/agent/service/register", WEB)).status == 200
        services = (await api.get("/v1/agent/services")).json()
        assert set(services) == {"web", "web-sidecar-proxy"}
        assert services["web-sidecar-proxy"]["Kind"] == "connect-proxy"
        with trio.fail_after(10):
            while True:
                rows = (await api.get("/v1/catalog/connect/web")).json()
                if rows:
                    break
                await trio.sleep(0.05)
        assert rows[0]["ServiceProxy"]["DestinationServiceName"] == "web"
        assert rows[0]["ServicePort"] == 21000
        assert (await api.put("/v1/agent/service/deregister/web")).status == 200
        assert (await api.get("/v1/agent/services")).json() == {}


async def test_bad_sidecar_is_refused_with_400_and_nothing_registered(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        bad = {"Name": "web", "Connect": {"SidecarService": {"Proxy": {"Upstreams": [{}]}}}}
        resp = await api.put("/v1/agent/service/register", bad)
        assert resp.status == 400
        assert "DestinationName" in resp.text
        assert (await api.get("/v1/agent/services")).json() == {}


def test_sidecar_address_defaults_to_the_given_one_only_without_an_address() -> None:
    _, bare = expand(parse_service(WEB, node="n1"), {}, node="n1")
    assert bare is not None and bare.service.address == ""
    _, dev = expand(parse_service(WEB, node="n1"), {}, node="n1", default_address="127.0.0.1")
    assert dev is not None and dev.service.address == "127.0.0.1"
    own = {**WEB, "Address": "10.0.0.5"}
    _, kept = expand(parse_service(own, node="n1"), {}, node="n1", default_address="127.0.0.1")
    assert kept is not None and kept.service.address == "10.0.0.5"


async def test_dev_agent_sidecar_public_listener_is_on_loopback(autojump_clock: MockClock) -> None:
    from connect.proxy.config import Limits, parse_sidecar

    async with inproc_agent() as (_agent, api):
        assert (await api.put("/v1/agent/service/register", WEB)).status == 200
        body = (await api.get("/v1/agent/service/web-sidecar-proxy")).json()
        assert body["Address"] == "127.0.0.1"
        bound = parse_sidecar(body["ID"], body, parent_port=8080, base=Limits())
        assert bound.address == "127.0.0.1"  # what meshd proxy binds
