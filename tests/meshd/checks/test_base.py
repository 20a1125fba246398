"""The pure parts: Consul's status thresholds, output capping, option parsing."""

from __future__ import annotations

from meshd.checks.base import (
    CRITICAL,
    OUTPUT_MAX_SIZE,
    PASSING,
    WARNING,
    CheckOptions,
    CheckResult,
    StatusHandler,
    cap_output,
)

OK = CheckResult(PASSING, "ok")
BUSY = CheckResult(WARNING, "busy")
BAD = CheckResult(CRITICAL, "bad")


def feed(handler: StatusHandler, results: list[CheckResult]) -> list[str | None]:
    """The status applied after each result (None: nothing applied)."""
    out: list[str | None] = []
    for r in results:
        applied = handler.observe(r)
        out.append(applied.status if applied else None)
    return out


def test_without_thresholds_every_result_applies_at_once() -> None:
    assert feed(StatusHandler(), [OK, BAD, BUSY, OK]) == [PASSING, CRITICAL, WARNING, PASSING]


def test_failures_before_critical_needs_that_many_consecutive_failures() -> None:
    h = StatusHandler(failures_before_critical=3)
    assert feed(h, [OK, BAD, BAD, BAD, BAD]) == [PASSING, None, None, CRITICAL, CRITICAL]


def test_a_success_resets_the_failure_count() -> None:
    h = StatusHandler(failures_before_critical=3)
    assert feed(h, [BAD, BAD, OK, BAD, BAD, BAD]) == [None, None, PASSING, None, None, CRITICAL]


def test_failures_before_warning_gives_a_warning_stage() -> None:
    h = StatusHandler(failures_before_warning=1, failures_before_critical=3)
    applied = [h.observe(r) for r in [BAD, BAD, BAD]]
    assert [a.status if a else None for a in applied] == [WARNING, WARNING, CRITICAL]
    assert applied[0] is not None and applied[0].output == "bad"  # output is kept


def test_success_before_passing_needs_consecutive_successes() -> None:
    h = StatusHandler(success_before_passing=2)
    assert feed(h, [OK, BAD, OK, OK, OK]) == [None, CRITICAL, None, PASSING, PASSING]


def test_a_warning_counts_as_a_success() -> None:
    h = StatusHandler(success_before_passing=2, failures_before_critical=2)
    assert feed(h, [BUSY, OK, BAD, BUSY, BAD, BAD]) == [None, PASSING, None, None, None, CRITICAL]


def test_cap_output_limits_utf8_bytes_without_splitting_characters() -> None:
    assert cap_output("short") == "short"
    assert len(cap_output("a" * 10_000).encode()) == OUTPUT_MAX_SIZE
    capped = cap_output("é" * 3000)  # 2 bytes each: 6000 bytes
    assert len(capped.encode()) == OUTPUT_MAX_SIZE and capped == "é" * 2048
    assert cap_output("a" + "€" * 10, 5) == "a€"  # 1 + 3 bytes fit, the next would not


def test_options_read_from_the_canonical_definition() -> None:
    spec = {
        "Interval": "10s",
        "Timeout": "2s",
        "SuccessBeforePassing": 2,
        "FailuresBeforeWarning": 1,
        "FailuresBeforeCritical": 3,
        "DeregisterCriticalServiceAfter": "1m30s",
        "OutputMaxSize": 100,
    }
    opts = CheckOptions.from_spec(spec)
    assert opts == CheckOptions(10.0, 2.0, 0.0, 2, 1, 3, 90.0, 100)


def test_options_defaults_and_minimum_interval() -> None:
    opts = CheckOptions.from_spec({"Interval": "100ms"})
    assert opts.interval == 1.0  # Consul's MinInterval
    assert opts.timeout == 10.0 and opts.output_max_size == OUTPUT_MAX_SIZE
    assert CheckOptions.from_spec({"OutputMaxSize": 1_000_000}).output_max_size == OUTPUT_MAX_SIZE
    assert CheckOptions.from_spec({}, default_timeout=30.0).timeout == 30.0
