"""HTTP-facing errors and the one place where exceptions become responses.

Handlers raise these (or their own package's errors); ``App`` turns whatever
escapes a handler into a response through an ``ErrorMapping``. Bodies are
``text/plain; charset=utf-8`` like Consul's (agent/http.go ``wrap``):

===================  ======  =================================================
exception            status  body
===================  ======  =================================================
BadRequest           400     the message, verbatim ("Invalid wait time")
PermissionDenied     403     "Permission denied: <message>"
NotFound             404     the message
MethodNotAllowed     405     "method PUT not allowed" + ``Allow`` header
Conflict             409     the message
PayloadTooLarge      413     the message
TooManyRequests      429     the message
NoLeader             500     "No cluster leader"
Unavailable          503     the message
anything else        500     "Internal error" (logged with the request id)
===================  ======  =================================================

Errors of other packages (``registry.errors.ValidationError``, raft's
``NotLeaderError``) are mapped by registering a mapper at agent start-up, so
this package never imports them::

    register_error_mapper(ValidationError, lambda e: BadRequest(str(e), e.field).to_response())
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from meshd.http.message import Response

__all__ = [
    "DEFAULT_ERROR_MAPPING",
    "BadRequest",
    "Conflict",
    "ErrorMapping",
    "HTTPError",
    "MethodNotAllowed",
    "NoLeader",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "TooManyRequests",
    "Unavailable",
    "register_error_mapper",
]

E = TypeVar("E", bound=BaseException)


class HTTPError(Exception):
    """An error with a definite HTTP status and a plain-text body (Consul's ``HTTPError``)."""

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

    def body_text(self) -> str:
        """The text sent as the response body."""
        return self.message

    def to_response(self) -> Response:
        """Render this error as a ``text/plain`` response with its extra headers."""
        response = Response.text(self.body_text(), self.status)
        response.headers.extend(self.headers)
        return response


class BadRequest(HTTPError):
    """400: the request is malformed or a field is invalid.

    The body is ``message`` verbatim, because Consul clients and scripts match
    on exact texts such as ``Invalid wait time`` or ``Request decode failed:
    ...``. ``field`` names the offending input (query parameter, header or
    JSON field); when the message does not already mention it, the body gets
    `` (field "<field>")`` appended so every 400 names what to fix.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(400, message)
        self.field = field

    def body_text(self) -> str:
        field = self.field
        if field and field.lower() not in self.message.lower():
            return f'{self.message} (field "{field}")'
        return self.message


class PermissionDenied(HTTPError):
    """403: the token lacks a permission. Body ``Permission denied: <message>``.

    Consul's text, e.g. ``Permission denied: token with AccessorID '...'
    lacks permission 'service:write' on "db"``.
    """

    PREFIX = "Permission denied"

    def __init__(self, message: str = "") -> None:
        super().__init__(403, message)

    def body_text(self) -> str:
        if self.message.startswith(self.PREFIX):
            return self.message
        return f"{self.PREFIX}: {self.message}" if self.message else self.PREFIX


class NotFound(HTTPError):
    """404: no such resource (or, from the router, no such endpoint)."""

    def __init__(self, message: str = "Not Found") -> None:
        super().__init__(404, message)


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


class Conflict(HTTPError):
    """409: the request conflicts with the current state."""

    def __init__(self, message: str = "Conflict") -> None:
        super().__init__(409, message)


class PayloadTooLarge(HTTPError):
    """413: the request body is larger than the endpoint accepts."""

    def __init__(self, message: str = "Request body too large") -> None:
        super().__init__(413, message)


class TooManyRequests(HTTPError):
    """429: rate or connection limit exceeded."""

    def __init__(self, message: str = "rate limit exceeded") -> None:
        super().__init__(429, message)


class NoLeader(HTTPError):
    """500 ``No cluster leader``: what Consul answers while the servers elect a leader."""

    def __init__(self, message: str = "No cluster leader") -> None:
        super().__init__(500, message)


class Unavailable(HTTPError):
    """503: the agent cannot serve this request now (starting, shutting down, overloaded)."""

    def __init__(self, message: str = "Service Unavailable") -> None:
        super().__init__(503, message)


ErrorMapper = Callable[[Any], Response]


def _map_http_error(exc: HTTPError) -> Response:
    return exc.to_response()


class ErrorMapping:
    """Exception type -> response, looked up along the exception's MRO.

    The most specific registered type wins, so a package can map its base
    error and override one subclass. ``HTTPError`` is always mapped.
    Lookups are cached per concrete type; registering clears the cache.
    """

    def __init__(self) -> None:
        self._mappers: dict[type[BaseException], ErrorMapper] = {HTTPError: _map_http_error}
        self._resolved: dict[type[BaseException], ErrorMapper | None] = {}

    def register(self, exc_type: type[E], fn: Callable[[E], Response]) -> None:
        """Map ``exc_type`` (and subclasses without their own mapper) with ``fn``.

        Raises ``ValueError`` if ``exc_type`` already has a mapper: two
        packages disagreeing on one error's status is a bug worth seeing.
        """
        if exc_type in self._mappers and exc_type is not HTTPError:
            raise ValueError(f"an error mapper for {exc_type.__qualname__} is already registered")
        self._mappers[exc_type] = fn
        self._resolved.clear()

    def unregister(self, exc_type: type[BaseException]) -> None:
        """Remove the mapper of ``exc_type`` (no-op when none); ``HTTPError``'s stays."""
        if exc_type is not HTTPError:
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
