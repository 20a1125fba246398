"""When a server is ready: its leader has finished establishing leadership.

Consul's leader runs ``establishLeadership`` (ACL initialisation with the
``initial_management`` token, CA initialisation, ...) before it serves as a
leader. meshd's leader does the same work in its housekeeping loops
(``ACLServer.initialize``, ``CAServer._initialize``), so between the election
and the end of that work a client holding the configured management token
would get ``ACL not found``. A server therefore reports no leader
(``/v1/status/leader``, systemd's ``READY=1``) until the replicated state
shows the work done, and API requests arriving in that window wait for it
(bounded) instead of failing.

The test is on the replicated state, so every server (not only the leader)
answers it the same way, and a restarted server whose state is already
initialised is ready as soon as it knows a leader.
"""

from __future__ import annotations

from typing import Any

from registry import queries as q

from ..config import AgentConfig
from .acl_server import ANONYMOUS_SECRET


def cluster_initialized(store: Any, config: AgentConfig) -> bool:
    """Whether ``store`` holds what the leader's establishment writes: with
    ACLs the anonymous token and the ``initial_management`` token (when
    configured), with Connect an active CA root."""
    if config.acl.enabled:
        if q.acl_token_by_secret(store, None, ANONYMOUS_SECRET)[1] is None:
            return False
        secret = config.acl.tokens.initial_management
        if secret and q.acl_token_by_secret(store, None, secret)[1] is None:
            return False
    if config.connect.enabled:
        _, roots = q.ca_roots_internal(store, None)
        if not any(r.active for r in roots.roots):
            return False
    return True
