"""The read API the HTTP layer calls: one import for every query.

Every function takes the ``StateStore`` (``fsm.store``) and a ``WatchSet``
(or None for a non-blocking read) first, and returns ``(index, result)``:
``index`` is the X-Consul-Index (the max modify index of what was read,
never 0) and ``result`` is a record, a list of records or a small result
dataclass; ``registry.shapes`` turns them into Consul JSON. For a blocking
query wrap the call in ``registry.blocking.wait_for_change``.

API-facing CA reads (``ca_roots``, ``ca_config``) never return private keys;
``*_internal`` variants are for the leader's CA code only.
"""

from __future__ import annotations

from .state.acl import (
    acl_policy_by_name,
    acl_policy_get,
    acl_policy_list,
    acl_role_by_name,
    acl_role_get,
    acl_role_list,
    acl_token_by_secret,
    acl_token_get,
    acl_token_list,
)
from .state.ca import ca_config, ca_config_internal, ca_roots, ca_roots_internal
from .state.canaries import canary_get, canary_list
from .state.catalog import (
    catalog_connect_service_nodes,
    catalog_node,
    catalog_nodes,
    catalog_service_nodes,
    catalog_services,
)
from .state.config_entries import config_entry_get, config_entry_list
from .state.health import (
    aggregated_status,
    health_checks_in_state,
    health_connect_service_nodes,
    health_node_checks,
    health_service_checks,
    health_service_nodes,
)
from .state.intentions import (
    intention_check,
    intention_exact,
    intention_get,
    intention_list,
    intention_match,
)
from .state.kv import kv_get, kv_keys, kv_list
from .state.liveness import liveness_get, liveness_list
from .state.sessions import session_info, session_list, session_node
from .state.txn import txn_read

__all__ = [
    "acl_policy_by_name",
    "acl_policy_get",
    "acl_policy_list",
    "acl_role_by_name",
    "acl_role_get",
    "acl_role_list",
    "acl_token_by_secret",
    "acl_token_get",
    "acl_token_list",
    "aggregated_status",
    "ca_config",
    "ca_config_internal",
    "ca_roots",
    "ca_roots_internal",
    "canary_get",
    "canary_list",
    "catalog_connect_service_nodes",
    "catalog_node",
    "catalog_nodes",
    "catalog_service_nodes",
    "catalog_services",
    "config_entry_get",
    "config_entry_list",
    "health_checks_in_state",
    "health_connect_service_nodes",
    "health_node_checks",
    "health_service_checks",
    "health_service_nodes",
    "intention_check",
    "intention_exact",
    "intention_get",
    "intention_list",
    "intention_match",
    "kv_get",
    "kv_keys",
    "kv_list",
    "liveness_get",
    "liveness_list",
    "session_info",
    "session_list",
    "session_node",
    "txn_read",
]
