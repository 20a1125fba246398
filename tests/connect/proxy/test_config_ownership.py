"""A bound listener keeps its owner; unusable registrations are skipped (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from connect.proxy.config import desired_listeners, sidecars_from_services


def _proxy(pid: str, dest: str, port: int, upstreams: Any) -> dict[str, Any]:
    return {
        "ID": pid,
        "Kind": "connect-proxy",
        "Address": "127.0.0.1",
        "Port": port,
        "Proxy": {
            "DestinationServiceName": dest,
            "DestinationServiceID": dest,
            "LocalServicePort": 8080,
            "Upstreams": upstreams,
        },
    }


WEB = _proxy("web-sidecar-proxy", "web", 21000, [{"DestinationName": "api", "LocalBindPort": 9191}])
# An attacker's registration whose ID sorts before web's, wanting web's upstream port.
EVIL = _proxy("a-evil", "evil", 21001, [{"DestinationName": "evil", "LocalBindPort": 9191}])


def test_a_running_upstream_listener_keeps_its_owner_against_a_sorting_first_id() -> None:
    first, _ = desired_listeners(sidecars_from_services({"web-sidecar-proxy": WEB})[0])
    assert first[("127.0.0.1", 9191)].proxy_id == "web-sidecar-proxy"
    both = sidecars_from_services({"web-sidecar-proxy": WEB, "a-evil": EVIL})[0]
    wanted, conflicts = desired_listeners(both, first)
    owner = wanted[("127.0.0.1", 9191)]
    assert owner.proxy_id == "web-sidecar-proxy" and owner.upstream is not None
    assert owner.upstream.destination == "api"
    # The conflicting sidecar is skipped whole: not even its inbound listener.
    assert ("127.0.0.1", 21001) not in wanted
    assert len(conflicts) == 1 and "bound for web-sidecar-proxy; skipping a-evil" in conflicts[0]


def test_without_running_listeners_the_first_id_wins_and_the_other_is_skipped() -> None:
    both = sidecars_from_services({"web-sidecar-proxy": WEB, "a-evil": EVIL})[0]
    wanted, conflicts = desired_listeners(both)
    assert {s.proxy_id for s in wanted.values()} == {"a-evil"}
    assert len(conflicts) == 1 and "skipping web-sidecar-proxy" in conflicts[0]


@pytest.mark.parametrize(
    "upstreams", [-1, True, 1.5, "x", {"a": 1}, [1], [{"DestinationName": 5}], [None]]
)
def test_unusable_upstreams_skip_the_sidecar_and_keep_the_others(upstreams: Any) -> None:
    services = {
        "web-sidecar-proxy": WEB,
        "bad": _proxy("bad", "bad", 21002, upstreams),
    }
    sidecars, errors = sidecars_from_services(services)
    assert set(sidecars) == {"web-sidecar-proxy"}
    assert set(errors) == {"bad"} and errors["bad"].field.startswith("Proxy.Upstreams")


@pytest.mark.parametrize(
    "field,value",
    [
        ("Port", 2**80),
        ("Port", "9" * 5000),
        ("Address", ["x"]),
        ("Proxy", {"DestinationServiceName": "x", "Config": {"idle_timeout": 10**400}}),
        ("Proxy", {"DestinationServiceName": "x", "LocalServicePort": [1]}),
        ("Proxy", {"DestinationServiceName": "x", "LocalServiceAddress": 5}),
    ],
)
def test_malformed_fields_are_errors_not_exceptions(field: str, value: Any) -> None:
    body = dict(WEB)
    body[field] = value
    sidecars, errors = sidecars_from_services({"p": body})
    assert sidecars == {} and set(errors) == {"p"}
