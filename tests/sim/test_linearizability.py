"""Tests of the linearizability checker the Raft simulation uses on KV client histories."""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import pytest

from bench import linearizability_bench
from tests.sim.kv_histories import (
    NEVER_WRITTEN,
    apply,
    corrupt_one_get,
    generate_history,
    random_input,
)
from tests.sim.linearizability import (
    KVInput,
    KVOperation,
    KVOutput,
    Operation,
    check,
)

# --- building histories ------------------------------------------------------------------


def put(client: int, call: int, ret: int | None, key: str, value: str) -> KVOperation:
    output = None if ret is None else KVOutput(ok=True)
    return Operation(client, call, ret, KVInput("put", key, value), output)


def get(client: int, call: int, ret: int | None, key: str, value: str | None) -> KVOperation:
    output = None if ret is None else KVOutput(value=value)
    return Operation(client, call, ret, KVInput("get", key), output)


def cas(
    client: int,
    call: int,
    ret: int | None,
    key: str,
    expected: str | None,
    value: str,
    swapped: bool,
) -> KVOperation:
    output = None if ret is None else KVOutput(ok=swapped)
    return Operation(client, call, ret, KVInput("cas", key, value, expected), output)


# --- accepted histories ------------------------------------------------------------------


def test_empty_history_is_linearizable() -> None:
    assert check([]).ok is True


def test_sequential_history_is_linearizable() -> None:
    history = [
        get(1, 1, 2, "x", None),
        put(1, 3, 4, "x", "1"),
        get(2, 5, 6, "x", "1"),
        put(2, 7, 8, "x", "2"),
        get(1, 9, 10, "x", "2"),
        put(3, 11, 12, "y", "a"),
        get(3, 13, 14, "y", "a"),
        get(3, 15, 16, "x", "2"),
    ]
    result = check(history)
    assert result.ok is True
    assert result.explanation == ""


@pytest.mark.parametrize("seen", ["0", "1"])
def test_get_overlapping_put_may_see_old_or_new_value(seen: str) -> None:
    history = [
        put(1, 1, 2, "x", "0"),
        put(1, 3, 6, "x", "1"),
        get(2, 4, 5, "x", seen),
    ]
    assert check(history).ok is True


@pytest.mark.parametrize("winner", ["a", "b"])
def test_overlapping_puts_may_take_effect_in_either_order(winner: str) -> None:
    history = [
        put(1, 1, 4, "x", "a"),
        put(2, 2, 3, "x", "b"),
        get(3, 5, 6, "x", winner),
        get(3, 7, 8, "x", winner),
    ]
    assert check(history).ok is True


def test_get_may_see_value_written_by_put_invoked_after_the_get() -> None:
    # The get is concurrent with the put, so the put may take effect first.
    history = [get(1, 1, 4, "x", "1"), put(2, 2, 3, "x", "1")]
    assert check(history).ok is True


# --- rejected histories (self-tests: the checker must be able to fail) ----------------------


def test_stale_read_after_completed_put_is_rejected() -> None:
    history = [
        put(1, 1, 2, "x", "0"),
        put(1, 3, 4, "x", "1"),
        get(2, 5, 6, "x", "0"),
    ]
    result = check(history)
    assert result.ok is False
    assert result.partition == "key 'x'"
    assert "'x'" in result.explanation
    assert "get('x') -> '0'  [call 5, ret 6]" in result.explanation


def test_stale_read_after_completed_cas_is_rejected() -> None:
    history = [
        put(1, 1, 2, "k", "old"),
        cas(1, 3, 4, "k", "old", "new", swapped=True),
        get(2, 5, 6, "k", "old"),
    ]
    result = check(history)
    assert result.ok is False
    assert "key 'k'" in result.explanation


def test_read_from_the_future_is_rejected() -> None:
    history = [get(1, 1, 2, "x", "1"), put(2, 3, 4, "x", "1")]
    assert check(history).ok is False


def test_get_of_value_never_written_is_rejected() -> None:
    history = [
        put(1, 1, 3, "x", "1"),
        put(2, 2, 5, "x", "2"),
        get(3, 4, 6, "x", "3"),
    ]
    result = check(history)
    assert result.ok is False
    assert "get('x') -> '3'" in result.explanation


def test_reads_going_back_in_time_are_rejected() -> None:
    # Both reads overlap the put, but once one read saw "1" a later one cannot see None.
    history = [
        put(1, 1, 10, "x", "1"),
        get(2, 2, 3, "x", "1"),
        get(3, 4, 5, "x", None),
    ]
    assert check(history).ok is False


def test_failure_in_one_key_names_that_key_only() -> None:
    history = [
        put(1, 1, 2, "a", "1"),
        put(2, 3, 4, "b", "1"),
        get(1, 5, 6, "a", "1"),
        get(2, 7, 8, "b", "2"),
        get(1, 9, 10, "a", "1"),
    ]
    result = check(history)
    assert result.ok is False
    assert result.partition == "key 'b'"
    assert result.explanation.startswith("key 'b': not linearizable.")
    assert "'a'" not in result.explanation


def test_explanation_cuts_the_history_at_the_first_impossible_response() -> None:
    history = [
        put(1, 1, 2, "x", "1"),
        get(2, 3, 4, "x", "1"),
        put(1, 5, 8, "x", "2"),
        get(2, 6, 7, "x", "9"),  # nobody wrote 9: the history is dead from t=7
        put(1, 9, 10, "x", "3"),
        get(2, 11, 12, "x", "3"),
    ]
    result = check(history)
    assert result.ok is False
    # Ops invoked by t=7; the put still pending at t=7 becomes indeterminate.
    assert result.failing_ops == (
        history[0],
        history[1],
        replace(history[2], ret=None, output=None),
        history[3],
    )
    assert "4 operations up to t=7" in result.explanation
    assert "client 2: get('x') -> '9'  [call 6, ret 7]" in result.explanation


# --- indeterminate operations --------------------------------------------------------------


def test_indeterminate_put_that_took_effect_is_accepted() -> None:
    history = [
        put(1, 1, 2, "x", "0"),
        put(1, 3, None, "x", "1"),  # client timed out
        get(2, 10, 11, "x", "1"),
        get(2, 12, 13, "x", "1"),
    ]
    assert check(history).ok is True


def test_indeterminate_put_that_never_took_effect_is_accepted() -> None:
    history = [
        put(1, 1, 2, "x", "0"),
        put(1, 3, None, "x", "1"),
        get(2, 10, 11, "x", "0"),
        get(2, 100, 101, "x", "0"),
    ]
    assert check(history).ok is True


def test_indeterminate_put_may_take_effect_long_after_its_call() -> None:
    history = [
        put(1, 1, None, "x", "1"),
        get(2, 10, 11, "x", None),
        put(2, 12, 13, "x", "2"),
        get(2, 14, 15, "x", "1"),
    ]
    assert check(history).ok is True


def test_indeterminate_put_cannot_take_effect_before_its_call() -> None:
    history = [get(2, 1, 2, "x", "1"), put(1, 3, None, "x", "1")]
    assert check(history).ok is False


def test_indeterminate_put_takes_effect_at_most_once() -> None:
    history = [
        put(1, 1, None, "x", "1"),
        get(2, 2, 3, "x", "1"),
        put(2, 4, 5, "x", "2"),
        get(2, 6, 7, "x", "1"),
    ]
    assert check(history).ok is False


def test_indeterminate_operations_may_take_effect_one_after_another() -> None:
    # Only "put 2, then the cas swaps 2 for 1, then the get reads 1" explains the read.
    history = [
        cas(3, 3, None, "x", "2", "1", swapped=False),
        get(2, 4, 11, "x", "1"),
        put(1, 9, None, "x", "2"),
    ]
    assert check(history).ok is True
    assert check([*history[:2], put(1, 12, None, "x", "2")]).ok is False


def test_indeterminate_get_is_ignored() -> None:
    history = [put(1, 1, 2, "x", "1"), get(2, 3, None, "x", None), get(2, 4, 5, "x", "1")]
    assert check(history).ok is True


def test_indeterminate_cas_applies_only_if_expected_matches() -> None:
    history = [
        put(1, 1, 2, "x", "a"),
        cas(1, 3, None, "x", "zzz", "b", swapped=False),
        get(2, 10, 11, "x", "b"),
    ]
    assert check(history).ok is False
    matching = [history[0], cas(1, 3, None, "x", "a", "b", swapped=False), history[2]]
    assert check(matching).ok is True


# --- compare-and-swap ------------------------------------------------------------------------


def test_cas_with_matching_expected_swaps_and_writes() -> None:
    history = [
        put(1, 1, 2, "x", "a"),
        cas(1, 3, 4, "x", "a", "b", swapped=True),
        get(1, 5, 6, "x", "b"),
    ]
    assert check(history).ok is True


def test_cas_on_missing_key_expects_none() -> None:
    history = [cas(1, 1, 2, "x", None, "a", swapped=True), get(1, 3, 4, "x", "a")]
    assert check(history).ok is True


def test_cas_with_mismatching_expected_fails_and_does_not_write() -> None:
    history = [
        put(1, 1, 2, "x", "a"),
        cas(1, 3, 4, "x", "zzz", "b", swapped=False),
        get(1, 5, 6, "x", "a"),
    ]
    assert check(history).ok is True
    wrote_anyway = [*history[:2], get(1, 5, 6, "x", "b")]
    assert check(wrote_anyway).ok is False


def test_cas_reporting_success_when_it_could_not_match_is_rejected() -> None:
    history = [
        put(1, 1, 2, "x", "a"),
        cas(1, 3, 4, "x", "zzz", "b", swapped=True),
    ]
    result = check(history)
    assert result.ok is False
    assert "cas('x', expected='zzz', new='b') -> True" in result.explanation


def test_cas_reporting_failure_when_it_must_have_matched_is_rejected() -> None:
    history = [
        put(1, 1, 2, "x", "a"),
        cas(1, 3, 4, "x", "a", "b", swapped=False),
    ]
    assert check(history).ok is False


def test_concurrent_cas_only_one_can_win() -> None:
    both_win = [
        put(1, 1, 2, "x", "0"),
        cas(1, 3, 6, "x", "0", "1", swapped=True),
        cas(2, 4, 5, "x", "0", "2", swapped=True),
    ]
    assert check(both_win).ok is False
    one_wins = [*both_win[:2], cas(2, 4, 5, "x", "0", "2", swapped=False)]
    assert check(one_wins).ok is True


# --- validation, timeouts, other models ------------------------------------------------------


def test_operation_returning_before_its_call_is_refused() -> None:
    with pytest.raises(ValueError, match="returns before"):
        check([put(1, 5, 4, "x", "1")])


def test_indeterminate_operation_with_output_is_refused() -> None:
    bad = Operation(1, 1, None, KVInput("get", "x"), KVOutput(value="1"))
    with pytest.raises(ValueError, match="indeterminate"):
        check([bad])


def test_search_out_of_time_reports_unknown() -> None:
    ticks = itertools.count()  # every look at the clock advances it by one second
    result = check([put(1, 1, 2, "x", "1")], timeout_s=0.5, clock=lambda: float(next(ticks)))
    assert result.ok is None
    assert result.partition == "key 'x'"
    assert "unknown" in result.explanation


@dataclass(frozen=True)
class Inc:
    pass


class CounterModel:
    """A counter that cannot be partitioned: increments answer the value they produced."""

    def init(self) -> int:
        return 0

    def step(self, state: int, input: Inc, output: int | None) -> tuple[bool, int]:
        return output is None or output == state + 1, state + 1

    def partition(
        self, history: Sequence[Operation[Inc, int]]
    ) -> dict[str, Sequence[Operation[Inc, int]]]:
        return {"counter": history}

    def describe(self, op: Operation[Inc, int]) -> str:
        return f"client {op.client}: inc -> {op.output}"


def test_checker_accepts_other_models() -> None:
    ok = [Operation(1, 1, 4, Inc(), 2), Operation(2, 2, 3, Inc(), 1)]
    assert check(ok, CounterModel()).ok is True
    duplicate = [Operation(1, 1, 4, Inc(), 1), Operation(2, 2, 3, Inc(), 1)]
    result = check(duplicate, CounterModel())
    assert result.ok is False
    assert result.explanation.startswith("counter: not linearizable.")


# --- randomized --------------------------------------------------------------------------------


def test_random_generated_histories_accepted_and_corrupted_ones_rejected() -> None:
    # (How long this takes is bench/linearizability_bench.py's figure.)
    rejected = 0
    for seed in range(200):
        rng = random.Random(seed)
        history = generate_history(rng, rng.randint(5, 60), ["a", "b", "c"], clients=5)
        result = check(history)
        assert result.ok is True, f"seed {seed}: {result.explanation}"
        corrupted = corrupt_one_get(rng, history)
        if corrupted is None:
            continue
        result = check(corrupted)
        assert result.ok is False, f"seed {seed}: corrupted history accepted"
        assert NEVER_WRITTEN in result.explanation
        rejected += 1
    assert rejected > 180


def brute_force(history: Sequence[KVOperation]) -> bool:
    """Linearizability by trying every order, with its own KV semantics (no partitioning)."""

    def search(remaining: frozenset[int], store: dict[str, str | None]) -> bool:
        if all(history[i].ret is None for i in remaining):
            return True  # leftover indeterminate operations never took effect
        for i in remaining:
            op = history[i]
            if any((ret := history[j].ret) is not None and ret < op.call for j in remaining - {i}):
                continue  # something still unplaced had already returned before op began
            after = dict(store)
            if op.input.op == "put" and op.output == KVOutput(ok=False):
                pass  # the store refused it: no effect
            else:
                produced = apply(after, op.input)
                if op.output is not None and op.output != produced:
                    continue
            if search(remaining - {i}, after):
                return True
        return False

    return search(frozenset(range(len(history))), {})


def random_small_history(rng: random.Random) -> list[KVOperation]:
    """Random intervals and random outputs: some linearizable, most not."""
    n = rng.randint(1, 7)
    p_indeterminate = rng.choice([0.0, 0.2, 0.5])
    keys = rng.choice([["a"], ["a", "b"]])
    times = rng.sample(range(1, 4 * n), 2 * n)
    history: list[KVOperation] = []
    for i in range(n):
        call, ret = sorted(times[2 * i : 2 * i + 2])
        inp = random_input(rng, keys, ["1", "2"])
        if rng.random() < p_indeterminate:
            history.append(Operation(i, call, None, inp, None))
            continue
        if inp.op == "get":
            output = KVOutput(value=rng.choice([None, "1", "2"]))
        else:
            output = KVOutput(ok=rng.random() < (0.9 if inp.op == "put" else 0.5))
        history.append(Operation(i, call, ret, inp, output))
    return history


def test_random_small_histories_agree_with_brute_force() -> None:
    verdicts = {True: 0, False: 0}
    for seed in range(3000):
        history = random_small_history(random.Random(seed))
        expected = brute_force(history)
        result = check(history)
        assert result.ok is expected, f"seed {seed}: {history}"
        verdicts[expected] += 1
    # Both verdicts must be well represented for the comparison to mean anything.
    assert min(verdicts.values()) > 1000, verdicts


class Ticks:
    """A clock for ``check`` that advances one unit per read: the checker reads
    it once per partition and every ``_CLOCK_EVERY`` (1,024) search steps, so
    ``timeout_s`` becomes a deterministic budget of search work."""

    def __init__(self) -> None:
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return float(self.reads)


def test_checks_2000_ops_on_10_keys_from_5_clients_in_bounded_search_work() -> None:
    # The wall time is bench/linearizability_bench.py's figure. Here: the
    # verdicts, and the search stays within 100 clock reads (about 100,000
    # steps; it takes 11 and 14), which an exponential blow-up would not.
    rng = random.Random(2000)
    keys = [f"k{i}" for i in range(10)]
    history = generate_history(rng, 2000, keys, clients=5, p_indeterminate=0.02)
    assert len(history) == 2000

    ticks = Ticks()
    result = check(history, timeout_s=100, clock=ticks)
    assert result.ok is True, result.explanation
    assert ticks.reads <= 100

    corrupted = corrupt_one_get(rng, history)
    assert corrupted is not None
    ticks = Ticks()
    result = check(corrupted, timeout_s=100, clock=ticks)
    assert result.ok is False, result.explanation
    assert NEVER_WRITTEN in result.explanation and ticks.reads <= 100


def test_linearizability_bench_prints_the_timings_the_tests_do_not_assert(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["--repeat", "1", "--histories", "5", "--ops", "100"]  # small: a smoke run
    assert linearizability_bench.main(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"^check 5 histories .*: [\d.]+ ms .* ratio [\d.]+x$", out, re.M), out
    assert re.search(r"^check 100 ops .*: [\d.]+ ms linearizable, [\d.]+ ms corrupted", out, re.M)
