"""A service whose HTTP check starts failing leaves ?passing and DNS answers on
every agent within interval + 1 s (1 server + 2 clients, real processes)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest

from tools.local_cluster import LocalAgentCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
INTERVAL = 1.0


class Flaky(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(Flaky.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def backend() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server.server_address[1]
    server.shutdown()


def dns_a(ip: str, name: str) -> list[str]:
    q = dns.message.make_query(name, "A")
    resp = dns.query.udp(q, ip, port=8600, timeout=2)
    return sorted(r.address for rr in resp.answer for r in rr)


def test_failing_http_check_leaves_passing_and_dns_everywhere(tmp_path: Path, backend: int) -> None:
    c = LocalAgentCluster(tmp_path, servers=1, clients=2, subnet="127.0.25")
    c.start_all()
    try:
        c.wait_until(
            lambda: all(len(c.get(a, "/v1/catalog/nodes")[1]) == 3 for a in c.alive()),
            30,
            "3 nodes",
        )
        svc = {
            "Name": "pay",
            "Port": backend,
            "Check": {"HTTP": f"http://127.0.0.1:{backend}/", "Interval": f"{INTERVAL:.0f}s"},
        }
        assert c.request("client-1", "PUT", "/v1/agent/service/register", svc)[0] == 200
        ip = c.agents["client-1"].ip

        def everywhere(healthy: bool) -> bool:
            for a in c.agents.values():
                st, body, _ = c.get(a.name, "/v1/health/service/pay?passing&stale")
                if st != 200 or (len(body) == 1) != healthy:
                    return False
                if (dns_a(a.ip, "pay.service.consul") == [ip]) != healthy:
                    return False
            return True

        c.wait_until(lambda: everywhere(True), 15, "pay passing everywhere")
        Flaky.status = 500
        failed_at = time.monotonic()
        c.wait_until(lambda: everywhere(False), 10, "pay gone from ?passing and DNS everywhere")
        took = time.monotonic() - failed_at
        print(f"check failure visible everywhere after {took:.2f}s")
        assert took <= INTERVAL + 1.0, f"took {took:.2f}s (interval {INTERVAL}s)"
        Flaky.status = 200
        c.wait_until(lambda: everywhere(True), 10, "pay back everywhere")
    finally:
        Flaky.status = 200
        c.stop_all()
