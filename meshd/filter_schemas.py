"""The ``?filter=`` selectors each list endpoint accepts (``meshd.filter`` schemas).

Taken from the "Filtering" tables of Consul's API pages: an expression naming
any other selector, using an operator its type does not support, or a value
that does not fit its type is refused with 400 before anything is read, as
Consul's bexpr does against the endpoint's struct.

* ``SERVICE_NODE``: /v1/catalog/services (the filter runs over every service
  instance, and the name -> tags map is built from the ones that match) and
  /v1/catalog/service/:name (catalog.mdx "List Nodes for Service").
* ``NODE_SERVICE``: each value of ``Services`` in /v1/catalog/node/:node and
  each element of it in /v1/catalog/node-services/:node.
* ``NODE``, ``CHECK`` and ``CHECK_SERVICE_NODE``: /v1/catalog/nodes, the
  check lists of /v1/health/{node,checks,state} and /v1/agent/checks, and
  /v1/health/service/:name (``Node.*``, ``Service.*``, ``Checks.*``), after
  the "Filtering" tables of health.mdx, agent/check.mdx and catalog.mdx,
  plus the other exported fields of the same Go structs (``CreateIndex``,
  ``ModifyIndex``, a check's ``Type``...). ``SCHEMAS`` maps the reads and
  agent endpoints to these tables (``schema_for``).
* ``EVENT`` and ``COORDINATE``: Consul documents no filter for
  /v1/event/list and /v1/coordinate/nodes and silently ignores one; meshd
  applies it over the fields of each listed item instead of ignoring it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from .filter import Schema

_PROXY: Final[Mapping[str, type[object]]] = {
    "DestinationServiceID": str,
    "DestinationServiceName": str,
    "LocalServiceAddress": str,
    "LocalServicePort": int,
    "Mode": str,
    "TransparentProxy.OutboundListenerPort": int,
    "MeshGateway.Mode": str,
    "Upstreams": list,
    "Upstreams.Datacenter": str,
    "Upstreams.DestinationName": str,
    "Upstreams.DestinationNamespace": str,
    "Upstreams.DestinationType": str,
    "Upstreams.LocalBindAddress": str,
    "Upstreams.LocalBindPort": int,
    "Upstreams.MeshGateway.Mode": str,
}


def _service_fields(prefix: str, proxy: str) -> dict[str, type[object]]:
    """Consul's structs.NodeService selectors, each name prefixed (``Service``)."""
    p = prefix
    fields: dict[str, type[object]] = {
        f"{p}Address": str,
        f"{p}Connect.Native": bool,
        f"{p}EnableTagOverride": bool,
        f"{p}ID": str,
        f"{p}Kind": str,
        f"{p}Meta": dict,
        f"{p}Meta.*": str,
        f"{p}Port": int,
        f"{p}TaggedAddresses": dict,
        f"{p}TaggedAddresses.*.Address": str,
        f"{p}TaggedAddresses.*.Port": int,
        f"{p}Tags": list,
        f"{p}Weights.Passing": int,
        f"{p}Weights.Warning": int,
    }
    fields.update({f"{proxy}.{k}": t for k, t in _PROXY.items()})
    return fields


SERVICE_NODE: Final[Schema] = {
    "Address": str,
    "Datacenter": str,
    "ID": str,
    "Node": str,
    "NodeMeta": dict,
    "NodeMeta.*": str,
    "TaggedAddresses": dict,
    "TaggedAddresses.*": str,
    "ServiceName": str,
    **_service_fields("Service", "ServiceProxy"),
}

NODE_SERVICE: Final[Schema] = {"Service": str, **_service_fields("", "Proxy")}

EVENT: Final[Schema] = {
    "ID": str,
    "Name": str,
    "NodeFilter": str,
    "ServiceFilter": str,
    "TagFilter": str,
    "Version": int,
    "LTime": int,
}

COORDINATE: Final[Schema] = {
    "Node": str,
    "Segment": str,
    "Partition": str,
    "Coord.Adjustment": float,
    "Coord.Error": float,
    "Coord.Height": float,
    "Coord.Vec": list,
}

_INDEXES: Final[Mapping[str, type[object]]] = {"CreateIndex": int, "ModifyIndex": int}

NODE: Final[Schema] = {
    "ID": str,
    "Node": str,
    "Address": str,
    "Datacenter": str,
    "TaggedAddresses": dict,
    "TaggedAddresses.*": str,
    "Meta": dict,
    "Meta.*": str,
    **_INDEXES,
}

CHECK: Final[Schema] = {
    "Node": str,
    "CheckID": str,
    "Name": str,
    "Status": str,
    "Notes": str,
    "Output": str,
    "ServiceID": str,
    "ServiceName": str,
    "ServiceTags": list,
    "Type": str,
    "Interval": str,
    "Timeout": str,
    "ExposedPort": int,
    "Definition": dict,
    "Definition.*": str,
    **_INDEXES,
}

CHECK_SERVICE_NODE: Final[Schema] = {
    **{f"Node.{k}": t for k, t in NODE.items()},
    **{f"Service.{k}": t for k, t in NODE_SERVICE.items()},
    "Checks": list,
    **{f"Checks.{k}": t for k, t in CHECK.items()},
}

SCHEMAS: Final[Mapping[str, Schema]] = {
    "catalog.nodes": NODE,
    "catalog.service": SERVICE_NODE,
    "catalog.connect": SERVICE_NODE,
    "node.services": NODE_SERVICE,
    "health.service": CHECK_SERVICE_NODE,
    "health.node": CHECK,
    "health.checks": CHECK,
    "health.state": CHECK,
    "agent.services": NODE_SERVICE,
    "agent.checks": CHECK,
}


def schema_for(name: str) -> Schema | None:
    """The selectors of endpoint (read) ``name``, or None to check none."""
    return SCHEMAS.get(name)
