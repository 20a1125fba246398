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
# Node meta a server registers its own node with when it can apply a
# ForwardedBatch (Raft command type 90, issue 18): its member tags then show
# "fb": "1". The leader builds batch entries only when every voter has it
# (an older server stops on an entry it cannot apply: rolling upgrades), so
# no configuration may set it.
BATCH_META = "meshd-fb"


def meshd_version() -> str:
    try:
        return dist_version("meshd")
    except PackageNotFoundError:
        return "0.0.0+unknown"
