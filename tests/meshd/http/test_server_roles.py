"""The connection's two tasks swap the reader and answerer roles (meshd/http/server.py):
what the task that read a request must still guarantee once it answers it."""

from __future__ import annotations

import trio

from meshd.http import Request, Response, Router
from tests.meshd.http._support import RawClient, encode_request, running
from tests.meshd.http.test_server import _app


def _size_router() -> Router:
    async def size(req: Request) -> Response:
        return Response.json({"size": len(req.body)})

    router = Router()
    router.add("PUT", "/v1/txn", size, name="txn")
    return router


async def test_sequential_requests_past_the_read_ahead_window_keep_being_read() -> None:
    # One request at a time (never waiting for data in between): 30 x 20 kB
    # is more than the 256 kB read-ahead window, which must reopen after each answer.
    async with running(_app(_size_router())) as port:
        client = await RawClient.connect(port)
        with trio.fail_after(20):
            for _ in range(30):
                r = await client.request("PUT", "/v1/txn", body=b"x" * 20_000)
                assert r.json() == {"size": 20_000}
        await client.aclose()


async def test_body_arriving_after_the_head_is_read_by_the_other_task() -> None:
    async with running(_app(_size_router())) as port:
        client = await RawClient.connect(port)
        raw = encode_request("PUT", "/v1/txn", body=b"y" * 3000)
        head_end = raw.index(b"\r\n\r\n") + 4
        await client.send(raw[:head_end])
        for start in range(head_end, len(raw), 1000):
            await trio.sleep(0.05)
            await client.send(raw[start : start + 1000])
        with trio.fail_after(10):
            reply = await client.read_response()
        assert reply is not None and reply.json() == {"size": 3000}
        # The connection still serves the next request.
        again = await client.request("PUT", "/v1/txn", body=b"z")
        assert again.json() == {"size": 1}
        await client.aclose()
