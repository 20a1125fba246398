"""``StreamingResponse`` over real sockets: chunked framing, the connection
closed after it, the producer cancelled when the client goes away."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from meshd.http import App, ErrorMapping, Request, Response, Router, StreamingResponse
from tests.meshd.http._support import RawClient, encode_request, running

pytestmark = pytest.mark.e2e


async def test_chunks_are_framed_as_sent_and_the_connection_closes_after() -> None:
    async def lines() -> AsyncIterator[bytes]:
        yield b"one\n"
        yield b""  # empty pieces are skipped (an empty chunk would end the body)
        yield b"two and more\n"

    async def stream(req: Request) -> Response:
        return StreamingResponse(lines(), headers=[("Content-Type", "text/plain")])

    router = Router()
    router.add("GET", "/stream", stream, name="stream")
    async with running(App(router, errors=ErrorMapping())) as port:
        client = await RawClient.connect(port)
        await client.send(encode_request("GET", "/stream"))
        data = b""
        with trio.fail_after(5):
            while True:
                piece = await client.stream.receive_some(65536)
                if not piece:
                    break
                data += piece
        head, _, body = data.partition(b"\r\n\r\n")
        headers = head.decode().lower().split("\r\n")
        assert headers[0] == "http/1.1 200 ok"
        assert "transfer-encoding: chunked" in headers and "connection: close" in headers
        assert not [h for h in headers if h.startswith("content-length")]
        assert body == b"4\r\none\n\r\nd\r\ntwo and more\n\r\n0\r\n\r\n"
        # HEAD answers the head only and never starts the producer.
        client = await RawClient.connect(port)
        resp = await client.request("HEAD", "/stream")
        assert resp.status == 200 and resp.body == b""
        await client.aclose()


async def test_the_producer_is_cancelled_when_the_client_goes_away() -> None:
    sent = trio.Event()
    closed = trio.Event()

    async def forever() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"tick\n"
                sent.set()
                await trio.sleep(0.01)
        finally:
            closed.set()

    async def stream(req: Request) -> Response:
        return StreamingResponse(forever())

    router = Router()
    router.add("GET", "/stream", stream, name="stream")
    async with running(App(router, errors=ErrorMapping())) as port:
        client = await RawClient.connect(port)
        await client.send(encode_request("GET", "/stream"))
        with trio.fail_after(5):
            await sent.wait()
        await client.aclose()
        with trio.fail_after(5):
            await closed.wait()
