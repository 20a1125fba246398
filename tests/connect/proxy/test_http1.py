"""The L7 path's HTTP/1.1 framing (connect/proxy/http1.py) over socket pairs."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from connect.proxy.http1 import (
    CONTINUE,
    ProtocolError,
    RequestReader,
    ResponseReader,
    UpstreamClosed,
    end_to_end,
    end_to_end_raw,
    request_bytes,
    response_bytes,
)
from connect.proxy.http_pool import UpstreamResponse, local_error, serialize


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def _run(fn: Callable[[socket.socket, socket.socket], Awaitable[Any]]) -> Any:
    a, b = _pair()
    try:
        return trio.run(fn, a, b)
    finally:
        a.close()
        b.close()


async def _requests(data: bytes, max_body: int = 1 << 20) -> list[Any]:
    """What a reader makes of ``data`` (then EOF): requests, then the error."""
    a, b = _pair()
    out: list[Any] = []
    try:
        b.sendall(data)
        b.shutdown(socket.SHUT_WR)
        reader = RequestReader(a, max_body=max_body)
        while True:
            try:
                req = await reader.next_request()
            except ProtocolError as exc:
                out.append((exc.status, exc.text))
                return out
            if req is None:
                return out
            out.append(req)
    finally:
        a.close()
        b.close()


def test_keep_alive_requests_with_lowercased_names_and_chunked_body() -> None:
    data = (
        b"GET /a?x=1 HTTP/1.1\r\nHost: api\r\nX-Trace: T1\r\n\r\n"
        b"POST /b HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    first, second = trio.run(_requests, data)
    assert (first.method, first.target, first.body) == (b"GET", b"/a?x=1", b"")
    assert first.headers == [(b"host", b"api"), (b"x-trace", b"T1")]
    assert first.keep_alive
    assert (second.method, second.body) == (b"POST", b"abcde")


def test_pipelined_requests_answered_in_order_then_the_bad_one() -> None:
    data = (
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"BOGUS\x01 / HTTP/1.1\r\n\r\n"
    )
    got = trio.run(_requests, data)
    assert [r.target for r in got[:2]] == [b"/1", b"/2"]
    status, text = got[2]
    assert status == 400 and text.startswith("bad request: ")


def test_bad_requests_get_400_431_413_with_a_clear_text() -> None:
    missing_host = trio.run(_requests, b"GET / HTTP/1.1\r\n\r\n")
    assert missing_host == [(400, "bad request: missing Host header")]
    both = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    [(status, text)] = trio.run(_requests, both)
    assert status == 400 and text.startswith("bad request: ")
    huge = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 40000 + b"\r\n\r\n"
    assert trio.run(_requests, huge) == [(431, "bad request: request header fields too large")]
    body = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\n" + b"x" * 20
    assert trio.run(_requests, body, 10) == [(413, "bad request: body too large")]
    cut = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\nxx"
    assert trio.run(_requests, cut) == [(400, "bad request: connection closed mid-request")]
    answer = local_error(ProtocolError(400, "bad request: missing Host header"))
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"connection: close\r\n" in answer
    assert answer.endswith(b"\r\n\r\nbad request: missing Host header")


def test_http10_and_connection_close_end_the_connection() -> None:
    data = b"GET / HTTP/1.0\r\n\r\nGET /never HTTP/1.0\r\n\r\n"
    [req] = trio.run(_requests, data)
    assert not req.keep_alive
    out = serialize(UpstreamResponse(200, [("content-type", "text/plain")], b"ok"), req)
    assert out == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n"
        b"content-length: 2\r\n\r\nok"
    )
    [req] = trio.run(_requests, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert not req.keep_alive


def test_expect_100_continue_is_answered_before_the_body() -> None:
    async def main(a: socket.socket, b: socket.socket) -> None:
        head = b"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n"
        b.sendall(head + b"\r\n")
        reader = RequestReader(a)
        async with trio.open_nursery() as nursery:
            got: list[Any] = []

            async def read() -> None:
                got.append(await reader.next_request())

            nursery.start_soon(read)
            await trio.lowlevel.wait_readable(b)
            assert b.recv(100) == CONTINUE
            b.sendall(b"body")
        assert got[0].body == b"body"

    _run(main)


def test_serialised_responses_keep_spelling_and_frame_anew() -> None:
    resp = UpstreamResponse(
        404,
        [
            ("X-Upstream", "v1"),
            ("connection", "keep-alive, x-drop"),
            ("x-drop", "1"),
            ("transfer-encoding", "chunked"),
            ("content-length", "99"),
        ],
        b"nope",
    )
    [req] = trio.run(_requests, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert serialize(resp, req) == (
        b"HTTP/1.1 404 Not Found\r\nX-Upstream: v1\r\ncontent-length: 4\r\n\r\nnope"
    )
    [head] = trio.run(_requests, b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert serialize(resp, head) == (
        b"HTTP/1.1 404 Not Found\r\nX-Upstream: v1\r\ncontent-length: 99\r\n\r\n"
    )
    assert end_to_end([("Keep-Alive", "5"), ("a", "b")]) == [("a", "b")]
    assert response_bytes(599, [], b"").startswith(b"HTTP/1.1 599 \r\n")
    with pytest.raises(ProtocolError):
        response_bytes(200, [("x-bad", "a\r\nInjected: 1")], b"")
    assert request_bytes("POST", "/p", [("Host", "h"), ("content-length", "1")], b"z") == (
        b"POST /p HTTP/1.1\r\nHost: h\r\ncontent-length: 1\r\n\r\nz"
    )
    # Headers as parsed (bytes) are forwarded the same way, checked the same way.
    assert request_bytes("POST", "/p", [(b"Host", b"h"), (b"content-length", b"1")], b"z") == (
        b"POST /p HTTP/1.1\r\nHost: h\r\ncontent-length: 1\r\n\r\nz"
    )
    with pytest.raises(ProtocolError):
        request_bytes("GET", "/", [(b"x-bad", b"a\nInjected: 1")], b"")


async def _responses(data: bytes, head: bool = False) -> tuple[Any, bool]:
    a, b = _pair()
    try:
        b.sendall(data)
        b.shutdown(socket.SHUT_WR)
        reader = ResponseReader(a)
        try:
            got: Any = await reader.read(head)
        except UpstreamClosed as exc:
            got = (str(exc), exc.before_response)
        return got, reader.reusable
    finally:
        a.close()
        b.close()


def test_upstream_responses_chunked_1xx_eof_and_reuse() -> None:
    chunked = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
        b"2\r\nhi\r\n0\r\n\r\n"
    )
    (status, headers, body), reusable = trio.run(_responses, chunked)
    assert (status, body, reusable) == (200, b"hi", True)
    assert headers == [("transfer-encoding", "chunked"), ("x-a", "1")]
    until_eof = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"
    (status, _, body), reusable = trio.run(_responses, until_eof)
    assert (status, body, reusable) == (200, b"all of it", False)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    (status, _, body), reusable = trio.run(_responses, head, True)
    assert (status, body, reusable) == (200, b"", False)
    extra = b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"
    (status, _, _), reusable = trio.run(_responses, extra)
    assert (status, reusable) == (204, False)
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"
    assert trio.run(_responses, cut) == (("connection closed", False), False)
    assert trio.run(_responses, b"") == (("connection closed", True), False)
    switch = b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n"
    assert trio.run(_responses, switch) == (("upgrade refused", True), False)


def _end_to_end_reference(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """RFC 9110 7.6.1 spelled out: hop-by-hop and Connection-named fields go."""
    named = {
        t.strip().lower() for n, v in headers if n.lower() == "connection" for t in v.split(",")
    }
    drop = {"keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
    drop |= {"connection", "content-length"} | named
    return [(n, v) for n, v in headers if n.lower() not in drop]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["Host", "x-a", "X-B", "Connection", "keep-alive", "TE", "upgrade"]),
            st.sampled_from(["1", "x-a", "X-B, close", "keep-alive", " x-b ,te"]),
        ),
        max_size=6,
    )
)
def test_end_to_end_drops_exactly_the_hop_by_hop_and_connection_named_fields(
    headers: list[tuple[str, str]],
) -> None:
    assert end_to_end(headers) == _end_to_end_reference(headers)
    raw = [(n.encode(), v.encode()) for n, v in headers]
    assert end_to_end_raw(raw) == [(n.encode(), v.encode()) for n, v in end_to_end(headers)]
