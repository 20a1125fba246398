"""The HTTP benchmark's baseline: the least a trio HTTP/1.1 server can do.

One task per connection reads, lets llhttp (``httptools``, the parser meshd
uses) find each request and answers every one with the same small JSON body
and the headers a Consul answer carries. No routing, no limits, no timeouts:
whatever meshd spends beyond this is its own. Run as
``python -m bench.http_baseline PORT``; serves 127.0.0.1 until killed.
"""

from __future__ import annotations

import functools
import sys
from email.utils import formatdate

import httptools
import trio

BODY = b'"127.0.0.1:8300"'


def answer() -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nDate: %s\r\n"
        b"Content-Type: application/json\r\nX-Consul-Index: 1\r\n"
        b"X-Consul-KnownLeader: true\r\nX-Consul-LastContact: 0\r\n\r\n%s"
        % (len(BODY), formatdate(usegmt=True).encode(), BODY)
    )


class _Requests:
    def __init__(self) -> None:
        self.complete = 0

    def on_message_complete(self) -> None:
        self.complete += 1


async def serve(stream: trio.SocketStream) -> None:
    requests = _Requests()
    parser = httptools.HttpRequestParser(requests)
    reply = answer()
    try:
        while data := await stream.receive_some(65536):
            parser.feed_data(data)
            if requests.complete:
                await stream.send_all(reply * requests.complete)
                requests.complete = 0
    except (trio.BrokenResourceError, httptools.HttpParserError):
        pass


def main() -> None:
    port = int(sys.argv[1])
    trio.run(functools.partial(trio.serve_tcp, serve, port, host="127.0.0.1"))


if __name__ == "__main__":
    main()
