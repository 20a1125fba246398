"""Property tests: the compiler only ever refuses with ChainError, and the
splits of every compiled splitter node sum to exactly 100.00 %."""

from __future__ import annotations

import contextlib
import copy
import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connect.l7.chain import compile_chain, trace_chain
from connect.l7.chain_validate import EntrySet, validate_entries
from connect.l7.decode import ChainError, ValidationError
from connect.l7.entries import ConfigEntry, parse_entry
from tests.connect.l7.test_entries import ROUND_TRIP

SERVICES = ["a", "b", "c", "d"]
SUBSETS = ["v1", "v2"]
service = st.sampled_from(SERVICES)
maybe_service = st.sampled_from(["", *SERVICES])
maybe_subset = st.sampled_from(["", "", "", *SUBSETS, "v3"])


@st.composite
def weights(draw: st.DrawFn) -> list[float]:
    """2-4 weights in 0.01 units summing to 10000."""
    n = draw(st.integers(2, 4))
    cuts = sorted(draw(st.lists(st.integers(0, 10000), min_size=n - 1, max_size=n - 1)))
    bounds = [0, *cuts, 10000]
    return [(hi - lo) / 100 for lo, hi in itertools.pairwise(bounds)]


@st.composite
def splitter(draw: st.DrawFn, name: str) -> dict[str, Any]:
    ws = draw(weights())
    splits = []
    seen = set()
    for i, w in enumerate(ws):
        svc, sub = draw(maybe_service), draw(maybe_subset)
        key = (svc or name, sub)
        if key in seen:
            svc, sub = name, f"s{i}"
        seen.add((svc or name, sub))
        splits.append({"Weight": w, "Service": svc, "ServiceSubset": sub})
    return {"Kind": "service-splitter", "Name": name, "Splits": splits}


@st.composite
def resolver(draw: st.DrawFn, name: str) -> dict[str, Any]:
    names = draw(st.sampled_from([SUBSETS, SUBSETS, SUBSETS[:1], []]))
    subsets = {s: {"OnlyPassing": draw(st.booleans())} for s in names}
    out: dict[str, Any] = {"Kind": "service-resolver", "Name": name, "Subsets": subsets}
    kind = draw(st.sampled_from(["plain", "redirect", "failover"]))
    if kind == "redirect":
        out["Redirect"] = {"Service": draw(service), "ServiceSubset": draw(maybe_subset)}
    elif kind == "failover":
        out["Failover"] = {"*": {"Service": draw(service), "ServiceSubset": draw(maybe_subset)}}
    if subsets and draw(st.booleans()):
        out["DefaultSubset"] = draw(st.sampled_from(sorted(subsets)))
    return out


@st.composite
def router(draw: st.DrawFn, name: str) -> dict[str, Any]:
    routes = [
        {
            "Match": {"HTTP": {"PathPrefix": f"/{i}"}},
            "Destination": {"Service": draw(maybe_service), "ServiceSubset": draw(maybe_subset)},
        }
        for i in range(draw(st.integers(0, 3)))
    ]
    return {"Kind": "service-router", "Name": name, "Routes": routes}


@st.composite
def entry_sets(draw: st.DrawFn) -> list[ConfigEntry]:
    raw: list[dict[str, Any]] = []
    if draw(st.booleans()):
        raw.append(
            {
                "Kind": "proxy-defaults",
                "Name": "global",
                "Config": {"protocol": draw(st.sampled_from(["http", "http", "tcp", "grpc"]))},
            }
        )
    for name in SERVICES:
        if draw(st.booleans()):
            raw.append(
                {
                    "Kind": "service-defaults",
                    "Name": name,
                    "Protocol": draw(st.sampled_from(["http", "http", "http", "tcp", "http2"])),
                }
            )
        if draw(st.integers(0, 4)) > 0:
            raw.append(draw(resolver(name)))
        for make in (splitter, router):
            if draw(st.integers(0, 2)) == 0:
                raw.append(draw(make(name)))
    out = []
    for r in raw:
        # Some draws are invalid on their own (e.g. a Failover key that is no subset).
        with contextlib.suppress(ValidationError):
            out.append(parse_entry(r))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entry_sets(), service)
def test_compiler_only_refuses_with_chain_error(batch: list[ConfigEntry], start: str) -> None:
    lookup = EntrySet.of(batch)
    try:
        c = compile_chain(start, lookup, "dc1", "td.consul")
    except ChainError as exc:
        assert str(exc)
        return
    assert c.start_node in c.nodes
    for node in c.nodes.values():
        for nxt in node.next_nodes():
            assert nxt in c.nodes
        if node.resolver is not None:
            assert node.resolver.target in c.targets
            assert all(t in c.targets for t in node.resolver.failover_targets)
        if node.splits:
            assert sum(round(s.weight * 100) for s in node.splits) == 10000
            assert all(c.nodes[s.next_node].type == "resolver" for s in node.splits)
    assert c.to_json()["StartNode"] == c.start_node


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entry_sets())
def test_validate_entries_only_refuses_with_validation_errors(batch: list[ConfigEntry]) -> None:
    try:
        affected = validate_entries(EntrySet(), batch)
    except ValidationError as exc:
        assert str(exc)
        return
    assert affected == sorted(set(affected))
    for name in affected:
        compile_chain(name, EntrySet.of(batch), "dc1", "td.consul")


@st.composite
def nested_splitters(draw: st.DrawFn) -> list[ConfigEntry]:
    """Acyclic splitters (service i splits only to services after it), all http."""
    raw: list[dict[str, Any]] = [
        {"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}}
    ]
    for i, name in enumerate(SERVICES):
        if draw(st.booleans()) or i == 0:
            later = SERVICES[i + 1 :]
            ws = draw(weights())
            dests = [name, *later]
            chosen = draw(st.permutations([*dests, *(f"leaf{j}" for j in range(len(ws)))]))
            splits = [{"Weight": w, "Service": d} for w, d in zip(ws, chosen, strict=False)]
            raw.append({"Kind": "service-splitter", "Name": name, "Splits": splits})
    return [parse_entry(r) for r in raw]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nested_splitters())
def test_flattened_split_weights_always_sum_to_100(batch: list[ConfigEntry]) -> None:
    c = compile_chain("a", EntrySet.of(batch), "dc1", "td.consul")
    node = c.nodes[c.start_node]
    assert node.type == "splitter"
    assert sum(round(s.weight * 100) for s in node.splits) == 10000
    assert all(abs(s.weight * 100 - round(s.weight * 100)) < 1e-6 for s in node.splits)
    assert all(c.nodes[s.next_node].type == "resolver" for s in node.splits)
    assert [k for k in c.nodes if k.startswith("splitter:")] == [c.start_node]


FIELD_NAMES = [
    "Name",
    "Protocol",
    "Routes",
    "Match",
    "HTTP",
    "PathPrefix",
    "PathExact",
    "Header",
    "QueryParam",
    "Methods",
    "Destination",
    "Service",
    "ServiceSubset",
    "RequestTimeout",
    "NumRetries",
    "RetryOn",
    "RetryOnStatusCodes",
    "RequestHeaders",
    "Add",
    "Set",
    "Remove",
    "Mirror",
    "Percent",
    "Splits",
    "Weight",
    "Subsets",
    "Filter",
    "OnlyPassing",
    "DefaultSubset",
    "Redirect",
    "Failover",
    "Targets",
    "Datacenters",
    "ConnectTimeout",
    "LoadBalancer",
    "Policy",
    "HashPolicies",
    "Field",
    "FieldValue",
    "CookieConfig",
    "TTL",
    "SourceIP",
    "Sources",
    "Action",
    "Permissions",
    "UpstreamConfig",
    "Defaults",
    "Overrides",
    "Limits",
    "MaxConnections",
    "PassiveHealthCheck",
    "Interval",
    "BaseEjectionTime",
    "Config",
    "EnvoyExtensions",
    "Arguments",
    "Abort",
    "HttpStatus",
    "Percentage",
    "Meta",
    "Present",
]
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "x", "/a", "1s", "-1s", "GET", "http", "v1", "*", "ring_hash"]),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(FIELD_NAMES), inner, max_size=4),
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(
        [
            "service-defaults",
            "proxy-defaults",
            "service-router",
            "service-splitter",
            "service-resolver",
            "service-intentions",
        ]
    ),
    st.dictionaries(st.sampled_from(FIELD_NAMES), json_value, max_size=5),
)
def test_parse_entry_only_refuses_with_validation_error(kind: str, body: dict[str, Any]) -> None:
    try:
        entry = parse_entry({"Kind": kind, **body})
    except ValidationError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert entry.kind == kind
    assert parse_entry(entry.to_json()) == entry


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(doc: Any, path: tuple[Any, ...], new: Any) -> Any:
    doc = copy.deepcopy(doc)
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return doc


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_valid_entries_only_refuse_with_validation_error(data: st.DataObject) -> None:
    doc = data.draw(st.sampled_from(ROUND_TRIP))
    path = data.draw(st.sampled_from([p for p in _paths(doc) if p != ("Kind",)]))
    mutated = _mutate(doc, path, data.draw(json_value))
    try:
        entry = parse_entry(mutated)
    except ValidationError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert parse_entry(entry.to_json()) == entry


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entry_sets())
def test_validate_entries_matches_compiling_every_chain(batch: list[ConfigEntry]) -> None:
    """The cheap reach pre-check in validate_entries must skip no affected chain."""
    if not batch:
        return
    *base, write = batch
    state = EntrySet.of(base)
    after = state.with_changes([write])
    kinds = ("service-defaults", "service-router", "service-splitter", "service-resolver")
    candidates = {n for k in kinds for n in after.names(k)}
    if write.kind != "proxy-defaults":
        candidates.add(write.name)
    expected = sorted(
        s
        for s in candidates
        if write.kind == "proxy-defaults" or write.name in trace_chain(s, after).services_read
    )
    broken = [s for s in expected if trace_chain(s, after).error is not None]
    try:
        affected = validate_entries(state, [write])
    except ChainError:
        assert broken
        return
    except ValidationError:
        assert after.names("service-intentions")
        return
    assert not broken
    assert affected == expected
