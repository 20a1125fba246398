"""Paths that are not UTF-8 are refused, never decoded with U+FFFD
(issue 13 item 11: ``/v1/kv/a%FF`` and ``/v1/kv/a%FE`` were the same key)."""

from __future__ import annotations

import pytest

from meshd.http import App, Request
from tests.meshd.http._support import RawClient, echo_router, running


@pytest.mark.parametrize(
    ("raw", "path", "bad"),
    [
        ("/v1/kv/a%C3%A9", "/v1/kv/aé", False),
        ("/v1/kv/a%2Fb", "/v1/kv/a/b", False),
        ("/v1/kv/a%EF%BF%BD", "/v1/kv/a\ufffd", False),  # U+FFFD sent as such is a key
        ("/v1/kv/a%FF", "/v1/kv/a\ufffd", True),
        ("/v1/kv/a%ED%A0%80", "/v1/kv/a\ufffd\ufffd\ufffd", True),  # an encoded surrogate
        ("/v1/kv/a%C3", "/v1/kv/a\ufffd", True),  # truncated sequence
    ],
)
def test_request_marks_paths_that_are_not_utf8(raw: str, path: str, bad: bool) -> None:
    req = Request("GET", raw)
    assert (req.path, req.bad_path) == (path, bad)


async def test_app_answers_400_naming_the_path() -> None:
    app = App(echo_router())
    for target in ("/v1/kv/a%FF", "/v1/kv/a%FE"):
        resp = await app.handle(Request.build("PUT", target, body=b"x"))
        assert resp.status == 400
        assert b"not valid UTF-8" in resp.body and b"path" in resp.body
    ok = await app.handle(Request.build("GET", "/v1/kv/a%C3%A9"))
    assert ok.status == 200


@pytest.mark.e2e
async def test_raw_non_utf8_bytes_in_the_target_are_400_over_the_wire() -> None:
    async with running(App(echo_router())) as port:
        client = await RawClient.connect(port)
        await client.send(b"GET /v1/kv/a\xff HTTP/1.1\r\nHost: t\r\n\r\n")
        r = await client.read_response()
        assert r is not None and r.status == 400
        await client.aclose()
