"""Whole-graph validation of a batch of config-entry writes and deletes."""

from __future__ import annotations

from typing import Any

import pytest

from connect.l7.chain import trace_chain
from connect.l7.chain_validate import EntrySet, validate_entries
from connect.l7.decode import ChainError, ValidationError
from connect.l7.entries import ConfigEntry, parse_entry

HTTP_PD = {"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}}


def e(raw: dict[str, Any]) -> ConfigEntry:
    return parse_entry(raw)


def sd(name: str, protocol: str) -> ConfigEntry:
    return e({"Kind": "service-defaults", "Name": name, "Protocol": protocol})


def router(name: str, *dests: str) -> ConfigEntry:
    routes = [{"Destination": {"Service": d}} for d in dests]
    return e({"Kind": "service-router", "Name": name, "Routes": routes})


def test_router_alone_on_tcp_is_refused_but_with_protocol_in_the_same_batch_passes() -> None:
    # hashicorp/consul#6247: ordering "protocol then router" must not fail half-way.
    with pytest.raises(ChainError, match="does not permit advanced routing"):
        validate_entries(EntrySet(), [router("web", "api")])
    affected = validate_entries(
        EntrySet(), [sd("web", "http"), sd("api", "http"), router("web", "api")]
    )
    assert affected == ["api", "web"]


def test_changing_a_destination_protocol_refuses_when_a_router_uses_it() -> None:
    state = EntrySet.of([sd("web", "http"), sd("api", "http"), router("web", "api")])
    with pytest.raises(ChainError) as info:
        validate_entries(state, [sd("api", "grpc")])
    assert str(info.value) == (
        'discovery chain "web" uses inconsistent protocols; service "api" has "grpc" which is '
        'not "http"'
    )


def test_deleting_service_defaults_that_a_router_needs_is_refused() -> None:
    state = EntrySet.of([sd("web", "http"), router("web")])
    with pytest.raises(ChainError, match='discovery chain "web" uses a protocol "tcp"'):
        validate_entries(state, deletes=[("service-defaults", "web")])
    assert validate_entries(state, deletes=[("service-router", "web")]) == ["web"]


def test_proxy_defaults_write_checks_every_chain() -> None:
    state = EntrySet.of([e(HTTP_PD), router("web"), router("shop")])
    tcp = e({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "tcp"}})
    with pytest.raises(ChainError, match='discovery chain "shop"'):
        validate_entries(state, [tcp])
    assert validate_entries(state, [e(HTTP_PD)]) == ["shop", "web"]


def test_only_chains_that_read_the_written_entry_are_reported() -> None:
    state = EntrySet.of([e(HTTP_PD), router("web", "api"), router("shop", "cart")])
    res = e({"Kind": "service-resolver", "Name": "cart", "ConnectTimeout": "3s"})
    assert validate_entries(state, [res]) == ["cart", "shop"]


def test_an_unrelated_broken_chain_does_not_refuse_a_write() -> None:
    # "old" was stored broken (e.g. before validation existed); writing "new" is fine.
    state = EntrySet.of([router("old")])
    assert validate_entries(state, [sd("new", "http")]) == ["new"]


def test_missing_subset_after_resolver_change_is_refused() -> None:
    state = EntrySet.of(
        [
            e(HTTP_PD),
            e({"Kind": "service-resolver", "Name": "api", "Subsets": {"v1": {}, "v2": {}}}),
            e(
                {
                    "Kind": "service-router",
                    "Name": "web",
                    "Routes": [{"Destination": {"Service": "api", "ServiceSubset": "v2"}}],
                }
            ),
        ]
    )
    shrunk = e({"Kind": "service-resolver", "Name": "api", "Subsets": {"v1": {}}})
    with pytest.raises(ChainError, match=r'^service "api" does not have a subset named "v2"$'):
        validate_entries(state, [shrunk])


def test_l7_intentions_need_an_http_service() -> None:
    ix = e(
        {
            "Kind": "service-intentions",
            "Name": "web",
            "Sources": [
                {"Name": "api", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}
            ],
        }
    )
    with pytest.raises(ValidationError) as info:
        validate_entries(EntrySet(), [ix])
    assert str(info.value) == (
        'service "web" has protocol "tcp", which is incompatible with L7 intentions permissions'
    )
    assert validate_entries(EntrySet(), [sd("web", "http"), ix]) == ["web"]
    state = EntrySet.of([sd("web", "http"), ix])
    with pytest.raises(ValidationError, match="incompatible with L7 intentions"):
        validate_entries(state, [sd("web", "tcp")])


def test_entry_set_with_changes_applies_writes_and_deletes() -> None:
    state = EntrySet.of([sd("a", "http"), sd("b", "http")])
    after = state.with_changes([sd("c", "grpc")], [("service-defaults", "a")])
    assert after.names("service-defaults") == ["b", "c"]
    assert state.names("service-defaults") == ["a", "b"]


def test_trace_chain_names_the_services_it_read_and_returns_errors() -> None:
    state = EntrySet.of(
        [
            e(HTTP_PD),
            router("web", "api"),
            e({"Kind": "service-resolver", "Name": "api", "Redirect": {"Service": "api2"}}),
        ]
    )
    ok = trace_chain("web", state)
    assert ok.error is None and ok.chain is not None
    assert ok.services_read == {"web", "api", "api2"}
    broken = trace_chain("web", state.with_changes([sd("api2", "tcp")]))
    assert broken.chain is None and broken.error is not None
    assert "inconsistent protocols" in str(broken.error)
