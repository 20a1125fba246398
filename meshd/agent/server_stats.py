"""The ``consul`` and ``raft`` sections of /v1/agent/self's ``Stats``: what
this agent knows of the servers and, on a server, of its Raft node (Consul's
agent/consul/server.go ``Stats``). Every value is a string, as in Consul."""

from __future__ import annotations

from ..config import AgentConfig
from ..version import RAFT_PROTOCOL
from .pool import ServerPool
from .server import MeshServer


def consul_stats(
    config: AgentConfig, server: MeshServer | None, pool: ServerPool | None
) -> dict[str, str]:
    out = {
        "acl": "enabled" if config.acl.enabled else "disabled",
        "server": str(server is not None).lower(),
        "known_servers": str(len(pool.servers()) if pool else 0),
    }
    if server is not None:
        out.update(
            {
                "bootstrap": str(config.bootstrap).lower(),
                "known_datacenters": "1",
                "leader": str(server.is_leader()).lower(),
                "leader_addr": server.leader_address() or "",
            }
        )
    return out


def raft_stats(server: MeshServer) -> dict[str, str]:
    st = server.node.status()
    core = st.core
    contact = st.last_contact
    return {
        "applied_index": str(st.applied),
        "commit_index": str(core.commit),
        "fsm_pending": str(max(core.commit - st.applied, 0)),
        "last_contact": "never" if contact is None else f"{contact * 1000:.0f}ms",
        "last_log_index": str(core.last_index),
        "last_snapshot_index": str(st.snapshot_index),
        "num_peers": str(max(len(core.configuration.voters()) - 1, 0)),
        "protocol_version": str(RAFT_PROTOCOL),
        "state": core.role.value.capitalize(),
        "term": str(core.term),
        "latest_configuration": str(
            [{"ID": s.id, "Address": s.address} for s in core.configuration.servers]
        ),
    }
