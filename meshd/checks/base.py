"""What every check kind shares: results, the checker protocol, thresholds, options.

A check kind is a ``Checker``: ``run()`` probes once and returns a
``CheckResult``; the runner bounds it with the check's timeout and, when the
timeout fires, asks ``timed_out()`` for the result to record (critical for
most kinds, passing for UDP, where silence is success).

``StatusHandler`` is Consul's threshold logic (agent/checks/check.go
``StatusHandler.updateCheck``), kept pure so it is tested without I/O:
consecutive successes and consecutive failures are counted; a passing or
warning result is applied once ``success_before_passing`` successes in a row
were seen, a critical one once ``failures_before_critical`` failures in a
row were seen, and from ``failures_before_warning`` failures on it is
applied as warning. Below the thresholds nothing is applied: the check keeps
its status and output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..durations import parse_duration

__all__ = [
    "CRITICAL",
    "DEFAULT_TIMEOUT",
    "MAINTENANCE",
    "MIN_INTERVAL",
    "OUTPUT_MAX_SIZE",
    "PASSING",
    "WARNING",
    "CheckOptions",
    "CheckResult",
    "Checker",
    "StatusHandler",
    "cap_output",
]

PASSING = "passing"
WARNING = "warning"
CRITICAL = "critical"
MAINTENANCE = "maintenance"

# Consul's defaults (agent/checks/check.go): 4 KiB of output, a 10 s timeout
# for network checks, and no interval below one second.
OUTPUT_MAX_SIZE = 4096
DEFAULT_TIMEOUT = 10.0
MIN_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One probe's outcome: a status (passing, warning, critical) and its output."""

    status: str
    output: str


class Checker(Protocol):
    """One check kind's probe, built once per check definition and reused."""

    async def run(self) -> CheckResult:
        """Probe once. Errors of the probed target are results, never raised.

        Cancellation (the runner's timeout, or the check being removed) may
        arrive at any await; the checker releases what it holds (sockets,
        processes) and lets ``trio.Cancelled`` propagate.
        """
        ...

    def timed_out(self, timeout: float) -> CheckResult:
        """The result to record when ``run()`` did not finish within ``timeout`` seconds."""
        ...


def cap_output(text: str, limit: int = OUTPUT_MAX_SIZE) -> str:
    """Return ``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    if len(text) <= limit // 4:  # fast path: even 4-byte characters fit
        return text
    data = text.encode("utf-8", "surrogateescape")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def _int(spec: dict[str, Any], key: str) -> int:
    value = spec.get(key) or 0
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0
    try:
        return max(0, int(value))
    except ValueError:
        return 0


def _seconds(spec: dict[str, Any], key: str) -> float:
    text = spec.get(key) or ""
    return parse_duration(text) if isinstance(text, str) and text else 0.0


@dataclass(frozen=True, slots=True)
class CheckOptions:
    """The run-time options of one check, read from its canonical definition.

    ``interval`` is 0 for checks that do not poll (TTL, alias); ``timeout``
    is the definition's or the kind's default; ``deregister_after`` is 0 when
    ``DeregisterCriticalServiceAfter`` is not set.
    """

    interval: float = 0.0
    timeout: float = DEFAULT_TIMEOUT
    ttl: float = 0.0
    success_before_passing: int = 0
    failures_before_warning: int = 0
    failures_before_critical: int = 0
    deregister_after: float = 0.0
    output_max_size: int = OUTPUT_MAX_SIZE

    @classmethod
    def from_spec(
        cls,
        spec: dict[str, Any],
        *,
        default_timeout: float = DEFAULT_TIMEOUT,
        min_interval: float = MIN_INTERVAL,
    ) -> CheckOptions:
        """Read the options from a canonical definition (``CheckDefinition.spec``).

        Durations were validated when the definition was parsed; a malformed
        one here raises ``DurationError``. An interval below ``min_interval``
        is raised to it, as Consul does.
        """
        interval = _seconds(spec, "Interval")
        if interval:
            interval = max(interval, min_interval)
        size = _int(spec, "OutputMaxSize")
        return cls(
            interval=interval,
            timeout=_seconds(spec, "Timeout") or default_timeout,
            ttl=_seconds(spec, "TTL"),
            success_before_passing=_int(spec, "SuccessBeforePassing"),
            failures_before_warning=_int(spec, "FailuresBeforeWarning"),
            failures_before_critical=_int(spec, "FailuresBeforeCritical"),
            deregister_after=_seconds(spec, "DeregisterCriticalServiceAfter"),
            output_max_size=min(size, OUTPUT_MAX_SIZE) if size else OUTPUT_MAX_SIZE,
        )


class StatusHandler:
    """Consul's consecutive-result thresholds, as a pure state machine.

    Feed every probe result to ``observe()``; it returns the status and
    output to record, or None while a threshold is not reached yet.
    ``failures_before_warning`` defaults to ``failures_before_critical``
    (no warning stage), as in Consul's ``NewStatusHandler``.
    """

    __slots__ = (
        "failures",
        "failures_before_critical",
        "failures_before_warning",
        "success_before_passing",
        "successes",
    )

    def __init__(
        self,
        success_before_passing: int = 0,
        failures_before_warning: int = 0,
        failures_before_critical: int = 0,
    ) -> None:
        self.success_before_passing = max(0, success_before_passing)
        self.failures_before_critical = max(0, failures_before_critical)
        self.failures_before_warning = max(0, failures_before_warning) or (
            self.failures_before_critical
        )
        self.successes = 0
        self.failures = 0

    @classmethod
    def from_options(cls, options: CheckOptions) -> StatusHandler:
        """A handler with the thresholds of ``options``."""
        return cls(
            options.success_before_passing,
            options.failures_before_warning,
            options.failures_before_critical,
        )

    def observe(self, result: CheckResult) -> CheckResult | None:
        """Count ``result`` and return what to record, or None to record nothing."""
        if result.status in (PASSING, WARNING):
            self.successes += 1
            self.failures = 0
            if self.successes >= self.success_before_passing:
                return result
            return None
        self.failures += 1
        self.successes = 0
        if self.failures >= self.failures_before_critical:
            return result
        if self.failures >= self.failures_before_warning:
            return CheckResult(WARNING, result.output)
        return None
