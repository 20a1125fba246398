"""Weighted split picks at 0.01% resolution, as Consul's splitter in Envoy.

Rules (Consul ``service-splitter`` -> Envoy ``weighted_clusters``):

- Weights are percentages (0-100, float). Each is scaled to units of 1/10000
  by truncation (``int(weight * 100)``); any shortfall from 10000 goes to the
  *first* split, as Consul's xDS output does.
- A pick draws one integer in [0, 10000) from the ``random.Random`` the
  driver passes in and walks the cumulative units: deterministic for a given
  rng, and a split with weight 0 is never picked.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from connect.l7.match import HeaderModifiers

TOTAL_UNITS = 10_000


@dataclass(frozen=True)
class Split:
    """Consul's ``ServiceSplit``; ``next_node`` is the chain node or target id."""

    weight: float
    next_node: str = ""
    request_headers: HeaderModifiers = field(default_factory=HeaderModifiers)
    response_headers: HeaderModifiers = field(default_factory=HeaderModifiers)


def weight_units(weights: Sequence[float]) -> tuple[int, ...]:
    """Each weight in 1/10000 units, shortfall to the first (Consul's xDS)."""
    if not weights:
        raise ValueError("no splits configured")
    units = [int(w * 100) for w in weights]
    if any(u < 0 for u in units):
        raise ValueError("split weights cannot be negative")
    shortfall = TOTAL_UNITS - sum(units)
    if shortfall < 0:
        raise ValueError(f"the sum of all split weights must be 100, not {sum(weights):f}")
    units[0] += shortfall
    return tuple(units)


class Splitter:
    """Picks a split index for each request from an rng."""

    __slots__ = ("_bounds", "buckets", "splits", "units")

    def __init__(self, splits: Sequence[Split]) -> None:
        self.splits = tuple(splits)
        self.units = weight_units([s.weight for s in self.splits])
        bounds: list[int] = []
        total = 0
        for u in self.units:
            total += u
            bounds.append(total)
        self._bounds = tuple(bounds)
        self.buckets = tuple(
            (s.next_node, u / 100) for s, u in zip(self.splits, self.units, strict=True)
        )

    def pick_value(self, value: int) -> int:
        """The split index for a draw ``value`` in [0, 10000)."""
        return bisect.bisect_right(self._bounds, value % TOTAL_UNITS)

    def pick(self, rng: random.Random) -> int:
        return self.pick_value(rng.randrange(TOTAL_UNITS))

    def pick_split(self, rng: random.Random) -> Split:
        return self.splits[self.pick(rng)]
