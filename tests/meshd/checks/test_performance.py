"""CPU cost of 1,000 HTTP checks at a 10 s interval (the issue's budget: < 10% of a core).

The HTTP server runs in a child process so that only the runner's work is
counted in this process's CPU time. The figure is printed (run with ``-s``
to see it); the assertion is the issue's budget.
"""

from __future__ import annotations

import random
import resource
import subprocess
import sys
import textwrap
import time

import pytest
import trio

from meshd.agent.local import LocalState
from meshd.checks.base import PASSING
from meshd.checks.runner import CheckRunner

from .fakes import NODE, add_check

pytestmark = pytest.mark.slow

CHECKS = 1000
INTERVAL = "10s"
MEASURE_SECONDS = 30.0

SERVER = textwrap.dedent(
    """
    import http.server, sys

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.request_queue_size = 1024
    print(server.server_address[1], flush=True)
    server.serve_forever()
    """
)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def test_1000_http_checks_use_less_than_10_percent_of_a_core() -> None:
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        local = LocalState(NODE, None)
        for i in range(CHECKS):
            add_check(
                local, ID=f"web-{i}", HTTP=f"http://127.0.0.1:{port}/health/{i}", Interval=INTERVAL
            )
        results: list[str] = []
        runner = CheckRunner(
            local, rng=random.Random(1), on_result=lambda k, s, d: results.append(s)
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(runner.run)
            cpu0, wall0 = cpu_seconds(), time.monotonic()
            await trio.sleep(MEASURE_SECONDS)
            cpu = cpu_seconds() - cpu0
            wall = time.monotonic() - wall0
            nursery.cancel_scope.cancel()
    finally:
        proc.kill()
        proc.wait()
    percent = 100.0 * cpu / wall
    probes = len(results)
    print(
        f"\n{CHECKS} HTTP checks every {INTERVAL}: {probes} probes in {wall:.1f} s, "
        f"runner CPU {cpu:.2f} s = {percent:.1f}% of one core, "
        f"{1e6 * cpu / max(probes, 1):.0f} us per probe"
    )
    assert results.count(PASSING) == probes
    assert probes >= CHECKS * MEASURE_SECONDS / 10 * 0.9
    assert percent < 10.0
