"""meshd's version, from the installed distribution's metadata, and the
protocol numbers every command and API reports (one source, so ``meshd
version``, ``members``, ``operator raft list-peers`` and ``info`` agree)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version

# Consul's agent protocol (the members' "vsn" tags and `consul version`'s
# "Protocol 2 spoken by default, understands 2 to 3").
PROTOCOL_VERSION = 2
PROTOCOL_MIN = 2
PROTOCOL_MAX = 3
# The Raft protocol servers report (raft_vsn, ProtocolVersion, raft.protocol_version).
RAFT_PROTOCOL = 3


def meshd_version() -> str:
    try:
        return dist_version("meshd")
    except PackageNotFoundError:
        return "0.0.0+unknown"
