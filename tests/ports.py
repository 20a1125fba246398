"""Free loopback ports for tests (never Consul's fixed ones)."""

from __future__ import annotations

import socket

# Ports this process has handed out. bind(("127.0.0.1", 0)) can return the
# same port to two calls in a row, and an agent given one port for two flags
# refuses its config ("port N is also used by ports.dns"); seen under
# pytest-xdist, where the workers' agents churn through ephemeral ports.
_HANDED_OUT: set[tuple[str, int]] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``host`` now, and one this process has
    not handed out before."""
    for _ in range(1000):
        with socket.socket() as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
        if (host, port) not in _HANDED_OUT:
            _HANDED_OUT.add((host, port))
            return port
    raise RuntimeError(f"no new free port on {host} in 1000 tries")
