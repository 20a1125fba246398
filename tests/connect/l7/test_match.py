"""Route matching as Consul's service-router, on a normalised path."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connect.l7.match import (
    HeaderMatch,
    HeaderModifiers,
    HTTPMatch,
    QueryParamMatch,
    Route,
    RouteMatchError,
    Router,
    _normalize_full,
    apply_header_modifiers,
    compile_regex,
    literal_prefix,
    normalize_path,
)
from connect.l7.request import Headers, Request


def req(target: str, method: str = "GET", **headers: str) -> Request:
    return Request.build(method, target, [(k.replace("_", "-"), v) for k, v in headers.items()])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/api/%2e%2e/admin", "/admin"),
        ("/api/%2E%2E/admin", "/admin"),
        ("/api/../admin", "/admin"),
        ("/api/./x", "/api/x"),
        ("//admin//x", "/admin/x"),
        ("/../../etc", "/etc"),
        ("/a/%7euser", "/a/~user"),
        ("/a%2fb", "/a%2Fb"),
        ("/a\\..\\admin", "/admin"),
        ("/a/b/..", "/a/"),
        ("/", "/"),
    ],
)
def test_normalize_path_decodes_unreserved_and_resolves_dot_segments(
    raw: str, expected: str
) -> None:
    assert normalize_path(raw) == expected


def test_normalize_path_rejects_malformed_escape_and_relative_path() -> None:
    assert normalize_path("/a%zz") is None
    assert normalize_path("/a%2") is None
    assert normalize_path("admin") is None


def test_normalize_path_unescapes_slashes_on_request() -> None:
    assert normalize_path("/a%2Fb", unescape_slashes=True) == "/a/b"
    assert normalize_path("/a//b", merge_slashes=False) == "/a//b"


@given(st.text(alphabet="/.%2eEaA~_-", max_size=40))
def test_normalized_path_has_no_dot_segments_or_double_slashes(raw: str) -> None:
    path = normalize_path("/" + raw)
    if path is not None:
        assert path.startswith("/")
        assert "//" not in path
        assert "/../" not in path + "/" and "/./" not in path + "/"
        assert normalize_path(path) == path


@given(st.text(alphabet="/\\.%2eEfF~_-a", max_size=30), st.booleans(), st.booleans())
def test_the_shortcut_for_plain_paths_normalizes_as_the_full_rules(
    raw: str, merge: bool, unescape: bool
) -> None:
    for path in ("/" + raw, "\\" + raw):
        want = _normalize_full(path, merge, unescape)
        assert normalize_path(path, merge_slashes=merge, unescape_slashes=unescape) == want


def test_encoded_dot_dot_cannot_bypass_a_prefix_rule() -> None:
    router = Router(
        [
            Route(HTTPMatch(path_prefix="/admin"), next_node="deny"),
            Route(HTTPMatch(path_prefix="/api/"), next_node="api"),
        ]
    )
    result = router.match(req("/api/%2e%2e/admin/users"))
    assert result is not None
    assert result.route.next_node == "deny"
    assert result.path == "/admin/users"


def test_first_matching_route_wins() -> None:
    router = Router(
        [
            Route(HTTPMatch(path_prefix="/api"), next_node="first"),
            Route(HTTPMatch(path_prefix="/api/v2"), next_node="second"),
            Route(HTTPMatch(), next_node="catch-all"),
        ]
    )
    assert router.match(req("/api/v2/x")).route.next_node == "first"  # type: ignore[union-attr]
    assert router.match(req("/other")).index == 2  # type: ignore[union-attr]


def test_no_route_and_rejected_path_give_none() -> None:
    router = Router([Route(HTTPMatch(path_exact="/a"), next_node="a")])
    assert router.match(req("/b")) is None
    assert router.match(req("/a%zz")) is None


def test_path_exact_prefix_and_regex() -> None:
    router = Router(
        [
            Route(HTTPMatch(path_exact="/exact"), next_node="exact"),
            Route(HTTPMatch(path_regex="/item/[0-9]+"), next_node="regex"),
            Route(HTTPMatch(path_prefix="/pre"), next_node="prefix"),
        ]
    )

    def target(path: str) -> str | None:
        r = router.match(req(path))
        return r.route.next_node if r else None

    assert target("/exact") == "exact"
    assert target("/exact/") is None
    assert target("/item/42") == "regex"
    assert target("/item/42x") is None  # regex must match the whole path
    assert target("/prefix/x") == "prefix"
    assert target("/exact?x=1") == "exact"


@pytest.mark.parametrize(
    ("matcher", "value", "expected"),
    [
        (HeaderMatch("x-version", exact="v2"), "v2", True),
        (HeaderMatch("x-version", exact="v2"), "v1", False),
        (HeaderMatch("x-version", exact="v2"), None, False),
        (HeaderMatch("x-version", present=True), "", True),
        (HeaderMatch("x-version", present=True), None, False),
        (HeaderMatch("x-version", present=True, invert=True), None, True),
        (HeaderMatch("x-version", prefix="v"), "v9", True),
        (HeaderMatch("x-version", suffix="-beta"), "v2-beta", True),
        (HeaderMatch("x-version", suffix="-beta"), "v2", False),
        (HeaderMatch("x-version", regex="v[0-9]"), "v7", True),
        (HeaderMatch("x-version", regex="v[0-9]"), "v77", False),
        (HeaderMatch("x-version", exact="v2", invert=True), "v1", True),
        (HeaderMatch("x-version", exact="v2", invert=True), "v2", False),
        (HeaderMatch("x-version", exact="v2", invert=True), None, False),  # Envoy
        (HeaderMatch("x-version", regex="v.*", invert=True), None, False),
    ],
)
def test_header_matchers(matcher: HeaderMatch, value: str | None, expected: bool) -> None:
    router = Router([Route(HTTPMatch(headers=(matcher,)), next_node="hit")])
    headers = [("X-Version", value)] if value is not None else []
    assert (router.match(Request.build("GET", "/", headers)) is not None) is expected


def test_iphone_in_region_matches_user_agent_regex_and_header() -> None:
    route = Route(
        HTTPMatch(
            headers=(
                HeaderMatch("User-Agent", regex=".*iPhone.*"),
                HeaderMatch("x-region", exact="es-south"),
            )
        ),
        next_node="canary",
    )
    router = Router([route, Route(next_node="old")])
    ua = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)"
    assert router.match(req("/", user_agent=ua, x_region="es-south")).route.next_node == "canary"  # type: ignore[union-attr]
    assert router.match(req("/", user_agent=ua, x_region="es-north")).route.next_node == "old"  # type: ignore[union-attr]
    assert router.match(req("/", x_region="es-south")).route.next_node == "old"  # type: ignore[union-attr]


def test_query_params_and_methods() -> None:
    router = Router(
        [
            Route(
                HTTPMatch(
                    query_params=(
                        QueryParamMatch("debug", present=True),
                        QueryParamMatch("v", exact="2"),
                        QueryParamMatch("id", regex="[a-f]+"),
                    ),
                    methods=("GET", "HEAD"),
                ),
                next_node="hit",
            )
        ]
    )
    assert router.match(req("/?debug&v=2&id=abc")) is not None
    assert router.match(req("/?debug&v=2&id=abc", method="POST")) is None
    assert router.match(req("/?v=2&id=abc")) is None
    assert router.match(req("/?debug&v=3&id=abc")) is None
    assert router.match(req("/?debug&v=2&id=xyz")) is None
    assert router.match(req("/?debug&v=%32&id=abc")) is not None  # decoded


def test_prefix_rewrite_replaces_matched_prefix_or_exact_path() -> None:
    router = Router(
        [
            Route(HTTPMatch(path_prefix="/old/"), next_node="a", prefix_rewrite="/new/"),
            Route(HTTPMatch(path_exact="/x"), next_node="b", prefix_rewrite="/y"),
        ]
    )
    assert router.match(req("/old/a/b?q=1")).forward_path == "/new/a/b"  # type: ignore[union-attr]
    assert router.match(req("/x")).forward_path == "/y"  # type: ignore[union-attr]


def test_invalid_regex_is_a_one_line_error_naming_the_route() -> None:
    with pytest.raises(RouteMatchError, match=r"Route\[0\] PathRegex is not a valid regex"):
        Router([Route(HTTPMatch(path_regex="(?<=a)b"))])


def test_header_modifiers_remove_then_add_then_set() -> None:
    headers = Headers([("X-Drop", "1"), ("X-Keep", "a"), ("x-over", "old")])
    mods = HeaderModifiers(
        add={"X-Keep": "b", "X-Both": "added"},
        set={"X-Over": "new", "X-Both": "set"},
        remove=("x-drop",),
    )
    out = apply_header_modifiers(headers, mods)
    assert "x-drop" not in out
    assert out.get_all("x-keep") == ["a", "b"]
    assert out.get_all("x-over") == ["new"]
    assert out.get_all("x-both") == ["set"]
    assert headers.get("x-drop") == "1"  # the input is untouched


def test_headers_are_case_insensitive_and_join_repeated_values() -> None:
    h = Headers([("Accept", "a"), ("ACCEPT", "b")])
    assert h.get("accept") == "a,b"
    assert "aCCept" in h
    r = Request.build("get", "/p?x=1", [("Cookie", "a=1; session=abc")])
    assert r.method == "GET" and r.query == "x=1"
    assert r.cookie("session") == "abc" and r.cookie("none") is None


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        ("/items/[0-9]+", "/items/"),
        ("/ab?c", "/a"),
        ("/ab*", "/a"),
        ("/a{2}", "/"),
        ("/ab+", "/ab"),
        ("/a|/b", ""),
        ("(?i)/admin", ""),
        (".*iPhone.*", ""),
        ("/x\\.y", "/x"),
    ],
)
def test_literal_prefix_is_conservative(pattern: str, prefix: str) -> None:
    assert literal_prefix(pattern) == prefix


@given(
    st.text(alphabet="/ab.*+?|()[]{}0-9", min_size=1, max_size=8),
    st.text(alphabet="/ab09-", max_size=8),
)
def test_prefix_precheck_never_changes_a_regex_result(pattern: str, value: str) -> None:
    try:
        plain = compile_regex(pattern, "test")
    except RouteMatchError:
        return
    route = Router([Route(HTTPMatch(path_regex=pattern), next_node="hit")])
    path = "/" + value
    expected = plain.fullmatch(path) is not None
    assert (route.match(Request.build("GET", path), path=path) is not None) is expected
