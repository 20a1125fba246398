"""The dry-run comparison core: a known mix of recorded requests, decided under
the stored entries and under proposed ones, gives exact moved fractions and
denial counts (splits as expected fractions, never draws)."""

from __future__ import annotations

from typing import Any

from connect.l7.chain_validate import EntrySet
from connect.l7.dryrun import Sample, World, dry_run, go_duration, world_of
from connect.l7.entries import parse_entry

BASE: list[dict[str, Any]] = [
    {"Kind": "service-defaults", "Name": "api", "Protocol": "http"},
    {"Kind": "service-defaults", "Name": "billing", "Protocol": "http"},
    {
        "Kind": "service-resolver",
        "Name": "api",
        "DefaultSubset": "v1",
        "Subsets": {
            "v1": {"Filter": 'Service.Meta.version == "v1"'},
            "v2": {"Filter": 'Service.Meta.version == "v2"'},
        },
    },
]
ROUTER = {
    "Kind": "service-router",
    "Name": "api",
    "Routes": [
        {
            "Match": {"HTTP": {"Header": [{"Name": "x-version", "Exact": "2"}]}},
            "Destination": {"ServiceSubset": "v2"},
        }
    ],
}
SPLITTER = {
    "Kind": "service-splitter",
    "Name": "api",
    "Splits": [{"Weight": 96.9, "ServiceSubset": "v1"}, {"Weight": 3.1, "ServiceSubset": "v2"}],
}
DENY_DELETE = {
    "Kind": "service-intentions",
    "Name": "api",
    "Sources": [
        {
            "Name": "web",
            "Permissions": [{"Action": "deny", "HTTP": {"Methods": ["DELETE"]}}],
        }
    ],
}


def world(entries: list[dict[str, Any]], default_allow: bool = True) -> World:
    typed = EntrySet.of(parse_entry(e) for e in entries)
    return world_of(typed, datacenter="dc1", default_allow=default_allow)


def mix(get: int, header: int, delete: int, *, t0: float = 1000.0) -> list[Sample]:
    """``get`` GET /, ``header`` GET / with x-version: 2, ``delete`` DELETE /items."""
    out = [Sample("web", "api", "GET", "/", time=t0)] * get
    out += [Sample("web", "api", "GET", "/", "", (("x-version", "2"),), time=t0)] * header
    out += [Sample("web", "api", "DELETE", "/items", "a=1", time=t0)] * delete
    return out


def changes(answer: dict[str, Any], service: str) -> dict[tuple[str, str, str, str], Any]:
    found = next(s for s in answer["Services"] if s["Service"] == service)
    return {(c["Kind"], c["From"], c["To"], c["Method"]): c for c in found["Changes"]}


def test_router_splitter_and_intention_report_the_known_mix_exactly() -> None:
    samples = mix(700, 200, 100)
    after = world([*BASE, ROUTER, SPLITTER, DENY_DELETE])
    answer = dry_run(samples, world(BASE), after, services=["api"], now=1090.0)
    assert answer["Samples"] == 1000 and answer["Window"] == "1m30s"
    got = changes(answer, "api")
    assert set(got) == {
        ("route", "v1", "v2", ""),
        ("split", "v1", "v2", ""),
        ("deny", "", "", "DELETE"),
    }
    assert got[("route", "v1", "v2", "")]["Percent"] == 20.0
    # 800 requests not matched by the route are split 96.9/3.1: 24.8 move.
    assert got[("split", "v1", "v2", "")]["Requests"] == 24.8
    assert got[("split", "v1", "v2", "")]["Percent"] == 2.48
    assert got[("deny", "", "", "DELETE")]["Requests"] == 100
    assert "web => api" in got[("deny", "", "", "DELETE")]["Detail"]
    assert answer["Summary"] == [
        "20.0% of recent requests to api would move from v1 to v2 (route)",
        "100 DELETEs to api would now be denied",
        "2.5% of recent requests to api would move from v1 to v2",
    ]


def test_removing_a_deny_reports_newly_allowed_and_a_split_back() -> None:
    before = world([*BASE, SPLITTER, DENY_DELETE])
    answer = dry_run(mix(900, 0, 100), before, world(BASE), now=1000.0)
    got = changes(answer, "api")
    assert got[("allow", "", "", "DELETE")]["Requests"] == 100
    # Only the expected 3.1% that went to v2 come back to v1.
    assert got[("split", "v2", "v1", "")]["Percent"] == 3.1
    assert "100 DELETEs to api would now be allowed" in answer["Summary"]


def test_no_change_lists_the_affected_service_with_no_changes() -> None:
    answer = dry_run(mix(10, 5, 0), world(BASE), world(BASE), services=["api"], now=1000.0)
    assert answer["Services"] == [{"Service": "api", "Requests": 15, "Changes": []}]
    assert answer["Summary"] == ["No change for the 15 recent requests recorded"]


def test_redirect_to_another_service_is_its_own_kind() -> None:
    redirect = {"Kind": "service-resolver", "Name": "api", "Redirect": {"Service": "billing"}}
    base = [e for e in BASE if e["Kind"] != "service-resolver"]
    answer = dry_run(mix(4, 0, 0), world(base), world([*base, redirect]), now=1000.0)
    got = changes(answer, "api")
    assert list(got) == [("redirect", "api", "billing", "")]
    assert got[("redirect", "api", "billing", "")]["Percent"] == 100.0


def test_identical_shapes_are_decided_once() -> None:
    after = world([*BASE, SPLITTER])
    dry_run(mix(500, 500, 0), world(BASE), after, now=1000.0)
    assert len(after._cache) == 2


def test_go_duration() -> None:
    assert [go_duration(s) for s in (0, 59.9, 61, 3723)] == ["0s", "59s", "1m1s", "1h2m3s"]
