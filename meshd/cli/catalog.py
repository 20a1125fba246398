"""``meshd catalog datacenters|nodes|services`` (like ``consul catalog``),
read from /v1/catalog/*."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from .client import AgentClient, quote_path
from .errors import CLIError
from .options import agent_options, flag, option
from .output import echo_json, echo_table

NODE_META_HELP = "Only nodes with this metadata, as key=value (repeatable)."


def node_meta_params(values: tuple[str, ...]) -> list[str]:
    """``-node-meta key=value`` flags as Consul's ``?node-meta=key:value``."""
    out = []
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"Error: -node-meta expects key=value, got {item!r}")
        out.append(f"{key}:{value}")
    return out


@click.group()
def catalog() -> None:
    """Read the service catalog: datacenters, nodes and services."""


@catalog.command("datacenters")
@agent_options(output=True)
def datacenters(client: AgentClient, fmt: str) -> None:
    """List the known datacenters."""
    found = client.get_json("/v1/catalog/datacenters")
    if fmt == "json":
        echo_json(found)
        return
    for name in found or []:
        click.echo(name)


def _short_id(node_id: str, detailed: bool) -> str:
    return node_id if detailed else node_id[:8]


def _node_rows(nodes: list[Mapping[str, Any]], detailed: bool) -> list[list[Any]]:
    rows = []
    for n in nodes:
        row: list[Any] = [
            n.get("Node", ""),
            _short_id(str(n.get("ID") or ""), detailed),
            n.get("Address", ""),
            n.get("Datacenter", ""),
        ]
        if detailed:
            row += [n.get("TaggedAddresses") or {}, n.get("Meta") or n.get("NodeMeta") or {}]
        rows.append(row)
    return rows


def _service_nodes(client: AgentClient, service: str, params: dict[str, Any]) -> list[Any]:
    instances = client.get_json(f"/v1/catalog/service/{quote_path(service)}", **params)
    seen: dict[str, dict[str, Any]] = {}
    for inst in instances or []:
        seen.setdefault(
            inst.get("Node", ""),
            {
                "Node": inst.get("Node", ""),
                "ID": inst.get("ID", ""),
                "Address": inst.get("Address", ""),
                "Datacenter": inst.get("Datacenter", ""),
                "TaggedAddresses": inst.get("TaggedAddresses") or {},
                "Meta": inst.get("NodeMeta") or {},
            },
        )
    return list(seen.values())


@catalog.command("nodes")
@option("service", "service", default="", metavar="NAME", help="Only nodes running this service.")
@option("node-meta", "node_meta", multiple=True, metavar="KEY=VALUE", help=NODE_META_HELP)
@option("filter", "filter_", default="", metavar="EXPR", help="A ?filter expression.")
@flag("detailed", "Show full node IDs, tagged addresses and metadata.")
@agent_options(output=True)
def nodes(
    client: AgentClient,
    fmt: str,
    service: str,
    node_meta: tuple[str, ...],
    filter_: str,
    detailed: bool,
) -> None:
    """List the nodes in the catalog."""
    params: dict[str, Any] = {"node-meta": node_meta_params(node_meta), "filter": filter_ or None}
    if service:
        found = _service_nodes(client, service, params)
    else:
        found = client.get_json("/v1/catalog/nodes", **params) or []
    found.sort(key=lambda n: str(n.get("Node", "")))
    if fmt == "json":
        echo_json(found)
        return
    if not found:
        click.echo("No nodes match the given query.", err=True)
        return
    headers = ["Node", "ID", "Address", "DC"]
    if detailed:
        headers += ["TaggedAddresses", "Meta"]
    echo_table(headers, _node_rows(found, detailed))


def _node_services(client: AgentClient, node: str, filter_: str) -> dict[str, list[str]]:
    found = client.get_json(f"/v1/catalog/node-services/{quote_path(node)}", filter=filter_ or None)
    services: dict[str, list[str]] = {}
    for svc in (found or {}).get("Services") or []:
        tags = services.setdefault(str(svc.get("Service", "")), [])
        tags.extend(t for t in svc.get("Tags") or [] if t not in tags)
    return services


@catalog.command("services")
@option("node", "node", default="", metavar="NAME", help="Only services on this node.")
@option("node-meta", "node_meta", multiple=True, metavar="KEY=VALUE", help=NODE_META_HELP)
@option("filter", "filter_", default="", metavar="EXPR", help="A ?filter expression.")
@flag("tags", "Show each service's tags.")
@agent_options(output=True)
def services(
    client: AgentClient,
    fmt: str,
    node: str,
    node_meta: tuple[str, ...],
    filter_: str,
    tags: bool,
) -> None:
    """List the services in the catalog."""
    if node:
        found = _node_services(client, node, filter_)
    else:
        found = client.get_json(
            "/v1/catalog/services",
            **{"node-meta": node_meta_params(node_meta), "filter": filter_ or None},
        )
        found = found or {}
    if fmt == "json":
        echo_json(found)
        return
    if not found:
        click.echo("No services match the given query.", err=True)
        return
    names = sorted(found)
    if tags:
        echo_table(None, [[name, sorted(found[name] or [])] for name in names])
    else:
        for name in names:
            click.echo(name)
