"""QueryOptions, QueryMeta headers and JSON body decoding (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest

from meshd.http import (
    DEFAULT_WAIT,
    MAX_WAIT,
    BadRequest,
    JSONFields,
    PayloadTooLarge,
    QueryMeta,
    QueryOptions,
    Request,
    Response,
    decode_json_body,
    error_response,
    status_for,
    validate_fields,
)


def _opts(target: str, headers: list[tuple[str, str]] | None = None) -> QueryOptions:
    return QueryOptions.from_request(Request.build("GET", target, headers=headers or []))


@pytest.mark.parametrize(
    ("query", "wait"),
    [
        ("", DEFAULT_WAIT),
        ("wait=10s", 10.0),
        ("wait=5m", 300.0),
        ("wait=500ms", 0.5),
        ("wait=1m30s", 90.0),
        ("wait=1.5s", 1.5),
        ("wait=0", DEFAULT_WAIT),
        ("wait=0s", DEFAULT_WAIT),
        ("wait=-5s", DEFAULT_WAIT),  # Go parses it; Consul then uses the default
        ("wait=11m", MAX_WAIT),
        ("wait=24h", MAX_WAIT),
        ("wait=", DEFAULT_WAIT),
    ],
)
def test_wait_durations(query: str, wait: float) -> None:
    assert _opts(f"/v1/x?{query}").wait == pytest.approx(wait)


@pytest.mark.parametrize("bad", ["10", "abc", "5 s", "1d", "s", "--1s", "1.2.3s"])
def test_bad_wait_is_400_invalid_wait_time(bad: str) -> None:
    with pytest.raises(BadRequest) as info:
        _opts(f"/v1/x?wait={bad}")
    assert error_response(info.value).body == b"Invalid wait time"
    assert info.value.field == "wait"


@pytest.mark.parametrize(
    ("query", "index"),
    [("index=0", 0), ("index=42", 42), (f"index={2**64 - 1}", 2**64 - 1), ("index=", 0)],
)
def test_index(query: str, index: int) -> None:
    opts = _opts(f"/v1/x?{query}")
    assert opts.index == index
    assert opts.blocking == (index > 0)


@pytest.mark.parametrize("bad", ["-1", "abc", "1.5", f"{2**64}", "+3", " 3", "٣"])
def test_bad_index_is_400_invalid_index(bad: str) -> None:
    with pytest.raises(BadRequest) as info:
        _opts(f"/v1/x?index={bad}")
    assert error_response(info.value).body == b"Invalid index"


@pytest.mark.parametrize(
    ("query", "consistency"),
    [
        ("", "default"),
        ("stale", "stale"),
        ("stale=", "stale"),
        ("stale=true", "stale"),
        ("stale=false", "default"),
        ("consistent", "consistent"),
        ("leader", "default"),
        ("max_stale=5s", "stale"),
        ("max_stale=0s&consistent", "consistent"),
    ],
)
def test_consistency_modes(query: str, consistency: str) -> None:
    assert _opts(f"/v1/x?{query}").consistency == consistency


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("stale&consistent", "Cannot specify ?stale with ?consistent, conflicting semantics."),
        (
            "max_stale=1s&consistent",
            "Cannot specify ?stale with ?consistent, conflicting semantics.",
        ),
        ("cached&consistent", "Cannot specify ?cached with ?consistent, conflicting semantics."),
        ("max_stale=x", 'Invalid max_stale value "x"'),
        (
            "ns=team-a",
            'Bad request: Invalid query parameter: "ns" - Namespaces are a Consul '
            "Enterprise feature",
        ),
        (
            "partition=p1",
            'Bad request: Invalid query parameter: "partition" - Partitions are a '
            "Consul Enterprise feature",
        ),
    ],
)
def test_conflicts_and_invalid_values_are_400(query: str, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        _opts(f"/v1/x?{query}")
    assert error_response(info.value).body.decode() == message


def test_default_namespace_and_partition_are_accepted() -> None:
    opts = _opts("/v1/x?ns=default&partition=DEFAULT", [("X-Consul-Namespace", "default")])
    assert opts.consistency == "default"
    with pytest.raises(BadRequest, match="X-Consul-Namespace"):
        _opts("/v1/x?stale", [("X-Consul-Namespace", "team-a")])


def test_filters_and_flags() -> None:
    opts = _opts(
        "/v1/x?dc=dc2&filter=Service.Tags+contains+%22v1%22&near=_agent&node-meta=rack:r1"
        "&node-meta=url:http://x:80&node-meta=flag&tag=a&tag=b&cached&pretty&token=t1"
    )
    assert opts.dc == "dc2"
    assert opts.filter == 'Service.Tags contains "v1"'
    assert opts.near == "_agent"
    assert opts.node_meta == {"rack": "r1", "url": "http://x:80", "flag": ""}
    assert opts.tags == ("a", "b")
    assert opts.cached and opts.pretty
    assert opts.token == "t1"


@pytest.mark.parametrize(
    ("query", "pretty"),
    [
        ("pretty", True),
        ("pretty=true", True),
        ("pretty=1", True),
        ("pretty=false", False),
        ("", False),
    ],
)
def test_pretty_flag(query: str, pretty: bool) -> None:
    assert _opts(f"/v1/x?{query}").pretty is pretty


def test_cache_control_header() -> None:
    opts = _opts("/v1/x?cached", [("Cache-Control", "max-age=30, stale-if-error=60")])
    assert (opts.max_age, opts.stale_if_error, opts.must_revalidate) == (30.0, 60.0, False)
    assert _opts("/v1/x", [("Cache-Control", "max-age=0")]).must_revalidate
    with pytest.raises(BadRequest) as info:
        _opts("/v1/x", [("Cache-Control", "max-age=soon")])
    assert error_response(info.value).body == b"Invalid Cache-Control header."


def test_query_meta_headers() -> None:
    response = Response.json([], status=200)
    response.add_header("X-Consul-Index", "999")  # stale value is replaced
    response.add_header("X-Consul-Default-ACL-Policy", "deny")  # unrelated: kept
    QueryMeta(
        index=17, known_leader=False, last_contact=1.2345, effective_consistency="stale"
    ).apply_headers(response)
    headers = dict(response.headers)
    assert headers["X-Consul-Index"] == "17"
    assert headers["X-Consul-KnownLeader"] == "false"
    assert headers["X-Consul-LastContact"] == "1234"
    assert headers["X-Consul-Effective-Consistency"] == "stale"
    assert headers["X-Consul-Default-ACL-Policy"] == "deny"
    assert [n for n, _ in response.headers].count("X-Consul-Index") == 1


def test_query_meta_index_is_never_zero() -> None:
    response = QueryMeta(index=0).apply_headers(Response())
    assert dict(response.headers)["X-Consul-Index"] == "1"
    assert dict(response.headers)["X-Consul-KnownLeader"] == "true"
    assert dict(response.headers)["X-Consul-Effective-Consistency"] == "leader"


def _body(data: bytes) -> Request:
    return Request.build("PUT", "/v1/x", body=data)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            b"{",
            "Request decode failed: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
        (b'{"a": }', "Request decode failed: Expecting value: line 1 column 7 (char 6)"),
        (b'{"a": 1} x', "Request decode failed: Extra data: line 1 column 10"),
        (b"", "Request decode failed: empty request body"),
        (b'{"a": NaN}', "Request decode failed: invalid JSON value NaN"),
        (b'{"a": "\xff"}', "Request decode failed: invalid UTF-8 at byte 7"),
    ],
)
def test_json_decode_errors_name_the_problem(body: bytes, fragment: str) -> None:
    with pytest.raises(BadRequest) as info:
        decode_json_body(_body(body))
    assert fragment in error_response(info.value).body.decode()
    assert status_for(info.value.code) == 400


def test_json_decode_ok_and_empty_allowed() -> None:
    assert decode_json_body(_body(b'{"Name": "web", "Port": 80}')) == {"Name": "web", "Port": 80}
    assert decode_json_body(_body(b"  "), allow_empty=True) is None


def test_json_body_over_limit_is_413() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        decode_json_body(_body(b'"' + b"x" * 100 + b'"'), max_bytes=10)
    assert status_for(info.value.code) == 413
    assert "max size: 10 bytes" in info.value.message


SERVICE_FIELDS = JSONFields(["ID", "Name", "Tags", "Port", "Meta", "Check"])


def test_unknown_field_is_rejected_like_go() -> None:
    with pytest.raises(BadRequest) as info:
        decode_json_body(_body(b'{"Name": "web", "Foo": 1}'), fields=SERVICE_FIELDS)
    assert error_response(info.value).body == b'Request decode failed: json: unknown field "Foo"'
    assert info.value.field == "Foo"


def test_field_names_match_case_insensitively_and_are_canonicalised() -> None:
    got = decode_json_body(_body(b'{"name": "web", "PORT": 80, "Tags": []}'), fields=SERVICE_FIELDS)
    assert got == {"Name": "web", "Port": 80, "Tags": []}


def test_unknown_fields_can_be_allowed() -> None:
    got = decode_json_body(
        _body(b'{"name": "web", "Extra": true}'), fields=SERVICE_FIELDS, allow_unknown_fields=True
    )
    assert got == {"Name": "web", "Extra": True}


def test_nested_validation_reports_the_path() -> None:
    check_fields = ["HTTP", "Interval"]
    with pytest.raises(BadRequest) as info:
        validate_fields({"HTTP": "x", "Intervl": "10s"}, check_fields, path="Check")
    assert info.value.field == "Check.Intervl"
    assert b'unknown field "Intervl"' in error_response(info.value).body


@pytest.mark.parametrize(
    ("value", "kind"),
    [([1], "array"), ("s", "string"), (None, "null"), (3, "number"), (True, "boolean")],
)
def test_non_object_body_is_rejected_when_fields_expected(value: Any, kind: str) -> None:
    with pytest.raises(BadRequest) as info:
        validate_fields(value, SERVICE_FIELDS)
    assert f"expected a JSON object, got {kind}" in info.value.message


def test_options_parsed_once_per_query_token_and_headers() -> None:
    plain = _opts("/v1/kv/a?consistent&index=7")
    assert _opts("/v1/kv/a?consistent&index=7") is plain  # shared, not re-parsed
    assert (plain.consistency, plain.index, plain.token) == ("consistent", 7, "")
    tok = _opts("/v1/kv/a?consistent&index=7", [("X-Consul-Token", "t1")])
    assert tok.token == "t1" and plain.token == ""
    cached = _opts("/v1/kv/a?consistent&index=7", [("Cache-Control", "max-age=5")])
    assert (cached.max_age, plain.max_age) == (5.0, None)
    with pytest.raises(BadRequest, match="Enterprise"):
        _opts("/v1/kv/a?consistent&index=7", [("X-Consul-Namespace", "team")])
