"""``meshd acl`` (Consul's ``consul acl``): bootstrap, tokens, policies, roles
and the agent's own tokens, through /v1/acl and /v1/agent/token.

Output follows Consul's pretty formatters (command/acl/*/formatter.go), e.g.::

    AccessorID:       edcaacda-b6d0-1954-5939-b5aceaca7c9a
    SecretID:         4411f091-a4c9-48e6-0884-1fcb092da1c8
    Description:      Bootstrap Token (Global Management)
    Local:            false
    Create Time:      2018-12-06 18:03:23.742699 +0000 UTC
    Policies:
       00000000-0000-0000-0000-000000000001 - global-management

with ``-format json`` printing the API's JSON instead. Unlike Consul,
``token list`` never prints SecretIDs, whatever the API returned: a listing
is what ends up in terminals and logs. ``-rules`` takes the rules inline,
``@path`` to read a file or ``-`` for stdin (Consul's ``LoadDataSource``);
``-rules-file PATH`` is the same as ``-rules @PATH``. The token comes from
``-token``, ``MESHD_HTTP_TOKEN`` or ``CONSUL_HTTP_TOKEN``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from .client import AgentClient, Response, quote_path
from .errors import CLIError, UnexpectedResponse
from .options import agent_options, flag, option

F = TypeVar("F", bound=Callable[..., Any])

ACL = "/v1/acl"


# -------------------------------------------------------------------- format


def _go_time(text: str) -> str:
    """An RFC 3339 time as Go's ``time.Time.String()`` prints a UTC time."""
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return text
    return at.strftime("%Y-%m-%d %H:%M:%S.%f +0000 UTC")


def _links(title: str, links: Any, indent: str = "") -> list[str]:
    """A ``Title:`` block of ``ID - Name`` lines; nothing when there are no links."""
    if not links:
        return []
    out = [f"{indent}{title}:"]
    out.extend(f"{indent}   {link.get('ID', '')} - {link.get('Name', '')}" for link in links)
    return out


def _identities(obj: Mapping[str, Any], indent: str = "") -> list[str]:
    out = []
    services = obj.get("ServiceIdentities") or ()
    if services:
        out.append(f"{indent}Service Identities:")
    for ident in services:
        dcs = ", ".join(ident.get("Datacenters") or ()) or "all"
        out.append(f"{indent}   {ident.get('ServiceName', '')} (Datacenters: {dcs})")
    nodes = obj.get("NodeIdentities") or ()
    if nodes:
        out.append(f"{indent}Node Identities:")
    for ident in nodes:
        name, dc = ident.get("NodeName", ""), ident.get("Datacenter", "")
        out.append(f"{indent}   {name} (Datacenter: {dc})")
    return out


def _templated(obj: Mapping[str, Any], indent: str = "") -> list[str]:
    """Consul's ``Templated Policies:`` block."""
    items = obj.get("TemplatedPolicies") or ()
    out = [f"{indent}Templated Policies:"] if items else []
    for item in items:
        out.append(f"{indent}   {item.get('TemplateName', '')}")
        name = (item.get("TemplateVariables") or {}).get("Name")
        if name:
            out.append(f"{indent}      Name: {name}")
        dcs = ", ".join(item.get("Datacenters") or ()) or "all"
        out.append(f"{indent}      Datacenters: {dcs}")
    return out


def _block(lines: list[str]) -> str:
    return "\n".join(line.rstrip() for line in lines)


def format_token(token: Mapping[str, Any], *, show_secret: bool = True) -> str:
    """Consul's pretty token; without the SecretID line when ``show_secret`` is false."""
    lines = [f"AccessorID:       {token.get('AccessorID', '')}"]
    if show_secret:
        lines.append(f"SecretID:         {token.get('SecretID', '')}")
    lines += [
        f"Description:      {token.get('Description', '')}",
        f"Local:            {str(bool(token.get('Local'))).lower()}",
    ]
    if token.get("AuthMethod"):
        lines.append(f"Auth Method:      {token['AuthMethod']} (Namespace: )")
    lines += [
        f"Create Time:      {_go_time(str(token.get('CreateTime', '')))}",
    ]
    if token.get("ExpirationTime"):
        lines.append(f"Expiration Time:  {_go_time(str(token['ExpirationTime']))}")
    lines += _links("Policies", token.get("Policies"))
    lines += _links("Roles", token.get("Roles"))
    lines += _identities(token)
    lines += _templated(token)
    return _block(lines)


def format_policy(policy: Mapping[str, Any]) -> str:
    """Consul's pretty policy."""
    return _block(
        [
            f"ID:           {policy.get('ID', '')}",
            f"Name:         {policy.get('Name', '')}",
            f"Description:  {policy.get('Description', '')}",
            f"Datacenters:  {', '.join(policy.get('Datacenters') or ())}",
            "Rules:",
            str(policy.get("Rules", "")),
        ]
    )


def format_policy_list(policies: list[Mapping[str, Any]]) -> str:
    """Consul's pretty policy list."""
    blocks = []
    for p in policies:
        blocks.append(
            f"{p.get('Name', '')}:\n"
            f"   ID:           {p.get('ID', '')}\n"
            f"   Description:  {p.get('Description', '')}\n"
            f"   Datacenters:  {', '.join(p.get('Datacenters') or ())}"
        )
    return _block("\n".join(blocks).splitlines())


def format_role(role: Mapping[str, Any], indent: str = "") -> str:
    """Consul's pretty role."""
    lines = [
        f"{indent}ID:           {role.get('ID', '')}",
        f"{indent}Name:         {role.get('Name', '')}",
        f"{indent}Description:  {role.get('Description', '')}",
    ]
    lines += _links("Policies", role.get("Policies"), indent)
    lines += _identities(role, indent)
    lines += _templated(role, indent)
    return _block(lines)


def format_role_list(roles: list[Mapping[str, Any]]) -> str:
    """Consul's pretty role list."""
    return "\n".join(f"{r.get('Name', '')}:\n{format_role(r, '   ')}" for r in roles)


def _show(value: Any, fmt: str, pretty: Callable[[Any], str]) -> None:
    if fmt == "json":
        click.echo(json.dumps(value, indent=4))
    else:
        click.echo(pretty(value))


# -------------------------------------------------------------------- inputs


def load_rules(rules: str, rules_file: str) -> str:
    """The rules text from ``-rules`` (inline, ``@file`` or ``-``) or ``-rules-file``."""
    if rules and rules_file:
        raise CLIError("Error: only one of -rules and -rules-file may be given")
    if rules_file:
        rules = "@" + rules_file
    if rules == "-":
        return sys.stdin.read()
    if rules.startswith("@"):
        try:
            return Path(rules[1:]).read_text()
        except OSError as exc:
            raise CLIError(f"Error loading rules: failed to read file: {exc}") from None
    return rules


def service_identities(values: tuple[str, ...]) -> list[dict[str, Any]]:
    """``-service-identity name[:dc1,dc2]`` as the API's objects."""
    out = []
    for value in values:
        name, _, dcs = value.partition(":")
        if not name:
            raise CLIError(f"Error: malformed -service-identity: {value!r}")
        ident: dict[str, Any] = {"ServiceName": name}
        if dcs:
            ident["Datacenters"] = [dc for dc in dcs.split(",") if dc]
        out.append(ident)
    return out


def node_identities(values: tuple[str, ...]) -> list[dict[str, str]]:
    """``-node-identity name:dc`` as the API's objects."""
    out = []
    for value in values:
        name, sep, dc = value.partition(":")
        if not name or not sep or not dc:
            raise CLIError(
                f"Error: malformed -node-identity: {value!r} (expected NODENAME:DATACENTER)"
            )
        out.append({"NodeName": name, "Datacenter": dc})
    return out


def templated_policies(names: tuple[str, ...], variables: tuple[str, ...]) -> list[dict[str, Any]]:
    """``-templated-policy NAME`` with ``-var name:VALUE`` (Consul's flags; the
    variables apply to each templated policy given) as the API's objects."""
    values: dict[str, str] = {}
    for item in variables:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise CLIError(f"Error: malformed -var: {item!r} (expected VariableName:Value)")
        if key.lower() != "name":
            raise CLIError(f"Error: unknown templated policy variable {key!r}")
        values["Name"] = value
    return [{"TemplateName": n, **({"TemplateVariables": values} if values else {})} for n in names]


def _policy_links(ids: tuple[str, ...], names: tuple[str, ...]) -> list[dict[str, str]]:
    return [{"ID": i} for i in ids] + [{"Name": n} for n in names]


def _fail(what: str, exc: UnexpectedResponse) -> CLIError:
    return CLIError(f"{what}: {exc.message}")


def _call(client: AgentClient, method: str, path: str, failure: str, **kwargs: Any) -> Response:
    """One API request; an error answer becomes ``<failure>: <message>``."""
    try:
        return client.request(method, path, **kwargs)
    except UnexpectedResponse as exc:
        raise _fail(failure, exc) from None


def _fmt(func: F) -> F:
    decorated = click.option(
        "-format",
        "--format",
        "fmt",
        type=click.Choice(("pretty", "json")),
        default="pretty",
        show_default=True,
        help="Output format.",
    )(func)
    return decorated


_LINK_OPTIONS = (
    ("policy-id", "ID of a policy to link (repeatable)."),
    ("policy-name", "Name of a policy to link (repeatable)."),
    ("role-id", "ID of a role to link (repeatable)."),
    ("role-name", "Name of a role to link (repeatable)."),
    ("service-identity", "NAME[:DC1,DC2] service identity (repeatable)."),
    ("node-identity", "NAME:DC node identity (repeatable)."),
    ("templated-policy", "builtin/service, builtin/node or builtin/dns (repeatable)."),
    ("var", "name:VALUE variable of the templated policies."),
)


def _links_options(func: F, *, roles: bool = True) -> F:
    """The repeatable link options of a token (a role's: ``roles`` false)."""
    for name, what in _LINK_OPTIONS:
        if roles or not name.startswith("role-"):
            func = option(name, name.replace("-", "_"), multiple=True, help=what)(func)
    return func


def _id_option(func: F) -> F:
    return option("accessor-id", "accessor_id", "-id", default="", help="The token's AccessorID.")(
        func
    )


@click.group()
def acl() -> None:
    """Bootstrap ACLs and manage tokens, policies and roles."""


# ------------------------------------------------------------------ bootstrap


@acl.command("bootstrap")
@_fmt
@agent_options()
def bootstrap(client: AgentClient, fmt: str) -> None:
    """Create the initial management token (once per cluster)."""
    token = _call(client, "PUT", f"{ACL}/bootstrap", "Failed ACL bootstrapping").json()
    token.pop("ID", None)
    _show(token, fmt, format_token)


@acl.command("set-agent-token")
@click.argument("kind")
@click.argument("token_value", metavar="TOKEN")
@agent_options()
def set_agent_token(client: AgentClient, kind: str, token_value: str) -> None:
    """Set the agent's token of KIND (default, agent, agent_recovery, replication...)."""
    _call(
        client,
        "PUT",
        f"/v1/agent/token/{quote_path(kind)}",
        "Failed setting token",
        json_body={"Token": token_value},
    )
    click.echo(f'ACL token "{kind}" set successfully')


# --------------------------------------------------------------------- tokens


@acl.group("token")
def token() -> None:
    """Create, list, read, update, clone and delete tokens."""


def _token_body(
    description: str,
    policy_id: tuple[str, ...],
    policy_name: tuple[str, ...],
    role_id: tuple[str, ...],
    role_name: tuple[str, ...],
    service_identity: tuple[str, ...],
    node_identity: tuple[str, ...],
    templated_policy: tuple[str, ...] = (),
    var: tuple[str, ...] = (),
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if templated_policy:
        body["TemplatedPolicies"] = templated_policies(templated_policy, var)
    elif var:
        raise CLIError("Error: -var needs -templated-policy")
    if description:
        body["Description"] = description
    if policy_id or policy_name:
        body["Policies"] = _policy_links(policy_id, policy_name)
    if role_id or role_name:
        body["Roles"] = _policy_links(role_id, role_name)
    if service_identity:
        body["ServiceIdentities"] = service_identities(service_identity)
    if node_identity:
        body["NodeIdentities"] = node_identities(node_identity)
    return body


@token.command("create")
@option("description", "description", default="", help="A description of the token.")
@_links_options
@option("secret", "secret", default="", help="The SecretID to use (default: a new UUID).")
@option("accessor", "accessor", default="", help="The AccessorID to use (default: a new UUID).")
@option(
    "expires-ttl", "expires_ttl", default="", help="Duration until the token expires (e.g. 1h)."
)
@flag("local", "Create a token local to this datacenter.")
@_fmt
@agent_options()
def token_create(
    client: AgentClient,
    fmt: str,
    description: str,
    secret: str,
    accessor: str,
    expires_ttl: str,
    local: bool,
    **links: tuple[str, ...],
) -> None:
    """Create a token."""
    body = _token_body(description, **links)
    if secret:
        body["SecretID"] = secret
    if accessor:
        body["AccessorID"] = accessor
    if expires_ttl:
        body["ExpirationTTL"] = expires_ttl
    if local:
        body["Local"] = True
    created = _call(
        client, "PUT", f"{ACL}/token", "Failed to create new token", json_body=body
    ).json()
    _show(created, fmt, format_token)


@token.command("list")
@_fmt
@agent_options()
def token_list(client: AgentClient, fmt: str) -> None:
    """List tokens (never showing their SecretIDs)."""
    try:
        tokens = client.get_json(f"{ACL}/tokens")
    except UnexpectedResponse as exc:
        raise _fail("Failed to retrieve the token list", exc) from None
    tokens = [{k: v for k, v in t.items() if k != "SecretID"} for t in tokens or ()]
    if fmt == "json":
        click.echo(json.dumps(tokens, indent=4))
        return
    click.echo("\n\n".join(format_token(t, show_secret=False) for t in tokens))


def _read_token(client: AgentClient, accessor_id: str, self_: bool = False) -> dict[str, Any]:
    path = f"{ACL}/token/self" if self_ else f"{ACL}/token/{quote_path(accessor_id)}"
    if not self_ and not accessor_id:
        raise CLIError("Must specify the -accessor-id parameter")
    found: dict[str, Any] = _call(
        client, "GET", path, f"Error reading token {accessor_id or 'self'!r}"
    ).json()
    return found


@token.command("read")
@_id_option
@flag("self", "Read the token presented with -token.", dest="self_")
@_fmt
@agent_options()
def token_read(client: AgentClient, fmt: str, accessor_id: str, self_: bool) -> None:
    """Show a token."""
    _show(_read_token(client, accessor_id, self_), fmt, format_token)


@token.command("update")
@_id_option
@option("description", "description", default="", help="A new description.")
@_links_options
@flag("merge-policies", "Add -policy-* to the token's policies instead of replacing them.")
@_fmt
@agent_options()
def token_update(
    client: AgentClient,
    fmt: str,
    accessor_id: str,
    description: str,
    merge_policies: bool,
    **links: tuple[str, ...],
) -> None:
    """Update a token: given links replace the token's (policies merge with -merge-policies)."""
    current = _read_token(client, accessor_id)
    body: dict[str, Any] = {
        k: current[k]
        for k in (
            "AccessorID",
            "Description",
            "Policies",
            "Roles",
            "ServiceIdentities",
            "NodeIdentities",
            "TemplatedPolicies",
            "Local",
            "ExpirationTime",
            "AuthMethod",
        )
        if k in current
    }
    changes = _token_body(description, **links)
    if merge_policies and "Policies" in changes:
        changes["Policies"] = [{"ID": p["ID"]} for p in current.get("Policies") or ()] + changes[
            "Policies"
        ]
    body.update(changes)
    updated = _call(
        client,
        "PUT",
        f"{ACL}/token/{quote_path(accessor_id)}",
        f"Failed to update token {accessor_id}",
        json_body=body,
    ).json()
    click.echo("Token updated successfully.")
    _show(updated, fmt, format_token)


@token.command("clone")
@_id_option
@option("description", "description", default="", help="Description of the new token.")
@_fmt
@agent_options()
def token_clone(client: AgentClient, fmt: str, accessor_id: str, description: str) -> None:
    """Create a new token with the same links as an existing one."""
    if not accessor_id:
        raise CLIError("Must specify the -accessor-id parameter")
    body = {"Description": description} if description else {}
    cloned = _call(
        client,
        "PUT",
        f"{ACL}/token/{quote_path(accessor_id)}/clone",
        "Failed to clone token",
        json_body=body,
    ).json()
    click.echo("Token cloned successfully.")
    _show(cloned, fmt, format_token)


@token.command("delete")
@_id_option
@agent_options()
def token_delete(client: AgentClient, accessor_id: str) -> None:
    """Delete a token."""
    if not accessor_id:
        raise CLIError("Must specify the -accessor-id parameter")
    _call(
        client,
        "DELETE",
        f"{ACL}/token/{quote_path(accessor_id)}",
        f"Error deleting token {accessor_id!r}",
    )
    click.echo(f'Token "{accessor_id}" deleted successfully')


# ------------------------------------------------------------ policies and roles


@dataclass(frozen=True)
class _Kind:
    """How the policy and role commands differ; Consul's texts are built from
    ``kind`` ("Failed to create new policy") and ``title`` ('Policy "ID" deleted')."""

    kind: str
    plural: str
    title: str
    path: str  # the API path of one: /v1/acl/policy
    pretty: Callable[[Any], str]
    pretty_list: Callable[[Any], str]

    def find(self, client: AgentClient, key: str, name: str) -> dict[str, Any]:
        """The object with ID ``key`` or, when given, named ``name``."""
        if not key and not name:
            raise CLIError("Must specify either the -id or -name parameters")
        path = f"{self.path}/name/{quote_path(name)}" if name else f"{self.path}/{quote_path(key)}"
        found: dict[str, Any] = _call(
            client, "GET", path, f"Error reading {self.kind} {key or name!r}"
        ).json()
        return found

    def put(self, client: AgentClient, fmt: str, key: str, body: Mapping[str, Any]) -> None:
        """Create (no ``key``) or update with ``body``, and show the answer."""
        path, failure = self.path, f"Failed to create new {self.kind}"
        if key:
            path, failure = f"{self.path}/{quote_path(key)}", f"Failed to update {self.kind} {key}"
        _show(_call(client, "PUT", path, failure, json_body=body).json(), fmt, self.pretty)


def _kind_commands(group: click.Group, kind: _Kind) -> None:
    """``list``, ``read`` and ``delete``, the same for policies and roles."""

    @group.command("list", help=f"List {kind.plural}.")
    @_fmt
    @agent_options()
    def list_(client: AgentClient, fmt: str) -> None:
        try:
            items = client.get_json(f"{ACL}/{kind.plural}") or []
        except UnexpectedResponse as exc:
            raise _fail(f"Failed to retrieve the {kind.kind} list", exc) from None
        _show(items, fmt, kind.pretty_list)

    @group.command("read", help=f"Show a {kind.kind}.")
    @option("id", "key", default="", help=f"The {kind.kind}'s ID.")
    @option("name", "name", default="", help=f"The {kind.kind}'s name.")
    @_fmt
    @agent_options()
    def read(client: AgentClient, fmt: str, key: str, name: str) -> None:
        _show(kind.find(client, key, name), fmt, kind.pretty)

    @group.command("delete", help=f"Delete a {kind.kind}.")
    @option("id", "key", default="", help=f"The {kind.kind}'s ID.")
    @option("name", "name", default="", help=f"The {kind.kind}'s name.")
    @agent_options()
    def delete(client: AgentClient, key: str, name: str) -> None:
        found = kind.find(client, key, name) if name else {"ID": key}
        if not found["ID"]:
            raise CLIError("Must specify either the -id or -name parameters")
        path = f"{kind.path}/{quote_path(found['ID'])}"
        _call(client, "DELETE", path, f"Error deleting {kind.kind} {found['ID']!r}")
        click.echo(f'{kind.title} "{found["ID"]}" deleted successfully')


@acl.group("policy")
def policy() -> None:
    """Create, list, read, update and delete policies."""


@acl.group("role")
def role() -> None:
    """Create, list, read, update and delete roles."""


POLICY = _Kind("policy", "policies", "Policy", f"{ACL}/policy", format_policy, format_policy_list)
ROLE = _Kind("role", "roles", "Role", f"{ACL}/role", format_role, format_role_list)
_kind_commands(policy, POLICY)
_kind_commands(role, ROLE)


def _rules_options(func: F) -> F:
    func = option("rules", "rules", default="", help="Rules: inline, @FILE or - for stdin.")(func)
    return option("rules-file", "rules_file", default="", help="Read the rules from FILE.")(func)


@policy.command("create")
@option("name", "name", default="", help="The policy's name.")
@option("description", "description", default="", help="A description of the policy.")
@_rules_options
@option("valid-datacenter", "datacenters", multiple=True, help="Datacenter where it applies.")
@_fmt
@agent_options()
def policy_create(
    client: AgentClient,
    fmt: str,
    name: str,
    description: str,
    rules: str,
    rules_file: str,
    datacenters: tuple[str, ...],
) -> None:
    """Create a policy."""
    if not name:
        raise CLIError("Missing required '-name' flag")
    body: dict[str, Any] = {"Name": name, "Description": description}
    body["Rules"] = load_rules(rules, rules_file)
    if datacenters:
        body["Datacenters"] = list(datacenters)
    POLICY.put(client, fmt, "", body)


@policy.command("update")
@option("id", "policy_id", default="", help="The policy's ID.")
@option("name", "name", default="", help="A new name.")
@option("description", "description", default="", help="A new description.")
@_rules_options
@_fmt
@agent_options()
def policy_update(
    client: AgentClient,
    fmt: str,
    policy_id: str,
    name: str,
    description: str,
    rules: str,
    rules_file: str,
) -> None:
    """Update a policy: given fields replace the policy's."""
    current = POLICY.find(client, policy_id, "")
    body = {k: current.get(k) for k in ("ID", "Name", "Description", "Rules", "Datacenters")}
    if name:
        body["Name"] = name
    if description:
        body["Description"] = description
    if rules or rules_file:
        body["Rules"] = load_rules(rules, rules_file)
    POLICY.put(client, fmt, policy_id, body)


def _role_links(func: F) -> F:
    return _links_options(func, roles=False)


def _role_changes(links: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if links["policy_id"] or links["policy_name"]:
        body["Policies"] = _policy_links(links["policy_id"], links["policy_name"])
    if links["service_identity"]:
        body["ServiceIdentities"] = service_identities(links["service_identity"])
    if links["node_identity"]:
        body["NodeIdentities"] = node_identities(links["node_identity"])
    if links["templated_policy"]:
        body["TemplatedPolicies"] = templated_policies(links["templated_policy"], links["var"])
    return body


@role.command("create")
@option("name", "name", default="", help="The role's name.")
@option("description", "description", default="", help="A description of the role.")
@_role_links
@_fmt
@agent_options()
def role_create(
    client: AgentClient, fmt: str, name: str, description: str, **links: tuple[str, ...]
) -> None:
    """Create a role."""
    if not name:
        raise CLIError("Missing required '-name' flag")
    ROLE.put(client, fmt, "", {"Name": name, "Description": description, **_role_changes(links)})


@role.command("update")
@option("id", "role_id", default="", help="The role's ID.")
@option("name", "name", default="", help="A new name.")
@option("description", "description", default="", help="A new description.")
@_role_links
@_fmt
@agent_options()
def role_update(
    client: AgentClient,
    fmt: str,
    role_id: str,
    name: str,
    description: str,
    **links: tuple[str, ...],
) -> None:
    """Update a role: given fields and links replace the role's."""
    current = ROLE.find(client, role_id, "")
    keys = (
        "ID",
        "Name",
        "Description",
        "Policies",
        "ServiceIdentities",
        "NodeIdentities",
        "TemplatedPolicies",
    )
    body = {k: current[k] for k in keys if k in current}
    if name:
        body["Name"] = name
    if description:
        body["Description"] = description
    body.update(_role_changes(links))
    ROLE.put(client, fmt, role_id, body)
