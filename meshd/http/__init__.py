"""The agent's HTTP API framework: server, route table, errors, Consul query options.

Endpoints live in their own modules and register on one ``Router``; the agent
wraps it in an ``App`` and runs ``serve_http``.
"""

from meshd.http.app import AfterResponseHook, App, BeforeRequestHook, Handler, Route, Router
from meshd.http.errors import (
    DEFAULT_ERROR_MAPPING,
    BadRequest,
    Conflict,
    ErrorMapping,
    HTTPError,
    Internal,
    MethodNotAllowed,
    NoLeader,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RequestError,
    TooManyRequests,
    Unavailable,
    error_response,
    register_error_mapper,
    status_for,
)
from meshd.http.message import TEXT_PLAIN, Headers, Request, Response, StreamingResponse
from meshd.http.query import (
    DEFAULT_WAIT,
    MAX_WAIT,
    Consistency,
    JSONFields,
    QueryMeta,
    QueryOptions,
    decode_json_body,
    set_meta_headers,
    validate_fields,
)
from meshd.http.server import ServerLimits, open_http_listeners, serve_http

__all__ = [
    "DEFAULT_ERROR_MAPPING",
    "DEFAULT_WAIT",
    "MAX_WAIT",
    "TEXT_PLAIN",
    "AfterResponseHook",
    "App",
    "BadRequest",
    "BeforeRequestHook",
    "Conflict",
    "Consistency",
    "ErrorMapping",
    "HTTPError",
    "Handler",
    "Headers",
    "Internal",
    "JSONFields",
    "MethodNotAllowed",
    "NoLeader",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "QueryMeta",
    "QueryOptions",
    "Request",
    "RequestError",
    "Response",
    "Route",
    "Router",
    "ServerLimits",
    "StreamingResponse",
    "TooManyRequests",
    "Unavailable",
    "decode_json_body",
    "error_response",
    "open_http_listeners",
    "register_error_mapper",
    "serve_http",
    "set_meta_headers",
    "status_for",
    "validate_fields",
]
