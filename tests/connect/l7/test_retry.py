"""Envoy retry semantics, backoff, budget and the route deadline."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connect.l7.match import HeaderMatch
from connect.l7.request import Headers
from connect.l7.retry import (
    Failure,
    Outcome,
    RetryBudget,
    RetryPolicy,
    RetryState,
    Verdict,
    backoff_ms,
    is_retriable,
)

S503 = Outcome(status=503)


def state(
    policy: RetryPolicy,
    method: str = "GET",
    timeout: float | None = 15.0,
    budget: RetryBudget | None = None,
) -> RetryState:
    return RetryState(
        policy, method, start=0.0, timeout_s=timeout, rng=random.Random(1), budget=budget
    )


def test_get_is_retried_num_retries_times_then_last_answer_passes_through() -> None:
    st_ = state(RetryPolicy(num_retries=3, retry_on=("5xx",)))
    verdicts = [st_.after(S503, now=0.0).verdict for _ in range(4)]
    assert verdicts == [Verdict.RETRY] * 3 + [Verdict.RESPOND]
    assert st_.retries == 3


def test_post_is_not_retried_by_default_but_is_when_the_route_opts_in() -> None:
    policy = RetryPolicy(num_retries=3, retry_on=("5xx",))
    decision = state(policy, "POST").after(S503, now=0.0)
    assert decision.verdict is Verdict.RESPOND
    assert decision.reason == "non-idempotent method"
    assert state(policy, "PATCH").after(S503, 0.0).verdict is Verdict.RESPOND
    opted = RetryPolicy(num_retries=3, retry_on=("5xx",), retry_non_idempotent=True)
    assert state(opted, "POST").after(S503, 0.0).verdict is Verdict.RETRY


def test_no_retry_features_means_no_retries_and_unset_num_retries_means_one() -> None:
    assert state(RetryPolicy()).after(S503, 0.0).verdict is Verdict.RESPOND
    one = state(RetryPolicy(retry_on=("5xx",)))
    assert one.after(S503, 0.0).verdict is Verdict.RETRY
    assert one.after(S503, 0.0).reason == "retries exhausted"


def test_success_is_never_retried() -> None:
    decision = state(RetryPolicy(num_retries=3, retry_on=("5xx",))).after(Outcome(200), 0.0)
    assert decision.verdict is Verdict.RESPOND and decision.reason == "success"


@pytest.mark.parametrize(
    ("policy", "outcome", "expected"),
    [
        (RetryPolicy(retry_on=("5xx",)), Outcome(500), True),
        (RetryPolicy(retry_on=("5xx",)), Outcome(failure=Failure.RESET), True),
        (RetryPolicy(retry_on=("5xx",)), Outcome(404), False),
        (RetryPolicy(retry_on=("gateway-error",)), Outcome(502), True),
        (RetryPolicy(retry_on=("gateway-error",)), Outcome(500), False),
        (RetryPolicy(retry_on=("gateway-error",)), Outcome(failure=Failure.PER_TRY_TIMEOUT), True),
        (RetryPolicy(retry_on=("reset",)), Outcome(failure=Failure.RESET), True),
        (RetryPolicy(retry_on=("reset",)), Outcome(503), False),
        (RetryPolicy(retry_on=("reset",)), Outcome(failure=Failure.PER_TRY_TIMEOUT), False),
        (RetryPolicy(retry_on=("gateway-error",)), Outcome(failure=Failure.CONNECT_FAILURE), True),
        (RetryPolicy(retry_on=("refused-stream",)), Outcome(failure=Failure.RESET), False),
        (RetryPolicy(retry_on_status_codes=(503,)), Outcome(failure=Failure.RESET), False),
        (
            RetryPolicy(retry_on_connect_failure=True),
            Outcome(failure=Failure.CONNECT_FAILURE),
            True,
        ),
        (RetryPolicy(retry_on_connect_failure=True), Outcome(failure=Failure.RESET), False),
        (RetryPolicy(retry_on=("refused-stream",)), Outcome(failure=Failure.REFUSED_STREAM), True),
        (RetryPolicy(retry_on=("retriable-4xx",)), Outcome(409), True),
        (RetryPolicy(retry_on=("retriable-4xx",)), Outcome(429), False),
        (RetryPolicy(retry_on_status_codes=(429,)), Outcome(429), True),
        (RetryPolicy(retry_on_status_codes=(429,)), Outcome(503), False),
        (
            RetryPolicy(retry_on=("5xx",)),
            Outcome(503, headers=Headers([("x-envoy-ratelimited", "true")])),
            False,
        ),
        (
            RetryPolicy(retry_on=("envoy-ratelimited",)),
            Outcome(429, headers=Headers([("x-envoy-ratelimited", "true")])),
            True,
        ),
        (
            RetryPolicy(retriable_headers=(HeaderMatch("x-retry", exact="yes"),)),
            Outcome(500, headers=Headers([("X-Retry", "yes")])),
            True,
        ),
        (
            RetryPolicy(retry_on=("unavailable",)),
            Outcome(200, headers=Headers([("grpc-status", "14")])),
            True,
        ),
    ],
)
def test_retry_conditions(policy: RetryPolicy, outcome: Outcome, expected: bool) -> None:
    assert is_retriable(policy, outcome) is expected


def test_grpc_unavailable_in_a_200_answer_is_retried() -> None:
    grpc = Outcome(200, headers=Headers([("grpc-status", "14")]))
    decision = state(RetryPolicy(num_retries=1, retry_on=("unavailable",))).after(grpc, 0.0)
    assert decision.verdict is Verdict.RETRY


def test_unknown_retry_condition_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid retry condition: 'sometimes'"):
        RetryPolicy(retry_on=("sometimes",))


@given(st.integers(min_value=1, max_value=40), st.integers(min_value=0))
def test_backoff_stays_within_envoy_bounds(n: int, seed: int) -> None:
    delay = backoff_ms(n, random.Random(seed))
    assert 0 <= delay < min((2**n - 1) * 25, 250 + 1)


def test_backoff_grows_with_the_retry_number() -> None:
    rng = random.Random(5)
    first = [backoff_ms(1, rng) for _ in range(500)]
    third = [backoff_ms(3, rng) for _ in range(500)]
    assert max(first) < 25 and max(third) < 175
    assert sum(third) / 500 > 2 * sum(first) / 500


def test_route_timeout_includes_retries() -> None:
    st_ = state(RetryPolicy(num_retries=5, retry_on=("5xx",)), timeout=0.2)
    assert st_.start_attempt(0.0) == pytest.approx(0.2)
    assert st_.start_attempt(0.15) == pytest.approx(0.05)
    assert st_.start_attempt(0.2) is Verdict.TIMEOUT
    assert st_.after(S503, now=0.25).verdict is Verdict.TIMEOUT


def test_per_try_timeout_is_capped_by_the_remaining_deadline() -> None:
    st_ = state(RetryPolicy(num_retries=2, retry_on=("5xx",), per_try_timeout_s=0.1), timeout=1)
    assert st_.start_attempt(0.0) == pytest.approx(0.1)
    assert st_.start_attempt(0.95) == pytest.approx(0.05)
    assert state(RetryPolicy(), timeout=None).start_attempt(100.0) is None


def test_retry_budget_caps_concurrent_retries() -> None:
    budget = RetryBudget(budget_percent=20.0, min_retry_concurrency=3)
    policy = RetryPolicy(num_retries=3, retry_on=("5xx",))
    for _ in range(10):
        budget.request_started()
    states = [state(policy, budget=budget) for _ in range(10)]
    verdicts = [s.after(S503, 0.0) for s in states]
    assert [v.verdict for v in verdicts].count(Verdict.RETRY) == 3
    assert verdicts[-1].reason == "retry budget exhausted"
    assert budget.active_retries == 3
    states[0].after(Outcome(200), 0.01)  # the retry ended: its slot is free again
    assert budget.active_retries == 2
    assert states[9].after(S503, 0.02).verdict is Verdict.RETRY


def test_retry_budget_scales_with_active_requests() -> None:
    budget = RetryBudget()
    for _ in range(100):
        budget.request_started()
    assert budget.limit() == 20
    budget.request_finished()
    assert budget.limit() == 19
