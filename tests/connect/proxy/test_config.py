"""Sidecar registrations -> listeners, and the listener diff (pure)."""

from __future__ import annotations

import pytest

from connect.proxy.config import (
    Limits,
    desired_listeners,
    diff_listeners,
    only_sidecars_for,
    parse_sidecar,
    sidecars_from_services,
)
from connect.proxy.errors import ProxyConfigError


def _services(**proxy_overrides: object) -> dict[str, object]:
    proxy = {
        "DestinationServiceName": "web",
        "DestinationServiceID": "web",
        "Upstreams": [{"DestinationName": "api", "LocalBindPort": 9191}],
    }
    proxy.update(proxy_overrides)
    return {
        "web": {"ID": "web", "Service": "web", "Port": 8080},
        "web-sidecar-proxy": {
            "ID": "web-sidecar-proxy",
            "Kind": "connect-proxy",
            "Address": "127.0.0.1",
            "Port": 21000,
            "Proxy": proxy,
        },
    }


def test_sidecar_defaults_come_from_the_parent_service_and_consul() -> None:
    sidecars, errors = sidecars_from_services(_services())
    assert errors == {}
    sc = sidecars["web-sidecar-proxy"]
    assert (sc.service, sc.address, sc.port) == ("web", "127.0.0.1", 21000)
    assert (sc.local_address, sc.local_port) == ("127.0.0.1", 8080)
    (up,) = sc.upstreams
    assert (up.destination, up.bind_address, up.bind_port, up.balance) == (
        "api",
        "127.0.0.1",
        9191,
        "round_robin",
    )
    assert sc.limits == Limits()


def test_sidecar_for_keeps_only_the_named_services_sidecars() -> None:
    services = _services()
    services["api-sidecar-proxy"] = {
        "ID": "api-sidecar-proxy",
        "Kind": "connect-proxy",
        "Port": 21001,
        "Proxy": {
            "DestinationServiceName": "api",
            "DestinationServiceID": "api-1",
            "LocalServicePort": 9000,
        },
    }
    sidecars, _ = sidecars_from_services(services)
    assert set(only_sidecars_for(sidecars, services, frozenset())) == set(sidecars)
    assert set(only_sidecars_for(sidecars, services, frozenset({"api"}))) == {"api-sidecar-proxy"}
    assert set(only_sidecars_for(sidecars, services, frozenset({"web"}))) == {"web-sidecar-proxy"}
    assert only_sidecars_for(sidecars, services, frozenset({"api-1", "db"})).keys() == {
        "api-sidecar-proxy"
    }


def test_non_proxy_services_are_ignored() -> None:
    sidecars, errors = sidecars_from_services({"web": {"ID": "web", "Port": 1}})
    assert sidecars == {} and errors == {}


def test_proxy_config_overrides_limits_and_upstreams_inherit_them() -> None:
    services = _services(
        Config={"idle_timeout": 30, "max_connections": 5},
        Upstreams=[
            {
                "DestinationName": "api",
                "LocalBindPort": 9191,
                "Config": {"balance": "least_request"},
            },
            {"DestinationName": "db", "LocalBindPort": 9192, "Config": {"max_connections": 2}},
        ],
    )
    sc = sidecars_from_services(services)[0]["web-sidecar-proxy"]
    assert sc.limits.idle_timeout == 30 and sc.limits.max_connections == 5
    assert sc.upstreams[0].balance == "least_conn"
    assert sc.upstreams[0].limits.max_connections == 5
    assert sc.upstreams[1].limits.max_connections == 2
    assert sc.upstreams[1].limits.idle_timeout == 30


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"DestinationServiceName": ""}, "Proxy.DestinationServiceName"),
        ({"Config": {"idle_timeout": "soon"}}, "Proxy.Config.idle_timeout"),
        ({"Config": {"max_connections": 0}}, "Proxy.Config.max_connections"),
        ({"Upstreams": [{"DestinationName": "api"}]}, "Proxy.Upstreams[0].LocalBindPort"),
        (
            {
                "Upstreams": [
                    {"DestinationName": "api", "LocalBindPort": 1, "Config": {"balance": "x"}}
                ]
            },
            "Proxy.Upstreams[0].Config.balance",
        ),
        (
            {"Upstreams": [{"DestinationType": "prepared_query", "DestinationName": "q"}]},
            "Proxy.Upstreams[0].DestinationType",
        ),
    ],
)
def test_bad_registrations_name_the_field(overrides: dict[str, object], field: str) -> None:
    sidecars, errors = sidecars_from_services(_services(**overrides))
    assert "web-sidecar-proxy" not in sidecars
    assert errors["web-sidecar-proxy"].field == field


def test_missing_local_port_without_parent_is_an_error() -> None:
    with pytest.raises(ProxyConfigError) as info:
        parse_sidecar(
            "p",
            {"Port": 1, "Proxy": {"DestinationServiceName": "x"}},
            parent_port=None,
            base=Limits(),
        )
    assert info.value.field == "Proxy.LocalServicePort"


def test_a_sidecar_wanting_one_address_twice_is_skipped_whole() -> None:
    services = _services(
        Upstreams=[
            {"DestinationName": "api", "LocalBindPort": 21000, "LocalBindAddress": "127.0.0.1"}
        ]
    )
    wanted, conflicts = desired_listeners(sidecars_from_services(services)[0])
    assert wanted == {}
    assert len(conflicts) == 1 and "127.0.0.1:21000 wanted twice" in conflicts[0]


def test_diff_starts_stops_and_updates_in_place() -> None:
    before, _ = desired_listeners(sidecars_from_services(_services())[0])
    after_services = _services(
        Config={"idle_timeout": 5},
        Upstreams=[{"DestinationName": "db", "LocalBindPort": 9300}],
    )
    after, _ = desired_listeners(sidecars_from_services(after_services)[0])
    diff = diff_listeners(before, after)
    assert [s.port for s in diff.start] == [9300]
    assert diff.stop == (("127.0.0.1", 9191),)
    assert [s.port for s in diff.update] == [21000]
    assert diff_listeners(after, after).start == diff_listeners(after, after).update == ()


def test_kind_change_on_one_address_is_stop_then_start() -> None:
    a, _ = desired_listeners(sidecars_from_services(_services())[0])
    moved = dict(a)
    inbound = moved.pop(("127.0.0.1", 21000))
    outbound = moved.pop(("127.0.0.1", 9191))
    swapped = {
        ("127.0.0.1", 9191): type(inbound)(**{**_fields(inbound), "port": 9191}),
        ("127.0.0.1", 21000): type(outbound)(**{**_fields(outbound), "port": 21000}),
    }
    diff = diff_listeners(a, swapped)
    assert set(diff.stop) == {("127.0.0.1", 9191), ("127.0.0.1", 21000)}
    assert {s.key for s in diff.start} == set(diff.stop)


def _fields(spec: object) -> dict[str, object]:
    from dataclasses import fields

    return {f.name: getattr(spec, f.name) for f in fields(spec)}  # type: ignore[arg-type]
