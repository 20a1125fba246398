"""Load-balancer policies over endpoints, skipping ejected ones."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connect.l7.balance import (
    HashPolicy,
    LeastRequestBalancer,
    LoadBalancerConfig,
    MaglevBalancer,
    RingHashBalancer,
    RoundRobinBalancer,
    make_balancer,
    request_hash,
)
from connect.l7.request import Request

HOSTS = ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"]
BY_HEADER = (HashPolicy(field="header", field_value="x-user"),)


def user(key: str, **extra: str) -> Request:
    return Request.build("GET", "/", [("x-user", key), *extra.items()])


def test_round_robin_cycles_over_healthy_hosts() -> None:
    rr = RoundRobinBalancer()
    rng = random.Random(0)
    picks = [rr.pick(HOSTS, rng=rng, excluded={HOSTS[1]}) for _ in range(4)]
    assert picks == [HOSTS[0], HOSTS[2], HOSTS[0], HOSTS[2]]


def test_no_healthy_host_gives_none() -> None:
    for policy in ("random", "round_robin", "least_request", "ring_hash", "maglev"):
        lb = make_balancer(LoadBalancerConfig(policy=policy, hash_policies=BY_HEADER))
        assert lb.pick(HOSTS, rng=random.Random(0), request=user("a"), excluded=set(HOSTS)) is None
        assert lb.pick([], rng=random.Random(0)) is None


def test_least_request_prefers_the_less_loaded_of_two_choices() -> None:
    lb = LeastRequestBalancer(choice_count=2)
    rng = random.Random(3)
    active = {HOSTS[0]: 50, HOSTS[1]: 50, HOSTS[2]: 0}
    picks = Counter(lb.pick(HOSTS, rng=rng, active=active) for _ in range(3_000))
    # P(idle host among two draws) = 1 - (2/3)^2 = 5/9
    assert 0.50 < picks[HOSTS[2]] / 3_000 < 0.61


@pytest.mark.parametrize("balancer_cls", [RingHashBalancer, MaglevBalancer])
def test_hash_policies_keep_one_header_key_on_one_host(balancer_cls: type) -> None:
    lb = balancer_cls(BY_HEADER)
    rng = random.Random(0)
    for key in ("alice", "bob", "carol"):
        picks = {lb.pick(HOSTS, rng=rng, request=user(key)) for _ in range(200)}
        assert len(picks) == 1
    spread = {lb.pick(HOSTS, rng=rng, request=user(f"u{i}")) for i in range(200)}
    assert spread == set(HOSTS)


@pytest.mark.parametrize("balancer_cls", [RingHashBalancer, MaglevBalancer])
def test_adding_a_host_moves_few_keys_and_ejection_moves_only_its_keys(
    balancer_cls: type,
) -> None:
    lb = balancer_cls(BY_HEADER)
    rng = random.Random(0)
    keys = [f"user-{i}" for i in range(2_000)]
    before = {k: lb.pick(HOSTS, rng=rng, request=user(k)) for k in keys}
    grown = [*HOSTS, "10.0.0.4:8080"]
    after = {k: lb.pick(grown, rng=rng, request=user(k)) for k in keys}
    moved = sum(before[k] != after[k] for k in keys)
    assert moved / len(keys) < 0.40  # ideal is 1/4
    to_new = sum(after[k] == "10.0.0.4:8080" for k in keys if before[k] != after[k])
    assert to_new / moved > 0.70  # ring_hash: Envoy resizes points per host (76% here)
    ejected = {k: lb.pick(HOSTS, rng=rng, request=user(k), excluded={HOSTS[0]}) for k in keys}
    for k in keys:
        assert ejected[k] != HOSTS[0]
        if before[k] != HOSTS[0]:
            assert ejected[k] == before[k]


def test_hash_combination_and_terminal_policy() -> None:
    header = HashPolicy(field="header", field_value="x-user", terminal=True)
    cookie = HashPolicy(field="cookie", field_value="sid")
    r = Request.build("GET", "/?k=1", [("x-user", "a"), ("cookie", "sid=z")], source_ip="1.2.3.4")
    assert request_hash((header, cookie), r) == request_hash((header,), r)
    nonterminal = HashPolicy(field="header", field_value="x-user")
    assert request_hash((nonterminal, cookie), r) != request_hash((nonterminal,), r)
    assert request_hash((HashPolicy(source_ip=True),), r) is not None
    assert request_hash((HashPolicy(field="query_parameter", field_value="k"),), r) is not None
    assert request_hash((HashPolicy(field="header", field_value="missing"),), r) is None


def test_no_hash_value_falls_back_to_a_random_pick() -> None:
    lb = RingHashBalancer(BY_HEADER)
    rng = random.Random(9)
    picks = {lb.pick(HOSTS, rng=rng, request=Request.build("GET", "/")) for _ in range(100)}
    assert picks == set(HOSTS)


def test_unknown_policy_uses_consul_text() -> None:
    with pytest.raises(ValueError, match='Bad LoadBalancer policy: "fastest" is not supported'):
        LoadBalancerConfig(policy="fastest")


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["random", "round_robin", "least_request", "ring_hash", "maglev"]),
    st.sets(st.integers(min_value=0, max_value=5), max_size=5),
    st.text(max_size=8),
    st.integers(min_value=0, max_value=2**32),
)
def test_balancer_never_returns_an_ejected_host_while_a_healthy_one_exists(
    policy: str, ejected_idx: set[int], key: str, seed: int
) -> None:
    hosts = [f"h{i}" for i in range(6)]
    excluded = {hosts[i] for i in ejected_idx}
    lb = make_balancer(LoadBalancerConfig(policy=policy, hash_policies=BY_HEADER))
    rng = random.Random(seed)
    for _ in range(5):
        pick = lb.pick(hosts, rng=rng, request=user(key), excluded=excluded)
        assert pick is not None and pick in hosts and pick not in excluded
