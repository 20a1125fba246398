"""Consul JSON shapes of registry records, for the HTTP layer.

Every function returns plain dicts/lists with Consul's field names
(``"Node"``, ``"ServiceID"``, ``"CreateIndex"``...), built at read time
from the stored records for exactly what a response returns. Nothing here
ever emits a private key: CA roots lose ``SigningKey``, the CA config loses
``PrivateKey`` and the provider ``State``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from .records import (
    ACLLink,
    ACLNodeIdentity,
    ACLPolicy,
    ACLRole,
    ACLServiceIdentity,
    ACLToken,
    CAConfig,
    CARoot,
    CARootList,
    CheckServiceNode,
    ConfigEntry,
    HealthCheck,
    Intention,
    KVEntry,
    Liveness,
    Node,
    NodeServices,
    ServiceInstance,
    ServiceNode,
    Session,
)
from .results import TxnResponse, TxnResult

JSON = dict[str, Any]


def rfc3339(ts: float) -> str:
    """Seconds since the epoch as Consul prints times (UTC, RFC 3339)."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def node_json(n: Node) -> JSON:
    """A node as in /v1/catalog/nodes and the "Node" of health entries."""
    return {
        "ID": n.id,
        "Node": n.node,
        "Address": n.address,
        "Datacenter": n.datacenter,
        "TaggedAddresses": n.tagged_addresses,
        "Meta": n.meta,
        "CreateIndex": n.create_index,
        "ModifyIndex": n.modify_index,
    }


def service_json(s: ServiceInstance) -> JSON:
    """A service instance as in the "Service" of health entries (Consul NodeService)."""
    out: JSON = {
        "ID": s.id,
        "Service": s.service,
        "Tags": list(s.tags),
        "Address": s.address,
        "TaggedAddresses": s.tagged_addresses,
        "Meta": s.meta,
        "Port": s.port,
        "Weights": {"Passing": s.weights.passing, "Warning": s.weights.warning},
        "EnableTagOverride": s.enable_tag_override,
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    }
    if s.kind:
        out["Kind"] = s.kind
    if s.proxy is not None:
        out["Proxy"] = s.proxy
    if s.connect is not None:
        out["Connect"] = s.connect
    if s.locality is not None:
        out["Locality"] = s.locality
    return out


def service_node_json(row: ServiceNode) -> JSON:
    """A row of /v1/catalog/service/:name (Consul ServiceNode)."""
    n, s = row.node, row.service
    return {
        "ID": n.id,
        "Node": n.node,
        "Address": n.address,
        "Datacenter": n.datacenter,
        "TaggedAddresses": n.tagged_addresses,
        "NodeMeta": n.meta,
        "ServiceKind": s.kind,
        "ServiceID": s.id,
        "ServiceName": s.service,
        "ServiceTags": list(s.tags),
        "ServiceAddress": s.address,
        "ServiceTaggedAddresses": s.tagged_addresses,
        "ServiceWeights": {"Passing": s.weights.passing, "Warning": s.weights.warning},
        "ServiceMeta": s.meta,
        "ServicePort": s.port,
        "ServiceEnableTagOverride": s.enable_tag_override,
        "ServiceProxy": s.proxy or {},
        "ServiceConnect": s.connect or {},
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
        **({"ServiceLocality": s.locality} if s.locality is not None else {}),
    }


def check_json(c: HealthCheck) -> JSON:
    """A health check (Consul HealthCheck)."""
    return {
        "Node": c.node,
        "CheckID": c.check_id,
        "Name": c.name,
        "Status": c.status,
        "Notes": c.notes,
        "Output": c.output,
        "ServiceID": c.service_id,
        "ServiceName": c.service_name,
        "ServiceTags": list(c.service_tags),
        "Type": c.type,
        "Interval": c.interval,
        "Timeout": c.timeout,
        "ExposedPort": 0,  # Consul's Expose.Checks port; meshd exposes none
        "Definition": c.definition,
        "CreateIndex": c.create_index,
        "ModifyIndex": c.modify_index,
    }


def check_service_node_json(row: CheckServiceNode) -> JSON:
    """A row of /v1/health/service/:name and /v1/health/connect/:name."""
    return {
        "Node": node_json(row.node),
        "Service": service_json(row.service),
        "Checks": [check_json(c) for c in row.checks],
    }


def node_services_json(ns: NodeServices) -> JSON:
    """/v1/catalog/node/:node: services keyed by ID."""
    return {"Node": node_json(ns.node), "Services": {s.id: service_json(s) for s in ns.services}}


def node_services_list_json(ns: NodeServices) -> JSON:
    """/v1/catalog/node-services/:node: services as a list."""
    return {"Node": node_json(ns.node), "Services": [service_json(s) for s in ns.services]}


def kv_json(e: KVEntry, with_value: bool = True) -> JSON:
    """A KV entry; ``Value`` is base64 (None when empty or not requested)."""
    out: JSON = {
        "Key": e.key,
        "CreateIndex": e.create_index,
        "ModifyIndex": e.modify_index,
        "LockIndex": e.lock_index,
        "Flags": e.flags,
        "Value": base64.b64encode(e.value).decode() if with_value and e.value else None,
    }
    if e.session:
        out["Session"] = e.session
    return out


def session_json(s: Session) -> JSON:
    """A session; ``LockDelay`` in nanoseconds like Consul's time.Duration."""
    return {
        "ID": s.id,
        "Name": s.name,
        "Node": s.node,
        "LockDelay": round(s.lock_delay * 1e9),
        "Behavior": s.behavior,
        "TTL": s.ttl,
        "NodeChecks": list(s.node_checks),
        "ServiceChecks": [{"ID": c, "Namespace": ""} for c in s.service_checks],
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    }


def _intention_time(ts: float) -> str:
    # A source written as a config entry has no Legacy*Time: Consul's
    # ToIntention leaves the time.Time zero, printed as year 1.
    return rfc3339(ts) if ts else "0001-01-01T00:00:00Z"


def intention_json(i: Intention) -> JSON:
    """An intention as in /v1/connect/intentions."""
    out: JSON = {
        "ID": i.id,
        "Description": i.description,
        "SourceNS": i.source_ns,
        "SourceName": i.source_name,
        "DestinationNS": i.destination_ns,
        "DestinationName": i.destination_name,
        "SourceType": i.source_type,
        "Meta": i.meta,
        "Precedence": i.precedence,
        "CreatedAt": _intention_time(i.created_at),
        "UpdatedAt": _intention_time(i.updated_at),
        "CreateIndex": i.create_index,
        "ModifyIndex": i.modify_index,
    }
    if i.permissions:
        out["Permissions"] = list(i.permissions)
    else:
        out["Action"] = i.action
    return out


def config_entry_json(e: ConfigEntry) -> JSON:
    """A config entry: Kind, Name, its body fields, then the raft indexes."""
    return {
        "Kind": e.kind,
        "Name": e.name,
        **e.body,
        "CreateIndex": e.create_index,
        "ModifyIndex": e.modify_index,
    }


def ca_root_json(r: CARoot) -> JSON:
    """A CA root without its private key."""
    return {
        "ID": r.id,
        "Name": r.name,
        "SerialNumber": r.serial_number,
        "SigningKeyID": r.signing_key_id,
        "ExternalTrustDomain": r.external_trust_domain,
        "NotBefore": r.not_before,
        "NotAfter": r.not_after,
        "RootCert": r.root_cert,
        "IntermediateCerts": list(r.intermediate_certs),
        "Active": r.active,
        "RotatedOutAt": r.rotated_out_at,
        "PrivateKeyType": r.private_key_type,
        "PrivateKeyBits": r.private_key_bits,
        "CreateIndex": r.create_index,
        "ModifyIndex": r.modify_index,
    }


def ca_roots_json(roots: CARootList) -> JSON:
    """/v1/connect/ca/roots."""
    return {
        "ActiveRootID": roots.active_root_id,
        "TrustDomain": roots.trust_domain,
        "Roots": [ca_root_json(r) for r in roots.roots],
    }


def ca_config_json(c: CAConfig) -> JSON:
    """/v1/connect/ca/configuration without ``PrivateKey`` or provider state."""
    return {
        "Provider": c.provider,
        "ClusterID": c.cluster_id,
        "Config": {k: v for k, v in c.config.items() if k != "PrivateKey"},
        "ForceWithoutCrossSigning": c.force_without_cross_signing,
        "CreateIndex": c.create_index,
        "ModifyIndex": c.modify_index,
    }


def _links(links: Iterable[ACLLink]) -> list[JSON]:
    return [{"ID": link.id, "Name": link.name} for link in links]


def _identities(services: Iterable[ACLServiceIdentity], nodes: Iterable[ACLNodeIdentity]) -> JSON:
    return {
        "ServiceIdentities": [
            {"ServiceName": s.service_name, "Datacenters": list(s.datacenters)} for s in services
        ],
        "NodeIdentities": [{"NodeName": n.node_name, "Datacenter": n.datacenter} for n in nodes],
    }


def acl_token_json(t: ACLToken) -> JSON:
    """An ACL token (the caller decides whether ``SecretID`` may be shown)."""
    out: JSON = {
        "AccessorID": t.accessor_id,
        "SecretID": t.secret_id,
        "Description": t.description,
        "Policies": _links(t.policies),
        "Roles": _links(t.roles),
        **_identities(t.service_identities, t.node_identities),
        "Local": t.local,
        "CreateTime": t.create_time,
        "CreateIndex": t.create_index,
        "ModifyIndex": t.modify_index,
    }
    if t.expiration_time:
        out["ExpirationTime"] = t.expiration_time
    return out


def acl_policy_json(p: ACLPolicy) -> JSON:
    """An ACL policy."""
    return {
        "ID": p.id,
        "Name": p.name,
        "Description": p.description,
        "Rules": p.rules,
        "Datacenters": list(p.datacenters),
        "CreateIndex": p.create_index,
        "ModifyIndex": p.modify_index,
    }


def acl_role_json(r: ACLRole) -> JSON:
    """An ACL role."""
    return {
        "ID": r.id,
        "Name": r.name,
        "Description": r.description,
        "Policies": _links(r.policies),
        **_identities(r.service_identities, r.node_identities),
        "CreateIndex": r.create_index,
        "ModifyIndex": r.modify_index,
    }


def _txn_result_json(r: TxnResult) -> JSON:
    if r.kv is not None:
        return {"KV": kv_json(r.kv)}
    if r.node is not None:
        return {"Node": node_json(r.node)}
    if r.service is not None:
        return {"Service": service_json(r.service)}
    if r.check is not None:
        return {"Check": check_json(r.check)}
    return {}


def txn_response_json(resp: TxnResponse) -> JSON:
    """/v1/txn body: ``Results`` or ``Errors`` (the other is null), like Consul."""
    return {
        "Results": [_txn_result_json(r) for r in resp.results] if resp.results else None,
        "Errors": [{"OpIndex": e.op_index, "What": e.what} for e in resp.errors]
        if resp.errors
        else None,
    }


def liveness_json(r: Liveness) -> JSON:
    """A node liveness record."""
    return {
        "Node": r.node,
        "Status": r.status,
        "CreateIndex": r.create_index,
        "ModifyIndex": r.modify_index,
    }
