"""Traffic mirroring: which requests get a shadow copy, and how it looks.

Consul has no mirroring (hashicorp/consul#9827); meshd adds it as a
documented extension on the router destination, with Envoy's semantics
(``request_mirror_policies``):

- ``percentage`` (0-100, default 100) of requests are copied to the mirror
  target, drawn from the ``random.Random`` the driver passes in.
- The copy is fire-and-forget: its answer, errors and latency are discarded
  and never reach the caller.
- The copy's Host (or ``:authority``) gets ``-shadow`` appended to the host
  part (``reviews:8080`` -> ``reviews-shadow:8080``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from connect.l7.request import Headers

SHADOW_SUFFIX = "-shadow"
_SCALE = 1_000_000


@dataclass(frozen=True)
class MirrorPolicy:
    """A mirror target (a chain node or target id) and the share to copy."""

    target: str
    percentage: float = 100.0

    def __post_init__(self) -> None:
        if not 0 <= self.percentage <= 100:
            raise ValueError("Mirror.Percentage must be between 0 and 100")


def should_mirror(policy: MirrorPolicy | None, rng: random.Random) -> bool:
    if policy is None or policy.percentage <= 0:
        return False
    return rng.randrange(_SCALE) < round(policy.percentage * _SCALE / 100)


def shadow_host(host: str) -> str:
    """``host`` with ``-shadow`` appended before any port (Envoy)."""
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        return host[: end + 1] + SHADOW_SUFFIX + host[end + 1 :] if end > 0 else host
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        return f"{name}{SHADOW_SUFFIX}:{port}"
    return host + SHADOW_SUFFIX


def shadow_headers(headers: Headers) -> Headers:
    """A copy of the request headers for the mirror, with the shadow Host."""
    out = headers.copy()
    for name in ("host", ":authority"):
        value = out.get(name)
        if value is not None:
            out.set(name, shadow_host(value))
    return out
