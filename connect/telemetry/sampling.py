"""The head-sampling decision (pure, parent-based).

Like Istio's ``randomSamplingPercentage``: a percentage from 0 to 100 with
0.01 resolution (default 1 %) decides whether a request that arrives
without a decision starts a sampled trace. A caller's decision (W3C
sampled flag, ``X-B3-Sampled``, bare ``b3: 0``) is honoured as is, and the
forcing header or B3 debug always samples.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .propagation import Incoming

DEFAULT_PERCENT = 1.0
RESOLUTION = 10_000  # 100 % in steps of 0.01 %


class SamplingError(ValueError):
    """A percentage outside 0..100 or finer than 0.01."""


def percent_to_basis(percent: float) -> int:
    """``percent`` in hundredths of a percent (0..10000).

    Raises ``SamplingError`` outside 0..100 or for a finer resolution than
    0.01 (``12.345``), naming the value.
    """
    if not isinstance(percent, int | float) or not 0 <= percent <= 100:
        raise SamplingError(f"sampling percentage must be between 0 and 100, got {percent!r}")
    basis = round(percent * 100)
    if abs(basis - percent * 100) > 1e-6:
        raise SamplingError(f"sampling percentage has a 0.01 resolution, got {percent!r}")
    return int(basis)


@dataclass(slots=True)
class Sampler:
    """Parent-based sampler; deterministic for a given ``rng``."""

    rng: random.Random
    basis: int = round(DEFAULT_PERCENT * 100)

    @classmethod
    def with_percent(cls, rng: random.Random, percent: float = DEFAULT_PERCENT) -> Sampler:
        """A sampler at ``percent`` (raises ``SamplingError`` when invalid)."""
        return cls(rng, percent_to_basis(percent))

    def decide(self, incoming: Incoming) -> bool:
        """Sample this request? Force wins, then the caller's decision, then chance."""
        if incoming.force:
            return True
        if incoming.deny:
            return False
        ctx = incoming.context
        if ctx is not None and ctx.sampled is not None:
            return ctx.sampled
        # random() < basis/RESOLUTION: the chance randrange(RESOLUTION) < basis
        # gives, without randrange's Python-level overhead (every new trace).
        return self.rng.random() * RESOLUTION < self.basis
