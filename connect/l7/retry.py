"""Retries, backoff, retry budget and the route deadline (Envoy semantics).

Rules (Consul router destination -> Envoy ``retry_policy``):

- A policy exists when any retry field is set (Consul's ``HasRetryFeatures``);
  then NumRetries unset means Envoy's default of 1 retry.
- Conditions (``retry_on``): ``5xx`` (any 5xx), ``gateway-error``
  (502/503/504); both, and ``reset``, also retry every reset attempt
  (reset, connect failure, refused stream), as Envoy's
  ``wouldRetryFromReset``; a per-try timeout only under ``5xx`` or
  ``gateway-error``; ``connect-failure``,
  ``refused-stream``, ``retriable-4xx`` (409), ``retriable-status-codes``
  (RetryOnStatusCodes), ``retriable-headers``, ``envoy-ratelimited``
  (``x-envoy-ratelimited`` header); gRPC conditions on ``grpc-status``.
  RetryOnConnectFailure adds ``connect-failure``; RetryOnStatusCodes adds
  ``retriable-status-codes``.
- meshd, beyond Envoy (issue 15): a non-idempotent method (POST, PATCH,
  CONNECT) is never retried unless the route sets ``retry_non_idempotent``.
- The route timeout is the whole request including retries; a request that
  hit it answers 504 ``upstream request timeout`` and is never retried.
- Backoff between attempts: Envoy's fully jittered exponential backoff, base
  25 ms, retry N waits ``rng % ((2^N - 1) * base)`` ms, capped at 10x base.
- Retry budget (Envoy ``retry_budget``): concurrent retries are capped at
  ``max(min_retry_concurrency, budget_percent% of active requests)``; a
  refused retry passes the last upstream answer through (``budget`` reason).
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, field

from connect.l7.entries_routing import VALID_RETRY_ON
from connect.l7.match import HeaderMatch, header_matches
from connect.l7.request import Headers

# Consul's RetryOn list plus the conditions Envoy derives from
# RetryOnStatusCodes and retriable headers.
RETRY_CONDITIONS = frozenset((*VALID_RETRY_ON, "retriable-status-codes", "retriable-headers"))
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
ENVOY_DEFAULT_NUM_RETRIES = 1
BASE_INTERVAL_MS = 25
TIMEOUT_STATUS = 504
TIMEOUT_BODY = "upstream request timeout"
_GRPC_CODES = {
    "cancelled": "1",
    "deadline-exceeded": "4",
    "resource-exhausted": "8",
    "internal": "13",
    "unavailable": "14",
}


class Failure(enum.Enum):
    """A failed attempt that produced no upstream response."""

    CONNECT_FAILURE = "connect-failure"
    RESET = "reset"
    REFUSED_STREAM = "refused-stream"
    PER_TRY_TIMEOUT = "per-try-timeout"


@dataclass(slots=True)
class Outcome:
    """How one attempt ended: an upstream status (with headers) or a Failure.

    Read-only by convention: not frozen, as a frozen dataclass pays an
    ``object.__setattr__`` per field (the proxy makes one per attempt).
    """

    status: int | None = None
    failure: Failure | None = None
    headers: Headers = field(default_factory=Headers)

    @property
    def succeeded(self) -> bool:
        return self.failure is None and self.status is not None and self.status < 500


@dataclass(frozen=True)
class RetryPolicy:
    """Consul's router-destination retry fields plus meshd's opt-in flag."""

    num_retries: int | None = None
    retry_on: tuple[str, ...] = ()
    retry_on_connect_failure: bool = False
    retry_on_status_codes: tuple[int, ...] = ()
    retriable_headers: tuple[HeaderMatch, ...] = ()
    retry_non_idempotent: bool = False
    per_try_timeout_s: float | None = None
    base_interval_ms: int = BASE_INTERVAL_MS
    max_interval_ms: int | None = None  # None = 10 x base (Envoy)
    # conditions(), read on every attempt: computed once (the policy is frozen).
    _conditions: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())

    def __post_init__(self) -> None:
        for cond in self.retry_on:
            if cond not in RETRY_CONDITIONS:
                raise ValueError(f"contains an invalid retry condition: {cond!r}")
        object.__setattr__(self, "_conditions", self._compute_conditions())

    def has_retry_features(self) -> bool:
        return bool(
            self.num_retries
            or self.retry_on
            or self.retry_on_connect_failure
            or self.retry_on_status_codes
            or self.retriable_headers
        )

    def max_retries(self) -> int:
        if not self.has_retry_features():
            return 0
        return ENVOY_DEFAULT_NUM_RETRIES if self.num_retries is None else self.num_retries

    def conditions(self) -> frozenset[str]:
        return self._conditions

    def _compute_conditions(self) -> frozenset[str]:
        conds = set(self.retry_on)
        if self.retry_on_connect_failure:
            conds.add("connect-failure")
        if self.retry_on_status_codes:
            conds.add("retriable-status-codes")
        if self.retriable_headers:
            conds.add("retriable-headers")
        return frozenset(conds)


def _failure_retriable(conds: frozenset[str], failure: Failure) -> bool:
    # Envoy's wouldRetryFromReset: 5xx, gateway-error and reset cover every
    # reset; connect-failure and refused-stream only their own kind. A
    # (non-hedged) per-try timeout is retried only under 5xx/gateway-error.
    if failure is Failure.PER_TRY_TIMEOUT:
        return bool(conds & {"5xx", "gateway-error"})
    if conds & {"5xx", "gateway-error", "reset"}:
        return True
    if failure is Failure.CONNECT_FAILURE:
        return "connect-failure" in conds
    return failure is Failure.REFUSED_STREAM and "refused-stream" in conds


def _status_retriable(policy: RetryPolicy, conds: frozenset[str], outcome: Outcome) -> bool:
    status = outcome.status or 0
    if "x-envoy-ratelimited" in outcome.headers:  # Envoy: only this condition counts
        return "envoy-ratelimited" in conds
    if "5xx" in conds and status >= 500:
        return True
    if "gateway-error" in conds and status in (502, 503, 504):
        return True
    if "retriable-4xx" in conds and status == 409:
        return True
    if "retriable-status-codes" in conds and status in policy.retry_on_status_codes:
        return True
    if "retriable-headers" in conds and any(
        header_matches(h, outcome.headers) for h in policy.retriable_headers
    ):
        return True
    grpc = outcome.headers.get("grpc-status")
    return grpc is not None and any(_GRPC_CODES.get(c) == grpc for c in conds)


def is_retriable(policy: RetryPolicy, outcome: Outcome) -> bool:
    """Whether ``outcome`` meets one of the policy's retry conditions."""
    conds = policy.conditions()
    if not conds:  # no condition to meet (a route without retries): nothing to scan
        return False
    if outcome.failure is not None:
        return _failure_retriable(conds, outcome.failure)
    return _status_retriable(policy, conds, outcome)


def backoff_ms(retry_number: int, rng: random.Random, policy: RetryPolicy | None = None) -> int:
    """Envoy's jittered backoff before retry ``retry_number`` (1-based), in ms."""
    base = policy.base_interval_ms if policy else BASE_INTERVAL_MS
    cap = (policy.max_interval_ms if policy else None) or 10 * base
    n = max(1, retry_number)
    multiplier = (1 << min(n, 30)) - 1
    return min(rng.randrange(max(1, multiplier * base)), cap)


class RetryBudget:
    """Envoy's ``retry_budget`` for one upstream cluster: concurrent retries cap."""

    __slots__ = ("active_requests", "active_retries", "budget_percent", "min_retry_concurrency")

    def __init__(self, budget_percent: float = 20.0, min_retry_concurrency: int = 3) -> None:
        self.budget_percent = budget_percent
        self.min_retry_concurrency = min_retry_concurrency
        self.active_requests = 0
        self.active_retries = 0

    def limit(self) -> int:
        by_percent = math.floor(self.active_requests * self.budget_percent / 100)
        return max(self.min_retry_concurrency, by_percent)

    def request_started(self) -> None:
        self.active_requests += 1

    def request_finished(self) -> None:
        self.active_requests = max(0, self.active_requests - 1)

    def try_retry(self) -> bool:
        if self.active_retries >= self.limit():
            return False
        self.active_retries += 1
        return True

    def retry_finished(self) -> None:
        self.active_retries = max(0, self.active_retries - 1)


class Verdict(enum.Enum):
    RESPOND = "respond"  # pass the last upstream answer through
    RETRY = "retry"  # wait ``delay_s`` then start another attempt
    TIMEOUT = "timeout"  # answer 504 upstream request timeout


@dataclass(frozen=True)
class RetryDecision:
    verdict: Verdict
    reason: str
    delay_s: float = 0.0
    retry_number: int = 0


# The two verdicts of nearly every request, made once (RetryDecision is frozen).
_SUCCESS = RetryDecision(Verdict.RESPOND, "success")
_NOT_RETRIABLE = RetryDecision(Verdict.RESPOND, "not retriable")


class RetryState:
    """The retry/timeout state machine of one request.

    ``start_attempt(now)`` says whether an attempt may start and with what
    per-try timeout (None = no limit); ``after(outcome, now)`` says what to
    do with the attempt's outcome. The route deadline ``start + timeout``
    includes every attempt and backoff; ``timeout_s`` 0 or None disables it.
    """

    __slots__ = ("budget", "deadline", "holding_budget", "method", "policy", "retries", "rng")

    def __init__(
        self,
        policy: RetryPolicy,
        method: str,
        *,
        start: float,
        timeout_s: float | None,
        rng: random.Random,
        budget: RetryBudget | None = None,
    ) -> None:
        self.policy = policy
        self.method = method.upper()
        self.deadline = start + timeout_s if timeout_s else math.inf
        self.rng = rng
        self.budget = budget
        self.retries = 0
        self.holding_budget = False

    def start_attempt(self, now: float) -> float | Verdict | None:
        """Per-try timeout in seconds (None = none), or Verdict.TIMEOUT."""
        if now >= self.deadline:
            return Verdict.TIMEOUT
        remaining = self.deadline - now
        per_try = self.policy.per_try_timeout_s
        if per_try is None:
            return None if math.isinf(remaining) else remaining
        return min(per_try, remaining)

    def _release_budget(self) -> None:
        if self.holding_budget and self.budget is not None:
            self.budget.retry_finished()
        self.holding_budget = False

    def after(self, outcome: Outcome, now: float) -> RetryDecision:
        """What to do once an attempt ended with ``outcome`` at ``now``."""
        self._release_budget()
        if now >= self.deadline:
            return RetryDecision(Verdict.TIMEOUT, "route timeout")
        if not is_retriable(self.policy, outcome):
            ok = outcome.failure is None and (outcome.status or 500) < 400
            return _SUCCESS if ok else _NOT_RETRIABLE
        if self.method not in IDEMPOTENT_METHODS and not self.policy.retry_non_idempotent:
            return RetryDecision(Verdict.RESPOND, "non-idempotent method")
        if self.retries >= self.policy.max_retries():
            return RetryDecision(Verdict.RESPOND, "retries exhausted")
        delay = backoff_ms(self.retries + 1, self.rng, self.policy) / 1000
        if now + delay >= self.deadline:
            return RetryDecision(Verdict.TIMEOUT, "route timeout during backoff")
        if self.budget is not None:
            if not self.budget.try_retry():
                return RetryDecision(Verdict.RESPOND, "retry budget exhausted")
            self.holding_budget = True
        self.retries += 1
        return RetryDecision(Verdict.RETRY, "retriable", delay, self.retries)

    def finish(self) -> None:
        """The request is over: give back a budget slot still held."""
        self._release_budget()
