"""The one route table, as Consul's agent/http_register.go: every row is an
``Endpoint`` (method, path, handler, name, ACL rule) or, for a module that
still adds its own routes, a ``Legacy`` row whose ``register(router, ports)``
does so (those routes' rules are found in ``acl_rules.RULES`` by route name,
and ``build_router`` fails for a route without one).

A handler is a module-level ``async def handler(ports, request) -> Response``
typed against the ports of meshd/api/ports.py it uses; the name labels the
request's metrics and logs; a row with ``enabled`` exists only when that
says so for the agent's configuration (the web UI's, ``ui_config.enabled``).
No module is ``Legacy`` now; new modules from other branches may arrive as
``Legacy`` rows and be converted later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..acl import Permission as P
from ..acl import read_filters as rf
from ..http import App, Router
from ..metrics.recorder import Recorder
from . import (
    acl,
    acl_auth,
    agent,
    agent_checks,
    agent_host,
    canary,
    catalog,
    config_entries,
    connect_ca,
    coordinate,
    discovery_chain,
    dry_run,
    event,
    explain,
    health,
    intentions,
    kv,
    mesh_graph,
    monitor,
    operator,
    operator_autopilot,
    operator_usage,
    prometheus_sd,
    proxy_ejections,
    session,
    snapshot,
    status,
    topology,
    traces,
    txn,
    ui,
)
from .acl_rules import (
    FILTERED,
    HANDLER_CHECKS,
    LOGIN,
    PUBLIC,
    Rule,
    agent_check_by_id,
    agent_check_register,
    agent_health_by_id,
    agent_service_by_id,
    agent_service_read,
    agent_service_register,
    body_field,
    catalog_deregister,
    catalog_register,
    config_batch,
    config_entry,
    explain_check,
    intention_by_id,
    intention_exact,
    kv_delete,
    kv_get,
    need,
    own_node,
    param,
    proxy_ejections_read,
    proxy_ejections_write,
    query,
    session_create,
    session_write_by_id,
    txn_check,
)
from .common import error_mapping
from .router import (  # noqa: F401 (ESTABLISHMENT_WAIT: tests read it here)
    ESTABLISHMENT_WAIT,
    Endpoint,
    Legacy,
    WrappingRouter,
    record_request,
)

if TYPE_CHECKING:
    from .ports import AgentPorts

E = Endpoint
UI_FILES = Rule(public=True, ignores_token=True)  # the pages' API calls carry the token
ACL = HANDLER_CHECKS  # /v1/acl/* check acl:read / acl:write in the handler

ROUTES: list[Endpoint | Legacy] = [
    # acl (meshd/api/acl.py): tokens, policies, roles, templated policies
    E("PUT", "/v1/acl/bootstrap", acl.bootstrap, "acl.bootstrap", ACL),
    E("GET", "/v1/acl/token/self", acl.token_self, "acl.token.self", ACL),
    E("PUT", "/v1/acl/token", acl.token_create, "acl.token.create", ACL),
    E("GET", "/v1/acl/token/:id", acl.token_read, "acl.token.read", ACL),
    E("PUT", "/v1/acl/token/:id", acl.token_update, "acl.token.update", ACL),
    E("DELETE", "/v1/acl/token/:id", acl.token_delete, "acl.token.delete", ACL),
    E("PUT", "/v1/acl/token/:id/clone", acl.token_clone, "acl.token.clone", ACL),
    E("GET", "/v1/acl/tokens", acl.token_list, "acl.token.list", ACL),
    E("PUT", "/v1/acl/policy", acl.policy_create, "acl.policy.create", ACL),
    E("GET", "/v1/acl/policy/name/:name", acl.policy_by_name, "acl.policy.by_name", ACL),
    E("GET", "/v1/acl/policy/:id", acl.policy_read, "acl.policy.read", ACL),
    E("PUT", "/v1/acl/policy/:id", acl.policy_update, "acl.policy.update", ACL),
    E("DELETE", "/v1/acl/policy/:id", acl.policy_delete, "acl.policy.delete", ACL),
    E("GET", "/v1/acl/policies", acl.policy_list, "acl.policy.list", ACL),
    E("PUT", "/v1/acl/role", acl.role_create, "acl.role.create", ACL),
    E("GET", "/v1/acl/role/name/:name", acl.role_by_name, "acl.role.by_name", ACL),
    E("GET", "/v1/acl/role/:id", acl.role_read, "acl.role.read", ACL),
    E("PUT", "/v1/acl/role/:id", acl.role_update, "acl.role.update", ACL),
    E("DELETE", "/v1/acl/role/:id", acl.role_delete, "acl.role.delete", ACL),
    E("GET", "/v1/acl/roles", acl.role_list, "acl.role.list", ACL),
    E("GET", "/v1/acl/templated-policies", acl.templated_list, "acl.templated.list", ACL),
    E(
        "GET",
        "/v1/acl/templated-policy/name/*name",
        acl.templated_read,
        "acl.templated.read",
        ACL,
    ),
    E(
        "POST",
        "/v1/acl/templated-policy/preview/*name",
        acl.templated_preview,
        "acl.templated.preview",
        ACL,
    ),
    # acl (meshd/api/acl_auth.py): auth methods, binding rules, login
    E("PUT", "/v1/acl/auth-method", acl_auth.method_create, "acl.auth_method.create", ACL),
    E("GET", "/v1/acl/auth-method/:name", acl_auth.method_read, "acl.auth_method.read", ACL),
    E("PUT", "/v1/acl/auth-method/:name", acl_auth.method_update, "acl.auth_method.update", ACL),
    E(
        "DELETE",
        "/v1/acl/auth-method/:name",
        acl_auth.method_delete,
        "acl.auth_method.delete",
        ACL,
    ),
    E("GET", "/v1/acl/auth-methods", acl_auth.method_list, "acl.auth_method.list", ACL),
    E("PUT", "/v1/acl/binding-rule", acl_auth.rule_create, "acl.binding_rule.create", ACL),
    E("GET", "/v1/acl/binding-rule/:id", acl_auth.rule_read, "acl.binding_rule.read", ACL),
    E("PUT", "/v1/acl/binding-rule/:id", acl_auth.rule_update, "acl.binding_rule.update", ACL),
    E(
        "DELETE",
        "/v1/acl/binding-rule/:id",
        acl_auth.rule_delete,
        "acl.binding_rule.delete",
        ACL,
    ),
    E("GET", "/v1/acl/binding-rules", acl_auth.rule_list, "acl.binding_rule.list", ACL),
    E("POST", "/v1/acl/login", acl_auth.login, "acl.login", LOGIN),
    E("POST", "/v1/acl/logout", acl_auth.logout, "acl.logout", ACL),
    # catalog (meshd/api/catalog.py); reads are filtered by READ_FILTERS
    E(
        "PUT",
        "/v1/catalog/register",
        catalog.register,
        "catalog.register",
        Rule(check=catalog_register),
    ),
    E(
        "PUT",
        "/v1/catalog/deregister",
        catalog.deregister,
        "catalog.deregister",
        Rule(check=catalog_deregister),
    ),
    E("GET", "/v1/catalog/datacenters", catalog.datacenters, "catalog.datacenters", PUBLIC),
    E("GET", "/v1/catalog/nodes", catalog.nodes, "catalog.nodes", FILTERED),
    E("GET", "/v1/catalog/services", catalog.services, "catalog.services", FILTERED),
    E("GET", "/v1/catalog/service/*service", catalog.service, "catalog.service", FILTERED),
    E("GET", "/v1/catalog/connect/*service", catalog.connect, "catalog.connect", FILTERED),
    E("GET", "/v1/catalog/node/*node", catalog.node, "catalog.node", FILTERED),
    E(
        "GET",
        "/v1/catalog/node-services/*node",
        catalog.node_services,
        "catalog.node_services",
        FILTERED,
    ),
    # intentions (meshd/api/intentions.py)
    E("GET", "/v1/connect/intentions", intentions.list_all, "intentions.list", FILTERED),
    E(
        "POST",
        "/v1/connect/intentions",
        intentions.create,
        "intentions.create",
        need(P.INTENTION_WRITE, body_field("DestinationName")),
    ),
    E("GET", "/v1/connect/intentions/match", intentions.match, "intentions.match", FILTERED),
    E(
        "GET",
        "/v1/connect/intentions/check",
        intentions.check,
        "intentions.check",
        need(P.SERVICE_READ, query("destination")),
    ),
    E(
        "GET",
        "/v1/connect/intentions/exact",
        intentions.get_exact,
        "intentions.exact",
        Rule(check=intention_exact),
    ),
    E(
        "PUT",
        "/v1/connect/intentions/exact",
        intentions.put_exact,
        "intentions.exact",
        Rule(check=intention_exact),
    ),
    E(
        "DELETE",
        "/v1/connect/intentions/exact",
        intentions.delete_exact,
        "intentions.exact",
        Rule(check=intention_exact),
    ),
    E(
        "GET",
        "/v1/connect/intentions/:uuid",
        intentions.get_by_id,
        "intentions.id",
        Rule(check=intention_by_id),
    ),
    E(
        "PUT",
        "/v1/connect/intentions/:uuid",
        intentions.update_by_id,
        "intentions.id",
        Rule(check=intention_by_id),
    ),
    E(
        "DELETE",
        "/v1/connect/intentions/:uuid",
        intentions.delete_by_id,
        "intentions.id",
        Rule(check=intention_by_id),
    ),
    E(
        "POST",
        "/v1/agent/connect/authorize",
        intentions.authorize,
        "agent.connect.authorize",
        need(P.SERVICE_WRITE, body_field("Target")),
    ),
    # kv (meshd/api/kv.py)
    E("GET", "/v1/kv/*key", kv.get, "kv.get", Rule(check=kv_get)),
    E("PUT", "/v1/kv/*key", kv.put, "kv.put", need(P.KEY_WRITE, param("key"))),
    E("DELETE", "/v1/kv/*key", kv.delete, "kv.delete", Rule(check=kv_delete)),
    # session (meshd/api/session.py)
    E("PUT", "/v1/session/create", session.create, "session.create", Rule(check=session_create)),
    E(
        "PUT",
        "/v1/session/destroy/*uuid",
        session.destroy,
        "session.destroy",
        Rule(check=session_write_by_id),
    ),
    E(
        "PUT",
        "/v1/session/renew/*uuid",
        session.renew,
        "session.renew",
        Rule(check=session_write_by_id),
    ),
    E("GET", "/v1/session/info/*uuid", session.info, "session.info", FILTERED),
    E("GET", "/v1/session/node/*node", session.node, "session.node", FILTERED),
    E("GET", "/v1/session/list", session.list_all, "session.list", FILTERED),
    # health (meshd/api/health.py)
    E("GET", "/v1/health/ingress/*service", health.ingress, "health.ingress", FILTERED),
    E(
        "GET",
        "/v1/catalog/gateway-services/*gateway",
        health.gateway_services,
        "catalog.gateway_services",
        need(P.SERVICE_READ, param("gateway")),
    ),
    E("GET", "/v1/health/node/*node", health.node, "health.node", FILTERED),
    E("GET", "/v1/health/checks/*service", health.checks, "health.checks", FILTERED),
    E("GET", "/v1/health/service/*service", health.service, "health.service", FILTERED),
    E("GET", "/v1/health/connect/*service", health.connect, "health.connect", FILTERED),
    E("GET", "/v1/health/state/*state", health.state, "health.state", FILTERED),
    # status (meshd/api/status.py)
    E("GET", "/v1/status/leader", status.leader, "status.leader", PUBLIC),
    E("GET", "/v1/status/peers", status.peers, "status.peers", PUBLIC),
    # config_entries (meshd/api/config_entries.py)
    E("PUT", "/v1/config", config_entries.apply, "config.apply", Rule(check=config_entry)),
    E(
        "PUT",
        "/v1/internal/config/batch",
        config_entries.batch,
        "config.batch",
        Rule(check=config_batch),
    ),
    E("GET", "/v1/config/:kind", config_entries.list_kind, "config.list", FILTERED),
    E(
        "GET",
        "/v1/config/:kind/*name",
        config_entries.get_one,
        "config.get",
        Rule(check=config_entry),
    ),
    E(
        "DELETE",
        "/v1/config/:kind/*name",
        config_entries.delete,
        "config.delete",
        Rule(check=config_entry),
    ),
    # traces (meshd/api/traces.py)
    E(
        "PUT",
        "/v1/internal/traces/spans",
        traces.put_spans,
        "internal.traces.spans",
        Rule(handler_checks=True),
    ),
    E(
        "GET",
        "/v1/internal/traces/lint",
        traces.lint,
        "internal.traces.lint",
        Rule(handler_checks=True),
    ),
    E("GET", "/v1/internal/traces", traces.search, "internal.traces", Rule(handler_checks=True)),
    E(
        "GET",
        "/v1/internal/traces/:trace_id",
        traces.get_trace,
        "internal.traces.trace",
        Rule(handler_checks=True),
    ),
    # event (meshd/api/event.py)
    E("PUT", "/v1/event/fire/*name", event.fire, "event.fire", need(P.EVENT_WRITE, param("name"))),
    E(
        "GET",
        "/v1/event/list",
        event.list_events,
        "event.list",
        Rule(response_filter=rf.filter_events),
    ),
    # operator (meshd/api/operator.py)
    E(
        "GET",
        "/v1/operator/raft/configuration",
        operator.configuration,
        "operator.raft.configuration",
        need(P.OPERATOR_READ),
    ),
    E(
        "DELETE",
        "/v1/operator/raft/peer",
        operator.remove_peer,
        "operator.raft.peer",
        need(P.OPERATOR_WRITE),
    ),
    E(
        "POST",
        "/v1/operator/raft/transfer-leader",
        operator.transfer_leader,
        "operator.raft.transfer_leader",
        need(P.OPERATOR_WRITE),
    ),
    E(
        "GET",
        "/v1/operator/autopilot/health",
        operator.health,
        "operator.autopilot.health",
        need(P.OPERATOR_READ),
    ),
    E(
        "GET",
        "/v1/operator/autopilot/configuration",
        operator.autopilot_configuration,
        "operator.autopilot.configuration",
        need(P.OPERATOR_READ),
    ),
    # snapshot (meshd/api/snapshot.py)
    E("GET", "/v1/snapshot", snapshot.save, "snapshot.save", need(P.SNAPSHOT)),
    E("PUT", "/v1/snapshot", snapshot.restore, "snapshot.restore", need(P.SNAPSHOT)),
    # discovery_chain (meshd/api/discovery_chain.py)
    E(
        "GET",
        "/v1/discovery-chain/*service",
        discovery_chain.chain,
        "discovery_chain",
        need(P.SERVICE_READ, param("service")),
    ),
    E(
        "POST",
        "/v1/discovery-chain/*service",
        discovery_chain.chain,
        "discovery_chain",
        need(P.SERVICE_READ, param("service")),
    ),
    # topology (meshd/api/topology.py)
    E(
        "GET",
        "/v1/internal/ui/service-topology/*service",
        topology.topology,
        "internal.ui.service_topology",
        need(P.SERVICE_READ, param("service")),
    ),
    # connect_ca (meshd/api/connect_ca.py)
    E("GET", "/v1/connect/ca/roots", connect_ca.roots, "connect.ca.roots", PUBLIC),
    E("GET", "/v1/agent/connect/ca/roots", connect_ca.roots, "agent.connect.ca.roots", PUBLIC),
    E(
        "GET",
        "/v1/connect/ca/configuration",
        connect_ca.get_config,
        "connect.ca.config",
        need(P.OPERATOR_READ),
    ),
    E(
        "PUT",
        "/v1/connect/ca/configuration",
        connect_ca.set_config,
        "connect.ca.config.set",
        need(P.OPERATOR_WRITE),
    ),
    E(
        "GET",
        "/v1/agent/connect/ca/leaf/*service",
        connect_ca.leaf,
        "agent.connect.ca.leaf",
        need(P.SERVICE_WRITE, param("service")),
    ),
    # operator_usage (meshd/api/operator_usage.py)
    E("GET", "/v1/operator/usage", operator_usage.usage, "operator.usage", need(P.OPERATOR_READ)),
    E(
        "GET",
        "/v1/operator/keyring",
        operator_usage.keyring,
        "operator.keyring",
        need(P.KEYRING_READ),
    ),
    E(
        "POST",
        "/v1/operator/keyring",
        operator_usage.keyring,
        "operator.keyring",
        need(P.KEYRING_WRITE),
    ),
    E(
        "PUT",
        "/v1/operator/keyring",
        operator_usage.keyring,
        "operator.keyring",
        need(P.KEYRING_WRITE),
    ),
    E(
        "DELETE",
        "/v1/operator/keyring",
        operator_usage.keyring,
        "operator.keyring",
        need(P.KEYRING_WRITE),
    ),
    # operator_autopilot (meshd/api/operator_autopilot.py)
    E(
        "PUT",
        "/v1/operator/autopilot/configuration",
        operator_autopilot.set_configuration,
        "operator.autopilot.configuration",
        need(P.OPERATOR_WRITE),
    ),
    E(
        "GET",
        "/v1/operator/autopilot/state",
        operator_autopilot.state,
        "operator.autopilot.state",
        need(P.OPERATOR_READ),
    ),
    # prometheus_sd (meshd/api/prometheus_sd.py)
    E("GET", "/v1/prometheus/sd", prometheus_sd.sd, "prometheus.sd", FILTERED),
    # monitor (meshd/api/monitor.py)
    E("GET", "/v1/agent/monitor", monitor.monitor, "agent.monitor", need(P.AGENT_READ, own_node)),
    # coordinate (meshd/api/coordinate.py)
    E(
        "GET",
        "/v1/coordinate/datacenters",
        coordinate.datacenters,
        "coordinate.datacenters",
        PUBLIC,
    ),
    E(
        "GET",
        "/v1/coordinate/nodes",
        coordinate.nodes,
        "coordinate.nodes",
        Rule(response_filter=rf.filter_coordinates),
    ),
    E(
        "GET",
        "/v1/coordinate/node/*node",
        coordinate.node,
        "coordinate.node",
        need(P.NODE_READ, param("node")),
    ),
    E(
        "PUT",
        "/v1/coordinate/update",
        coordinate.update,
        "coordinate.update",
        need(P.NODE_WRITE, body_field("Node")),
    ),
    # txn (meshd/api/txn.py)
    E("PUT", "/v1/txn", txn.txn, "txn", Rule(check=txn_check)),
    # explain (meshd/api/explain.py)
    E("GET", explain.PATH, explain.answer, "internal.explain", Rule(check=explain_check)),
    E("POST", explain.PATH, explain.answer, "internal.explain", Rule(check=explain_check)),
    # proxy ejections (meshd/api/proxy_ejections.py)
    E(
        "GET",
        proxy_ejections.BASE,
        proxy_ejections.get_all,
        "agent.connect.proxy_ejections",
        Rule(response_filter=rf.filter_proxy_reports),
    ),
    E(
        "GET",
        f"{proxy_ejections.BASE}/*service_id",
        proxy_ejections.get_one,
        proxy_ejections.NAME_ONE,
        Rule(check=proxy_ejections_read),
    ),
    E(
        "PUT",
        f"{proxy_ejections.BASE}/*service_id",
        proxy_ejections.put,
        proxy_ejections.NAME_ONE,
        Rule(check=proxy_ejections_write),
    ),
    # agent (meshd/api/agent.py, agent_checks.py, agent_host.py)
    E("GET", "/v1/agent/self", agent.self_, "agent.self", need(P.AGENT_READ, own_node)),
    E(
        "GET",
        "/v1/agent/members",
        agent.members,
        "agent.members",
        Rule(response_filter=rf.filter_members),
    ),
    E(
        "GET",
        "/v1/agent/services",
        agent.services,
        "agent.services",
        Rule(response_filter=rf.filter_agent_services),
    ),
    E(
        "GET",
        "/v1/agent/service/*service_id",
        agent.service,
        "agent.service",
        Rule(check=agent_service_read),
    ),
    E(
        "PUT",
        "/v1/agent/service/register",
        agent.register_service,
        "agent.service.register",
        Rule(check=agent_service_register),
    ),
    E(
        "PUT",
        "/v1/agent/service/deregister/*service_id",
        agent.deregister_service,
        "agent.service.deregister",
        Rule(check=agent_service_by_id),
    ),
    E(
        "PUT",
        "/v1/agent/service/maintenance/*service_id",
        agent.service_maintenance,
        "agent.service.maintenance",
        Rule(check=agent_service_by_id),
    ),
    E(
        "PUT",
        "/v1/agent/maintenance",
        agent.node_maintenance,
        "agent.maintenance",
        need(P.NODE_WRITE, own_node),
    ),
    E("PUT", "/v1/agent/join/:address", agent.do_join, "agent.join", need(P.AGENT_WRITE, own_node)),
    E("PUT", "/v1/agent/leave", agent.do_leave, "agent.leave", need(P.AGENT_WRITE, own_node)),
    E(
        "PUT",
        "/v1/agent/force-leave/*node",
        agent.force_leave,
        "agent.force_leave",
        need(P.OPERATOR_WRITE),
    ),
    E("PUT", "/v1/agent/reload", agent.reload, "agent.reload", need(P.AGENT_WRITE, own_node)),
    E("PUT", "/v1/agent/token/:kind", agent.token, "agent.token", need(P.ACL_WRITE)),
    # agent_checks (meshd/api/agent_checks.py)
    E(
        "GET",
        "/v1/agent/checks",
        agent_checks.checks,
        "agent.checks",
        Rule(response_filter=rf.filter_agent_checks),
    ),
    E(
        "PUT",
        "/v1/agent/check/register",
        agent_checks.register_check,
        "agent.check.register",
        Rule(check=agent_check_register),
    ),
    E(
        "PUT",
        "/v1/agent/check/deregister/*check_id",
        agent_checks.deregister_check,
        "agent.check.deregister",
        Rule(check=agent_check_by_id),
    ),
    E(
        "PUT",
        "/v1/agent/check/pass/*check_id",
        agent_checks.ttl_pass,
        "agent.check.pass",
        Rule(check=agent_check_by_id),
    ),
    E(
        "PUT",
        "/v1/agent/check/warn/*check_id",
        agent_checks.ttl_warn,
        "agent.check.warn",
        Rule(check=agent_check_by_id),
    ),
    E(
        "PUT",
        "/v1/agent/check/fail/*check_id",
        agent_checks.ttl_fail,
        "agent.check.fail",
        Rule(check=agent_check_by_id),
    ),
    E(
        "PUT",
        "/v1/agent/check/update/*check_id",
        agent_checks.update,
        "agent.check.update",
        Rule(check=agent_check_by_id),
    ),
    # agent_host (meshd/api/agent_host.py)
    E(
        "GET",
        "/v1/agent/metrics",
        agent_host.metrics,
        "agent.metrics",
        need(P.AGENT_READ, own_node),
    ),
    E("GET", "/v1/agent/host", agent_host.host, "agent.host", need(P.OPERATOR_READ)),
    E(
        "GET",
        "/v1/agent/health/service/id/*service_id",
        agent_host.by_id,
        "agent.health.id",
        Rule(check=agent_health_by_id),
    ),
    E(
        "GET",
        "/v1/agent/health/service/name/*service_name",
        agent_host.by_name,
        "agent.health.name",
        need(P.SERVICE_READ, param("service_name")),
    ),
    # config write --dry-run (meshd/api/dry_run.py): it reveals traffic, so the
    # rights the write needs; samples are checked per service in the handlers
    E(
        "PUT",
        dry_run.SAMPLES_PATH,
        dry_run.put_samples,
        "internal.config.samples",
        Rule(handler_checks=True),
    ),
    E(
        "GET",
        dry_run.SAMPLES_PATH,
        dry_run.get_samples,
        "internal.config.samples",
        Rule(handler_checks=True),
    ),
    E(
        "POST",
        dry_run.DRY_RUN_PATH,
        dry_run.post_dry_run,
        "internal.config.dry_run",
        Rule(check=config_batch),
    ),
    # the mesh graph (meshd/api/mesh_graph.py): the handlers check each edge's services
    E(
        "PUT",
        mesh_graph.STATS_PATH,
        mesh_graph.put_stats,
        "internal.telemetry.proxy_stats",
        Rule(handler_checks=True),
    ),
    E(
        "GET",
        mesh_graph.STATS_PATH,
        mesh_graph.get_stats,
        "internal.telemetry.proxy_stats",
        Rule(handler_checks=True),
    ),
    E(
        "GET",
        mesh_graph.GRAPH_PATH,
        mesh_graph.graph,
        "internal.ui.mesh_graph",
        Rule(handler_checks=True),
    ),
    # canaries (meshd/api/canary.py): service rights on the canary's service
    E(
        "GET",
        "/v1/internal/canary",
        canary.list_all,
        "internal.canary.list",
        FILTERED,
    ),
    E(
        "GET",
        "/v1/internal/canary/:service",
        canary.get_one,
        "internal.canary.get",
        need(P.SERVICE_READ, param("service")),
    ),
    E(
        "POST",
        "/v1/internal/canary/:service",
        canary.post,
        "internal.canary.start",
        need(P.SERVICE_WRITE, param("service")),
    ),
    E(
        "PUT",
        "/v1/internal/canary/:service/pause",
        canary.pause,
        "internal.canary.pause",
        need(P.SERVICE_WRITE, param("service")),
    ),
    E(
        "PUT",
        "/v1/internal/canary/:service/resume",
        canary.resume,
        "internal.canary.resume",
        need(P.SERVICE_WRITE, param("service")),
    ),
    E(
        "PUT",
        "/v1/internal/canary/:service/abort",
        canary.abort,
        "internal.canary.abort",
        need(P.SERVICE_WRITE, param("service")),
    ),
    # the web UI (meshd/api/ui.py): rows only with ui_config.enabled; public files
    E("GET", "/", ui.redirect, "ui.index", UI_FILES, enabled=ui.enabled),
    E("GET", "/ui", ui.redirect, "ui.redirect", UI_FILES, enabled=ui.enabled),
    E("GET", "/ui/*path", ui.static, "ui.static", UI_FILES, enabled=ui.enabled),
]


def build_router(agent_: AgentPorts, metrics: Recorder | None = None) -> Router:
    """Every API route; with ``metrics``, handlers count blocking queries."""
    router = WrappingRouter(agent_, metrics)
    for row in ROUTES:
        if isinstance(row, Endpoint):
            if row.enabled is None or row.enabled(agent_):
                router.add_endpoint(row)
        else:
            row.register(router, agent_)
    return router


def build_app(agent_: AgentPorts) -> App:
    """The HTTP application of ``agent_``, recording into ``agent_.metrics``
    every request and the blocking queries in flight (the agent instruments
    its Raft node, RPC server and anti-entropy itself:
    ``meshd.agent.live_metrics.instrument``)."""
    metrics = agent_.metrics
    errors = error_mapping(agent_.no_leader_detail)
    app = App(build_router(agent_, metrics), errors=errors)
    app.body_limits.update(snapshot.BODY_LIMITS)
    app.after_response(record_request(metrics))
    return app
