"""match -> split -> target -> endpoint in one Decision record."""

from __future__ import annotations

import json
import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from connect.l7.balance import HashPolicy, LoadBalancerConfig
from connect.l7.decide import Decider, RoutePolicy, Table, Target
from connect.l7.fault import AbortFault, FaultConfig
from connect.l7.match import HeaderMatch, HeaderModifiers, HTTPMatch, Route, Router
from connect.l7.mirror import MirrorPolicy
from connect.l7.request import Request
from connect.l7.retry import RetryPolicy
from connect.l7.split import Split, Splitter

V1 = Target(
    "v1.api.default.default.dc1",
    ("10.0.0.1:80", "10.0.0.2:80"),
    failover=("v2.api.default.default.dc1",),
)
V2 = Target("v2.api.default.default.dc1", ("10.0.1.1:80",), request_timeout_s=2.0)


def table(**kw: object) -> Table:
    router = Router(
        [
            Route(HTTPMatch(headers=(HeaderMatch("x-version", exact="v2"),)), next_node=V2.id),
            Route(
                HTTPMatch(path_prefix="/canary"),
                next_node="splitter:api",
                request_headers=HeaderModifiers(set={"x-route": "canary"}),
            ),
            Route(HTTPMatch(path_prefix="/"), next_node=V1.id),
        ]
    )
    splitter = Splitter(
        [
            Split(90, V1.id, request_headers=HeaderModifiers(set={"x-split": "v1"})),
            Split(10, V2.id, request_headers=HeaderModifiers(set={"x-split": "v2"})),
        ]
    )
    defaults: dict[str, object] = {
        "start": V1.id,
        "router": router,
        "route_policies": (
            RoutePolicy(),
            RoutePolicy(request_timeout_s=0.2, retry=RetryPolicy(num_retries=3, retry_on=("5xx",))),
            RoutePolicy(mirror=MirrorPolicy(V2.id)),
        ),
        "splitters": {"splitter:api": splitter},
        "targets": {V1.id: V1, V2.id: V2},
    }
    defaults.update(kw)
    return Table(**defaults)  # type: ignore[arg-type]


def get(path: str, *headers: tuple[str, str]) -> Request:
    return Request.build("GET", path, headers)


def test_header_selects_the_hidden_release() -> None:
    d = Decider(table()).decide(get("/x", ("x-version", "v2")), rng=random.Random(0))
    assert (d.outcome, d.route_index, d.target, d.endpoint) == ("ok", 0, V2.id, "10.0.1.1:80")
    assert d.timeout_s == 2.0  # the resolver's RequestTimeout
    plain = Decider(table()).decide(get("/x"), rng=random.Random(0))
    assert plain.target == V1.id and plain.timeout_s == 15.0


def test_canary_split_ninety_ten_with_route_and_split_headers() -> None:
    decider = Decider(table())
    rng = random.Random(1)
    decisions = [decider.decide(get("/canary/a"), rng=rng) for _ in range(2_000)]
    counts = Counter(d.target for d in decisions)
    assert 8.5 <= counts[V2.id] / 20 <= 11.5
    d = decisions[0]
    assert d.splits[0].buckets == ((V1.id, 90.0), (V2.id, 10.0))
    assert d.request_headers.get("x-route") == "canary"
    assert d.request_headers.get("x-split") == ("v1" if d.target == V1.id else "v2")
    assert d.timeout_s == 0.2 and d.retry.max_retries() == 3


def test_failover_when_the_primary_has_no_healthy_endpoint() -> None:
    d = Decider(table()).decide(
        get("/x"), rng=random.Random(0), excluded=lambda t: V1.endpoints if t == V1.id else ()
    )
    assert d.outcome == "ok" and d.target == V2.id
    assert d.tried_targets == (V1.id, V2.id)


def test_no_healthy_upstream_when_every_target_is_exhausted() -> None:
    every = {V1.id: V1.endpoints, V2.id: V2.endpoints}
    d = Decider(table()).decide(get("/x"), rng=random.Random(0), excluded=lambda t: every[t])
    assert d.outcome == "no_healthy_upstream" and d.status_if_local == 503


def test_ejected_endpoints_are_listed_and_never_picked() -> None:
    decider = Decider(table())
    rng = random.Random(2)
    for _ in range(50):
        d = decider.decide(get("/x"), rng=rng, excluded=lambda t: {"10.0.0.1:80"})
        assert d.endpoint == "10.0.0.2:80"
    assert d.ejected == ("10.0.0.1:80",) and d.eligible == ("10.0.0.2:80",)


def test_no_route_bad_path_and_no_router() -> None:
    only = Router([Route(HTTPMatch(path_exact="/only"), next_node=V1.id)])
    d = Decider(table(router=only)).decide(get("/other"), rng=random.Random(0))
    assert d.outcome == "no_route" and d.status_if_local == 404
    assert Decider(table()).decide(get("/a%zz"), rng=random.Random(0)).status_if_local == 400
    plain = Decider(Table(start=V1.id, targets={V1.id: V1}))
    assert plain.decide(get("/anything"), rng=random.Random(0)).target == V1.id


def test_mirror_and_fault_are_decided_with_the_request() -> None:
    faulty = Target(V1.id, V1.endpoints, fault=FaultConfig(abort=AbortFault(503, percentage=100)))
    d = Decider(table(targets={V1.id: faulty, V2.id: V2})).decide(get("/x"), rng=random.Random(0))
    assert d.mirror and d.mirror_target == V2.id
    assert d.fault.abort_status == 503


def test_ring_hash_target_keeps_a_user_on_one_endpoint() -> None:
    hashed = Target(
        V1.id,
        ("a:1", "b:1", "c:1"),
        load_balancer=LoadBalancerConfig(
            policy="ring_hash", hash_policies=(HashPolicy(field="header", field_value="x-user"),)
        ),
    )
    decider = Decider(Table(start=V1.id, targets={V1.id: hashed}))
    rng = random.Random(0)
    picks = {decider.decide(get("/", ("x-user", "u1")), rng=rng).endpoint for _ in range(100)}
    assert len(picks) == 1


def test_missing_hash_cookie_with_ttl_is_generated_and_then_sticks() -> None:
    cookie = HashPolicy(field="cookie", field_value="route", cookie_ttl_s=60, cookie_path="/")
    hashed = Target(
        V1.id,
        ("a:1", "b:1", "c:1"),
        load_balancer=LoadBalancerConfig(policy="ring_hash", hash_policies=(cookie,)),
    )
    decider = Decider(Table(start=V1.id, targets={V1.id: hashed}))
    rng = random.Random(5)
    first = decider.decide(get("/"), rng=rng)
    assert first.set_cookie is not None
    assert (
        first.set_cookie.startswith('route="')
        and "Max-Age=60; Path=/; HttpOnly" in first.set_cookie
    )
    value = first.set_cookie.split('"')[1]
    again = [decider.decide(get("/", ("cookie", f"route={value}")), rng=rng) for _ in range(20)]
    assert {d.endpoint for d in again} == {first.endpoint}
    assert all(d.set_cookie is None for d in again)


def test_hash_cookie_without_ttl_is_not_generated() -> None:
    cookie = HashPolicy(field="cookie", field_value="route")
    hashed = Target(
        V1.id, ("a:1",), load_balancer=LoadBalancerConfig(policy="maglev", hash_policies=(cookie,))
    )
    d = Decider(Table(start=V1.id, targets={V1.id: hashed})).decide(get("/"), rng=random.Random(0))
    assert d.set_cookie is None and d.endpoint == "a:1"


def test_explain_names_route_buckets_target_endpoints_and_retries() -> None:
    d = Decider(table()).decide(
        get("/canary/x"), rng=random.Random(0), excluded=lambda t: {"10.0.0.1:80"}
    )
    out = d.explain()
    assert out["Outcome"] == "ok" and out["RouteIndex"] == 1
    assert out["Splits"] == [
        {
            "Node": "splitter:api",
            "Buckets": [{"NextNode": V1.id, "Weight": 90.0}, {"NextNode": V2.id, "Weight": 10.0}],
            "Picked": d.splits[0].picked,
        }
    ]
    assert out["Retry"] == {
        "NumRetries": 3,
        "RetryOn": ["5xx"],
        "RetryOnStatusCodes": [],
        "RetryNonIdempotent": False,
    }
    assert out["TimeoutSeconds"] == 0.2
    assert out["Target"] == V1.id  # the 90% bucket for this seed
    assert out["Ejected"] == ["10.0.0.1:80"] and out["Endpoint"] == "10.0.0.2:80"
    assert json.loads(json.dumps(out)) == out


@settings(max_examples=200, deadline=None)
@given(
    endpoints=st.lists(st.sampled_from(["a:1", "b:1", "c:1"]), unique=True, max_size=3),
    out=st.sets(st.sampled_from(["a:1", "b:1", "c:1"])),
    timeout=st.sampled_from([None, 0.0, 2.5]),
    policy=st.sampled_from(["round_robin", "random", "least_request"]),
    failover=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_a_plain_upstream_shortcut_decides_as_the_full_path(
    endpoints: list[str],
    out: set[str],
    timeout: float | None,
    policy: str,
    failover: bool,
    seed: int,
) -> None:
    lb = LoadBalancerConfig(policy=policy)
    target = Target("t", tuple(endpoints), lb, ("f",) if failover else (), timeout)
    t = Table(start="t", targets={"t": target, "f": Target("f", ("f:1",))})
    fast, full = Decider(t), Decider(t)
    assert fast._direct is target

    def excluded(target_id: str) -> set[str]:
        return out if target_id == "t" else set()

    request = Request.build("GET", "/x", [("host", "api")])
    rng_a, rng_b = random.Random(seed), random.Random(seed)
    for _ in range(3):  # balancer state (round robin) advances alike
        got = fast.decide(request, rng=rng_a, excluded=excluded)
        assert got == full._decide(request, rng_b, excluded, None)


def _split_table(
    weights: list[int], endpoints: list[list[str]], timeouts: list[float | None], policy: str
) -> Table:
    targets = {
        f"t{i}": Target(f"t{i}", tuple(eps), LoadBalancerConfig(policy=policy), ("f",), timeouts[i])
        for i, eps in enumerate(endpoints)
    }
    targets["f"] = Target("f", ("f:1",))
    splits = [
        Split(
            w,
            f"t{i}",
            request_headers=HeaderModifiers(set={"x-split": f"t{i}"})
            if i % 2
            else HeaderModifiers(),
            response_headers=HeaderModifiers(add={"x-leg": str(i)}),
        )
        for i, w in enumerate(weights)
    ]
    return Table(
        start="splitter:api", splitters={"splitter:api": Splitter(splits)}, targets=targets
    )


@settings(max_examples=200, deadline=None)
@given(
    legs=st.integers(1, 3),
    cut=st.integers(0, 100),
    endpoints=st.lists(
        st.lists(st.sampled_from(["a:1", "b:1", "c:1"]), unique=True, max_size=3),
        min_size=3,
        max_size=3,
    ),
    out=st.sets(st.sampled_from(["a:1", "b:1", "c:1"])),
    ejected_leg=st.integers(0, 3),
    timeouts=st.lists(st.sampled_from([None, 0.0, 2.5]), min_size=3, max_size=3),
    policy=st.sampled_from(["round_robin", "random", "least_request"]),
    seed=st.integers(0, 1000),
)
def test_a_plain_split_shortcut_decides_as_the_full_path(
    legs: int,
    cut: int,
    endpoints: list[list[str]],
    out: set[str],
    ejected_leg: int,
    timeouts: list[float | None],
    policy: str,
    seed: int,
) -> None:
    weights = [cut, 100 - cut, 0][:legs] if legs > 1 else [100]
    t = _split_table(weights, endpoints[:legs], timeouts, policy)
    fast, full = Decider(t), Decider(t)
    assert fast._split is not None

    def excluded(target_id: str) -> set[str]:
        return out if target_id == f"t{ejected_leg}" else set()

    request = Request.build("GET", "/x", [("host", "api"), ("x-split", "caller")])
    rng_a, rng_b = random.Random(seed), random.Random(seed)
    for _ in range(4):  # the same draws: split picks and balancer state advance alike
        got = fast.decide(request, rng=rng_a, excluded=excluded)
        want = full._decide(request, rng_b, excluded, None)
        assert got == want
        assert got.explain() == want.explain()
    assert rng_a.random() == rng_b.random()


def test_the_split_shortcut_is_off_where_a_split_needs_more_than_a_pick() -> None:
    plain = _split_table([90, 10], [["a:1"], ["b:1"]], [None, None], "")
    assert Decider(plain)._split is not None
    nested = Table(
        start="s",
        splitters={"s": Splitter([Split(100, "splitter:api")]), **plain.splitters},
        targets=plain.targets,
    )
    hashed = dict(plain.targets)
    hashed["t0"] = Target(
        "t0",
        ("a:1",),
        LoadBalancerConfig("ring_hash", hash_policies=(HashPolicy("header", "x-user"),)),
    )
    faulty = dict(plain.targets)
    faulty["t1"] = Target("t1", ("b:1",), fault=FaultConfig(abort=AbortFault(503, None, 50.0)))
    for table_ in (
        nested,
        Table(start=plain.start, splitters=plain.splitters, targets=hashed),
        Table(start=plain.start, splitters=plain.splitters, targets=faulty),
        Table(start=plain.start, splitters=plain.splitters, targets={"t0": plain.targets["t0"]}),
        table(start="splitter:api"),  # with a router
    ):
        assert Decider(table_)._split is None
