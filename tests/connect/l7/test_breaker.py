"""Circuit breakers from Consul's Limits, with Envoy's overflow answers."""

from __future__ import annotations

import pytest

from connect.l7.breaker import (
    ENVOY_DEFAULT_LIMIT,
    OVERLOADED_HEADERS,
    Admission,
    CircuitBreaker,
    Limits,
)


def test_requests_over_max_concurrent_requests_overflow_until_one_is_released() -> None:
    breaker = CircuitBreaker(Limits(max_concurrent_requests=2))
    assert breaker.try_request() is Admission.OK
    assert breaker.try_request() is Admission.OK
    third = breaker.try_request()
    assert third is Admission.REQUEST_OVERFLOW and third.overflow
    assert breaker.requests == 2
    breaker.release_request()
    assert breaker.try_request() is Admission.OK
    assert breaker.snapshot()["upstream_rq_overflow"] == 1


def test_pending_and_connection_limits_are_separate() -> None:
    breaker = CircuitBreaker(Limits(max_connections=1, max_pending_requests=1))
    assert breaker.try_connection() is Admission.OK
    assert not breaker.can_connect()
    assert breaker.try_connection() is Admission.CONNECTION_OVERFLOW
    assert breaker.try_pending() is Admission.OK
    assert breaker.try_pending() is Admission.PENDING_OVERFLOW
    breaker.release_pending()
    breaker.release_connection()
    assert breaker.can_connect() and breaker.pending == 0


def test_unset_limits_default_to_envoy_1024() -> None:
    breaker = CircuitBreaker()
    for _ in range(ENVOY_DEFAULT_LIMIT):
        assert breaker.try_request() is Admission.OK
    assert breaker.try_request() is Admission.REQUEST_OVERFLOW


def test_zero_limit_overflows_at_once_and_negative_is_refused() -> None:
    assert CircuitBreaker(Limits(max_pending_requests=0)).try_pending().overflow
    with pytest.raises(ValueError, match="max connections cannot be negative"):
        Limits(max_connections=-1)
    assert OVERLOADED_HEADERS == (("x-envoy-overloaded", "true"),)
