"""Fault injection with Consul's ``builtin/fault-injection`` semantics.

Rules (Consul Enterprise >= 1.18 extension, in the upstream's
``service-defaults.EnvoyExtensions[].Arguments.Config``; meshd offers it in
the open core):

- ``Delay {Duration (ms), Percentage}``, ``Abort {HttpStatus | GrpcStatus,
  Percentage}``, ``Bandwidth {Limit (KiB/s), Percentage}``; blocks combine.
- Percentage is the share of requests (0-100) each block applies to; every
  block draws independently from the ``random.Random`` the driver passes in
  (resolution 0.0001%, so fractional percentages work too).
- As Envoy's fault filter: the delay happens first, then the abort; an abort
  answers the configured status with body ``fault filter abort`` (gRPC: HTTP
  200 with ``grpc-status``) and never reaches the upstream; the bandwidth
  limit throttles the response body.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

ABORT_BODY = "fault filter abort"
_SCALE = 1_000_000


@dataclass(frozen=True)
class DelayFault:
    duration_ms: int
    percentage: float = 100.0


@dataclass(frozen=True)
class AbortFault:
    http_status: int = 0
    grpc_status: int | None = None
    percentage: float = 100.0


@dataclass(frozen=True)
class BandwidthFault:
    limit_kib_per_s: int
    percentage: float = 100.0


@dataclass(frozen=True)
class FaultConfig:
    """``Arguments.Config`` of one ``builtin/fault-injection`` extension."""

    delay: DelayFault | None = None
    abort: AbortFault | None = None
    bandwidth: BandwidthFault | None = None

    def __post_init__(self) -> None:
        for name in ("delay", "abort", "bandwidth"):
            block = getattr(self, name)
            if block is not None and not 0 <= block.percentage <= 100:
                raise ValueError(f"{name.capitalize()}.Percentage must be between 0 and 100")
        if self.abort is not None:
            status = self.abort.http_status
            if self.abort.grpc_status is None and not 200 <= status <= 599:
                raise ValueError("Abort.HttpStatus must be between 200 and 599")
        if self.delay is not None and self.delay.duration_ms < 0:
            raise ValueError("Delay.Duration cannot be negative")


@dataclass(frozen=True)
class FaultDecision:
    """What to inject into one request (all None = nothing)."""

    delay_s: float | None = None
    abort_status: int | None = None
    abort_grpc_status: int | None = None
    bandwidth_kib_per_s: int | None = None

    @property
    def any(self) -> bool:
        return not (
            self.delay_s is None
            and self.abort_status is None
            and self.abort_grpc_status is None
            and self.bandwidth_kib_per_s is None
        )

    def abort_response(self) -> tuple[int, list[tuple[str, str]], str] | None:
        """(status, headers, body) of the local abort answer, or None."""
        if self.abort_grpc_status is not None:
            headers = [("content-type", "application/grpc")]
            return 200, [*headers, ("grpc-status", str(self.abort_grpc_status))], ""
        if self.abort_status is not None:
            return self.abort_status, [("content-type", "text/plain")], ABORT_BODY
        return None


def _hit(percentage: float, rng: random.Random) -> bool:
    return rng.randrange(_SCALE) < round(percentage * _SCALE / 100)


def decide_fault(config: FaultConfig | None, rng: random.Random) -> FaultDecision:
    """Draw the faults for one request (delay, abort, bandwidth in that order)."""
    if config is None:
        return FaultDecision()
    delay_s = abort = grpc = bandwidth = None
    if config.delay is not None and _hit(config.delay.percentage, rng):
        delay_s = config.delay.duration_ms / 1000
    if config.abort is not None and _hit(config.abort.percentage, rng):
        if config.abort.grpc_status is not None:
            grpc = config.abort.grpc_status
        else:
            abort = config.abort.http_status
    if config.bandwidth is not None and _hit(config.bandwidth.percentage, rng):
        bandwidth = config.bandwidth.limit_kib_per_s
    return FaultDecision(delay_s, abort, grpc, bandwidth)
