"""Weighted split picks at 0.01% resolution."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connect.l7.split import Split, Splitter, weight_units


def test_ninety_ten_over_ten_thousand_picks_within_one_point() -> None:
    splitter = Splitter([Split(90, "v1"), Split(10, "v2")])
    rng = random.Random(7)
    picks = [splitter.pick(rng) for _ in range(10_000)]
    share_v2 = picks.count(1) / len(picks) * 100
    assert 9.0 <= share_v2 <= 11.0


def test_picks_are_deterministic_for_a_seeded_rng() -> None:
    splitter = Splitter([Split(50, "a"), Split(50, "b")])
    first = [splitter.pick(random.Random(3)) for _ in range(5)]
    a, b = random.Random(42), random.Random(42)
    assert [splitter.pick(a) for _ in range(100)] == [splitter.pick(b) for _ in range(100)]
    assert len(set(first)) == 1


def test_weights_truncate_to_units_and_shortfall_goes_to_first() -> None:
    assert weight_units([33.333, 33.333, 33.334]) == (3334, 3333, 3333)
    assert weight_units([0.01, 99.99]) == (1, 9999)
    with pytest.raises(ValueError, match="must be 100"):
        weight_units([60, 50])


def test_resolution_is_one_hundredth_of_a_percent() -> None:
    splitter = Splitter([Split(99.99, "a"), Split(0.01, "b")])
    assert [splitter.pick_value(v) for v in (0, 9998, 9999)] == [0, 0, 1]


def test_zero_weight_split_is_never_picked() -> None:
    splitter = Splitter([Split(0, "never"), Split(100, "always")])
    rng = random.Random(1)
    assert {splitter.pick(rng) for _ in range(2_000)} == {1}


@given(
    st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=8),
    st.integers(min_value=0),
)
def test_every_pick_lands_in_a_configured_nonzero_bucket(raw: list[int], seed: int) -> None:
    total = sum(raw)
    if total == 0:
        raw = [1, *raw[1:]]
        total = sum(raw)
    units = [r * 10_000 // total for r in raw]
    units[0] += 10_000 - sum(units)
    splitter = Splitter([Split(u / 100, f"s{i}") for i, u in enumerate(units)])
    rng = random.Random(seed)
    for _ in range(50):
        i = splitter.pick(rng)
        assert 0 <= i < len(units)
        assert splitter.units[i] > 0
