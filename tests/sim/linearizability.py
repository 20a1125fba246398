"""Linearizability checker for client histories recorded by the deterministic Raft simulation.

The search is Wing & Gong's (1993) with Lowe's memoization ("Testing for linearizability",
2017), the same algorithm Porcupine uses:

* A history is a set of operations, each with an invocation time and a response time.
  Their call and return events go, in time order, into a doubly linked list.
* The search repeatedly takes a call entry that comes before the first return entry in the
  list (an operation that may take effect now without jumping over a completed one), asks
  the model whether it can be applied to the current state with its recorded output, and if
  so "lifts" the operation (unlinks its call and return entries) and pushes it on an explicit
  stack. Reaching a return entry means the operation it belongs to can no longer be placed
  before its response: backtrack (pop, re-link, try the next candidate).
* Lowe's cache holds every (set of linearized operations as an int bitset, model state)
  already reached. Two paths that linearized the same operations and ended in the same state
  have the same future, so each configuration is explored once.

Histories are split first with the model's ``partition`` (P-compositionality, Horn & Kroening
2015): for a key-value store, a history is linearizable iff the history of each key is, and
per-key histories are small. That split is what makes 2,000-op histories cheap.

Indeterminate operations (``ret is None``: the client timed out or crashed) may take effect at
any point after their call, or never. Their return entry sorts after every real event, and the
search succeeds as soon as every determinate operation is linearized: an indeterminate
operation still pending then "never took effect" (equivalently, took effect after everything
that could observe it).

Indeterminate operations make the plain cache blow up on failing histories: every subset of
the ones still open is a different bitset, so a key with 40 timed-out puts cannot be refuted
in reasonable time. The cache therefore keys on (determinate operations linearized, state)
and keeps, per key, the antichain of indeterminate sets reached with it. A configuration that
applied a superset of the indeterminate operations of one already reached is dominated (the
pending ones may still be applied later, or never) and is pruned. This is subsumption in the
sense of reachability checking with a simulation preorder: the dominating configuration has
every move the dominated one has, each leading to a dominating configuration, so pruning keeps
the search complete (as zone inclusion does in timed-automata model checkers). Without
indeterminate operations it is exactly Lowe's cache.

Ties: when a call and a return carry the same time, the call sorts first, so the two
operations count as concurrent. The simulation gives every event a distinct time, so this
only matters to hand-written histories.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

__all__ = [
    "KV_MODEL",
    "CheckResult",
    "KVInput",
    "KVModel",
    "KVOperation",
    "KVOutput",
    "Model",
    "Operation",
    "check",
]

S = TypeVar("S", bound=Hashable)
In = TypeVar("In")
Out = TypeVar("Out")

# How many search steps run between two looks at the clock.
_CLOCK_EVERY = 1024
# At most this many operations are listed per section of a failure explanation.
_EXPLAIN_LIMIT = 12


@dataclass(frozen=True)
class Operation(Generic[In, Out]):
    """One client operation: invoked at logical time ``call``, answered at ``ret``.

    ``ret is None`` marks an indeterminate operation (the client never saw a response); its
    ``output`` must then be None too. A determinate operation with ``output`` None is allowed
    and means "answered, content unknown": it must take effect within its window but may
    produce any output.
    """

    client: int
    call: int
    ret: int | None
    input: In
    output: Out | None


@dataclass(frozen=True)
class KVInput:
    """A request to the KV store.

    ``put`` writes ``value``; ``get`` reads; ``cas`` writes ``value`` if the current value
    equals ``expected`` (None meaning "the key is missing").
    """

    op: Literal["put", "get", "cas"]
    key: str
    value: str | None = None
    expected: str | None = None


@dataclass(frozen=True)
class KVOutput:
    """A response from the KV store.

    * put: ``ok=True``; ``ok=False`` means the store definitely rejected it (no effect).
    * get: ``value`` read, None if the key was missing.
    * cas: ``ok`` tells whether the swap happened.
    """

    ok: bool = True
    value: str | None = None


KVOperation = Operation[KVInput, KVOutput]


class Model(Protocol[S, In, Out]):
    """A sequential specification: the behaviour linearizations are checked against."""

    def init(self) -> S:
        """The state before any operation. States must be hashable (they key the cache)."""
        ...

    def step(self, state: S, input: In, output: Out | None) -> tuple[bool, S]:
        """Apply ``input`` to ``state``: whether ``output`` is a legal response, and the
        state after. ``output`` None (indeterminate) accepts whatever the state dictates."""
        ...

    def partition(
        self, history: Sequence[Operation[In, Out]]
    ) -> Mapping[str, Sequence[Operation[In, Out]]]:
        """Split ``history`` into independently checkable sub-histories, labelled for
        explanations. A model that cannot split returns ``{"history": history}``. May drop
        operations that cannot affect the verdict."""
        ...

    def describe(self, op: Operation[In, Out]) -> str:
        """One line naming ``op`` in a failure explanation."""
        ...


class KVModel:
    """A map from string keys to string values with put, get and compare-and-swap.

    Partitioned by key, so the state of a sub-history is the value of its one key (None when
    the key is missing). Gets without a known output are dropped: they cannot constrain
    anything. So are unobservable indeterminate puts (see :func:`_unobservable_puts`), which
    otherwise make refuting a history with many timed-out writes exponential.
    """

    def init(self) -> str | None:
        return None

    def step(
        self, state: str | None, input: KVInput, output: KVOutput | None
    ) -> tuple[bool, str | None]:
        if input.op == "get":
            return output is None or output.value == state, state
        if input.op == "put":
            if output is not None and not output.ok:
                return True, state
            return True, input.value
        if input.op == "cas":
            swapped = state == input.expected
            if output is not None and output.ok != swapped:
                return False, state
            return True, input.value if swapped else state
        raise ValueError(f"unknown KV operation {input.op!r}")

    def partition(self, history: Sequence[KVOperation]) -> Mapping[str, Sequence[KVOperation]]:
        by_key: dict[str, list[KVOperation]] = {}
        for op in history:
            if op.input.op == "get" and op.output is None:
                continue
            by_key.setdefault(op.input.key, []).append(op)
        parts: dict[str, Sequence[KVOperation]] = {}
        for key, ops in by_key.items():
            drop = _unobservable_puts(ops)
            parts[f"key {key!r}"] = [op for op in ops if id(op) not in drop] if drop else ops
        return parts

    def describe(self, op: KVOperation) -> str:
        i, out = op.input, op.output
        if i.op == "get":
            request = f"get({i.key!r})"
            response = "?" if out is None else repr(out.value)
        elif i.op == "put":
            request = f"put({i.key!r}, {i.value!r})"
            response = "?" if out is None else ("ok" if out.ok else "rejected")
        else:
            request = f"cas({i.key!r}, expected={i.expected!r}, new={i.value!r})"
            response = "?" if out is None else str(out.ok)
        ret = "-" if op.ret is None else str(op.ret)
        return f"client {op.client}: {request} -> {response}  [call {op.call}, ret {ret}]"


KV_MODEL: Model[str | None, KVInput, KVOutput] = KVModel()


def _unobservable_puts(ops: Sequence[KVOperation]) -> set[int]:
    """The ids of the indeterminate puts in a one-key history that can be assumed never to
    have taken effect without changing the verdict.

    Such a put of ``v`` is droppable when no get returned ``v``, no cas expected ``v``, and
    every determinate cas is known to have swapped. Then, in any linearization applying it,
    nothing can run while the key holds ``v``: a determinate get would read ``v``, a
    determinate cas would fail (and none did), and an indeterminate cas would fail too (so it
    may be taken out as well). The next write, or the end of the history, comes first, and
    after it the state is the same whether the put was applied or not.
    """
    observed: set[str | None] = set()
    for op in ops:
        if op.input.op == "get" and op.output is not None:
            observed.add(op.output.value)
        elif op.input.op == "cas":
            if op.ret is not None and (op.output is None or not op.output.ok):
                return set()  # a failed cas may need any write to explain it
            observed.add(op.input.expected)
    return {
        id(op)
        for op in ops
        if op.input.op == "put" and op.ret is None and op.input.value not in observed
    }


@dataclass(frozen=True)
class CheckResult:
    """The verdict of :func:`check`.

    ``ok`` is True (linearizable), False (not) or None (the time budget ran out: unknown).
    On failure ``partition`` names the sub-history that failed (for the KV model
    ``"key 'x'"``), ``failing_ops`` is the shortest prefix of it (as checked, after the
    model's partition dropped what cannot matter) that cannot be linearized, operations still
    pending at the cut shown as indeterminate, and ``explanation`` says so in words. On
    timeout ``partition`` names the sub-history being checked.
    """

    ok: bool | None
    explanation: str = ""
    partition: str | None = None
    failing_ops: tuple[Operation[Any, Any], ...] = ()


def check(
    history: Sequence[Operation[Any, Any]],
    model: Model[Any, Any, Any] = KV_MODEL,
    *,
    timeout_s: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
) -> CheckResult:
    """Decide whether ``history`` is linearizable with respect to ``model``.

    Every determinate operation must take effect at one instant within [call, ret], in an
    order consistent with real time; an indeterminate one within [call, +inf) or not at all.
    Sub-histories from ``model.partition`` are checked smallest first and the first failure
    is returned.

    The search is exponential in the worst case, so it stops after ``timeout_s`` seconds of
    ``clock`` and reports ``ok=None``. Explaining a failure gets a further ``timeout_s / 4``.
    Raises ValueError for a malformed operation (``ret < call``, or an output without a
    response) and whatever ``model.step`` raises for an input it does not know.
    """
    for op in history:
        _validate(op)
    deadline = clock() + timeout_s
    parts = sorted(model.partition(history).items(), key=lambda item: len(item[1]))
    for label, ops in parts:
        if clock() > deadline:
            return _timed_out(label, timeout_s)
        verdict = _search(ops, model, deadline, clock).ok
        if verdict is None:
            return _timed_out(label, timeout_s)
        if not verdict:
            return _explain_failure(label, ops, model, clock() + timeout_s / 4, clock)
    return CheckResult(ok=True)


def _validate(op: Operation[Any, Any]) -> None:
    if op.ret is not None and op.ret < op.call:
        raise ValueError(f"operation returns before it is called: {op!r}")
    if op.ret is None and op.output is not None:
        raise ValueError(f"indeterminate operation (ret=None) with an output: {op!r}")


def _timed_out(label: str, timeout_s: float) -> CheckResult:
    return CheckResult(
        ok=None,
        explanation=f"{label}: search did not finish within {timeout_s:g} s; verdict unknown",
        partition=label,
    )


@dataclass
class _Outcome(Generic[S]):
    """What one search found. ``longest`` is filled only when the search was asked to record:
    the operations (indices) of the longest partial linearization, and the state it ends in."""

    ok: bool | None
    longest: list[int] = dataclasses.field(default_factory=list)
    longest_state: S | None = None


@dataclass
class _Entries:
    """The call/return entries of a history as a circular doubly linked list over arrays.

    Entry 0 is the sentinel head; entries 1..2n are the events in time order.
    """

    op_of: list[int]
    is_call: list[bool]
    match: list[int]  # call entry -> its return entry
    nxt: list[int]
    prv: list[int]


def _entries(ops: Sequence[Operation[Any, Any]]) -> _Entries:
    events: list[tuple[int, int, int, int]] = []  # (after all real events?, time, kind, op)
    for i, op in enumerate(ops):
        events.append((0, op.call, 0, i))
        events.append((1, 0, 1, i) if op.ret is None else (0, op.ret, 1, i))
    events.sort()
    size = len(events) + 1
    op_of = [-1] * size
    is_call = [False] * size
    match = [0] * size
    call_entry: dict[int, int] = {}
    for entry, (_, _, kind, i) in enumerate(events, start=1):
        op_of[entry] = i
        is_call[entry] = kind == 0
        if kind == 0:
            call_entry[i] = entry
        else:
            match[call_entry[i]] = entry
    nxt = [*range(1, size), 0]
    prv = [size - 1, *range(size - 1)]
    return _Entries(op_of, is_call, match, nxt, prv)


def _search(
    ops: Sequence[Operation[In, Out]],
    model: Model[S, In, Out],
    deadline: float,
    clock: Callable[[], float],
    *,
    record: bool = False,
) -> _Outcome[S]:
    """Wing & Gong's search with Lowe's cache over one (sub-)history."""
    e = _entries(ops)
    op_of, is_call, match, nxt, prv = e.op_of, e.is_call, e.match, e.nxt, e.prv
    inputs = [op.input for op in ops]
    outputs = [op.output for op in ops]
    determinate = [op.ret is not None for op in ops]
    remaining = sum(determinate)  # determinate operations not yet linearized
    step = model.step
    state = model.init()
    done = optional = 0  # bitsets: determinate / indeterminate operations linearized
    stack: list[tuple[int, S]] = []  # (call entry lifted, state before it)
    cache: dict[tuple[int, S], list[int]] = {}
    outcome: _Outcome[S] = _Outcome(ok=True, longest_state=state)
    entry = nxt[0]
    # Each configuration's candidates are scanned twice: determinate operations first, then
    # (second pass) indeterminate ones, so configurations that applied fewer indeterminate
    # operations are reached first and dominate the rest in the cache.
    second_pass = False
    steps = 0
    # While a determinate operation is unlinearized its finite return entry is in the list,
    # so every scan from the head stops at a return entry before wrapping to the sentinel.
    while remaining:
        steps += 1
        if steps % _CLOCK_EVERY == 0 and clock() > deadline:
            outcome.ok = None
            return outcome
        if is_call[entry]:
            i = op_of[entry]
            if determinate[i] == second_pass:
                entry = nxt[entry]
                continue
            legal, new_state = step(state, inputs[i], outputs[i])
            if legal:
                bit = 1 << i
                if determinate[i]:
                    new_done, new_optional = done | bit, optional
                else:
                    new_done, new_optional = done, optional | bit
                if _first_visit(cache, (new_done, new_state), new_optional):
                    stack.append((entry, state))
                    state, done, optional = new_state, new_done, new_optional
                    remaining -= determinate[i]
                    _lift(entry, match[entry], nxt, prv)
                    if record and len(stack) > len(outcome.longest):
                        outcome.longest = [op_of[c] for c, _ in stack]
                        outcome.longest_state = state
                    entry, second_pass = nxt[0], False
                    continue
            entry = nxt[entry]
        elif not second_pass:
            entry, second_pass = nxt[0], True
        else:
            # The operation returning here can no longer take effect in time: backtrack.
            if not stack:
                outcome.ok = False
                return outcome
            entry, state = stack.pop()
            i = op_of[entry]
            if determinate[i]:
                done ^= 1 << i
                remaining += 1
            else:
                optional ^= 1 << i
            _unlift(entry, match[entry], nxt, prv)
            entry, second_pass = nxt[entry], not determinate[i]
    return outcome


def _first_visit(cache: dict[tuple[int, S], list[int]], key: tuple[int, S], optional: int) -> bool:
    """Record a configuration: False if it is dominated by one already reached.

    ``key`` is (determinate operations linearized, state) and ``optional`` the indeterminate
    operations linearized; fewer of those dominates (see the module docstring).
    """
    reached = cache.get(key)
    if reached is None:
        cache[key] = [optional]
        return True
    for other in reached:
        if other & ~optional == 0:
            return False
    # Keep the antichain minimal: drop the sets this one now dominates.
    reached[:] = [other for other in reached if optional & ~other]
    reached.append(optional)
    return True


def _lift(call: int, ret: int, nxt: list[int], prv: list[int]) -> None:
    nxt[prv[call]] = nxt[call]
    prv[nxt[call]] = prv[call]
    nxt[prv[ret]] = nxt[ret]
    prv[nxt[ret]] = prv[ret]


def _unlift(call: int, ret: int, nxt: list[int], prv: list[int]) -> None:
    # Dancing links: undo _lift in reverse order; the unlinked entries kept their pointers.
    nxt[prv[ret]] = ret
    prv[nxt[ret]] = ret
    nxt[prv[call]] = call
    prv[nxt[call]] = call


def _prefix(ops: Sequence[Operation[In, Out]], cut: int) -> list[Operation[In, Out]]:
    """The history as observed at time ``cut``: operations invoked by then, those still
    awaiting a response turned indeterminate (a pending operation may or may not have taken
    effect). Linearizability is prefix-closed, so if a prefix fails the whole history does."""
    seen: list[Operation[In, Out]] = []
    for op in ops:
        if op.call > cut:
            continue
        if op.ret is not None and op.ret <= cut:
            seen.append(op)
        else:
            seen.append(dataclasses.replace(op, ret=None, output=None))
    return seen


def _explain_failure(
    label: str,
    ops: Sequence[Operation[In, Out]],
    model: Model[S, In, Out],
    deadline: float,
    clock: Callable[[], float],
) -> CheckResult:
    """Binary-search the shortest failing prefix of a sub-history known to fail, then record
    the longest partial linearization of that prefix. Best effort: stops at ``deadline``."""
    cuts = sorted(op.ret for op in ops if op.ret is not None)
    lo, hi = 0, len(cuts) - 1  # the prefix at cuts[hi] fails (it is the whole history)
    while lo < hi and clock() <= deadline:
        mid = (lo + hi) // 2
        verdict = _search(_prefix(ops, cuts[mid]), model, deadline, clock).ok
        if verdict is None:
            break
        if verdict:
            lo = mid + 1
        else:
            hi = mid
    cut = cuts[hi]
    prefix = _prefix(ops, cut)
    last = next(op for op in prefix if op.ret == cut)
    lines = [
        f"{label}: not linearizable.",
        f"Shortest failing prefix found: {len(prefix)} operations up to t={cut}, when this "
        f"returned:",
        f"  {model.describe(last)}",
    ]
    outcome = _search(prefix, model, deadline, clock, record=True)
    if outcome.ok is False:
        done = set(outcome.longest)
        lines.append(
            f"Longest linearization of it ({len(done)} ops, last {_EXPLAIN_LIMIT} shown), "
            f"ending in state {outcome.longest_state!r}:"
        )
        lines += [f"  {model.describe(prefix[i])}" for i in outcome.longest[-_EXPLAIN_LIMIT:]]
        stuck = [op for i, op in enumerate(prefix) if i not in done]
        lines.append(f"Operations it leaves out (first {_EXPLAIN_LIMIT} shown):")
        lines += [f"  {model.describe(op)}" for op in stuck[:_EXPLAIN_LIMIT]]
    else:
        lines.append("(time budget exhausted before the longest linearization was found)")
    return CheckResult(
        ok=False, explanation="\n".join(lines), partition=label, failing_ops=tuple(prefix)
    )
