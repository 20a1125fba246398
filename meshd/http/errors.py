r"""The one place where errors become HTTP responses.

Domain and server code raise ``meshd.errors.RequestError``\ s, which carry a
code and no status; ``status_for`` is the only function that knows which
HTTP status a code gets. Bodies are ``text/plain; charset=utf-8`` like
Consul's (agent/http.go ``wrap``):

================  ======  ===============================================
error (= code)    status  body
================  ======  ===============================================
InvalidArgument   400     the message, verbatim ("Invalid wait time")
ACLDisabled       401     "ACL support disabled"
PermissionDenied  403     "Permission denied: <message>"
ACLNotFound       403     "ACL not found"
NotFound          404     the message
MethodNotAllowed  405     "method PUT not allowed" + ``Allow`` (HTTP only)
Conflict          409     the message
PayloadTooLarge   413     the message
TooManyRequests   429     the message
NoLeaderError     500     "No cluster leader" (code ``NoLeader``)
Internal          500     the message
Unimplemented     501     the message
Unavailable       503     the message
anything else     500     "Internal error" (logged with the request id)
================  ======  ===============================================

``BadRequest`` and ``NoLeader`` are the API handlers' names for
``InvalidArgument`` and ``NoLeaderError`` (the same classes). ``HTTPError``
is for what only exists in HTTP: a status of the handler's choosing
(``MethodNotAllowed``, a redirect-like answer).

Errors of other packages (``registry.errors.ValidationError``, raft's
``NotLeaderError``) are mapped by registering a mapper at agent start-up, so
this package never imports them::

    register_error_mapper(
        ValidationError, lambda e: error_response(InvalidArgument(str(e), e.field))
    )
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from meshd.errors import (
    ACLDisabled,
    ACLNotFound,
    Conflict,
    Internal,
    InvalidArgument,
    NoLeaderError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RequestError,
    TooManyRequests,
    Unavailable,
    Unimplemented,
)
from meshd.http.message import Response

__all__ = [
    "DEFAULT_ERROR_MAPPING",
    "BadRequest",
    "Conflict",
    "ErrorMapping",
    "HTTPError",
    "Internal",
    "MethodNotAllowed",
    "NoLeader",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RequestError",
    "TooManyRequests",
    "Unavailable",
    "error_response",
    "register_error_mapper",
    "status_for",
]

E = TypeVar("E", bound=BaseException)

BadRequest = InvalidArgument
NoLeader = NoLeaderError

# The HTTP status of each request error code (Consul's statuses).
_STATUS: Mapping[str, int] = {
    InvalidArgument.code: 400,
    ACLDisabled.code: 401,
    PermissionDenied.code: 403,
    ACLNotFound.code: 403,
    NotFound.code: 404,
    Conflict.code: 409,
    PayloadTooLarge.code: 413,
    TooManyRequests.code: 429,
    NoLeaderError.code: 500,
    Internal.code: 500,
    Unimplemented.code: 501,
    Unavailable.code: 503,
}


def status_for(code: str) -> int:
    """The HTTP status answering a request error of ``code`` (500 for an unknown one)."""
    return _STATUS.get(code, 500)


def error_response(exc: RequestError, text: str | None = None) -> Response:
    """``exc`` as a ``text/plain`` response: its status, ``text`` (default: the
    error's own answer text) and its extra headers."""
    body = exc.detail() if text is None else text
    response = Response.text(body, status_for(exc.code))
    response.headers.extend(exc.headers)
    return response


class HTTPError(Exception):
    """An answer that only exists in HTTP: a status of the raiser's choosing
    and a plain-text body (Consul's ``HTTPError``)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = tuple(headers)

    def to_response(self) -> Response:
        """Render this error as a ``text/plain`` response with its extra headers."""
        response = Response.text(self.message, self.status)
        response.headers.extend(self.headers)
        return response


class MethodNotAllowed(HTTPError):
    """405 with Consul's body ``method <M> not allowed`` and ``Allow: OPTIONS,GET,...``."""

    def __init__(self, method: str, allowed: Sequence[str]) -> None:
        self.method = method
        self.allowed = tuple(allowed)
        super().__init__(
            405,
            f"method {method} not allowed",
            headers=[("Allow", ",".join(self.allowed))],
        )


ErrorMapper = Callable[[Any], Response]


def _map_http_error(exc: HTTPError) -> Response:
    return exc.to_response()


def _map_request_error(exc: RequestError) -> Response:
    return error_response(exc)


_ALWAYS: Mapping[type[BaseException], ErrorMapper] = {
    HTTPError: _map_http_error,
    RequestError: _map_request_error,
}


class ErrorMapping:
    """Exception type -> response, looked up along the exception's MRO.

    The most specific registered type wins, so a package can map its base
    error and override one subclass. ``HTTPError`` and ``RequestError`` are
    always mapped.
    Lookups are cached per concrete type; registering clears the cache.
    """

    def __init__(self) -> None:
        self._mappers: dict[type[BaseException], ErrorMapper] = dict(_ALWAYS)
        self._resolved: dict[type[BaseException], ErrorMapper | None] = {}

    def register(self, exc_type: type[E], fn: Callable[[E], Response]) -> None:
        """Map ``exc_type`` (and subclasses without their own mapper) with ``fn``.

        Raises ``ValueError`` if ``exc_type`` already has a mapper: two
        packages disagreeing on one error's status is a bug worth seeing.
        """
        if exc_type in self._mappers and exc_type not in _ALWAYS:
            raise ValueError(f"an error mapper for {exc_type.__qualname__} is already registered")
        self._mappers[exc_type] = fn
        self._resolved.clear()

    def unregister(self, exc_type: type[BaseException]) -> None:
        """Remove the mapper of ``exc_type`` (no-op when none); ``HTTPError``'s
        and ``RequestError``'s stay."""
        if exc_type not in _ALWAYS:
            self._mappers.pop(exc_type, None)
            self._resolved.clear()

    def mapper_for(self, exc_type: type[BaseException]) -> ErrorMapper | None:
        """The mapper that applies to ``exc_type``, or None when it is unmapped."""
        try:
            return self._resolved[exc_type]
        except KeyError:
            pass
        found: ErrorMapper | None = None
        for klass in exc_type.__mro__:
            found = self._mappers.get(klass)
            if found is not None:
                break
        self._resolved[exc_type] = found
        return found

    def to_response(self, exc: BaseException) -> Response | None:
        """Map ``exc`` to a response, or return None when no mapper applies.

        A group holding exactly one exception (a handler's nursery with one
        failing child) is mapped as that exception. A mapper that raises
        propagates its exception: the caller treats it as an internal error.
        """
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        mapper = self.mapper_for(type(exc))
        return None if mapper is None else mapper(exc)


DEFAULT_ERROR_MAPPING = ErrorMapping()


def register_error_mapper(exc_type: type[E], fn: Callable[[E], Response]) -> None:
    """Register ``fn`` for ``exc_type`` on the process-wide mapping used by default ``App``\\ s.

    Raises ``ValueError`` if a mapper for that exact type already exists.
    """
    DEFAULT_ERROR_MAPPING.register(exc_type, fn)
