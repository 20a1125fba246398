"""Binding rules: what a login through an auth method is granted (sans-I/O).

Consul's agent/consul/authmethod binder
(https://developer.hashicorp.com/consul/docs/security/acl/acl-binding-rules):
each rule of the method whose ``Selector`` (our ``?filter=`` language) matches
the mapped claims, seen as ``{"value": {...}, "list": {...}}``, contributes one
identity of its ``BindType`` named by ``BindName`` with ``${value.<name>}``
interpolated. Role and policy bindings to names that do not exist are
skipped, as in Consul; a login that binds nothing is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from registry.records import ACLBindingRule

from ..filter import FilterError, compile_filter
from .builtin import validate_identity_name
from .errors import IdentityError
from .templated import TemplateError, validate_templated_policy

BIND_TYPES = ("service", "node", "role", "policy", "templated-policy")
_VAR = re.compile(r"\$\{\s*([A-Za-z0-9_.\-]+)\s*\}")
_NAME = re.compile(r"[A-Za-z0-9\-_]{1,256}")


class BindingError(ValueError):
    """A binding rule that cannot be evaluated or stored (Consul's text)."""


@dataclass
class Bindings:
    """The identities one login receives."""

    services: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)
    templated: list[tuple[str, str]] = field(default_factory=list)

    def empty(self) -> bool:
        """Whether nothing was bound."""
        return not (self.services or self.nodes or self.roles or self.policies or self.templated)


def interpolate(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each ``${value.<name>}`` replaced; raises ``BindingError``
    for an unknown variable."""

    def sub(match: re.Match[str]) -> str:
        var = match.group(1)
        if not var.startswith("value.") or var[6:] not in values:
            raise BindingError(f"unknown variable {var!r}")
        return values[var[6:]]

    return _VAR.sub(sub, text)


def _check_name(bind_type: str, name: str, vars_name: str) -> None:
    try:
        if bind_type == "service":
            validate_identity_name("Service", name)
        elif bind_type == "node":
            validate_identity_name("Node", name)
        elif bind_type == "templated-policy":
            validate_templated_policy(name, vars_name)
        elif not _NAME.fullmatch(name):
            raise BindingError(f"invalid {bind_type} name {name!r}")
    except (IdentityError, TemplateError) as exc:
        raise BindingError(str(exc)) from None


def validate_rule(
    bind_type: str, bind_name: str, vars_name: str, selector: str, claim_names: Iterable[str]
) -> None:
    """Check a binding rule before it is stored, with every mapped claim set
    to a sample value (as Consul does). Raises ``BindingError`` with
    Consul's text."""
    if selector:
        try:
            compile_filter(selector)
        except FilterError as exc:
            raise BindingError(f"invalid Binding Rule: Selector is invalid: {exc}") from None
    if not bind_type:
        raise BindingError("Invalid Binding Rule: no BindType is set")
    if not bind_name:
        raise BindingError("Invalid Binding Rule: no BindName is set")
    if bind_type not in BIND_TYPES:
        raise BindingError(f"Invalid Binding Rule: unknown BindType {json.dumps(bind_type)}")
    sample = dict.fromkeys(claim_names, "fake")
    try:
        name = interpolate(bind_name, sample)
        variable = interpolate(vars_name, sample)
        _check_name(bind_type, name, variable)
    except BindingError as exc:
        raise BindingError(f"Invalid Binding Rule: invalid BindName: {exc}") from None


def bind(
    rules: Iterable[ACLBindingRule], values: Mapping[str, str], lists: Mapping[str, list[str]]
) -> Bindings:
    """The identities ``rules`` grant a login whose mapped claims are
    ``values``/``lists``. A matching rule whose name does not interpolate to
    a valid name raises ``BindingError`` (Consul fails that login)."""
    data = {"value": dict(values), "list": {k: list(v) for k, v in lists.items()}}
    out = Bindings()
    for rule in rules:
        if rule.selector and not compile_filter(rule.selector)(data):
            continue
        name = interpolate(rule.bind_name, values)
        variable = interpolate(rule.bind_vars_name, values)
        _check_name(rule.bind_type, name, variable)
        if rule.bind_type == "service":
            out.services.append(name)
        elif rule.bind_type == "node":
            out.nodes.append(name)
        elif rule.bind_type == "role":
            out.roles.append(name)
        elif rule.bind_type == "policy":
            out.policies.append(name)
        else:
            out.templated.append((name, variable))
    return out
