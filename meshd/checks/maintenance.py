"""Service and node maintenance mode (Consul agent/agent.go ``EnableServiceMaintenance``).

Maintenance is a critical check of type ``maintenance`` added to the local
state: ``_service_maintenance:<service-id>`` named "Service Maintenance
Mode", or ``_node_maintenance`` named "Node Maintenance Mode", with the
reason as its notes. Being critical, it takes the service (or every service
of the node) out of healthy query results; removing it ends maintenance.
The checks are persisted like API-registered ones so maintenance survives a
restart, and the runner never runs them (they have no probe).

Endpoints (for the lead): ``PUT /v1/agent/service/maintenance/:id?enable=
true|false&reason=`` and ``PUT /v1/agent/maintenance?enable=&reason=``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry.errors import NotFoundError
from registry.records import HealthCheck

from ..defs.definitions import CheckDefinition
from .base import CRITICAL

if TYPE_CHECKING:
    from ..agent.local import LocalState

__all__ = [
    "DEFAULT_NODE_REASON",
    "DEFAULT_SERVICE_REASON",
    "KIND",
    "NODE_MAINTENANCE_ID",
    "SERVICE_MAINTENANCE_PREFIX",
    "disable_node_maintenance",
    "disable_service_maintenance",
    "enable_node_maintenance",
    "enable_service_maintenance",
    "node_maintenance_check",
    "service_maintenance_check",
    "service_maintenance_id",
]

KIND = "maintenance"
SERVICE_MAINTENANCE_PREFIX = "_service_maintenance"
NODE_MAINTENANCE_ID = "_node_maintenance"
DEFAULT_SERVICE_REASON = (
    "Maintenance mode is enabled for this service, but no reason was provided. "
    "This is a default message."
)
DEFAULT_NODE_REASON = (
    "Maintenance mode is enabled for this node, but no reason was provided. "
    "This is a default message."
)


def service_maintenance_id(service_id: str) -> str:
    """The check ID that marks ``service_id`` as in maintenance."""
    return f"{SERVICE_MAINTENANCE_PREFIX}:{service_id}"


def service_maintenance_check(
    node: str, service_id: str, service_name: str, reason: str = ""
) -> CheckDefinition:
    """The critical maintenance check of one service (Consul's name and notes)."""
    check = HealthCheck(
        check_id=service_maintenance_id(service_id),
        node=node,
        name="Service Maintenance Mode",
        status=CRITICAL,
        notes=reason or DEFAULT_SERVICE_REASON,
        service_id=service_id,
        service_name=service_name,
        type=KIND,
    )
    return CheckDefinition(check, KIND, {})


def node_maintenance_check(node: str, reason: str = "") -> CheckDefinition:
    """The critical maintenance check of the whole node (Consul's name and notes)."""
    check = HealthCheck(
        check_id=NODE_MAINTENANCE_ID,
        node=node,
        name="Node Maintenance Mode",
        status=CRITICAL,
        notes=reason or DEFAULT_NODE_REASON,
        type=KIND,
    )
    return CheckDefinition(check, KIND, {})


def enable_service_maintenance(local: LocalState, service_id: str, reason: str = "") -> bool:
    """Put a local service in maintenance; returns False if it already was.

    Raises ``registry.errors.NotFoundError`` for an unknown service (HTTP 404).
    """
    defn = local.services.get(service_id)
    if defn is None:
        raise NotFoundError(f'No service registered with ID "{service_id}"')
    if service_maintenance_id(service_id) in local.checks:
        return False  # Consul keeps the first reason
    svc = defn.service
    local.add_check(service_maintenance_check(local.node, svc.id, svc.service, reason))
    return True


def disable_service_maintenance(local: LocalState, service_id: str) -> bool:
    """End a service's maintenance; returns False if it was not in maintenance.

    Raises ``registry.errors.NotFoundError`` for an unknown service (HTTP 404).
    """
    if service_id not in local.services:
        raise NotFoundError(f'No service registered with ID "{service_id}"')
    check_id = service_maintenance_id(service_id)
    if check_id not in local.checks:
        return False
    local.remove_check(check_id)
    return True


def enable_node_maintenance(local: LocalState, reason: str = "") -> bool:
    """Put the node in maintenance; returns False if it already was."""
    if NODE_MAINTENANCE_ID in local.checks:
        return False
    local.add_check(node_maintenance_check(local.node, reason))
    return True


def disable_node_maintenance(local: LocalState) -> bool:
    """End the node's maintenance; returns False if it was not in maintenance."""
    if NODE_MAINTENANCE_ID not in local.checks:
        return False
    local.remove_check(NODE_MAINTENANCE_ID)
    return True
