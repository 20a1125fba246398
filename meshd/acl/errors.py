"""Errors raised by meshd.acl.

``ACLError`` is the base. ``RulesError`` says where a policy's rules text is
wrong (line, column and reason); ``ACLPermissionDenied`` is the enforcement
failure whose text matches Consul's ``acl.PermissionDeniedError`` so that
clients which grep for it (the Consul CLI, py-consul, Terraform) keep working;
``IdentityError`` rejects a service or node identity Consul would refuse.
"""

from __future__ import annotations

from meshd.errors import MeshdError

__all__ = [
    "ANONYMOUS_TOKEN_ACCESSOR_ID",
    "ACLError",
    "ACLPermissionDenied",
    "IdentityError",
    "RulesError",
]

# Consul's structs.ACLTokenAnonymousID. It lives here because the
# ACLPermissionDenied text depends on it; meshd.acl.builtin re-exports it.
ANONYMOUS_TOKEN_ACCESSOR_ID = "00000000-0000-0000-0000-000000000002"


class ACLError(MeshdError):
    """Base class of every error meshd.acl raises on purpose."""


class RulesError(ACLError, ValueError):
    """Policy rules text (HCL or JSON) is malformed or invalid.

    ``line`` and ``column`` are 1-based and point at the offending token
    (None when the error concerns the whole text, e.g. its size). ``str()``
    gives ``rules: line 3, column 12: unknown policy "writ" for service "web"
    (want read, write or deny)``.
    """

    def __init__(self, reason: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(reason, line, column)
        self.reason = reason
        self.line = line
        self.column = column

    def __str__(self) -> str:
        if self.line is None:
            return f"rules: {self.reason}"
        if self.column is None:
            return f"rules: line {self.line}: {self.reason}"
        return f"rules: line {self.line}, column {self.column}: {self.reason}"


class ACLPermissionDenied(ACLError):
    """A token lacks a permission; the HTTP layer answers 403 with ``str(err)``.

    ``permission`` is Consul's ``resource:access`` label (``service:write``,
    ``operator:read``), ``resource`` the name it was checked on ("" for
    resource-less permissions). The text follows Consul's
    ``PermissionDeniedError.Error()``::

        Permission denied: token with AccessorID '<id>' lacks permission 'service:write' on "db"

    and, for the anonymous token, ``Permission denied: anonymous token lacks
    permission ... The anonymous token is used implicitly when a request does
    not specify a token.``
    """

    def __init__(self, accessor_id: str, permission: str, resource: str = "") -> None:
        super().__init__(accessor_id, permission, resource)
        self.accessor_id = accessor_id
        self.permission = permission
        self.resource = resource

    def __str__(self) -> str:
        anonymous = self.accessor_id == ANONYMOUS_TOKEN_ACCESSOR_ID
        who = "anonymous token" if anonymous else f"token with AccessorID '{self.accessor_id}'"
        text = f"Permission denied: {who} lacks permission '{self.permission}'"
        if self.resource:
            # Consul quotes the name without escaping (ResourceDescriptor.ToString).
            text += f' on "{self.resource}"'
        if anonymous:
            text += (
                ". The anonymous token is used implicitly when a request does not specify a token."
            )
        return text


class IdentityError(ACLError, ValueError):
    """A service or node identity cannot be turned into a policy.

    By default the name is not ``^[a-z0-9]([a-z0-9-_]*[a-z0-9])?$`` (at most
    256 characters), the names Consul accepts for identities; ``reason``
    overrides the text for other faults (a node identity without datacenter).
    """

    def __init__(self, kind: str, name: str, reason: str | None = None) -> None:
        """``kind`` is ``Service`` or ``Node``; ``name`` the identity's name."""
        super().__init__(kind, name, reason)
        self.kind = kind
        self.name = name
        self.reason = reason

    def __str__(self) -> str:
        if self.reason is not None:
            return self.reason
        return (
            f'{self.kind} identity "{self.name}" has an invalid name. '
            "Only lowercase alphanumeric characters, '-' and '_' are allowed"
        )
