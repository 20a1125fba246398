"""Registry.Apply's check of meshd's atomic config-entry batch: each entry
needs what its single PUT /v1/config needs (service, intention or mesh
write), so a client agent cannot write past the caller's rights."""

from __future__ import annotations

import pytest

from meshd.acl import ACLAuthorizer, parse_rules
from meshd.acl.errors import ACLPermissionDenied
from meshd.agent.acl_commands import authorize_command
from registry.commands import ConfigEntryBatch, ConfigEntryRequest
from registry.records import ConfigEntry
from registry.state.store import StateStore


def authz(rules: str) -> ACLAuthorizer:
    return ACLAuthorizer.from_policies([parse_rules(rules)], default_allow=False, datacenter="dc1")


BATCH = ConfigEntryBatch(
    entries=(
        ConfigEntry("service-defaults", "web", {"Protocol": "http"}),
        ConfigEntry("service-router", "web", {}),
        ConfigEntry("service-intentions", "web", {}),
    )
)


def test_batch_needs_write_on_every_entry() -> None:
    store = StateStore()
    ok = authz('service "web" { policy = "write"\n intentions = "write" }')
    authorize_command(ok, BATCH, store)
    with pytest.raises(ACLPermissionDenied):
        authorize_command(authz('service "web" { policy = "write" }'), BATCH, store)
    with pytest.raises(ACLPermissionDenied):
        authorize_command(authz('service "api" { policy = "write" }'), BATCH, store)


def test_batch_with_a_mesh_wide_entry_needs_mesh_write() -> None:
    store = StateStore()
    batch = ConfigEntryBatch(entries=(ConfigEntry("proxy-defaults", "global", {}),))
    authorize_command(authz('mesh = "write"'), batch, store)
    with pytest.raises(ACLPermissionDenied):
        authorize_command(
            authz('mesh = "read"\nservice_prefix "" { policy = "write" }'), batch, store
        )


def test_single_config_entry_write_needs_its_kinds_right() -> None:
    store = StateStore()
    cmd = ConfigEntryRequest(op="delete", entry=ConfigEntry("service-resolver", "db"))
    authorize_command(authz('service "db" { policy = "write" }'), cmd, store)
    with pytest.raises(ACLPermissionDenied):
        authorize_command(authz('service "db" { policy = "read" }'), cmd, store)
