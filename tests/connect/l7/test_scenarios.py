"""Issue 15's client-visible scenarios, driven through the cores alone.

A tiny synchronous driver loop (fake clock, seeded rng, fake backends)
composes decide -> breaker -> retry -> outlier the way the trio driver will,
so each scenario's figure is checked without sockets.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from connect.l7.breaker import CircuitBreaker, Limits
from connect.l7.decide import Decider, RoutePolicy, Table, Target
from connect.l7.match import HTTPMatch, Route, Router
from connect.l7.outlier import OutlierConfig, OutlierDetector
from connect.l7.request import Request
from connect.l7.retry import Failure, Outcome, RetryBudget, RetryPolicy, RetryState, Verdict

Backend = Callable[[str, Request], tuple[int | None, float]]  # (status|None, latency s)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0


def _fixed(hosts: frozenset[str]) -> Callable[[str], frozenset[str]]:
    return lambda _target: hosts


def run_request(
    decider: Decider,
    request: Request,
    backend: Backend,
    *,
    clock: Clock,
    rng: random.Random,
    outlier: OutlierDetector | None = None,
    budget: RetryBudget | None = None,
) -> int:
    """One request through decide/retry/outlier; returns the client's status."""
    start = clock.now
    first = decider.decide(request, rng=rng)
    state = RetryState(
        first.retry, request.method, start=start, timeout_s=first.timeout_s, rng=rng, budget=budget
    )
    last_status = 503
    while True:
        excluded = outlier.ejected(clock.now) if outlier else frozenset()
        d = decider.decide(request, rng=rng, excluded=_fixed(excluded))
        if d.endpoint is None:
            return 503  # no healthy upstream
        per_try = state.start_attempt(clock.now)
        if per_try is Verdict.TIMEOUT:
            return 504
        status, latency = backend(d.endpoint, request)
        if isinstance(per_try, float) and latency >= per_try:
            clock.now += per_try
            outcome = Outcome(failure=Failure.PER_TRY_TIMEOUT)
        else:
            clock.now += latency
            outcome = Outcome(status) if status is not None else Outcome(failure=Failure.RESET)
        if outlier is not None:
            outlier.report(
                d.endpoint, outcome.status if outcome.failure is None else None, clock.now
            )
        last_status = outcome.status or 503
        decision = state.after(outcome, clock.now)
        if decision.verdict is Verdict.TIMEOUT:
            return 504
        if decision.verdict is Verdict.RESPOND:
            return last_status
        clock.now += decision.delay_s


def one_target(policy: RoutePolicy, endpoints: tuple[str, ...] = ("b1",)) -> Decider:
    return Decider(
        Table(
            start="api",
            router=Router([Route(HTTPMatch(path_prefix="/"), next_node="api")]),
            route_policies=(policy,),
            targets={"api": Target("api", endpoints)},
        )
    )


def test_thirty_percent_503_with_num_retries_3_fails_only_when_all_four_attempts_fail() -> None:
    rng, backend_rng, clock = random.Random(1), random.Random(2), Clock()
    decider = one_target(RoutePolicy(retry=RetryPolicy(num_retries=3, retry_on=("5xx",))))

    def flaky(_host: str, _r: Request) -> tuple[int | None, float]:
        return (503 if backend_rng.random() < 0.3 else 200), 0.002

    gets = [
        run_request(decider, Request.build("GET", "/x"), flaky, clock=clock, rng=rng)
        for _ in range(1_000)
    ]
    # Four independent attempts all fail with probability 0.3**4 = 0.81%: the
    # expectation is 99.19% success, so issue 15's ">= 99.5%" cannot hold for
    # independent failures; this checks the 0.81% (+-0.6 point over 1,000).
    assert 0.2 <= (1_000 - gets.count(200)) / 10 <= 1.4
    assert set(gets) == {200, 503}
    posts = [
        run_request(decider, Request.build("POST", "/x"), flaky, clock=clock, rng=rng)
        for _ in range(1_000)
    ]
    assert 0.65 <= posts.count(200) / 1_000 <= 0.75  # exactly one attempt each


def test_request_timeout_200ms_against_a_1s_backend_answers_504_at_200ms() -> None:
    rng, clock = random.Random(1), Clock()
    decider = one_target(
        RoutePolicy(request_timeout_s=0.2, retry=RetryPolicy(num_retries=3, retry_on=("5xx",)))
    )
    status = run_request(
        decider, Request.build("GET", "/slow"), lambda _h, _r: (200, 1.0), clock=clock, rng=rng
    )
    assert status == 504
    assert 0.2 <= clock.now < 0.4


def test_one_of_three_always_500_is_ejected_then_99_percent_succeed_then_it_returns() -> None:
    rng, clock = random.Random(3), Clock()
    hosts = ("b1", "b2", "b3")
    decider = one_target(RoutePolicy(), hosts)
    outlier = OutlierDetector(OutlierConfig(max_failures=5, base_ejection_time_s=30.0), rng)
    outlier.set_hosts(hosts)

    def backend(host: str, _r: Request) -> tuple[int | None, float]:
        return (500 if host == "b2" else 200), 0.001

    statuses = [
        run_request(
            decider, Request.build("GET", "/"), backend, clock=clock, rng=rng, outlier=outlier
        )
        for _ in range(15)
    ]
    assert statuses.count(500) == 5  # round robin: every third request until ejection
    [ejection] = outlier.ejections(clock.now)
    assert ejection.host == "b2" and ejection.reason == "consecutive_5xx"
    after = [
        run_request(
            decider, Request.build("GET", "/"), backend, clock=clock, rng=rng, outlier=outlier
        )
        for _ in range(1_000)
    ]
    assert after.count(200) >= 990
    clock.now = ejection.until
    assert "b2" not in outlier.ejected(clock.now)
    back = {
        decider.decide(
            Request.build("GET", "/"), rng=rng, excluded=lambda _t: outlier.ejected(clock.now)
        ).endpoint
        for _ in range(3)
    }
    assert back == set(hosts)


def test_limits_exceeded_overflow_immediately_instead_of_queueing() -> None:
    breaker = CircuitBreaker(Limits(max_concurrent_requests=4, max_pending_requests=0))
    admitted = [breaker.try_request() for _ in range(10)]
    assert sum(not a.overflow for a in admitted) == 4
    assert breaker.snapshot()["upstream_rq_overflow"] == 6
