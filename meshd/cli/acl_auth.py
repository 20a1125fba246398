"""``meshd acl auth-method`` and ``acl binding-rule`` (Consul's ``consul acl
auth-method`` and ``consul acl binding-rule``), through /v1/acl/auth-method*
and /v1/acl/binding-rule*: what ``meshd login`` (cli/login.py) logs in through.

Pretty output follows Consul's command/acl/authmethod and bindingrule
formatters; ``-config`` takes ``@path`` or ``-`` like ``-rules``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import click

from .acl import ACL, _block, _call, _fmt, _show, acl, load_rules
from .client import AgentClient, quote_path
from .errors import CLIError
from .options import agent_options, option


def format_auth_method(method: Mapping[str, Any]) -> str:
    """Consul's pretty auth method."""
    lines = [f"Name:          {method.get('Name', '')}", f"Type:          {method.get('Type', '')}"]
    if method.get("DisplayName"):
        lines.append(f"DisplayName:   {method['DisplayName']}")
    lines.append(f"Description:   {method.get('Description', '')}")
    if method.get("MaxTokenTTL") not in (None, "", "0s"):
        lines.append(f"MaxTokenTTL:   {method['MaxTokenTTL']}")
    if method.get("TokenLocality"):
        lines.append(f"TokenLocality: {method['TokenLocality']}")
    if "Config" in method:
        lines += ["Config:", json.dumps(method["Config"], indent=2, sort_keys=True)]
    return _block(lines)


def format_binding_rule(rule: Mapping[str, Any]) -> str:
    """Consul's pretty binding rule."""
    lines = [
        f"ID:           {rule.get('ID', '')}",
        f"AuthMethod:   {rule.get('AuthMethod', '')}",
        f"Description:  {rule.get('Description', '')}",
        f"BindType:     {rule.get('BindType', '')}",
        f"BindName:     {rule.get('BindName', '')}",
    ]
    if rule.get("BindVars"):
        lines.append(f"BindVars:     {json.dumps(rule['BindVars'], sort_keys=True)}")
    lines.append(f"Selector:     {rule.get('Selector', '')}")
    return _block(lines)


def _list(items: list[Mapping[str, Any]], key: str, pretty: Any) -> str:
    out = []
    for item in items:
        out.append(f"{item.get(key, '')}:")
        out += ["   " + line for line in pretty(item).splitlines()]
    return _block(out)


def _config(text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(load_rules(text, ""))
    except ValueError as exc:
        raise CLIError(f"Error parsing -config: {exc}") from None
    if not isinstance(value, dict):
        raise CLIError("Error parsing -config: must be a JSON object")
    return value


# ----------------------------------------------------------------- auth methods


@acl.group("auth-method")
def auth_method() -> None:
    """Create, list, read, update and delete auth methods."""


def _method_options(func: Any) -> Any:
    for name, help_text in (
        ("display-name", "A name to show in UIs."),
        ("description", "A description of the auth method."),
        ("max-token-ttl", "How long tokens from a login live (e.g. 10m)."),
        ("token-locality", "local (default) or global."),
        ("config", "The type's JSON config: inline, @file or - for stdin."),
    ):
        func = option(name, name.replace("-", "_"), default="", help=help_text)(func)
    return func


def _method_body(name: str, method_type: str, **opts: str) -> dict[str, Any]:
    body: dict[str, Any] = {"Name": name}
    if method_type:
        body["Type"] = method_type
    for key, field in (
        ("display_name", "DisplayName"),
        ("description", "Description"),
        ("max_token_ttl", "MaxTokenTTL"),
        ("token_locality", "TokenLocality"),
    ):
        if opts.get(key):
            body[field] = opts[key]
    if opts.get("config"):
        body["Config"] = _config(opts["config"])
    return body


@dataclass(frozen=True)
class _Object:
    """How the auth-method and binding-rule ``read``/``delete`` commands differ;
    Consul's texts are built from ``kind`` ("Error reading auth method 'x'")."""

    kind: str
    path: str  # the API path of one: /v1/acl/auth-method
    key: str  # the option naming one: -name or -id
    key_label: str  # "name" or "ID", in the option's help
    pretty: Callable[[Any], str]
    deleted: str  # 'Auth-method "x" deleted successfully'


def _read_and_delete(group: click.Group, obj: _Object, read_help: str, delete_help: str) -> None:
    @group.command("read", help=read_help)
    @option(obj.key, "key", default="", help=f"The {obj.kind}'s {obj.key_label}.")
    @_fmt
    @agent_options()
    def read(client: AgentClient, fmt: str, key: str) -> None:
        if not key:
            raise CLIError(f"Must specify the -{obj.key} parameter")
        path = f"{obj.path}/{quote_path(key)}"
        _show(
            _call(client, "GET", path, f"Error reading {obj.kind} {key!r}").json(), fmt, obj.pretty
        )

    @group.command("delete", help=delete_help)
    @option(obj.key, "key", default="", help=f"The {obj.kind}'s {obj.key_label}.")
    @agent_options()
    def delete(client: AgentClient, key: str) -> None:
        if not key:
            raise CLIError(f"Must specify the -{obj.key} parameter")
        _call(
            client, "DELETE", f"{obj.path}/{quote_path(key)}", f"Error deleting {obj.kind} {key!r}"
        )
        click.echo(f'{obj.deleted} "{key}" deleted successfully')


def _put_merged(
    client: AgentClient, path: str, changes: Callable[[], dict[str, Any]], failure: str
) -> Any:
    """Read ``path``, lay ``changes()`` over it and PUT it back (without the
    raft indexes); the answer's JSON. Serves auth-method and binding-rule update."""
    current = _call(client, "GET", path, failure).json()
    body = {**current, **changes()}
    for key in ("CreateIndex", "ModifyIndex"):
        body.pop(key, None)
    return _call(client, "PUT", path, failure, json_body=body).json()


@auth_method.command("create")
@option("type", "method_type", default="", help="The auth method's type (jwt).")
@option("name", "name", default="", help="The auth method's name.")
@_method_options
@_fmt
@agent_options()
def method_create(client: AgentClient, fmt: str, method_type: str, name: str, **opts: str) -> None:
    """Create an auth method."""
    if not method_type or not name:
        raise CLIError("Missing required '-type' and '-name' flags")
    body = _method_body(name, method_type, **opts)
    out = _call(
        client, "PUT", f"{ACL}/auth-method", "Failed to create new auth method", json_body=body
    ).json()
    _show(out, fmt, format_auth_method)


@auth_method.command("update")
@option("name", "name", default="", help="The auth method to update.")
@_method_options
@_fmt
@agent_options()
def method_update(client: AgentClient, fmt: str, name: str, **opts: str) -> None:
    """Update an auth method (only the fields given change)."""
    if not name:
        raise CLIError("Cannot update an auth method without specifying the -name parameter")
    path = f"{ACL}/auth-method/{quote_path(name)}"
    out = _put_merged(
        client, path, lambda: _method_body(name, "", **opts), f"Failed to update auth method {name}"
    )
    _show(out, fmt, format_auth_method)


@auth_method.command("list")
@_fmt
@agent_options()
def method_list(client: AgentClient, fmt: str) -> None:
    """List auth methods."""
    out = _call(
        client, "GET", f"{ACL}/auth-methods", "Failed to retrieve the auth method list"
    ).json()
    _show(out, fmt, lambda items: _list(items, "Name", format_auth_method))


_read_and_delete(
    auth_method,
    _Object("auth method", f"{ACL}/auth-method", "name", "name", format_auth_method, "Auth-method"),
    "Show one auth method with its config.",
    "Delete an auth method, its binding rules and its login tokens.",
)


# ---------------------------------------------------------------- binding rules


@acl.group("binding-rule")
def binding_rule() -> None:
    """Create, list, read, update and delete binding rules."""


def _rule_options(func: Any) -> Any:
    for name, help_text in (
        ("description", "A description of the binding rule."),
        ("selector", "Filter expression over the mapped claims (value.x, list.x)."),
        ("bind-type", "service, node, role, policy or templated-policy."),
        ("bind-name", "Name to bind; may use ${value.x}."),
        ("bind-vars", "NAME=VALUE variables for templated-policy (only Name)."),
    ):
        func = option(name, name.replace("-", "_"), default="", help=help_text)(func)
    return func


def _rule_body(**opts: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key, field in (
        ("description", "Description"),
        ("selector", "Selector"),
        ("bind_type", "BindType"),
        ("bind_name", "BindName"),
    ):
        if opts.get(key):
            body[field] = opts[key]
    if opts.get("bind_vars"):
        key, sep, value = opts["bind_vars"].partition("=")
        if not sep:
            raise CLIError("Error: -bind-vars must be NAME=VALUE")
        body["BindVars"] = {key: value}
    return body


@binding_rule.command("create")
@option("method", "method", default="", help="The auth method the rule is for.")
@_rule_options
@_fmt
@agent_options()
def rule_create(client: AgentClient, fmt: str, method: str, **opts: str) -> None:
    """Create a binding rule."""
    if not method:
        raise CLIError("Missing required '-method' flag")
    body = {"AuthMethod": method, **_rule_body(**opts)}
    out = _call(
        client, "PUT", f"{ACL}/binding-rule", "Failed to create new binding rule", json_body=body
    ).json()
    _show(out, fmt, format_binding_rule)


@binding_rule.command("update")
@option("id", "rule_id", default="", help="The binding rule's ID.")
@_rule_options
@_fmt
@agent_options()
def rule_update(client: AgentClient, fmt: str, rule_id: str, **opts: str) -> None:
    """Update a binding rule (only the fields given change)."""
    if not rule_id:
        raise CLIError("Cannot update a binding rule without specifying the -id parameter")
    path = f"{ACL}/binding-rule/{quote_path(rule_id)}"
    out = _put_merged(
        client, path, lambda: _rule_body(**opts), f"Failed to update binding rule {rule_id}"
    )
    _show(out, fmt, format_binding_rule)


@binding_rule.command("list")
@option("method", "method", default="", help="Only the rules of this auth method.")
@_fmt
@agent_options()
def rule_list(client: AgentClient, fmt: str, method: str) -> None:
    """List binding rules."""
    out = _call(
        client,
        "GET",
        f"{ACL}/binding-rules",
        "Failed to retrieve the binding rule list",
        params={"authmethod": method or None},
    ).json()
    _show(out, fmt, lambda items: _list(items, "ID", format_binding_rule))


_read_and_delete(
    binding_rule,
    _Object("binding rule", f"{ACL}/binding-rule", "id", "ID", format_binding_rule, "Binding rule"),
    "Show one binding rule.",
    "Delete a binding rule.",
)
