"""App: hooks, error mapping, OPTIONS, internal errors (no sockets)."""

from __future__ import annotations

import logging

import pytest
import trio

from meshd.http import (
    DEFAULT_ERROR_MAPPING,
    App,
    BadRequest,
    Conflict,
    ErrorMapping,
    HTTPError,
    NoLeader,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    Request,
    Response,
    Router,
    TooManyRequests,
    Unavailable,
    error_response,
    register_error_mapper,
)


class ValidationError(Exception):
    """Stands in for registry.errors.ValidationError(field, message)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class StrictValidationError(ValidationError):
    pass


def _app_raising(exc: BaseException, *, errors: ErrorMapping | None = None) -> App:
    async def handler(req: Request) -> Response:
        raise exc

    router = Router()
    router.add("GET", "/v1/boom", handler, name="boom")
    return App(router, errors=errors if errors is not None else ErrorMapping())


async def _get(app: App, target: str, method: str = "GET") -> Response:
    return await app.handle(Request.build(method, target))


@pytest.mark.parametrize(
    ("exc", "status", "body"),
    [
        (BadRequest("Invalid wait time", "wait"), 400, "Invalid wait time"),
        (BadRequest("Missing node name", "Node"), 400, "Missing node name"),
        (BadRequest("must be positive", "Port"), 400, 'must be positive (field "Port")'),
        (
            PermissionDenied(
                "token with AccessorID 'a1' lacks permission 'service:write' on \"db\""
            ),
            403,
            "Permission denied: token with AccessorID 'a1' lacks permission "
            "'service:write' on \"db\"",
        ),
        (PermissionDenied("Permission denied: x"), 403, "Permission denied: x"),
        (NotFound("unknown service ID: web"), 404, "unknown service ID: web"),
        (Conflict(), 409, "Conflict"),
        (PayloadTooLarge(), 413, "Request body too large"),
        (TooManyRequests(), 429, "rate limit exceeded"),
        (NoLeader(), 500, "No cluster leader"),
        (Unavailable(), 503, "Service Unavailable"),
        (HTTPError(418, "teapot"), 418, "teapot"),
    ],
)
async def test_http_errors_map_to_status_and_plain_text_body(
    exc: Exception, status: int, body: str
) -> None:
    response = await _get(_app_raising(exc), "/v1/boom")
    assert response.status == status
    assert response.body.decode() == body
    assert response.get_header("content-type") == "text/plain; charset=utf-8"


async def test_unexpected_exception_is_500_internal_error_and_logged_with_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = _app_raising(RuntimeError("secret detail"))
    req = Request.build("GET", "/v1/boom")
    req.request_id = "c0ffee-7"
    with caplog.at_level(logging.ERROR, logger="meshd.http"):
        response = await app.handle(req)
    assert (response.status, response.body) == (500, b"Internal error")
    assert b"secret" not in response.body
    record = next(r for r in caplog.records if "request_id=c0ffee-7" in r.getMessage())
    assert record.exc_info is not None and "secret detail" in str(record.exc_info[1])


async def test_registered_mapper_maps_foreign_errors_and_subclasses() -> None:
    errors = ErrorMapping()
    errors.register(
        ValidationError,
        lambda e: error_response(BadRequest(f"Invalid {e.field}: {e.message}", e.field)),
    )
    response = await _get(
        _app_raising(StrictValidationError("Port", "too big"), errors=errors), "/v1/boom"
    )
    assert (response.status, response.body) == (400, b"Invalid Port: too big")


async def test_most_specific_mapper_wins() -> None:
    errors = ErrorMapping()
    errors.register(ValidationError, lambda e: Response.text("base", 400))
    errors.register(StrictValidationError, lambda e: Response.text("strict", 422))
    response = await _get(_app_raising(StrictValidationError("f", "m"), errors=errors), "/v1/boom")
    assert (response.status, response.body) == (422, b"strict")


async def test_registering_twice_is_an_error() -> None:
    errors = ErrorMapping()
    errors.register(ValidationError, lambda e: Response.text("x", 400))
    with pytest.raises(ValueError, match="already registered"):
        errors.register(ValidationError, lambda e: Response.text("y", 400))


async def test_register_error_mapper_applies_to_apps_using_the_default_mapping() -> None:
    class NotLeaderError(Exception):
        pass

    register_error_mapper(NotLeaderError, lambda e: error_response(NoLeader()))
    try:
        app = App(_app_raising(NotLeaderError()).router)  # default mapping
        response = await _get(app, "/v1/boom")
        assert (response.status, response.body) == (500, b"No cluster leader")
    finally:
        DEFAULT_ERROR_MAPPING.unregister(NotLeaderError)
    assert DEFAULT_ERROR_MAPPING.mapper_for(NotLeaderError) is None


async def test_failing_mapper_gives_500_internal_error() -> None:
    errors = ErrorMapping()

    def broken(e: ValidationError) -> Response:
        raise KeyError("oops")

    errors.register(ValidationError, broken)
    response = await _get(_app_raising(ValidationError("f", "m"), errors=errors), "/v1/boom")
    assert (response.status, response.body) == (500, b"Internal error")


async def test_single_error_from_a_handler_nursery_is_mapped() -> None:
    async def handler(req: Request) -> Response:
        async def child() -> None:
            raise BadRequest("Invalid index", "index")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
        return Response.text("unreachable")

    router = Router()
    router.add("GET", "/v1/x", handler, name="x")
    response = await _get(App(router, errors=ErrorMapping()), "/v1/x")
    assert (response.status, response.body) == (400, b"Invalid index")


async def test_options_answers_200_with_allow() -> None:
    response = await _get(_app_raising(RuntimeError()), "/v1/boom", method="OPTIONS")
    assert response.status == 200
    assert response.get_header("allow") == "OPTIONS,GET"
    assert response.body == b""


async def test_unknown_route_and_wrong_method() -> None:
    app = _app_raising(RuntimeError())
    not_found = await _get(app, "/v1/nothing")
    assert (not_found.status, not_found.body) == (
        404,
        b"Invalid URL path: not a recognized HTTP API endpoint",
    )
    wrong = await _get(app, "/v1/boom", method="DELETE")
    assert (wrong.status, wrong.body) == (405, b"method DELETE not allowed")
    assert wrong.get_header("Allow") == "OPTIONS,GET"


async def test_before_hook_sees_route_and_can_short_circuit() -> None:
    seen: list[str | None] = []

    async def ok(req: Request) -> Response:
        return Response.text("handler")

    router = Router()
    router.add("GET", "/v1/open", ok, name="open")
    router.add("GET", "/v1/secret", ok, name="secret")
    app = App(router, errors=ErrorMapping())

    @app.before_request
    async def acl(req: Request) -> Response | None:
        seen.append(req.route_name)
        if req.route_name == "secret" and req.token != "root":
            raise PermissionDenied("token lacks permission 'operator:read'")
        return None

    assert (await _get(app, "/v1/open")).body == b"handler"
    denied = await _get(app, "/v1/secret")
    assert (denied.status, denied.body) == (
        403,
        b"Permission denied: token lacks permission 'operator:read'",
    )
    allowed = await app.handle(Request.build("GET", "/v1/secret?token=root"))
    assert allowed.body == b"handler"
    assert seen == ["open", "secret", "secret"]


async def test_after_hook_records_method_route_status_and_duration() -> None:
    ticks = iter([10.0, 10.25, 20.0, 20.5])
    records: list[tuple[str, str | None, int, float]] = []

    async def ok(req: Request) -> Response:
        return Response.json({"ok": True})

    router = Router()
    router.add("GET", "/v1/ok", ok, name="ok")
    app = App(router, errors=ErrorMapping(), clock=lambda: next(ticks))

    @app.after_response
    def metrics(req: Request, resp: Response, seconds: float) -> None:
        records.append((req.method, req.route_name, resp.status, seconds))
        resp.add_header("X-Consul-Default-ACL-Policy", "allow")

    response = await _get(app, "/v1/ok")
    await _get(app, "/v1/missing")
    assert records == [("GET", "ok", 200, 0.25), ("GET", None, 404, 0.5)]
    assert response.get_header("x-consul-default-acl-policy") == "allow"


async def test_failing_after_hook_does_not_change_the_response() -> None:
    async def ok(req: Request) -> Response:
        return Response.text("fine")

    router = Router()
    router.add("GET", "/v1/ok", ok, name="ok")
    app = App(router, errors=ErrorMapping())
    app.after_response(lambda req, resp, s: 1 / 0)  # type: ignore[arg-type]
    response = await _get(app, "/v1/ok")
    assert (response.status, response.body) == (200, b"fine")


async def test_path_params_are_percent_decoded() -> None:
    captured: dict[str, str] = {}

    async def kv(req: Request) -> Response:
        captured.update(req.path_params)
        return Response.text("")

    router = Router()
    router.add("GET", "/v1/kv/*key", kv, name="kv")
    await _get(App(router, errors=ErrorMapping()), "/v1/kv/a%2Fb/c%20d")
    assert captured == {"key": "a/b/c d"}
