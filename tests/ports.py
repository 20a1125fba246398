"""Free loopback ports for tests (never Consul's fixed ones).

Ports come from a band below the kernel's ephemeral range (32768-60999 on
Debian), one slice per pytest-xdist worker, handed out round-robin:

- A port from bind(("127.0.0.1", 0)) is an ephemeral one: between the test
  choosing it and the agent or proxy binding it, the kernel may give the
  same port to another worker's bind(0) or to any outgoing connection's
  source port (a proxy's own watch connections to its agent included), and
  the listener then fails with "address already in use". Both were seen
  under xdist. Below the ephemeral range the kernel hands out nothing, and
  each worker owns its slice, so only a port still held by an earlier test
  of the same worker can be taken; that one is skipped by the bind check.
- Round-robin within the slice: a port is not handed out again until the
  slice wraps (an agent given one port for two flags refuses its config).
"""

from __future__ import annotations

import os
import random
import socket

BAND_START, BAND_END = 22000, 32000  # above Consul's sidecar range (21000-21255)
SLICES = 8  # xdist workers gw0..gw7; more share slices modulo 8


def _slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    size = (BAND_END - BAND_START) // SLICES
    start = BAND_START + (index % SLICES) * size
    return range(start, start + size)


_PORTS = _slice()
# Where this process starts in its slice: random, so that two runs in the
# same slice at once (two checkouts on one machine) rarely meet.
_cursor = random.randrange(len(_PORTS))


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing is bound to at ``host`` now, from this worker's
    slice, not handed out again until the slice wraps around."""
    global _cursor
    for _ in range(len(_PORTS)):
        port = _PORTS[_cursor % len(_PORTS)]
        _cursor += 1
        if _bindable(host, port):
            return port
    raise RuntimeError(f"no free port on {host} in {_PORTS}")
