"""Consul's builtin templated policies (agent/structs/acltemplatedpolicy).

A templated policy is a named HCL template with a JSON schema for its
variables (only ``Name`` exists in Consul's builtin set); a token or role
holding one is granted the rendered rules, scoped to its datacenters. The
same templates back ``GET /v1/acl/templated-policies``, the preview
endpoint and the authorizer, so what the API shows is what is enforced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from meshd.acl.builtin import validate_identity_name
from meshd.acl.errors import IdentityError
from meshd.acl.rules import Policy, parse_rules

_NAME_SCHEMA = (
    '{\n\t"type": "object",\n\t"properties": {\n\t\t"name": { "type": "string", '
    '"$ref": "#/definitions/min-length-one" }\n\t},\n\t"required": ["name"],\n\t'
    '"definitions": {\n\t\t"min-length-one": {\n\t\t\t\t"type": "string",\n\t\t\t\t'
    '"minLength": 1\n\t\t}\n\t}\n}'
)


@dataclass(frozen=True)
class Template:
    """One builtin templated policy: its variables' schema ("" when it takes
    none), its HCL template and Consul's description."""

    schema: str
    template: str
    description: str


TEMPLATES: dict[str, Template] = {
    "builtin/service": Template(
        _NAME_SCHEMA,
        '\nservice "{{.Name}}" {\n\tpolicy = "write"\n}\nservice "{{.Name}}-sidecar-proxy" '
        '{\n\tpolicy = "write"\n}\nservice_prefix "" {\n\tpolicy = "read"\n}\n'
        'node_prefix "" {\n\tpolicy = "read"\n}',
        "Gives the token or role permissions to register a service and discover services "
        "in the Consul catalog. It also gives the specified service's sidecar proxy the "
        "permission to discover and route traffic to other services.",
    ),
    "builtin/node": Template(
        _NAME_SCHEMA,
        '\nnode "{{.Name}}" {\n\tpolicy = "write"\n}\nservice_prefix "" {\n\tpolicy = "read"\n}',
        "Gives the token or role permissions for a register an agent/node into the catalog. "
        "A node is typically a consul agent but can also be a physical server, cloud "
        "instance or a container.",
    ),
    "builtin/dns": Template(
        "",
        '\nnode_prefix "" {\n\tpolicy = "read"\n}\nservice_prefix "" {\n\tpolicy = "read"\n}\n'
        'query_prefix "" {\n\tpolicy = "read"\n}',
        "Gives the token or role permissions for the Consul DNS to query services in the network.",
    ),
}


class TemplateError(ValueError):
    """An unknown template or invalid variables; the text is Consul's."""


def validate_templated_policy(template_name: str, name: str) -> Template:
    """The template ``template_name`` after checking ``name`` against its
    schema (and the identity-name rules). Raises ``TemplateError``."""
    found = TEMPLATES.get(template_name)
    if found is None:
        raise TemplateError(f"Invalid templated policy Name: {template_name}")
    if not found.schema:
        return found
    if not name:
        raise TemplateError(
            f'Failed to validate templated policy variables: "name" is required ({template_name})'
        )
    kind = "Node" if template_name == "builtin/node" else "Service"
    try:
        validate_identity_name(kind, name)
    except IdentityError as exc:
        raise TemplateError(str(exc)) from None
    return found


def templated_policy_rules(template_name: str, name: str = "") -> str:
    """The HCL rules ``template_name`` renders to with variable ``name``.
    Raises ``TemplateError``."""
    template = validate_templated_policy(template_name, name)
    if not template.schema:
        return template.template
    # ``name`` passed the identity-name rules: no quote or brace can reach the HCL.
    return template.template.replace("{{.Name}}", name)


def templated_policy(template_name: str, name: str, datacenters: Iterable[str] = ()) -> Policy:
    """The synthetic policy of a templated policy, in force only in
    ``datacenters`` (all when empty). Raises ``TemplateError``."""
    policy = parse_rules(templated_policy_rules(template_name, name))
    return dataclasses.replace(policy, datacenters=frozenset(datacenters))
