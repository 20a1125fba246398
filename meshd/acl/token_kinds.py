"""The kinds of an agent's own ACL tokens, as ``PUT /v1/agent/token/:kind``
names them (Consul's agent token kinds), shared by the API's handler and the
agent's token store (meshd.agent.tokens).
"""

from __future__ import annotations

# URL kind -> stored kind. Legacy names (Consul < 1.11) are aliases.
KINDS = {
    "default": "default",
    "acl_token": "default",
    "agent": "agent",
    "acl_agent_token": "agent",
    "agent_recovery": "agent_recovery",
    "agent_master": "agent_recovery",
    "acl_agent_master_token": "agent_recovery",
    "replication": "replication",
    "acl_replication_token": "replication",
    "config_file_service_registration": "config_file_service_registration",
    "dns": "dns",
}
