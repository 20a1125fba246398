"""Every HTTP endpoint under ACLs, from one table.

For each route (name and method) of the agent's route table there is a row:
the request, and the rules a token needs for it. The test calls it with no
token, with a token lacking the permission and with a token holding exactly
those rules, and expects 403 / filtered / allowed (or, for endpoints Consul
serves to anyone, allowed every time). A route without a row fails
``test_every_route_has_a_row``; a route without an ACL rule cannot even be
added to the router (``acl_rules.rule_for``).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import rsa
from trio.testing import MockClock

from meshd.acl import GLOBAL_MANAGEMENT_POLICY_ID
from meshd.acl.builtin import GLOBAL_MANAGEMENT_RULES
from meshd.acl.errors import ACLPermissionDenied
from meshd.agent.agent import Agent
from meshd.api.routes import build_router
from meshd.rpc import caller_token
from raft.transport import PeerInfo
from registry.commands import ACLPolicySet, ACLTokenSet, KVRequest, encode_command
from registry.records import ACLLink, ACLPolicy, ACLToken
from tests.meshd.harness import APIClient, dev_agent
from tests.meshd.inproc import InprocClient, inproc_agent
from tests.meshd.jwt_support import pem_public

NODE = "dev-node"
FILTERED = "X-Consul-Results-Filtered-By-ACLs".lower()


@dataclass(frozen=True)
class Row:
    path: str
    rules: str = ""  # exactly what the endpoint needs ("" for public)
    body: Any = None
    kind: str = "checked"  # checked | filtered | public | handler
    marker: str = ""  # filtered: what the exact token must see in the answer
    refusal: str = ""  # public: a 403 not about permissions (a regex: bootstrap done, no token)


def svc(name: str, policy: str = "read") -> str:
    return f'service "{name}" {{ policy = "{policy}" }}\n'


def node(name: str = NODE, policy: str = "read") -> str:
    return f'node "{name}" {{ policy = "{policy}" }}\n'


def intentions(dest: str, access: str) -> str:
    return f'service "{dest}" {{ policy = "deny" intentions = "{access}" }}\n'


JWT_METHOD = {
    "Type": "jwt",
    "Config": {
        "JWTValidationPubKeys": [
            pem_public(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        ]
    },
}
BINDING = {"AuthMethod": "seedmeth", "BindType": "service", "BindName": "web"}


def _trace_span(trace: str, service: str, peer: str, start: int) -> dict[str, Any]:
    return {
        "TraceID": trace * 32,
        "SpanID": trace * 16,
        "Name": "GET /",
        "Kind": "CLIENT",
        "Service": service,
        "StartNs": start,
        "EndNs": start + 100,
        "Attributes": {"peer.service": peer},
    }


# edge -> web traced (trace 1) while web starts trace 2: web drops the headers.
SAMPLE_SEED = {"Source": "web", "Destination": "api", "Method": "GET", "Path": "/"}
TRACE_SEED = [_trace_span("1", "edge", "web", 1000), _trace_span("2", "web", "api", 1050)]
STATS_SEED = {
    "ID": "seed-proxy",
    "StartedAt": 0,
    "Time": 0,
    "Edges": [{"Reporter": "source", "Source": "web", "Destination": "api", "Requests": 1}],
}

ROWS: dict[tuple[str, str], Row] = {
    ("agent.self", "GET"): Row("/v1/agent/self", f'agent "{NODE}" {{ policy = "read" }}'),
    ("agent.members", "GET"): Row("/v1/agent/members", node(), kind="filtered"),
    ("agent.host", "GET"): Row("/v1/agent/host", 'operator = "read"'),
    ("agent.metrics", "GET"): Row("/v1/agent/metrics", f'agent "{NODE}" {{ policy = "read" }}'),
    ("agent.join", "PUT"): Row(
        "/v1/agent/join/127.0.0.1:1", f'agent "{NODE}" {{ policy = "write" }}'
    ),
    ("agent.leave", "PUT"): Row("/v1/agent/leave", f'agent "{NODE}" {{ policy = "write" }}'),
    ("agent.force_leave", "PUT"): Row("/v1/agent/force-leave/nobody", 'operator = "write"'),
    ("agent.reload", "PUT"): Row("/v1/agent/reload", f'agent "{NODE}" {{ policy = "write" }}'),
    ("agent.token", "PUT"): Row("/v1/agent/token/replication", 'acl = "write"', {"Token": ""}),
    ("agent.maintenance", "PUT"): Row("/v1/agent/maintenance?enable=false", node(policy="write")),
    ("agent.services", "GET"): Row("/v1/agent/services", svc("web"), kind="filtered"),
    ("agent.service", "GET"): Row("/v1/agent/service/web", svc("web")),
    ("agent.service.register", "PUT"): Row(
        "/v1/agent/service/register", svc("web2", "write"), {"Name": "web2", "Port": 1}
    ),
    ("agent.service.deregister", "PUT"): Row(
        "/v1/agent/service/deregister/temp", svc("temp", "write")
    ),
    ("agent.service.maintenance", "PUT"): Row(
        "/v1/agent/service/maintenance/web?enable=false", svc("web", "write")
    ),
    ("agent.checks", "GET"): Row("/v1/agent/checks", svc("web") + node(), kind="filtered"),
    ("agent.check.register", "PUT"): Row(
        "/v1/agent/check/register", node(policy="write"), {"Name": "c1", "TTL": "10s"}
    ),
    ("agent.check.deregister", "PUT"): Row(
        "/v1/agent/check/deregister/c-temp", node(policy="write")
    ),
    ("agent.check.pass", "PUT"): Row("/v1/agent/check/pass/web-ttl", svc("web", "write")),
    ("agent.check.warn", "PUT"): Row("/v1/agent/check/warn/web-ttl", svc("web", "write")),
    ("agent.check.fail", "PUT"): Row("/v1/agent/check/fail/web-ttl", svc("web", "write")),
    ("agent.check.update", "PUT"): Row(
        "/v1/agent/check/update/web-ttl", svc("web", "write"), {"Status": "passing"}
    ),
    ("agent.connect.authorize", "POST"): Row(
        "/v1/agent/connect/authorize",
        svc("api", "write"),
        {"Target": "api", "ClientCertURI": "spiffe://x.consul/ns/default/dc/dc1/svc/web"},
    ),
    ("agent.connect.ca.leaf", "GET"): Row("/v1/agent/connect/ca/leaf/web", svc("web", "write")),
    ("agent.connect.ca.roots", "GET"): Row("/v1/agent/connect/ca/roots", kind="public"),
    ("agent.connect.proxy_ejections", "GET"): Row(
        "/v1/agent/connect/proxy-ejections", svc("web"), kind="filtered"
    ),
    ("agent.connect.proxy_ejections.one", "GET"): Row(
        "/v1/agent/connect/proxy-ejections/web-sidecar-proxy", svc("web")
    ),
    ("agent.connect.proxy_ejections.one", "PUT"): Row(
        "/v1/agent/connect/proxy-ejections/web-sidecar-proxy",
        svc("web", "write"),
        {"Upstreams": []},
    ),
    ("catalog.register", "PUT"): Row(
        "/v1/catalog/register", node("ext", "write"), {"Node": "ext", "Address": "10.0.0.1"}
    ),
    ("catalog.deregister", "PUT"): Row(
        "/v1/catalog/deregister", node("ext", "write"), {"Node": "ext"}
    ),
    ("catalog.datacenters", "GET"): Row("/v1/catalog/datacenters", kind="public"),
    ("catalog.nodes", "GET"): Row("/v1/catalog/nodes", node(), kind="filtered"),
    ("catalog.services", "GET"): Row("/v1/catalog/services", svc("web"), kind="filtered"),
    ("catalog.service", "GET"): Row(
        "/v1/catalog/service/web", svc("web") + node(), kind="filtered"
    ),
    ("catalog.connect", "GET"): Row(
        "/v1/catalog/connect/web", svc("web-sidecar-proxy") + node(), kind="filtered"
    ),
    ("catalog.node", "GET"): Row(f"/v1/catalog/node/{NODE}", node(), kind="filtered"),
    ("catalog.node_services", "GET"): Row(
        f"/v1/catalog/node-services/{NODE}", node(), kind="filtered"
    ),
    ("health.node", "GET"): Row(f"/v1/health/node/{NODE}", node(), kind="filtered"),
    ("health.checks", "GET"): Row("/v1/health/checks/web", svc("web") + node(), kind="filtered"),
    ("health.service", "GET"): Row("/v1/health/service/web", svc("web") + node(), kind="filtered"),
    ("health.connect", "GET"): Row(
        "/v1/health/connect/web", svc("web-sidecar-proxy") + node(), kind="filtered"
    ),
    ("health.state", "GET"): Row(
        "/v1/health/state/any",
        'service_prefix "" { policy = "read" }\n' + node(),
        kind="filtered",
    ),
    ("connect.ca.roots", "GET"): Row("/v1/connect/ca/roots", kind="public"),
    ("connect.ca.config", "GET"): Row("/v1/connect/ca/configuration", 'operator = "read"'),
    ("connect.ca.config.set", "PUT"): Row(
        "/v1/connect/ca/configuration", 'operator = "write"', {"Config": {"LeafCertTTL": "72h"}}
    ),
    ("intentions.list", "GET"): Row(
        "/v1/connect/intentions", intentions("api", "read"), kind="filtered"
    ),
    ("intentions.match", "GET"): Row(
        "/v1/connect/intentions/match?by=destination&name=api",
        intentions("api", "read"),
        kind="filtered",
    ),
    ("intentions.check", "GET"): Row(
        "/v1/connect/intentions/check?source=web&destination=api", svc("api")
    ),
    ("intentions.create", "POST"): Row(
        "/v1/connect/intentions",
        intentions("db", "write"),
        {"SourceName": "x", "DestinationName": "db", "Action": "allow"},
    ),
    ("intentions.exact", "GET"): Row(
        "/v1/connect/intentions/exact?source=web&destination=api", intentions("api", "read")
    ),
    ("intentions.exact", "PUT"): Row(
        "/v1/connect/intentions/exact?source=y&destination=db",
        intentions("db", "write"),
        {"Action": "deny"},
    ),
    ("intentions.exact", "DELETE"): Row(
        "/v1/connect/intentions/exact?source=y&destination=db", intentions("db", "write")
    ),
    ("intentions.id", "GET"): Row("/v1/connect/intentions/{web_api}", intentions("api", "read")),
    ("intentions.id", "PUT"): Row(
        "/v1/connect/intentions/{web_api}",
        intentions("api", "write"),
        {"SourceName": "web", "DestinationName": "api", "Action": "allow"},
    ),
    ("intentions.id", "DELETE"): Row("/v1/connect/intentions/{z_db}", intentions("db", "write")),
    ("coordinate.datacenters", "GET"): Row("/v1/coordinate/datacenters", kind="public"),
    ("coordinate.nodes", "GET"): Row("/v1/coordinate/nodes", node(), kind="filtered", marker="["),
    ("coordinate.node", "GET"): Row(f"/v1/coordinate/node/{NODE}", node()),
    ("event.fire", "PUT"): Row("/v1/event/fire/deploy", 'event "deploy" { policy = "write" }'),
    ("event.list", "GET"): Row(
        "/v1/event/list", 'event "deploy" { policy = "read" }', kind="filtered"
    ),
    ("kv.get", "GET"): Row("/v1/kv/app/config", 'key "app/config" { policy = "read" }'),
    ("kv.put", "PUT"): Row("/v1/kv/app/other", 'key "app/other" { policy = "write" }', "v"),
    ("kv.delete", "DELETE"): Row("/v1/kv/app/other", 'key "app/other" { policy = "write" }'),
    ("session.create", "PUT"): Row(
        "/v1/session/create", f'session "{NODE}" {{ policy = "write" }}', {}
    ),
    ("session.destroy", "PUT"): Row(
        "/v1/session/destroy/{session_b}", f'session "{NODE}" {{ policy = "write" }}'
    ),
    ("session.renew", "PUT"): Row(
        "/v1/session/renew/{session_a}", f'session "{NODE}" {{ policy = "write" }}'
    ),
    ("session.info", "GET"): Row(
        "/v1/session/info/{session_a}", f'session "{NODE}" {{ policy = "read" }}', kind="filtered"
    ),
    ("session.node", "GET"): Row(
        f"/v1/session/node/{NODE}", f'session "{NODE}" {{ policy = "read" }}', kind="filtered"
    ),
    ("session.list", "GET"): Row(
        "/v1/session/list", f'session "{NODE}" {{ policy = "read" }}', kind="filtered"
    ),
    ("txn", "PUT"): Row(
        "/v1/txn",
        'key "app/config" { policy = "read" }',
        [{"KV": {"Verb": "get", "Key": "app/config"}}],
    ),
    ("operator.autopilot.configuration", "GET"): Row(
        "/v1/operator/autopilot/configuration", 'operator = "read"'
    ),
    ("operator.autopilot.health", "GET"): Row("/v1/operator/autopilot/health", 'operator = "read"'),
    ("operator.autopilot.configuration", "PUT"): Row(
        "/v1/operator/autopilot/configuration", 'operator = "write"', {}
    ),
    ("operator.autopilot.state", "GET"): Row("/v1/operator/autopilot/state", 'operator = "read"'),
    # An unknown level answers 400 once the token passes, so the stream never starts.
    ("agent.monitor", "GET"): Row(
        "/v1/agent/monitor?loglevel=nope", f'agent "{NODE}" {{ policy = "read" }}'
    ),
    ("operator.raft.configuration", "GET"): Row(
        "/v1/operator/raft/configuration", 'operator = "read"'
    ),
    ("operator.raft.peer", "DELETE"): Row("/v1/operator/raft/peer?id=nobody", 'operator = "write"'),
    ("operator.raft.transfer_leader", "POST"): Row(
        "/v1/operator/raft/transfer-leader?id=nobody", 'operator = "write"'
    ),
    ("snapshot.save", "GET"): Row("/v1/snapshot", 'acl = "write"'),
    ("snapshot.restore", "PUT"): Row("/v1/snapshot", 'acl = "write"', "not an archive"),
    ("status.leader", "GET"): Row("/v1/status/leader", kind="public"),
    ("status.peers", "GET"): Row("/v1/status/peers", kind="public"),
    # config entries: service rights on the entry's name for service kinds
    ("config.apply", "PUT"): Row(
        "/v1/config", svc("web", "write"), {"Kind": "service-defaults", "Name": "web"}
    ),
    ("config.list", "GET"): Row("/v1/config/service-defaults", svc("web"), kind="filtered"),
    ("config.get", "GET"): Row("/v1/config/service-defaults/web", svc("web")),
    ("config.delete", "DELETE"): Row("/v1/config/service-defaults/gone", svc("gone", "write")),
    ("config.batch", "PUT"): Row(
        "/v1/internal/config/batch",
        svc("api", "write") + svc("db", "write"),
        [{"Kind": "service-defaults", "Name": "api"}, {"Kind": "service-resolver", "Name": "db"}],
    ),
    ("catalog.gateway_services", "GET"): Row("/v1/catalog/gateway-services/igw", svc("igw")),
    ("health.ingress", "GET"): Row("/v1/health/ingress/web", svc("igw") + node(), kind="filtered"),
    ("operator.usage", "GET"): Row("/v1/operator/usage", 'operator = "read"'),
    ("operator.keyring", "GET"): Row("/v1/operator/keyring", 'keyring = "read"'),
    ("operator.keyring", "POST"): Row("/v1/operator/keyring", 'keyring = "write"', {"Key": "k"}),
    ("operator.keyring", "PUT"): Row("/v1/operator/keyring", 'keyring = "write"', {"Key": "k"}),
    ("operator.keyring", "DELETE"): Row("/v1/operator/keyring", 'keyring = "write"', {"Key": "k"}),
    ("coordinate.update", "PUT"): Row(
        "/v1/coordinate/update",
        node(policy="write"),
        {"Node": NODE, "Coord": {"Vec": [0.0] * 8, "Error": 1.5, "Adjustment": 0, "Height": 0}},
    ),
    ("agent.health.id", "GET"): Row("/v1/agent/health/service/id/web", svc("web")),
    ("agent.health.name", "GET"): Row("/v1/agent/health/service/name/web", svc("web")),
    # the web UI's files: public, as in Consul (the pages' API calls carry the token)
    ("ui.index", "GET"): Row("/", kind="public"),
    ("ui.redirect", "GET"): Row("/ui", kind="public"),
    ("ui.static", "GET"): Row("/ui/app.js", kind="public"),
    # /v1/acl: acl:read to read, acl:write to write; bootstrap and token/self
    # need no permission (a valid token for self).
    ("acl.bootstrap", "PUT"): Row(
        "/v1/acl/bootstrap", kind="public", refusal="ACL bootstrap no longer allowed"
    ),
    ("acl.token.self", "GET"): Row("/v1/acl/token/self", kind="public", refusal="ACL not found"),
    ("acl.token.list", "GET"): Row("/v1/acl/tokens", 'acl = "read"'),
    ("acl.token.read", "GET"): Row("/v1/acl/token/{seed_token}", 'acl = "read"'),
    ("acl.token.create", "PUT"): Row("/v1/acl/token", 'acl = "write"', {"Description": "t"}),
    ("acl.token.update", "PUT"): Row(
        "/v1/acl/token/{seed_token}", 'acl = "write"', {"Description": "updated"}
    ),
    ("acl.token.clone", "PUT"): Row("/v1/acl/token/{seed_token}/clone", 'acl = "write"', {}),
    ("acl.token.delete", "DELETE"): Row("/v1/acl/token/{del_token}", 'acl = "write"'),
    ("acl.policy.list", "GET"): Row("/v1/acl/policies", 'acl = "read"'),
    ("acl.policy.read", "GET"): Row("/v1/acl/policy/{seed_policy}", 'acl = "read"'),
    ("acl.policy.by_name", "GET"): Row("/v1/acl/policy/name/seedpol", 'acl = "read"'),
    ("acl.policy.create", "PUT"): Row(
        "/v1/acl/policy", 'acl = "write"', {"Name": "newpol", "Rules": 'operator = "read"'}
    ),
    ("acl.policy.update", "PUT"): Row(
        "/v1/acl/policy/{seed_policy}",
        'acl = "write"',
        {"Name": "seedpol", "Rules": 'operator = "read"'},
    ),
    ("acl.policy.delete", "DELETE"): Row("/v1/acl/policy/{del_policy}", 'acl = "write"'),
    ("acl.role.list", "GET"): Row("/v1/acl/roles", 'acl = "read"'),
    ("acl.role.read", "GET"): Row("/v1/acl/role/{seed_role}", 'acl = "read"'),
    ("acl.role.by_name", "GET"): Row("/v1/acl/role/name/seedrole", 'acl = "read"'),
    ("acl.role.create", "PUT"): Row(
        "/v1/acl/role", 'acl = "write"', {"Name": "newrole", "Description": "r"}
    ),
    ("acl.role.update", "PUT"): Row(
        "/v1/acl/role/{seed_role}", 'acl = "write"', {"Name": "seedrole", "Description": "u"}
    ),
    ("acl.role.delete", "DELETE"): Row("/v1/acl/role/{del_role}", 'acl = "write"'),
    ("acl.templated.list", "GET"): Row("/v1/acl/templated-policies", 'acl = "read"'),
    ("acl.templated.read", "GET"): Row(
        "/v1/acl/templated-policy/name/builtin/service", 'acl = "read"'
    ),
    ("acl.templated.preview", "POST"): Row(
        "/v1/acl/templated-policy/preview/builtin/service",
        'acl = "read"',
        {"Name": "web"},
    ),
    ("acl.auth_method.list", "GET"): Row("/v1/acl/auth-methods", 'acl = "read"'),
    ("acl.auth_method.read", "GET"): Row("/v1/acl/auth-method/seedmeth", 'acl = "read"'),
    ("acl.auth_method.create", "PUT"): Row(
        "/v1/acl/auth-method", 'acl = "write"', {**JWT_METHOD, "Name": "newmeth"}
    ),
    ("acl.auth_method.update", "PUT"): Row(
        "/v1/acl/auth-method/seedmeth", 'acl = "write"', {**JWT_METHOD, "Description": "u"}
    ),
    ("acl.auth_method.delete", "DELETE"): Row("/v1/acl/auth-method/delmeth", 'acl = "write"'),
    # Consul's DiscoveryChain.Get: service:read on the chain's service
    ("discovery_chain", "GET"): Row("/v1/discovery-chain/web", svc("web")),
    ("discovery_chain", "POST"): Row("/v1/discovery-chain/web", svc("web"), {}),
    ("acl.binding_rule.list", "GET"): Row("/v1/acl/binding-rules", 'acl = "read"'),
    ("acl.binding_rule.read", "GET"): Row("/v1/acl/binding-rule/{seed_rule}", 'acl = "read"'),
    ("acl.binding_rule.create", "PUT"): Row("/v1/acl/binding-rule", 'acl = "write"', BINDING),
    ("acl.binding_rule.update", "PUT"): Row(
        "/v1/acl/binding-rule/{seed_rule}", 'acl = "write"', BINDING
    ),
    ("acl.binding_rule.delete", "DELETE"): Row("/v1/acl/binding-rule/{del_rule}", 'acl = "write"'),
    # Login needs no token (the JWT is the credential); logout acts on the
    # request's own token: "ACL not found" without one, "Permission denied"
    # for a token no login created (Consul's ACL.Logout).
    ("acl.login", "POST"): Row(
        "/v1/acl/login",
        kind="public",
        body={"AuthMethod": "seedmeth", "BearerToken": "x"},
        refusal="failed to validate the token",
    ),
    ("acl.logout", "POST"): Row(
        "/v1/acl/logout", kind="public", refusal="ACL not found|Permission denied"
    ),
    # observability (prom-sd)
    ("prometheus.sd", "GET"): Row("/v1/prometheus/sd", svc("web") + node(), kind="filtered"),
    ("internal.ui.service_topology", "GET"): Row(
        "/v1/internal/ui/service-topology/web?kind=", svc("web")
    ),
    # tracing (obs-tracing): seeded with TRACE_SEED
    ("internal.traces.spans", "PUT"): Row(
        "/v1/internal/traces/spans", svc("web", "write"), {"Spans": [TRACE_SEED[1]]}
    ),
    ("internal.traces", "GET"): Row("/v1/internal/traces", svc("web"), kind="filtered"),
    ("internal.traces.lint", "GET"): Row("/v1/internal/traces/lint", svc("web"), kind="filtered"),
    ("internal.traces.trace", "GET"): Row("/v1/internal/traces/" + "2" * 32, svc("web")),
    # the mesh graph: seeded with STATS_SEED (one web -> api edge)
    ("internal.telemetry.proxy_stats", "PUT"): Row(
        "/v1/internal/telemetry/proxy-stats", svc("web", "write"), STATS_SEED
    ),
    ("internal.telemetry.proxy_stats", "GET"): Row(
        "/v1/internal/telemetry/proxy-stats", svc("web") + svc("api"), kind="filtered"
    ),
    ("internal.ui.mesh_graph", "GET"): Row(
        "/v1/internal/ui/mesh-graph", svc("web"), kind="filtered"
    ),
    ("internal.explain", "GET"): Row(
        "/v1/internal/explain?source=web&destination=temp", svc("web") + svc("temp")
    ),
    ("internal.explain", "POST"): Row(
        "/v1/internal/explain", svc("web") + svc("temp"), {"Source": "web", "Destination": "temp"}
    ),
    # canaries (issue 19): seeded with a running canary of "cany"
    ("internal.canary.list", "GET"): Row("/v1/internal/canary", svc("cany"), kind="filtered"),
    ("internal.canary.get", "GET"): Row("/v1/internal/canary/cany", svc("cany")),
    ("internal.canary.start", "POST"): Row(
        "/v1/internal/canary/cany", svc("cany", "write"), {"To": "v2"}
    ),
    ("internal.canary.pause", "PUT"): Row("/v1/internal/canary/cany/pause", svc("cany", "write")),
    ("internal.canary.resume", "PUT"): Row("/v1/internal/canary/cany/resume", svc("cany", "write")),
    ("internal.canary.abort", "PUT"): Row("/v1/internal/canary/cany/abort", svc("cany", "write")),
    ("internal.config.dry_run", "POST"): Row(
        "/v1/internal/config/dry-run",
        svc("api", "write"),
        [{"Kind": "service-defaults", "Name": "api"}],
    ),
    ("internal.config.samples", "PUT"): Row(
        "/v1/internal/config/samples", svc("web", "write"), {"Samples": [SAMPLE_SEED]}
    ),
    ("internal.config.samples", "GET"): Row(
        "/v1/internal/config/samples", svc("web") + svc("api"), kind="filtered"
    ),
}

# Run last: leaving stops the agent.
LAST = ("agent.leave", "PUT")


def route_keys(agent: Agent) -> set[tuple[str, str]]:
    router = build_router(agent)
    keys = set()
    for route in router._routes:
        for method in route.methods:
            if method != "HEAD":
                keys.add((route.name, method))
    return keys


class World:
    def __init__(self, agent: Agent, api: APIClient | InprocClient) -> None:
        self.agent, self.api = agent, api
        self.ids: dict[str, str] = {}

    async def token_with(self, rules: str, name: str) -> str:
        pid, secret = str(uuid.uuid4()), str(uuid.uuid4())
        policy = ACLPolicy(id=pid, name=name, rules=rules)
        assert (await self.agent.write(ACLPolicySet(policies=(policy,)))).ok
        token = ACLToken(
            accessor_id=str(uuid.uuid4()), secret_id=secret, policies=(ACLLink(pid, name),)
        )
        assert (await self.agent.write(ACLTokenSet(tokens=(token,)))).ok
        return secret

    async def call(self, row: Row, method: str, token: str) -> Any:
        headers = {"X-Consul-Token": token} if token else {}
        path = row.path.format(**self.ids)
        if isinstance(row.body, str):
            return await self.api.request(method, path, raw=row.body.encode(), headers=headers)
        return await self.api.request(method, path, row.body, headers=headers)


@asynccontextmanager
async def world(tmp_path: Path, *, e2e: bool = False) -> AsyncIterator[World]:
    """The seeded ACL agent: in-process (under ``autojump_clock``), or on
    real sockets (HTTP and DNS) with ``e2e``."""
    cfg = tmp_path / "acl.json"
    cfg.write_text(json.dumps({"acl": {"enabled": True, "default_policy": "deny"}}))
    agents = (
        dev_agent(files=[str(cfg)], node=NODE) if e2e else inproc_agent(files=[str(cfg)], node=NODE)
    )
    async with agents as (agent, api):
        w = World(agent, api)
        mgmt = ACLPolicy(
            id=GLOBAL_MANAGEMENT_POLICY_ID, name="global-management", rules=GLOBAL_MANAGEMENT_RULES
        )
        assert (await agent.write(ACLPolicySet(policies=(mgmt,)))).ok
        secret = str(uuid.uuid4())
        root = ACLToken(
            accessor_id=str(uuid.uuid4()),
            secret_id=secret,
            policies=(ACLLink(GLOBAL_MANAGEMENT_POLICY_ID, "global-management"),),
        )
        assert (await agent.write(ACLTokenSet(tokens=(root,)))).ok
        if isinstance(api, APIClient):
            await seed(w, APIClient(api.host, api.port, token=secret))
        else:
            await seed(w, InprocClient(api.app, token=secret))
        yield w


async def seed(w: World, admin: APIClient | InprocClient) -> None:
    async def ok(method: str, path: str, body: Any = None) -> Any:
        resp = await admin.request(method, path, body)
        assert resp.status == 200, (path, resp.status, resp.text)
        return resp.json() if resp.body else None

    web = {
        "Name": "web",
        "Port": 8080,
        "Check": {"CheckID": "web-ttl", "TTL": "60s", "Status": "passing"},
        "Connect": {"SidecarService": {}},
    }
    await ok("PUT", "/v1/agent/service/register", web)
    await ok("PUT", "/v1/agent/service/register", {"Name": "temp", "Port": 2})
    await ok("PUT", "/v1/agent/check/register", {"CheckID": "c-temp", "Name": "t", "TTL": "60s"})
    await ok("PUT", "/v1/kv/app/config", "x")
    await ok("PUT", "/v1/config", {"Kind": "service-defaults", "Name": "web"})
    await ok("PUT", "/v1/agent/service/register", {"Name": "igw", "Kind": "ingress-gateway"})
    listener = {"Port": 8080, "Protocol": "tcp", "Services": [{"Name": "web"}]}
    await ok(
        "PUT", "/v1/config", {"Kind": "ingress-gateway", "Name": "igw", "Listeners": [listener]}
    )
    await ok("PUT", "/v1/event/fire/deploy")
    await ok("PUT", "/v1/internal/traces/spans", {"Spans": TRACE_SEED})
    await ok("PUT", "/v1/config", {"Kind": "service-defaults", "Name": "cany", "Protocol": "http"})
    subsets = {"v1": {"Filter": 'Service.Meta.v == "1"'}, "v2": {"Filter": 'Service.Meta.v == "2"'}}
    resolver = {
        "Kind": "service-resolver",
        "Name": "cany",
        "DefaultSubset": "v1",
        "Subsets": subsets,
    }
    await ok("PUT", "/v1/config", resolver)
    await ok("POST", "/v1/internal/canary/cany", {"To": "v2"})
    await ok("PUT", "/v1/internal/telemetry/proxy-stats", STATS_SEED)
    await ok("PUT", "/v1/internal/config/samples", {"Samples": [SAMPLE_SEED]})
    w.ids["web_api"] = (
        await ok(
            "POST",
            "/v1/connect/intentions",
            {"SourceName": "web", "DestinationName": "api", "Action": "allow"},
        )
    )["ID"]
    w.ids["z_db"] = (
        await ok(
            "POST",
            "/v1/connect/intentions",
            {"SourceName": "z", "DestinationName": "db", "Action": "allow"},
        )
    )["ID"]
    with trio.fail_after(10):
        while not (await admin.get(f"/v1/catalog/node/{NODE}")).body.startswith(b"{"):
            await trio.sleep(0.05)
    w.ids["session_a"] = (await ok("PUT", "/v1/session/create", {}))["ID"]
    w.ids["session_b"] = (await ok("PUT", "/v1/session/create", {}))["ID"]
    with trio.fail_after(10):
        while not (await admin.get("/v1/connect/ca/roots")).json()["Roots"]:
            await trio.sleep(0.05)
    for name in ("seed", "del"):
        rules = 'key_prefix "x" { policy = "read" }'
        policy = await ok("PUT", "/v1/acl/policy", {"Name": f"{name}pol", "Rules": rules})
        w.ids[f"{name}_policy"] = policy["ID"]
        role = await ok("PUT", "/v1/acl/role", {"Name": f"{name}role"})
        w.ids[f"{name}_role"] = role["ID"]
        token = await ok("PUT", "/v1/acl/token", {"Description": f"{name} token"})
        w.ids[f"{name}_token"] = token["AccessorID"]
        await ok("PUT", "/v1/acl/auth-method", {**JWT_METHOD, "Name": f"{name}meth"})
        rule = await ok("PUT", "/v1/acl/binding-rule", {**BINDING, "AuthMethod": "seedmeth"})
        w.ids[f"{name}_rule"] = rule["ID"]


def first_label(rules: str) -> str:
    """The first non-empty quoted resource name in ``rules``: what an exact
    token must see in a filtered answer."""
    return str(re.findall(r'"([^"]+)"\s*\{', rules)[0])


def is_denied(resp: Any) -> bool:
    return bool(resp.status == 403 and "Permission denied" in resp.text)


async def expect(w: World, key: tuple[str, str], row: Row, lacking: str) -> list[str]:
    """Call ``row`` three ways; return what did not match the expectation."""
    _, method = key
    problems: list[str] = []
    exact = (
        await w.token_with(row.rules, f"p{len(w.ids)}-{uuid.uuid4().hex[:8]}") if row.rules else ""
    )
    for label, token in (("no token", ""), ("lacking", lacking)):
        resp = await w.call(row, method, token)
        if row.kind == "public":
            if resp.status == 403 and not (row.refusal and re.search(row.refusal, resp.text)):
                problems.append(f"{key} {label}: public endpoint answered 403")
        elif row.kind == "filtered":
            coordinates = key[0].startswith("coordinate.") and resp.status == 200  # no data yet
            if (resp.status == 403 or FILTERED not in resp.headers) and not coordinates:
                problems.append(f"{key} {label}: not filtered ({resp.status} {resp.headers})")
        elif not is_denied(resp):
            problems.append(f"{key} {label}: expected 403, got {resp.status} {resp.text[:80]}")
    if row.kind != "public" and key != LAST:
        resp = await w.call(row, method, exact)
        if row.kind == "filtered":
            marker = row.marker or first_label(row.rules)
            if resp.status != 200 or marker not in resp.text:
                problems.append(f"{key} exact rules: {resp.status} lacks {marker!r}")
        elif resp.status == 403:
            problems.append(f"{key} exact rules: 403 {resp.text[:120]}")
    return problems


@pytest.mark.e2e
async def test_every_route_has_a_row(tmp_path: Path) -> None:
    cfg = tmp_path / "acl.json"
    cfg.write_text(json.dumps({"acl": {"enabled": True}}))
    async with dev_agent(files=[str(cfg)]) as (agent, _api):
        keys = route_keys(agent)
    missing = sorted(keys - set(ROWS))
    assert not missing, f"routes without a row in the ACL table: {missing}"
    assert not sorted(set(ROWS) - keys), "rows for routes that no longer exist"


async def test_each_endpoint_denies_filters_or_allows_by_token(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with world(tmp_path) as w:
        lacking = await w.token_with('key_prefix "unrelated/" { policy = "write" }', "lacking")
        problems: list[str] = []
        for key, row in ROWS.items():
            if key != LAST:
                problems += await expect(w, key, row, lacking)
        problems += await expect(w, LAST, ROWS[LAST], lacking)
        assert not problems, "\n".join(problems)


async def test_permission_denied_names_accessor_permission_and_resource(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with world(tmp_path) as w:
        secret = await w.token_with('key_prefix "" { policy = "read" }', "reader")
        resp = await w.api.request(
            "PUT", "/v1/kv/db/password", raw=b"x", headers={"X-Consul-Token": secret}
        )
        assert resp.status == 403
        assert "lacks permission 'key:write' on \"db/password\"" in resp.text
        assert "token with AccessorID '" in resp.text
        unknown = await w.api.request(
            "GET", "/v1/kv/app/config", headers={"X-Consul-Token": str(uuid.uuid4())}
        )
        assert unknown.status == 403 and "ACL not found" in unknown.text
        listed = await w.api.request(
            "GET", "/v1/catalog/services", headers={"X-Consul-Token": secret}
        )
        assert listed.status == 200 and listed.json() == {}
        assert listed.headers[FILTERED] == "true"


async def test_servers_check_forwarded_writes_against_the_token_sent(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    """What a client agent forwards (Registry.Apply) is checked on the server
    with the token it carries, whatever the client agent itself checked."""
    async with world(tmp_path) as w:
        server = w.agent.server
        assert server is not None
        reader = await w.token_with('key_prefix "" { policy = "read" }', "kv-reader")
        writer = await w.token_with('key_prefix "" { policy = "write" }', "kv-writer")
        data = encode_command(KVRequest(op="set", key="app/forged", value=b"1"))
        peer = PeerInfo("127.0.0.1:1", (), "client", {})
        guarded = server.rpc._methods["Registry.Apply"].handler  # as the RPC port runs it

        async def apply(token: str) -> Any:
            caller_token.set(token)  # the frame's "t"
            return await guarded({"cmd": data}, peer)

        with pytest.raises(ACLPermissionDenied) as info:
            await apply(reader)
        assert "key:write" in str(info.value)
        with pytest.raises(ACLPermissionDenied):
            await apply("")  # anonymous: default deny
        done = await apply(writer)
        assert done["ok"] is True


@pytest.mark.e2e
async def test_dns_answers_with_the_agents_dns_or_default_token(tmp_path: Path) -> None:
    """Under default deny the anonymous view of DNS is empty; the agent's
    ``dns`` token (set through /v1/agent/token/dns) makes web resolvable."""
    import dns.message
    import dns.query
    import dns.rcode

    async def ask(name: str) -> dns.message.Message:
        q = dns.message.make_query(name, "A")
        host, port = w.agent.dns_addresses[0]
        return await trio.to_thread.run_sync(lambda: dns.query.udp(q, host, port=port, timeout=3))

    async with world(tmp_path, e2e=True) as w:
        w.agent.local.remove_check("c-temp")  # a critical node check hides web from DNS
        await w.agent.wait_synced(5)
        denied = await ask("web.service.consul")
        assert denied.rcode() == dns.rcode.NXDOMAIN and not denied.answer
        reader = await w.token_with(
            'service_prefix "" { policy = "read" }\nnode_prefix "" { policy = "read" }', "dns"
        )
        w.agent.tokens.set("dns", reader)
        # The DNS cache may hold the denied answer for its TTL (0 by default).
        with trio.fail_after(10):
            while not (await ask("web.service.consul")).answer:
                await trio.sleep(0.1)
        answered = await ask("web.service.consul")
        assert answered.rcode() == dns.rcode.NOERROR


async def test_blocking_queries_woken_together_keep_each_tokens_answer(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    """Waiters woken by one change share the computed answer and its encoding,
    but never across tokens that see different parts of it."""
    async with world(tmp_path) as w:
        web_only = await w.token_with(svc("web"), "web-only")
        everything = await w.token_with('service_prefix "" { policy = "read" }', "all-services")
        admin = await w.token_with(GLOBAL_MANAGEMENT_RULES, "admin")
        first = await w.api.request(
            "GET", "/v1/catalog/services", headers={"X-Consul-Token": everything}
        )
        index = first.headers["x-consul-index"]
        answers: dict[str, Any] = {}
        woken_at: list[float] = []

        async def watch(label: str, token: str) -> None:
            resp = await w.api.request(
                "GET",
                f"/v1/catalog/services?index={index}&wait=10s",
                headers={"X-Consul-Token": token},
            )
            answers[label] = (resp.status, resp.json(), resp.headers.get(FILTERED))
            woken_at.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(watch, f"all-{i}", everything)
                nursery.start_soon(watch, f"web-{i}", web_only)
            await trio.sleep(5)  # fake time: every watcher has parked by now
            assert not answers
            written_at = trio.current_time()
            resp = await w.api.request(
                "PUT",
                "/v1/agent/service/register",
                {"Name": "late", "Port": 9},
                headers={"X-Consul-Token": admin},
            )
            assert resp.status == 200, resp.text
        assert len(woken_at) == 6 and min(woken_at) >= written_at
        assert max(woken_at) - written_at < 1  # woken by the write, not by wait=10s
        for i in range(3):
            status, body, filtered = answers[f"all-{i}"]
            assert status == 200 and "late" in body and "web" in body and filtered is None
            status, body, filtered = answers[f"web-{i}"]
            assert status == 200 and list(body) == ["web"] and filtered == "true"
