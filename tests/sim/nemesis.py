"""The fault injector: every few ticks it does one thing the seed's profile allows.

Partitions split the servers into groups (sometimes isolating the leader) or cut links in
one direction only; crashes strike at once or in the middle of the next ``Ready`` (after
persisting, or after sending); membership changes add the spare or a removed server as a
voter, or remove a voter (possibly the leader) while at least three remain; transfers hand
leadership to a chosen or the most caught-up voter.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from raft.errors import ConfigChangeError, NotLeaderError, ProposalDroppedError
from raft.types import Suffrage
from tests.sim.network import TICK

if TYPE_CHECKING:
    from tests.sim.world import World

MIN_VOTERS = 3
# What the core refuses on purpose (RaftInvariantError is not among them: it fails the run).
REFUSED = (ConfigChangeError, NotLeaderError, ProposalDroppedError)


class Nemesis:
    def __init__(self, world: World, rng: random.Random) -> None:
        self.world = world
        self.rng = rng
        p = world.profile
        self.actions: list[str] = []
        if p.partitions:
            self.actions += ["partition", "partition", "heal"]
        if p.asymmetric:
            self.actions += ["asymmetric"]
        if p.crashes:
            self.actions += ["crash", "crash"]
        if p.pauses:
            self.actions += ["pause"]
        if p.membership:
            self.actions += ["membership", "membership"]
        if p.transfers:
            self.actions += ["transfer"]

    def start(self) -> None:
        if self.actions:
            self._schedule_next()

    def _schedule_next(self) -> None:
        p = self.world.profile
        delay = self.rng.randint(p.nemesis_min_ticks, p.nemesis_max_ticks) * TICK
        self.world.schedule(delay, "nemesis", self._act)

    def _act(self) -> None:
        if self.world.settling:
            return
        action = self.rng.choice(self.actions)
        getattr(self, "_" + action)()
        self._schedule_next()

    def _heal_later(self) -> None:
        delay = self.rng.randint(5, 50) * TICK
        self.world.schedule(delay, "heal", self._heal)

    def _heal(self) -> None:
        self.world.net.heal()

    def _partition(self) -> None:
        w = self.world
        ids = list(w.ids)
        self.rng.shuffle(ids)
        lead = w.leader()
        if lead is not None and self.rng.random() < 0.3:
            groups = [[lead.id], [s for s in ids if s != lead.id]]
        elif self.rng.random() < 0.2:
            a, b = sorted(self.rng.sample(range(1, len(ids)), 2))
            groups = [ids[:a], ids[a:b], ids[b:]]
        else:
            cut = self.rng.randint(1, len(ids) - 1)
            groups = [ids[:cut], ids[cut:]]
        w.net.heal()
        w.net.partition(groups, w.ids)
        w.count("partitions")
        self._heal_later()

    def _asymmetric(self) -> None:
        w = self.world
        lead = w.leader()
        target = lead.id if lead is not None else self.rng.choice(w.ids)
        others = [s for s in w.ids if s != target]
        if self.rng.random() < 0.5:
            w.net.cut_one_way([target], self.rng.sample(others, self.rng.randint(1, len(others))))
        else:
            w.net.cut_one_way(self.rng.sample(others, self.rng.randint(1, len(others))), [target])
        w.count("asymmetric-partitions")
        self._heal_later()

    def _crash(self) -> None:
        w = self.world
        alive = [s for s in w.ids if w.nodes[s].alive]
        if not alive:
            return
        lead = w.leader()
        sid = lead.id if lead is not None and self.rng.random() < 0.3 else self.rng.choice(alive)
        node = w.nodes[sid]
        mode = self.rng.choice(["now", "now", "after-persist", "after-send"])
        if mode == "now":
            w.crash(node)
        else:
            node.crash_point = mode
            w.count("crashes-armed")

    def _pause(self) -> None:
        w = self.world
        lead = w.leader()
        alive = [s for s in w.ids if w.nodes[s].alive]
        if lead is not None and self.rng.random() < 0.5:
            w.pause(lead, self.rng.randint(2, 40))
        elif alive:
            w.pause(w.nodes[self.rng.choice(alive)], self.rng.randint(2, 40))

    def _membership(self) -> None:
        w = self.world
        lead = w.leader()
        if lead is None or lead.core is None:
            return
        core = lead.core
        conf = core.configuration
        outside = [s for s in w.ids if conf.get(s) is None]
        voters = sorted(conf.voters())
        try:
            if outside and (len(voters) <= MIN_VOTERS or self.rng.random() < 0.5):
                sid = self.rng.choice(outside)
                core.add_voter(sid, w.nodes[sid].address)
                w.count("servers-added")
            elif len(voters) > MIN_VOTERS:
                core.remove_server(self.rng.choice(voters))
                w.count("servers-removed")
            else:
                nonvoters = [s.id for s in conf.servers if s.suffrage == Suffrage.NONVOTER]
                if nonvoters:
                    core.add_voter(nonvoters[0], w.nodes[nonvoters[0]].address)
        except REFUSED as exc:
            w.count(f"membership-refused-{type(exc).__name__}")
        w.drain(lead)

    def _transfer(self) -> None:
        w = self.world
        lead = w.leader()
        if lead is None or lead.core is None:
            return
        voters = sorted(lead.core.configuration.voters() - {lead.id})
        target = self.rng.choice([None, *voters])
        try:
            lead.core.transfer_leadership(target)
            w.count("transfers")
        except REFUSED as exc:
            w.count(f"transfer-refused-{type(exc).__name__}")
        w.drain(lead)
