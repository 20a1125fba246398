"""The simulated network between servers and the per-seed fault profile.

Links are directed, so an asymmetric partition is just a set of cut (src, dst) pairs. The
network decides, from the run's one random generator, whether each message is lost,
duplicated, and how long each copy takes; reordering falls out of independent delays.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# One Raft tick is this many simulated time units; message delays are in units.
TICK = 10


@dataclass(frozen=True)
class FaultProfile:
    """What can go wrong in one run. Drawn from the seed by ``FaultProfile.draw``."""

    loss: float = 0.0
    dup: float = 0.0
    max_delay: int = 5
    long_delay_p: float = 0.0
    long_delay_max: int = 0
    partitions: bool = False
    asymmetric: bool = False
    crashes: bool = False
    pauses: bool = False
    membership: bool = False
    transfers: bool = False
    lease_reads: bool = False
    nemesis_min_ticks: int = 10
    nemesis_max_ticks: int = 40

    @classmethod
    def draw(cls, rng: random.Random) -> FaultProfile:
        # A lease is only as good as its assumptions: a follower that restarts has forgotten
        # the leader and votes at once, and a long-delayed TimeoutNow bypasses leader
        # stickiness. A quarter of the runs serve lease reads and leave those faults out.
        lease_reads = rng.random() < 0.25
        return cls(
            loss=rng.choice([0.0, 0.01, 0.05, 0.15]),
            dup=rng.choice([0.0, 0.02, 0.1]),
            max_delay=rng.choice([2, 5, 15, 30]),
            long_delay_p=0.0 if lease_reads else rng.choice([0.0, 0.005, 0.02]),
            long_delay_max=rng.choice([60, 200, 500]),
            partitions=rng.random() < 0.8,
            asymmetric=rng.random() < 0.5,
            crashes=not lease_reads and rng.random() < 0.8,
            pauses=rng.random() < 0.4,
            membership=rng.random() < 0.5,
            transfers=not lease_reads and rng.random() < 0.5,
            lease_reads=lease_reads,
            nemesis_min_ticks=rng.choice([5, 10, 20]),
            nemesis_max_ticks=rng.choice([30, 60]),
        )

    def describe(self) -> str:
        flags = [
            name
            for name in ("partitions", "asymmetric", "crashes", "pauses", "membership", "transfers")
            if getattr(self, name)
        ]
        if self.lease_reads:
            flags.append("lease-reads")
        return (
            f"loss={self.loss} dup={self.dup} delay<={self.max_delay} "
            f"long={self.long_delay_p}/{self.long_delay_max} {'+'.join(flags) or 'calm'}"
        )


class Network:
    """Directed links with seeded loss, duplication and delay."""

    def __init__(self, profile: FaultProfile, rng: random.Random) -> None:
        self.profile = profile
        self.rng = rng
        self.cut: set[tuple[str, str]] = set()
        self.calm = False  # end of run: no loss, duplication or long delays

    def connected(self, src: str, dst: str) -> bool:
        return (src, dst) not in self.cut

    def delays(self) -> list[int]:
        """Delivery delays of the copies of one message (empty if it is lost)."""
        p = self.profile
        if not self.calm and self.rng.random() < p.loss:
            return []
        copies = 2 if not self.calm and self.rng.random() < p.dup else 1
        out = []
        for _ in range(copies):
            delay = self.rng.randint(1, max(1, p.max_delay))
            if not self.calm and p.long_delay_p and self.rng.random() < p.long_delay_p:
                delay = self.rng.randint(p.max_delay, max(p.max_delay, p.long_delay_max))
            out.append(delay)
        return out

    def partition(self, groups: list[list[str]], all_ids: list[str]) -> None:
        """Cut every link between different groups (servers in no group are isolated)."""
        where = {sid: i for i, group in enumerate(groups) for sid in group}
        for a in all_ids:
            for b in all_ids:
                ga, gb = where.get(a), where.get(b)
                if a != b and (ga is None or ga != gb):
                    self.cut.add((a, b))

    def cut_one_way(self, srcs: list[str], dsts: list[str]) -> None:
        for a in srcs:
            for b in dsts:
                if a != b:
                    self.cut.add((a, b))

    def heal(self) -> None:
        self.cut.clear()
