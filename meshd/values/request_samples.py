"""Recent request shapes of this agent's proxies, for ``config write --dry-run``.

Local proxies post what their L7 outbound path saw
(connect/proxy/l7_samples.py, ``PUT /v1/internal/config/samples``). The
agent keeps the last ``PER_DESTINATION`` samples per destination service
(a ring: the newest replace the oldest) for at most ``MAX_DESTINATIONS``
destinations (the one updated longest ago is forgotten first). Nothing is
replicated or written to disk; a dry run gathers the samples of every agent
(``ask_peers``, as traces do). Pure bookkeeping, no I/O.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable

from connect.l7.dryrun import Sample

PER_DESTINATION = 2000
MAX_DESTINATIONS = 64
MAX_SAMPLES_PER_PUT = 2000


class SampleStore:
    """Bounded rings of recent request shapes, one per destination service."""

    def __init__(
        self, per_destination: int = PER_DESTINATION, max_destinations: int = MAX_DESTINATIONS
    ) -> None:
        self.per_destination = per_destination
        self.max_destinations = max_destinations
        self._rings: OrderedDict[str, deque[Sample]] = OrderedDict()
        self.received = 0

    def ingest(self, samples: Iterable[Sample]) -> int:
        """Keep ``samples``; how many were taken."""
        n = 0
        for s in samples:
            ring = self._rings.get(s.destination)
            if ring is None:
                ring = self._rings[s.destination] = deque(maxlen=self.per_destination)
                while len(self._rings) > self.max_destinations:
                    self._rings.popitem(last=False)
            self._rings.move_to_end(s.destination)
            ring.append(s)
            n += 1
        self.received += n
        return n

    def samples(self, destinations: Iterable[str] | None = None) -> list[Sample]:
        """The kept samples (of ``destinations`` only, when given), oldest first per ring."""
        names = list(self._rings) if destinations is None else list(destinations)
        out: list[Sample] = []
        for name in names:
            out.extend(self._rings.get(name, ()))
        return out

    def __len__(self) -> int:
        return sum(len(r) for r in self._rings.values())
