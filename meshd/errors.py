"""Errors raised by meshd/ (the agent: configuration, CLI, runtime).

``MeshdError`` is the base of every error meshd raises on purpose. Problems
with user input name where the input came from: ``ConfigError`` carries the
file (or flag) and the dotted key, so an operator can fix it without reading
code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import ClassVar

__all__ = [
    "REQUEST_ERRORS",
    "ACLDisabled",
    "ACLNotFound",
    "ConfigError",
    "Conflict",
    "DurationError",
    "Internal",
    "InvalidArgument",
    "MeshdError",
    "NoLeaderError",
    "NoServersError",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RemoteError",
    "RequestError",
    "StartupError",
    "TooManyRequests",
    "Unavailable",
    "Unimplemented",
    "request_error",
]


class MeshdError(Exception):
    """Base class of every error meshd/ raises on purpose."""


class ConfigError(MeshdError):
    """The agent configuration is invalid.

    ``file`` is the configuration file the bad value came from (None for
    defaults, flags and whole-configuration rules), ``key`` the dotted
    configuration key (``ports.http``) or, for a command-line flag, the flag
    itself (``--http-port``), ``reason`` what is wrong. ``str()`` gives e.g.
    ``config: /etc/meshd/agent.json: ports.http: must be an integer between
    1 and 65535, got "abc"`` or ``flag --http-port: ...``.
    """

    def __init__(self, file: str | None, key: str | None, reason: str) -> None:
        super().__init__(file, key, reason)
        self.file = file
        self.key = key
        self.reason = reason

    @staticmethod
    def describe(file: str | None, key: str | None, text: str) -> str:
        """Render ``text`` located at ``file``/``key`` the way errors are rendered."""
        if file is None and key is not None and key.startswith("--"):
            return f"flag {key}: {text}"
        parts = ["config"]
        if file is not None:
            parts.append(file)
        if key:
            parts.append(key)
        parts.append(text)
        return ": ".join(parts)

    def __str__(self) -> str:
        return self.describe(self.file, self.key, self.reason)


class StartupError(MeshdError):
    """The agent cannot start in this environment although its configuration
    parsed: a port in use, an address this host does not have, a certificate
    or key that is missing or does not fit, a data_dir it cannot write.

    ``key`` is the configuration key at fault (``ports.http``), ``value`` its
    value, ``reason`` what went wrong and ``fix`` what to do about it;
    ``str()`` is one line: ``startup: ports.http = 8500: cannot listen on
    127.0.0.1:8500: address already in use (is another meshd running?); stop
    it or choose another port (-http-port)``.
    """

    def __init__(self, key: str, value: object, reason: str, fix: str) -> None:
        super().__init__(key, value, reason, fix)
        self.key = key
        self.value = value
        self.reason = reason
        self.fix = fix

    def __str__(self) -> str:
        return f"startup: {self.key} = {self.value}: {self.reason}; {self.fix}"


class DurationError(MeshdError, ValueError):
    """A duration string is not valid Go ``time.ParseDuration`` syntax (or is negative)."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(text, reason)
        self.text = text
        self.reason = reason

    def __str__(self) -> str:
        return f"invalid duration {json.dumps(self.text, ensure_ascii=False)}: {self.reason}"


class RequestError(MeshdError):
    """A request cannot be served as asked, and ``code`` says why.

    Domain and server code raise these; they know nothing of HTTP. ``code``
    is also the RPC error code a server answers with, so a forwarded request
    fails on the agent that received it with the same error it raised on the
    server. Only ``meshd.http.errors.status_for`` turns a code into an HTTP
    status. ``message`` is Consul's text, verbatim (clients match on it);
    ``field`` names the input at fault; ``headers`` are extra response
    headers (``Retry-After``...).
    """

    code: ClassVar[str] = "Internal"
    default_message: ClassVar[str] = "Internal error"
    # True when the caller can fix it (its input, token or timing), as opposed
    # to the cluster failing to serve a valid request.
    caller_fault: ClassVar[bool] = False

    def __init__(
        self,
        message: str | None = None,
        field: str | None = None,
        *,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        text = self.default_message if message is None else message
        super().__init__(text)
        self.message = text
        self.field = field
        self.headers = tuple(headers)

    def detail(self) -> str:
        """The text a client is answered with."""
        return self.message


class InvalidArgument(RequestError):
    """The request or one of its fields is invalid. When the message does not
    already mention ``field``, the answer appends `` (field "<field>")`` so
    every such error names what to fix."""

    code = "InvalidArgument"
    caller_fault = True
    default_message = "Bad request"

    def detail(self) -> str:
        field = self.field
        if field and field.lower() not in self.message.lower():
            return f'{self.message} (field "{field}")'
        return self.message


class PermissionDenied(RequestError):
    """The token lacks a permission; answered as ``Permission denied: <message>``
    (Consul's text, e.g. ``token with AccessorID '...' lacks permission
    'service:write' on "db"``)."""

    code = "PermissionDenied"
    caller_fault = True
    default_message = ""
    PREFIX = "Permission denied"

    def detail(self) -> str:
        if self.message.startswith(self.PREFIX):
            return self.message
        return f"{self.PREFIX}: {self.message}" if self.message else self.PREFIX


class NotFound(RequestError):
    """No such resource."""

    code = "NotFound"
    caller_fault = True
    default_message = "Not Found"


class Conflict(RequestError):
    """The request conflicts with the current state."""

    code = "Conflict"
    caller_fault = True
    default_message = "Conflict"


class PayloadTooLarge(RequestError):
    """The request body is larger than the endpoint accepts."""

    code = "PayloadTooLarge"
    caller_fault = True
    default_message = "Request body too large"


class TooManyRequests(RequestError):
    """A rate or connection limit was exceeded."""

    code = "TooManyRequests"
    caller_fault = True
    default_message = "rate limit exceeded"


class Unavailable(RequestError):
    """This agent cannot serve the request now (starting, shutting down, overloaded)."""

    code = "Unavailable"
    default_message = "Service Unavailable"


class ACLNotFound(RequestError):
    """The token is unknown or expired: Consul's 403 ``ACL not found`` (no
    "Permission denied" prefix; clients match on the text)."""

    code = "ACLNotFound"
    caller_fault = True
    default_message = "ACL not found"


class ACLDisabled(RequestError):
    """An ACL endpoint was called while ACLs are off: Consul's 401 ``ACL support disabled``."""

    code = "ACLDisabled"
    caller_fault = True
    default_message = "ACL support disabled"


class Unimplemented(RequestError):
    """This build does not do what was asked (Consul's 501s)."""

    code = "Unimplemented"
    default_message = "Not Implemented"


class Internal(RequestError):
    """The request failed for a reason that is not the caller's (Consul's 500s
    such as ``Failed to retrieve token after insertion``)."""


class NoLeaderError(RequestError):
    """No cluster leader could be found within the hold timeout; answered
    "No cluster leader" as Consul does."""

    code = "NoLeader"
    default_message = "No cluster leader"


class NoServersError(RequestError):
    """A client agent knows no reachable server to send its request to;
    answered "No known Consul servers" as Consul does."""

    default_message = "No known Consul servers"


# Every code a request error can carry, and its class (RPC answers use the codes).
REQUEST_ERRORS: dict[str, type[RequestError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        PermissionDenied,
        NotFound,
        Conflict,
        PayloadTooLarge,
        TooManyRequests,
        Unavailable,
        NoLeaderError,
        ACLNotFound,
        ACLDisabled,
        Unimplemented,
        Internal,
    )
}


def request_error(code: str, message: str, field: str | None = None) -> RequestError | None:
    """The request error of ``code`` (as an RPC answer carries it), or None
    when ``code`` is not one of ``REQUEST_ERRORS``."""
    cls = REQUEST_ERRORS.get(code)
    return None if cls is None else cls(message, field)


class RemoteError(MeshdError):
    """A server answered a forwarded request with an error of ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
