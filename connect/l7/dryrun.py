"""``meshd config write --dry-run``'s core: recorded requests, now vs. proposed.

Each recorded request shape (``Sample``: source, destination, method, path,
query, the headers kept) is decided twice, in a ``World`` built from the
stored config entries and in one built from them with the proposed entries
applied, by the proxy's own cores through ``connect.l7.explain.explain``
(no second router) and ``connect.l7.rbac.evaluate`` (the receiving
service's L7 intentions, as ``meshd explain`` judges them).

Rules:

- Routing is compared by where a request lands: the first target the
  route/split picked (service and subset; instances and health are left
  out, so the answer does not depend on which instances are up), or the
  local answer (``no route (404)``...). A redirect shows as the service it
  lands on.
- Splits are not drawn: every bucket of every split step is followed with
  its weight as a probability, so a sample contributes expected fractions
  and the reported percentages are exact for the recorded mix.
- Per sample, the mass that moves between places is the total variation
  distance between the two distributions; it flows from places that lose
  to places that gain, in proportion (for one source place, all of it).
- Denials: the probability that the request is denied by the receiving
  service's intentions, now and then; an increase counts as newly denied,
  a decrease as newly allowed, by method.
- A change's kind: ``redirect`` when a resolver redirect differs, ``route``
  when the matched router route differs, else ``split``.

Pure: no I/O, no clock (the caller passes ``now``); ``World`` memoises the
compiled chains and decisions of identical request shapes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connect.l7.chain import compile_chain
from connect.l7.chain_types import EntryLookup
from connect.l7.decide import Table
from connect.l7.decode import ValidationError
from connect.l7.entries import SERVICE_INTENTIONS
from connect.l7.entries_intentions import ServiceIntentionsEntry, SourceIntention
from connect.l7.explain import explain
from connect.l7.rbac import WILDCARD, evaluate, order_sources
from connect.l7.request import Request
from connect.l7.split import TOTAL_UNITS
from connect.l7.table import TableError, table_from_chain

JSON = Any
SPLIT, ROUTE, REDIRECT, DENY, ALLOW = "split", "route", "redirect", "deny", "allow"
_LOCAL = {400: "bad path (400)", 404: "no route (404)", 503: "unknown target (503)"}
_EPS = 1e-9


@dataclass(frozen=True)
class Sample:
    """One recorded request shape (never a body)."""

    source: str
    destination: str
    method: str
    path: str
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    time: float = 0.0  # wall seconds when recorded

    def shape(self) -> tuple[str, str, str, str, str, tuple[tuple[str, str], ...]]:
        return (self.source, self.destination, self.method, self.path, self.query, self.headers)


@dataclass(frozen=True)
class Landing:
    """Where a request lands in one world, with the probability of that branch."""

    place: str  # "v1", "api", "v2.other", "no route (404)", "chain error"
    weight: float
    route: JSON  # the matched route's Match/Destination, or None
    redirected_from: str | None
    allowed: bool
    reason: str


ChainSource = Callable[[str], "Mapping[str, JSON] | str"]  # a chain, or its error text
IntentionSource = Callable[[str], Sequence[SourceIntention]]


class _Script(random.Random):
    """An rng whose split picks (``randrange(10000)``) follow a script of
    values; every other draw comes from a fixed seed."""

    def __init__(self, values: Sequence[int]) -> None:
        super().__init__(0)
        self._values = list(values)

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        if stop is None and start == TOTAL_UNITS:
            return self._values.pop(0) if self._values else 0
        return super().randrange(start, stop, step)


def _place(out: Mapping[str, JSON], destination: str) -> tuple[str, str, str | None]:
    """(place label, receiving service, redirected from) of an explain answer."""
    status = out.get("LocalStatus")
    targets = out.get("Targets") or []
    if status in (400, 404) or not targets:
        return _LOCAL.get(int(status or 503), f"local {status}"), destination, None
    first = targets[0]
    service = str(first.get("Service") or destination)
    subset = str(first.get("ServiceSubset") or "")
    if service == destination:
        label = subset or service
    else:
        label = f"{subset}.{service}" if subset else service
    return label, service, first.get("RedirectedFrom")


def _unit_starts(buckets: Sequence[Mapping[str, JSON]]) -> list[tuple[int, int]]:
    """(first draw value, units) of each bucket of a split step."""
    out, start = [], 0
    for b in buckets:
        units = round(float(b.get("Weight") or 0) * 100)
        out.append((start, units))
        start += units
    return out


@dataclass
class World:
    """The mesh as one set of config entries makes it: chains and intentions."""

    chains: ChainSource
    intentions: IntentionSource
    default_allow: bool
    _chain_cache: dict[str, Mapping[str, JSON] | str] = field(default_factory=dict)
    _tables: dict[str, Table] = field(default_factory=dict)
    _cache: dict[tuple[Any, ...], tuple[Landing, ...]] = field(default_factory=dict)

    def chain(self, service: str) -> Mapping[str, JSON] | str:
        if service not in self._chain_cache:
            self._chain_cache[service] = self.chains(service)
        return self._chain_cache[service]

    def landings(self, sample: Sample) -> tuple[Landing, ...]:
        """Every way ``sample`` may land, weights summing to 1."""
        key = sample.shape()
        if key not in self._cache:
            self._cache[key] = tuple(self._decide(sample))
        return self._cache[key]

    def _decide(self, sample: Sample) -> list[Landing]:
        chain = self.chain(sample.destination)
        request = Request.build(
            sample.method,
            f"{sample.path}?{sample.query}" if sample.query else sample.path,
            sample.headers,
            source_service=sample.source,
        )
        if isinstance(chain, str):
            return [Landing("chain error", 1.0, None, None, False, chain)]
        try:
            table = self._tables.get(sample.destination) or table_from_chain(chain)
        except TableError as exc:
            return [Landing("chain error", 1.0, None, None, False, str(exc))]
        self._tables[sample.destination] = table
        out: list[Landing] = []
        pending: list[tuple[tuple[int, ...], float]] = [((), 1.0)]
        while pending:
            script, weight = pending.pop()
            answer = explain(chain, {}, {}, request, rng=_Script(script), table=table)
            steps = answer.get("Splits") or []
            if len(steps) > len(script):  # a split step not yet enumerated
                for start, units in _unit_starts(steps[len(script)].get("Buckets") or []):
                    if units > 0:
                        pending.append(((*script, start), weight * units / TOTAL_UNITS))
                continue
            out.append(self._landing(answer, request, sample, weight))
        return out

    def _landing(
        self, answer: Mapping[str, JSON], request: Request, sample: Sample, weight: float
    ) -> Landing:
        place, service, redirected = _place(answer, sample.destination)
        route = answer.get("Route")
        # The catch-all the compiler appends to a router routes as no router does.
        if route is None or route.get("Default"):
            route_key = None
        else:
            route_key = (route.get("Match"), route.get("Destination"))
        if answer.get("LocalStatus") in (400, 404):
            return Landing(place, weight, route_key, redirected, True, "")
        sources = self.intentions(service)
        rbac = evaluate(
            sources,
            request,
            destination=service,
            source=sample.source,
            default_allow=self.default_allow,
        )
        return Landing(place, weight, route_key, redirected, rbac.allowed, rbac.reason)


def world_of(
    entries: EntryLookup,
    *,
    datacenter: str,
    default_allow: bool,
    trust_domain: str = "consul",
) -> World:
    """The ``World`` the config entries in ``entries`` make: each chain
    compiled as ``/v1/discovery-chain`` compiles it (its error text when it
    does not), each service's intentions in Consul's precedence order."""

    def chains(service: str) -> Mapping[str, JSON] | str:
        try:
            return compile_chain(service, entries, datacenter, trust_domain).to_json()
        except ValidationError as exc:
            return str(exc)

    def intentions(service: str) -> Sequence[SourceIntention]:
        found: list[SourceIntention] = []
        for name in (service, WILDCARD):
            entry = entries.get(SERVICE_INTENTIONS, name)
            if isinstance(entry, ServiceIntentionsEntry):
                found.extend(entry.sources)
        return order_sources(found)

    return World(chains, intentions, default_allow)


@dataclass
class _Change:
    kind: str
    from_: str
    to: str
    method: str
    requests: float = 0.0
    detail: str = ""


@dataclass
class _ServiceReport:
    service: str
    requests: int = 0
    changes: dict[tuple[str, str, str, str], _Change] = field(default_factory=dict)

    def add(self, kind: str, from_: str, to: str, method: str, amount: float, detail: str) -> None:
        key = (kind, from_, to, method)
        change = self.changes.get(key)
        if change is None:
            change = self.changes[key] = _Change(kind, from_, to, method, detail=detail)
        change.requests += amount


def _distribution(landings: Iterable[Landing]) -> dict[str, float]:
    out: dict[str, float] = {}
    for landing in landings:
        out[landing.place] = out.get(landing.place, 0.0) + landing.weight
    return out


def _kind(before: Sequence[Landing], after: Sequence[Landing], frm: str, to: str) -> str:
    def by_place(landings: Sequence[Landing], place: str) -> list[Landing]:
        return [x for x in landings if x.place == place] or list(landings)

    b, a = by_place(before, frm), by_place(after, to)
    if {x.redirected_from for x in b} != {x.redirected_from for x in a}:
        return REDIRECT
    if {repr(x.route) for x in b} != {repr(x.route) for x in a}:
        return ROUTE
    return SPLIT


def compare_sample(
    report: _ServiceReport, sample: Sample, before: Sequence[Landing], after: Sequence[Landing]
) -> None:
    """Add ``sample``'s moved mass and denial changes to ``report``."""
    b, a = _distribution(before), _distribution(after)
    losing = {p: w - a.get(p, 0.0) for p, w in b.items() if w - a.get(p, 0.0) > _EPS}
    gaining = {p: w - b.get(p, 0.0) for p, w in a.items() if w - b.get(p, 0.0) > _EPS}
    moved = sum(losing.values())
    for frm, lost in losing.items():
        for to, gained in gaining.items():
            amount = lost * gained / moved
            report.add(_kind(before, after, frm, to), frm, to, "", amount, "")
    denied_b = sum(x.weight for x in before if not x.allowed)
    denied_a = sum(x.weight for x in after if not x.allowed)
    if abs(denied_a - denied_b) > _EPS:
        kind = DENY if denied_a > denied_b else ALLOW
        decisive = [x for x in after if x.allowed == (kind == ALLOW)]
        detail = decisive[0].reason if decisive else ""
        report.add(kind, "", "", sample.method, abs(denied_a - denied_b), detail)


def _number(x: float) -> float | int:
    r = round(x, 2)
    return int(r) if float(r).is_integer() else r


def _percent_text(pct: float) -> str:
    return "<0.1" if 0 < pct < 0.05 else f"{pct:.1f}"


def _summary(service: str, c: JSON) -> str:
    n = c["Requests"]
    if c["Kind"] in (DENY, ALLOW):
        verb = "denied" if c["Kind"] == DENY else "allowed"
        count = f"{n:g}" if isinstance(n, int) else f"{n:.1f}"
        return f"{count} {c['Method']}s to {service} would now be {verb}"
    via = "" if c["Kind"] == SPLIT else f" ({c['Kind']})"
    return (
        f"{_percent_text(c['Percent'])}% of recent requests to {service} would move "
        f"from {c['From']} to {c['To']}{via}"
    )


def go_duration(seconds: float) -> str:
    """Seconds as a Go duration string, whole seconds (``1h2m3s``)."""
    s = max(0, int(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{sec}s"
    return f"{m}m{sec}s" if m else f"{sec}s"


def dry_run(
    samples: Sequence[Sample],
    before: World,
    after: World,
    *,
    services: Iterable[str] = (),
    now: float,
) -> dict[str, JSON]:
    """The dry-run answer (``POST /v1/internal/config/dry-run``) for ``samples``.

    ``services`` are destinations always listed (those whose chain the
    entries affect), even without a recorded change; a destination with a
    change is listed too. Pure."""
    reports: dict[str, _ServiceReport] = {s: _ServiceReport(s) for s in services}
    for sample in samples:
        report = reports.get(sample.destination) or _ServiceReport(sample.destination)
        report.requests += 1
        compare_sample(report, sample, before.landings(sample), after.landings(sample))
        if report.changes or sample.destination in reports:
            reports[sample.destination] = report
    out_services: list[JSON] = []
    summary: list[str] = []
    for name in sorted(reports):
        r = reports[name]
        changes = []
        for c in sorted(r.changes.values(), key=lambda c: (-c.requests, c.kind, c.from_, c.to)):
            pct = 100.0 * c.requests / r.requests if r.requests else 0.0
            item = {
                "Kind": c.kind,
                "From": c.from_,
                "To": c.to,
                "Requests": _number(c.requests),
                "Percent": round(pct, 2),
                "Method": c.method,
                "Detail": c.detail,
            }
            changes.append(item)
            summary.append(_summary(name, item))
        out_services.append({"Service": name, "Requests": r.requests, "Changes": changes})
    if not summary:
        summary.append(f"No change for the {len(samples)} recent requests recorded")
    oldest = min((s.time for s in samples), default=now)
    return {
        "Samples": len(samples),
        "Window": go_duration(now - oldest),
        "Services": out_services,
        "Summary": summary,
    }
