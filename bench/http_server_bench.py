"""The HTTP server alone (meshd/http/server.py): what one PUT costs it.

One in-process ``serve_http`` with a single route whose handler answers
``true`` at once (no Raft, no state store), and a raw-socket client in a
subprocess: keep-alive connections sending ``PUT /v1/kv/bench/<n>`` with a
100-byte body, in lock-step (each connection one request at a time). Prints
the server process's CPU (utime + stime) per request and the client's p50 /
wall time per request, for 1 and 64 connections. Run it in both trees,
alternating (A B A B), to compare; never asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import trio

from meshd.http import App, ErrorMapping, Request, Response, Router, open_http_listeners, serve_http

# Sends one request per connection, then reads every answer; prints the
# median latency of a request (1 connection) or the wall time per request.
CLIENT = r"""
import socket, statistics, sys, time
port, n, c = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(c)]
for s in socks:
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
body = b"v" * 100
lat = []
start = time.perf_counter()
for r in range(n // c):
    t = time.perf_counter_ns()
    for i, s in enumerate(socks):
        s.sendall(b"PUT /v1/kv/bench/%04d HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
                  % ((r * c + i) % 1000) + body)
    for s in socks:
        buf = b""
        while not buf.endswith(b"true"):
            buf += s.recv(65536)
    lat.append(time.perf_counter_ns() - t)
wall = (time.perf_counter() - start) / (n // c * c)
print(statistics.median(lat[len(lat) // 10:]) / 1000, wall * 1e6)
"""


async def _put(req: Request) -> Response:
    return Response.json(True)


async def measure(requests: int, connections: int) -> tuple[float, float, float]:
    """(server CPU us per request, client p50 us of one round, wall us per request)."""
    router = Router()
    router.add("PUT", "/v1/kv/*key", _put, name="kv")
    app = App(router, errors=ErrorMapping())
    listeners = await open_http_listeners([("127.0.0.1", 0)])
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_http, listeners, app)
        cpu = time.process_time()
        proc = await trio.run_process(
            [sys.executable, "-c", CLIENT, str(port), str(requests), str(connections)],
            capture_stdout=True,
            stderr=subprocess.DEVNULL,
        )
        cpu = time.process_time() - cpu
        nursery.cancel_scope.cancel()
    p50, wall = (float(x) for x in proc.stdout.split())
    return cpu / requests * 1e6, p50, wall


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=20000, help="per row")
    p.add_argument("--rounds", type=int, default=3, help="medians over this many runs")
    p.add_argument("--quick", action="store_true", help="CI smoke run: 2,000 requests, 1 run")
    args = p.parse_args(argv)
    n, rounds = (2000, 1) if args.quick else (args.requests, args.rounds)
    for conns in (1, 64):
        runs = [trio.run(measure, n - n % conns, conns) for _ in range(rounds)]
        cpu, p50, wall = (statistics.median(r[i] for r in runs) for i in range(3))
        what = f"client p50 {p50:.1f} us" if conns == 1 else f"wall {wall:.1f} us/request"
        print(
            f"HTTP server alone, {conns} connection(s), PUT -> true: server CPU"
            f" {cpu:.1f} us/request, {what} (medians of {rounds}; load average"
            f" {os.getloadavg()[0]:.2f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
