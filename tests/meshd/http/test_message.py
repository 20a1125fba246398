"""Request/Response values: token resolution, headers, query, JSON encoding."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest

from meshd.http import Headers, Request, Response


@pytest.mark.parametrize(
    ("target", "headers", "token"),
    [
        ("/v1/x", [], ""),
        ("/v1/x", [("X-Consul-Token", "hdr")], "hdr"),
        ("/v1/x", [("Authorization", "Bearer bear")], "bear"),
        ("/v1/x", [("Authorization", "bearer  bear  extra")], "bear"),
        ("/v1/x", [("Authorization", "Basic dXNlcjpwYXNz")], ""),
        ("/v1/x", [("Authorization", "Bearer")], ""),
        ("/v1/x", [("X-Consul-Token", "hdr"), ("Authorization", "Bearer bear")], "hdr"),
        ("/v1/x", [("X-Consul-Token", ""), ("Authorization", "Bearer bear")], "bear"),
        # Consul's parseTokenInternal: a non-empty ?token= is looked at first.
        ("/v1/x?token=q", [("X-Consul-Token", "hdr")], "q"),
        ("/v1/x?token=q", [("Authorization", "Bearer bear")], "q"),
        ("/v1/x?token=", [("X-Consul-Token", "hdr")], "hdr"),
        ("/v1/x?token=", [], ""),
    ],
)
def test_token_resolution_order(target: str, headers: list[tuple[str, str]], token: str) -> None:
    assert Request.build("GET", target, headers=headers).token == token


def test_headers_are_case_insensitive_and_first_value_wins() -> None:
    h = Headers.from_pairs([("X-Consul-Token", "a"), ("x-consul-token", "b"), ("Accept", "*/*")])
    assert h.get("X-CONSUL-TOKEN") == "a"
    assert h.get_all("x-Consul-token") == ["a", "b"]
    assert "accept" in h and "ACCEPT" in h and "missing" not in h
    assert h.get("missing", "dflt") == "dflt"
    assert len(h) == 3
    assert "s3cret" not in repr(Headers.from_pairs([("X-Consul-Token", "s3cret")]))


def test_query_keeps_blank_values_and_repeats() -> None:
    req = Request.build("GET", "/v1/kv/a?recurse&tag=x&tag=y&dc=")
    assert req.query == {"recurse": [""], "tag": ["x", "y"], "dc": [""]}
    assert req.query_value("tag") == "x"
    assert req.query_value("absent", "d") == "d"


@pytest.mark.parametrize(
    "qs",
    ["a=1&&b", "=x&a=b=c&a", "a+b=c%20d&e", "x=%ZZ&y=1", "&", "k=&k=v", "a;b=c"],
)
def test_query_matches_parse_qs_with_and_without_escapes(qs: str) -> None:
    assert Request.build("GET", f"/v1/kv/a?{qs}").query == parse_qs(qs, keep_blank_values=True)


def test_path_is_decoded_and_raw_path_kept() -> None:
    req = Request.build("GET", "/v1/kv/a%2Fb%C3%A9")
    assert req.path == "/v1/kv/a/bé"
    assert req.raw_path == "/v1/kv/a%2Fb%C3%A9"


def test_repr_hides_query_string_with_token() -> None:
    req = Request.build("GET", "/v1/kv/a?token=s3cret")
    assert "s3cret" not in repr(req)


def test_json_response_is_compact_with_content_type() -> None:
    r = Response.json({"Name": "web", "Tags": ["a"], "Port": 80, "Meta": {"é": "ü"}})
    assert r.body == '{"Name":"web","Tags":["a"],"Port":80,"Meta":{"é":"ü"}}'.encode()
    assert r.get_header("Content-Type") == "application/json"
    assert r.status == 200


def test_pretty_json_matches_go_marshal_indent() -> None:
    r = Response.json({"A": [1, 2], "B": {}}, status=201, pretty=True)
    assert r.body == b'{\n    "A": [\n        1,\n        2\n    ],\n    "B": {}\n}\n'
    assert r.status == 201
    assert json.loads(r.body) == {"A": [1, 2], "B": {}}


def test_json_booleans_as_go_marshals_them_and_numbers_stay_numbers() -> None:
    # KV PUT/DELETE answers: written without the encoder, same bytes.
    assert Response.json(True).body == b"true"
    assert Response.json(False, status=200).body == b"false"
    assert Response.json(True, pretty=True).body == b"true\n"
    assert Response.json(False, pretty=True).body == b"false\n"
    assert (Response.json(1).body, Response.json(0).body) == (b"1", b"0")
    assert Response.json(True).get_header("Content-Type") == "application/json"


def test_json_refuses_nan_like_go() -> None:
    with pytest.raises(ValueError):
        Response.json({"x": float("nan")})


def test_text_response_and_header_helpers() -> None:
    r = Response.text("true")
    assert (r.body, r.get_header("content-type")) == (b"true", "text/plain; charset=utf-8")
    r.set_header("X-A", "1")
    r.add_header("x-a", "2")
    r.set_header("X-a", "3")
    assert [v for n, v in r.headers if n.lower() == "x-a"] == ["3"]


def test_cached_response_heads_match_a_fresh_build_and_bad_ones_still_fail() -> None:
    from meshd.http.response_head import InvalidResponse, _build_head, _date, response_head

    cases = [
        (Response.json(True), True),
        (Response.json(False), False),
        (Response.text("Missing key name", 400), True),
        (Response(200, [("Connection", "close")], b"x"), True),
    ]
    for _ in range(2):  # the second round answers from the cache
        for resp, keep in cases:
            head, kept = response_head(resp, keep)
            assert (head, kept) == _build_head(resp, keep, False, _date.get())
            assert b"\r\nDate: " in head and head.endswith(b"\r\n\r\n")
    # A head is stored under the Date it carries, even when the second
    # turns between reading the key's Date and building it.
    _build_date = _date.get()
    assert _build_date in _build_head(Response.json(True), True, False, _build_date)[0]
    assert response_head(cases[3][0], True)[1] is False
    assert b"Content-Length: 5\r\n" in response_head(Response.json(False), True)[0]
    for _ in range(2):
        with pytest.raises(InvalidResponse):
            response_head(Response(200, [("X-Bad", "a\r\nb")], b""), True)
        with pytest.raises(InvalidResponse):
            response_head(Response(101, [("Content-Type", "text/plain")], b""), True)
