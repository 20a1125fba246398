"""The mesh's request and TCP metrics, access logs, Grafana dashboard and
recording rules against a real agent, ``meshd proxy`` and backends (the L7
mesh of test_l7_mesh.py: web -> api v1/v2, plus a tcp service here).

Counters are compared as deltas of two scrapes of the proxy's /metrics
around a known batch of requests, so they are exact. The mesh binds
test_l7_mesh's loopback subnet: tests/conftest.py's SHARED puts both files
in one group, so they never run at the same time.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_connect_mesh import wait_for
from tests.e2e.test_l7_mesh import BACKEND, IP, Client, L7Mesh
from tests.e2e.test_l7_mesh import mesh as mesh  # the module-scoped fixture, reused
from tests.meshd.harness import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "observability" / "grafana" / "meshd-dashboard.json"
RULES = ROOT / "observability" / "prometheus" / "meshd-rules.yml"
WEB_TO_API = {
    "reporter": "source",
    "source_service": "web",
    "destination_service": "api",
    "destination_subset": "v1",
    "request_method": "GET",
    "connection_security_policy": "mutual_tls",
}
Samples = list[tuple[str, dict[str, str], float]]


def metrics_address(m: L7Mesh) -> str:
    for proc in m.procs:
        args = [str(a) for a in proc.args]  # type: ignore[union-attr]
        if "--metrics-addr" in args:
            return args[args.index("--metrics-addr") + 1]
    raise AssertionError("the proxy was started without --metrics-addr")


def scrape_text(m: L7Mesh) -> str:
    with urllib.request.urlopen(f"http://{metrics_address(m)}/metrics", timeout=10) as r:
        return str(r.read().decode())


def scrape(m: L7Mesh) -> Samples:
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(scrape_text(m))
        for s in family.samples
    ]


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples if n == name and labels.items() <= lab.items())


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


API_DEFAULTS = {"Kind": "service-defaults", "Name": "api", "Protocol": "http"}


def _set_access_logs(m: L7Mesh, entry: dict[str, str], path: Path) -> None:
    logs = {"Enabled": True, "Type": "file", "Path": str(path)}
    assert m.api("PUT", "/v1/config", {**entry, "AccessLogs": logs}) is True


def _lines(path: Path, *prefixes: str) -> list[dict[str, object]]:
    lines = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return [x for x in lines if str(x["path"]).startswith(prefixes)]


def _send_batch(m: L7Mesh, web_log: Path, api_log: Path) -> tuple[Samples, Samples, list[int]]:
    """/slow (504 at the source after 200 ms; 200 at the destination after 1 s),
    then 7 x 200 and 3 x 503; the scrape after it waits for the destination."""
    c = Client(m.upstream)
    try:
        wait_for(
            lambda: c.request("/probe")[0] == 200 and _lines(web_log, "/") and _lines(api_log, "/"),
            30,
            "access logs on for web and api",
        )
        before = scrape(m)
        assert c.request("/slow")[0] == 504  # the route's 200 ms timeout: flag UT
        got = [c.request(f"/status/{code}")[0] for code in [200] * 7 + [503] * 3]
    finally:
        c.close()
    after = wait_for(
        lambda: (
            (s := scrape(m))
            and delta(before, s, "meshd_requests_total", reporter="destination") == 11
            and s
        ),
        30,
        "the destination reporter counting all 11 requests",
    )
    return before, after, got


def test_requests_are_counted_exactly_on_both_reporters_with_access_logs(mesh: L7Mesh) -> None:
    web_log, api_log = mesh.root / "web-access.log", mesh.root / "api-access.log"
    _set_access_logs(mesh, {"Kind": "service-defaults", "Name": "web"}, web_log)
    _set_access_logs(mesh, API_DEFAULTS, api_log)
    try:
        before, after, got = _send_batch(mesh, web_log, api_log)
    finally:
        mesh.api("DELETE", "/v1/config/service-defaults/web")
        assert mesh.api("PUT", "/v1/config", API_DEFAULTS) is True
    assert got == [200] * 7 + [503] * 3
    slow_body, ok_body = len("api-v1 /slow\n"), len("api-v1 /status/200\n")
    dest = {**WEB_TO_API, "reporter": "destination", "destination_subset": "unknown"}
    for base, n_ok in ((WEB_TO_API, 7), (dest, 8)):  # the destination saw /slow answered 200
        ok = {**base, "response_code": "200", "response_flags": "-"}
        failed = {**base, "response_code": "503", "response_flags": "-"}
        for labels, n in ((ok, n_ok), (failed, 3)):
            assert delta(before, after, "meshd_requests_total", **labels) == n, labels
            assert delta(before, after, "meshd_request_duration_milliseconds_count", **labels) == n
            inf = delta(
                before, after, "meshd_request_duration_milliseconds_bucket", **labels, le="+Inf"
            )
            assert inf == n
            assert delta(before, after, "meshd_request_bytes_count", **labels) == n
        # Bodies are "api-v1 <path>\n"; GETs send none.
        sent = 7 * ok_body + (n_ok - 7) * slow_body
        assert delta(before, after, "meshd_response_bytes_sum", **ok) == sent
        assert delta(before, after, "meshd_request_bytes_sum", **ok) == 0
        assert delta(before, after, "meshd_requests_total", reporter=base["reporter"]) == 11
    timeout = {**WEB_TO_API, "response_code": "504", "response_flags": "UT"}
    assert delta(before, after, "meshd_requests_total", **timeout) == 1
    under_100 = delta(
        before, after, "meshd_request_duration_milliseconds_bucket", **timeout, le="100.0"
    )
    under_250 = delta(
        before, after, "meshd_request_duration_milliseconds_bucket", **timeout, le="250.0"
    )
    assert (under_100, under_250) == (0, 1)
    assert delta(before, after, "meshd_retries_total") == 0
    _check_access_logs(mesh, web_log, api_log)


def _check_access_logs(m: L7Mesh, web_log: Path, api_log: Path) -> None:
    source = _lines(web_log, "/status/", "/slow")
    assert [x["response_code"] for x in source] == [504] + [200] * 7 + [503] * 3
    assert [x["response_flags"] for x in source][:2] == ["UT", "-"]
    assert {(x["reporter"], x["source_service"], x["destination_service"]) for x in source} == {
        ("source", "web", "api")
    }
    sidecar = next(
        r["Service"]
        for r in m.api("GET", "/v1/health/connect/api?passing")
        if r["Service"]["Meta"].get("version") == "v1"
    )
    assert source[1]["upstream_host"] == f"{sidecar['Address']}:{sidecar['Port']}"
    dest = _lines(api_log, "/status/", "/slow")
    statuses: dict[str, list[object]] = {}
    for x in dest:
        statuses.setdefault(str(x["path"]), []).append(x["response_code"])
    assert statuses == {"/slow": [200], "/status/200": [200] * 7, "/status/503": [503] * 3}
    assert {(x["reporter"], x["source_service"], x["method"]) for x in dest} == {
        ("destination", "web", "GET")
    }
    app = m.api("GET", "/v1/agent/service/api-v1")
    assert {x["upstream_host"] for x in dest} == {f"{app['Address']}:{app['Port']}"}
    assert all(str(x["start_time"]).endswith("Z") for x in [*source, *dest])


def _tcp_exchange(address: tuple[str, int]) -> tuple[int, int]:
    """One HTTP/1.0-style exchange over the L4 listener; (bytes sent, received)."""
    request = b"GET /tcp HTTP/1.1\r\nHost: db\r\nConnection: close\r\n\r\n"
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.") and received.endswith(b"db /tcp\n"), received
    return len(request), len(received)


def _answers(address: tuple[str, int]) -> bool:
    try:
        return bool(_tcp_exchange(address))
    except AssertionError:  # accepted, then closed: no healthy db instance yet
        return False


@pytest.fixture(scope="module")
def tcp_service(mesh: L7Mesh) -> Iterator[tuple[str, int]]:
    port, up = free_port(IP), (IP, free_port(IP))
    mesh.spawn("db", [sys.executable, str(BACKEND), IP, str(port), "db"])
    sidecar = {"Proxy": {"LocalServiceAddress": IP}}
    db = {
        "Name": "db",
        "Address": IP,
        "Port": port,
        "Check": {"TCP": f"{IP}:{port}", "Interval": "1s"},
        "Connect": {"SidecarService": sidecar},
    }
    upstream = {"DestinationName": "db", "LocalBindAddress": up[0], "LocalBindPort": up[1]}
    client = {
        "Name": "tcpclient",
        "Address": IP,
        "Port": 9,
        "Connect": {"SidecarService": {"Proxy": {"Upstreams": [upstream]}}},
    }
    mesh.api("PUT", "/v1/agent/service/register", db)
    mesh.api("PUT", "/v1/agent/service/register", client)
    mesh.api(
        "PUT", "/v1/connect/intentions/exact?source=tcpclient&destination=db", {"Action": "allow"}
    )
    try:
        wait_for(lambda: _answers(up), 60, "the tcp upstream answering")
        yield up
    finally:
        mesh.api("PUT", "/v1/agent/service/deregister/tcpclient")
        mesh.api("PUT", "/v1/agent/service/deregister/db")


def _edge(reporter: str) -> dict[str, str]:
    return {"reporter": reporter, "source_service": "tcpclient", "destination_service": "db"}


def _settled(m: L7Mesh) -> Samples | None:
    """A scrape in which every db connection opened has also closed, on both sides."""
    s = scrape(m)
    for reporter in ("source", "destination"):
        opened = total(s, "meshd_tcp_connections_opened_total", **_edge(reporter))
        if opened == 0 or opened != total(
            s, "meshd_tcp_connections_closed_total", **_edge(reporter)
        ):
            return None
    return s


def test_tcp_connections_and_bytes_are_counted_on_both_reporters(
    mesh: L7Mesh, tcp_service: tuple[str, int]
) -> None:
    before = wait_for(lambda: _settled(mesh), 30, "earlier db connections closed")
    sent = received = 0
    for _ in range(2):
        s, r = _tcp_exchange(tcp_service)
        sent, received = sent + s, received + r

    def counted() -> Samples | None:
        after = _settled(mesh)
        if after is None:
            return None
        done = delta(before, after, "meshd_tcp_sent_bytes_total", **_edge("destination"))
        return after if done == received else None

    after = wait_for(counted, 30, "both connections closed and counted")
    for reporter in ("source", "destination"):
        edge = {**_edge(reporter), "connection_security_policy": "mutual_tls"}
        assert delta(before, after, "meshd_tcp_connections_opened_total", **edge) == 2
        assert delta(before, after, "meshd_tcp_connections_closed_total", **edge) == 2
        # received: from the accepted side (the request); sent: back to it (the response)
        assert delta(before, after, "meshd_tcp_received_bytes_total", **edge) == sent
        assert delta(before, after, "meshd_tcp_sent_bytes_total", **edge) == received
    assert delta(before, after, "meshd_requests_total", destination_service="db") == 0


QUERY_NAME = re.compile(r"\bmeshd_[a-z0-9_]+")


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [
        v["query"]["query"] if isinstance(v.get("query"), dict) else v["query"]
        for v in dash["templating"]["list"]
        if v["type"] == "query"
    ]
    assert len(exprs) > 10
    return exprs


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus"
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)


def test_every_metric_the_dashboard_and_rules_query_is_served_after_traffic(
    mesh: L7Mesh, tmp_path: Path
) -> None:
    text = scrape_text(mesh)
    served = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    declared = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    # Families with labels show only their TYPE line until an event happens.
    declared |= {
        f"{n}{suffix}" for n in declared for suffix in ("_bucket", "_sum", "_count", "_total")
    }
    for name in ("meshd_requests_total", "meshd_request_duration_milliseconds_bucket"):
        assert name in served, f"no {name} samples after traffic"
    rules_text = RULES.read_text()
    queried = {n for e in _dashboard_exprs() for n in QUERY_NAME.findall(e)}
    queried |= set(QUERY_NAME.findall(rules_text))
    assert {"meshd_requests_total", "meshd_tcp_sent_bytes_total"} <= queried
    missing = sorted(n for n in queried if n not in served and n not in declared)
    assert not missing, f"queried but not served by the proxy: {missing}"

    checked = _promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {rules_text.count('- record:')} rules found" in checked.stdout
    # The dashboard's queries parse too: promtool checks them as recording rules.
    rules = [
        {"record": f"dashboard:query{i}", "expr": e}
        for i, e in enumerate(
            e.replace("$__rate_interval", "1m")
            .replace("$source", ".*")
            .replace("$destination", ".*")
            for e in _dashboard_exprs()
            if not e.startswith("label_values(")
        )
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = _promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
