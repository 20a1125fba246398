"""Route table: parameters, priorities, 404/405 (no sockets)."""

from __future__ import annotations

import pytest

from meshd.http import MethodNotAllowed, NotFound, Request, Response, Router, status_for


async def _h(req: Request) -> Response:
    return Response.text("ok")


def _router() -> Router:
    r = Router()
    r.add("GET", "/v1/catalog/services", _h, name="catalog_services")
    r.add("GET", "/v1/catalog/service/:service", _h, name="catalog_service")
    r.add(["GET", "PUT", "DELETE"], "/v1/kv/*key", _h, name="kv")
    r.add("PUT", "/v1/agent/service/register", _h, name="agent_service_register")
    r.add("PUT", "/v1/agent/service/deregister/:service_id", _h, name="agent_service_deregister")
    r.add("GET", "/v1/agent/service/:service_id", _h, name="agent_service")
    r.add("GET", "/v1/query/:id/execute", _h, name="query_execute")
    r.add("GET", "/v1/query/:id", _h, name="query_get")
    return r


def test_static_route_matches_without_params() -> None:
    route, params = _router().resolve("GET", "/v1/catalog/services")
    assert route.name == "catalog_services"
    assert params == {}


def test_single_segment_param_is_captured() -> None:
    route, params = _router().resolve("GET", "/v1/catalog/service/web")
    assert (route.name, params) == ("catalog_service", {"service": "web"})


def test_empty_param_segment_reaches_handler_for_consul_missing_name_error() -> None:
    route, params = _router().resolve("GET", "/v1/catalog/service/")
    assert (route.name, params) == ("catalog_service", {"service": ""})


def test_rest_param_takes_the_remaining_path_with_slashes() -> None:
    route, params = _router().resolve("PUT", "/v1/kv/a/b/c")
    assert (route.name, params) == ("kv", {"key": "a/b/c"})
    assert _router().resolve("GET", "/v1/kv/")[1] == {"key": ""}


def test_static_segment_beats_param() -> None:
    router = _router()
    assert router.resolve("PUT", "/v1/agent/service/register")[0].name == "agent_service_register"
    route, params = router.resolve("PUT", "/v1/agent/service/deregister/db-1")
    assert (route.name, params) == ("agent_service_deregister", {"service_id": "db-1"})
    assert router.resolve("GET", "/v1/agent/service/register")[1] == {"service_id": "register"}


def test_param_followed_by_static_segment() -> None:
    route, params = _router().resolve("GET", "/v1/query/q1/execute")
    assert (route.name, params) == ("query_execute", {"id": "q1"})


def test_unknown_path_is_404_with_consul_text() -> None:
    with pytest.raises(NotFound) as info:
        _router().resolve("GET", "/v1/nope")
    assert status_for(info.value.code) == 404
    assert info.value.message == "Invalid URL path: not a recognized HTTP API endpoint"
    with pytest.raises(NotFound) as info:
        _router().resolve("GET", "/favicon.ico")
    assert "ensure the path starts with '/v1/'" in info.value.message


def test_trailing_slash_on_static_route_is_404() -> None:
    with pytest.raises(NotFound):
        _router().resolve("GET", "/v1/catalog/services/")


def test_wrong_method_is_405_with_allow_listing_options_first() -> None:
    with pytest.raises(MethodNotAllowed) as info:
        _router().resolve("POST", "/v1/kv/x")
    exc = info.value
    assert exc.status == 405
    assert exc.message == "method POST not allowed"
    assert ("Allow", "OPTIONS,GET,PUT,DELETE") in exc.to_response().headers


def test_method_is_searched_in_less_specific_patterns_before_405() -> None:
    # GET /v1/agent/service/register is served by the :service_id pattern,
    # PUT only by the static one; DELETE by neither.
    router = _router()
    with pytest.raises(MethodNotAllowed) as info:
        router.resolve("DELETE", "/v1/agent/service/register")
    assert info.value.allowed == ("OPTIONS", "PUT", "GET")


def test_head_falls_back_to_get() -> None:
    assert _router().resolve("HEAD", "/v1/catalog/services")[0].name == "catalog_services"
    assert _router().resolve("HEAD", "/v1/kv/a")[0].name == "kv"


def test_duplicate_method_and_pattern_is_rejected() -> None:
    router = _router()
    with pytest.raises(ValueError, match="already registered"):
        router.add("GET", "/v1/catalog/services", _h, name="catalog_services")


def test_conflicting_param_names_are_rejected() -> None:
    router = _router()
    with pytest.raises(ValueError, match="clashes"):
        router.add("PUT", "/v1/catalog/service/:name", _h, name="other")


@pytest.mark.parametrize(
    ("methods", "pattern", "message"),
    [
        ("get", "/v1/x", "invalid HTTP method"),
        ([], "/v1/x", "at least one method"),
        ("GET", "v1/x", "must start with '/'"),
        ("GET", "/v1/*rest/more", "must be the last segment"),
        ("GET", "/v1/:", "without a name"),
    ],
)
def test_malformed_routes_are_rejected(
    methods: str | list[str], pattern: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Router().add(methods, pattern, _h, name="n")


def test_route_name_cannot_name_two_patterns() -> None:
    router = _router()
    with pytest.raises(ValueError, match="already names"):
        router.add("GET", "/v1/other", _h, name="kv")
    router.add("POST", "/v1/kv/*key", _h, name="kv")  # same pattern, more methods: fine
    assert [r.name for r in router.routes()].count("kv") == 2


def _full_search(r: Router, method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """The match by ``_candidates`` alone (what resolve did before its fast path)."""
    from meshd.http.app import _candidates

    for table, params in _candidates(r._root, path[1:].split("/"), 0, ()):
        if method in table:
            return table[method].name, dict(params)
    return None


def test_static_walk_fast_path_agrees_with_the_full_search() -> None:
    # Overlaps where a static walk must not decide: a deeper static route
    # beside a *rest, a :param beside a *rest, a method only the rest has.
    r = _router()
    r.add("GET", "/v1/kv/special/:x", _h, name="kv_special")
    r.add("GET", "/v1/a/:p", _h, name="a_param")
    r.add("PUT", "/v1/a/*rest", _h, name="a_rest")
    r.add("PUT", "/v1/c/:p", _h, name="c_param")
    r.add("PUT", "/v1/c/*rest", _h, name="c_rest")
    r.add("GET", "/v1/b/static/x", _h, name="b_static")
    r.add("GET", "/v1/b/*rest", _h, name="b_rest")
    paths = [
        "/v1/kv/a/b",
        "/v1/kv/",
        "/v1/kv/special/1",
        "/v1/kv/special",
        "/v1/kv/special/1/2",
        "/v1/a/1",
        "/v1/a/1/2",
        "/v1/b/static/x",
        "/v1/b/static/y",
        "/v1/b/other",
        "/v1/c/1",
        "/v1/c/1/2",
        "/v1/catalog/service/web",
        "/v1/query/q/execute",
    ]
    seen = set()
    for path in paths:
        for method in ("GET", "PUT", "DELETE"):
            want = _full_search(r, method, path)
            if want is None:
                with pytest.raises((NotFound, MethodNotAllowed)):
                    r.resolve(method, path)
                continue
            route, params = r.resolve(method, path)
            assert (route.name, params) == want, (method, path)
            seen.add(want[0])
    names = {"kv", "kv_special", "a_param", "a_rest", "b_static", "b_rest", "c_param", "c_rest"}
    assert names <= seen
