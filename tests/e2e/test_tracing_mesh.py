"""Tracing end to end: two real agents, a ``meshd proxy`` on each, backends that call
their upstreams as applications do, an OTLP/HTTP and a Zipkin receiver.

agent 1 (server-1): ``edge`` (the test's entry: upstreams web and legacy),
``web`` (upstream api), ``legacy`` (upstream db; drops the trace headers).
agent 2 (client-1): ``api`` (upstream db), ``db``.

A call edge -> web -> api -> db with ``x-meshd-force-trace: 1`` is one trace
of six spans (a CLIENT and a SERVER span per hop) that chain by parent id,
exported to both receivers (the protobuf decoded with the official
opentelemetry-proto classes) and assembled from both agents by
``/v1/internal/traces/:id``. Calls through legacy make the propagation lint
name legacy, sampled or not.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.e2e.test_connect_mesh import wait_for
from tests.e2e.test_l7_mesh import Client
from tests.meshd.harness import free_port
from tools.local_cluster import LocalAgentCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SUBNET = "127.0.19"
IP1, IP2 = f"{SUBNET}.1", f"{SUBNET}.2"
BACKEND = Path(__file__).with_name("trace_backend.py")
CHAIN_WAIT = 60


class Receiver:
    """Collects the bodies POSTed to it (a collector stand-in), answering ``status``."""

    def __init__(self, status: int) -> None:
        self.bodies: list[tuple[str, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.bodies.append((self.path, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def otlp_spans(self, trace_id: str) -> list[Any]:
        out = []
        for path, body in list(self.bodies):
            assert path == "/v1/traces"
            req = ExportTraceServiceRequest.FromString(body)
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    out += [s for s in ss.spans if s.trace_id.hex() == trace_id]
        return out

    def zipkin_spans(self, trace_id: str) -> list[dict[str, Any]]:
        out = []
        for path, body in list(self.bodies):
            assert path == "/api/v2/spans"
            out += [s for s in json.loads(body) if s["traceId"] == trace_id]
        return out


class TraceMesh:
    def __init__(self, root: Path, otlp: Receiver, zipkin: Receiver) -> None:
        self.root = root
        tracing = {"otlp_endpoint": otlp.url, "zipkin_endpoint": zipkin.url}
        self.cluster = LocalAgentCluster(
            root / "agents",
            servers=1,
            clients=1,
            subnet=SUBNET,
            extra_config={"tracing": tracing},
        )
        self.procs: list[subprocess.Popen[bytes]] = []
        self.to_web = (IP1, free_port(IP1))
        self.to_legacy = (IP1, free_port(IP1))

    def spawn(self, name: str, args: list[str]) -> None:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))

    def api(self, agent: str, method: str, path: str, body: Any = None) -> Any:
        status, out, _ = self.cluster.request(agent, method, path, body)
        assert status == 200, f"{method} {path}: {status} {out}"
        return out

    def service(
        self,
        agent: str,
        ip: str,
        name: str,
        upstreams: dict[str, int],
        *,
        drop: bool = False,
        backend: bool = True,
    ) -> None:
        """Register ``name`` on ``agent`` with its sidecar and upstreams, and start its backend."""
        port = free_port(ip)
        ups = [
            {"DestinationName": dest, "LocalBindAddress": ip, "LocalBindPort": lport}
            for dest, lport in upstreams.items()
        ]
        if backend:
            args = [sys.executable, str(BACKEND), ip, str(port), name]
            if ups:
                args.append(f"{ip}:{ups[0]['LocalBindPort']}")
            self.spawn(name, [*args, "drop"] if drop else args)
        svc: dict[str, Any] = {
            "Name": name,
            "Address": ip,
            "Port": port,
            "Connect": {"SidecarService": {"Proxy": {"LocalServiceAddress": ip, "Upstreams": ups}}},
        }
        if backend:
            svc["Check"] = {"HTTP": f"http://{ip}:{port}/health", "Interval": "1s"}
        self.api(agent, "PUT", "/v1/agent/service/register", svc)

    def get(self, agent: str, path: str) -> tuple[int, Any]:
        status, out, _ = self.cluster.get(agent, path)
        return status, out


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    otlp, zipkin = Receiver(200), Receiver(202)
    yield otlp, zipkin
    otlp.server.shutdown()
    zipkin.server.shutdown()


@pytest.fixture(scope="module")
def mesh(
    tmp_path_factory: pytest.TempPathFactory, receivers: tuple[Receiver, Receiver]
) -> Iterator[TraceMesh]:
    m = TraceMesh(tmp_path_factory.mktemp("tracing"), *receivers)
    c = m.cluster
    c.start_all()
    try:
        c.wait_until(lambda: len(c.get("server-1", "/v1/catalog/nodes")[1]) == 2, 60, "agents up")
        m.service("server-1", IP1, "edge", {"web": m.to_web[1], "legacy": m.to_legacy[1]},
                  backend=False)  # fmt: skip
        m.service("server-1", IP1, "web", {"api": free_port(IP1)})
        m.service("server-1", IP1, "legacy", {"db": free_port(IP1)}, drop=True)
        m.service("client-1", IP2, "api", {"db": free_port(IP2)})
        m.service("client-1", IP2, "db", {})
        for src, dst in (("edge", "web"), ("edge", "legacy"), ("web", "api")):
            m.api("server-1", "PUT", f"/v1/connect/intentions/exact?source={src}&destination={dst}",
                  {"Action": "allow"})  # fmt: skip
        for src in ("api", "legacy"):
            m.api("server-1", "PUT", f"/v1/connect/intentions/exact?source={src}&destination=db",
                  {"Action": "allow"})  # fmt: skip
        entries = [
            {"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}},
            {"Kind": "service-defaults", "Name": "legacy", "TracingSamplingPercentage": 100},
        ]
        for entry in entries:
            assert m.api("server-1", "PUT", "/v1/config", entry) is True
        for name, ip in (("server-1", IP1), ("client-1", IP2)):
            args = [sys.executable, "-m", "meshd", "proxy", "--http-addr", f"{ip}:8500"]
            m.spawn(f"proxy-{name}", args)
        for svc in ("web", "legacy", "api", "db"):
            c.wait_until(
                lambda svc=svc: len(c.get("server-1", f"/v1/health/connect/{svc}?passing")[1]) == 1,
                CHAIN_WAIT,
                f"{svc} sidecar healthy",
            )
        wait_for(lambda: _chain_ok(m.to_web), CHAIN_WAIT, "edge -> web -> api -> db answers")
        yield m
    finally:
        for p in m.procs:
            p.terminate()
        for p in m.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        c.stop_all()


def _call(address: tuple[str, int], headers: dict[str, str]) -> dict[str, Any]:
    client = Client(address)
    try:
        status, _, body = client.request("/orders", headers)
    finally:
        client.close()
    assert status == 200, body
    return dict(json.loads(body))


def _chain_ok(address: tuple[str, int]) -> bool:
    try:
        answer = _call(address, {})
    except (AssertionError, ValueError, ConnectionError):
        return False
    return answer.get("upstream", {}).get("upstream", {}).get("name") == "db"


def _trace_id(traceparent: str) -> str:
    return traceparent.split("-")[1]


def test_three_hops_are_one_trace_exported_and_assembled_across_agents(
    mesh: TraceMesh, receivers: tuple[Receiver, Receiver]
) -> None:
    answer = _call(mesh.to_web, {"x-meshd-force-trace": "1"})
    web_tp, api_tp = answer["traceparent"], answer["upstream"]["traceparent"]
    db_tp = answer["upstream"]["upstream"]["traceparent"]
    trace = _trace_id(web_tp)
    assert _trace_id(api_tp) == _trace_id(db_tp) == trace
    assert web_tp.endswith("-01")  # forced: sampled

    def assembled() -> list[dict[str, Any]] | None:
        status, out = mesh.get("server-1", f"/v1/internal/traces/{trace}")
        return out["Spans"] if status == 200 and len(out["Spans"]) >= 6 else None

    spans = wait_for(assembled, 30, "six spans from both agents")
    assert [(s["Service"], s["Kind"]) for s in spans] == [
        ("edge", "CLIENT"),
        ("web", "SERVER"),
        ("web", "CLIENT"),
        ("api", "SERVER"),
        ("api", "CLIENT"),
        ("db", "SERVER"),
    ]
    assert spans[0]["ParentSpanID"] == ""
    assert [s["ParentSpanID"] for s in spans[1:]] == [s["SpanID"] for s in spans[:-1]]
    # Each application received its SERVER span as the parent.
    servers = [s["SpanID"] for s in spans if s["Kind"] == "SERVER"]
    assert [tp.split("-")[2] for tp in (web_tp, api_tp, db_tp)] == servers
    peers = ("web", "edge", "api", "web", "db", "api")
    for span, peer in zip(spans, peers, strict=True):
        attrs = span["Attributes"]
        assert attrs["peer.service"] == peer and attrs["http.response.status_code"] == 200
        assert attrs["http.request.method"] == "GET" and attrs["url.path"] == "/orders"
        assert attrs["meshd.upstream_instance"].count(":") == 1
        assert len(attrs["meshd.request_id"]) == 36
    assert len({s["Attributes"]["meshd.request_id"] for s in spans}) == 1  # forwarded too
    for client, server in zip(spans[::2], spans[1::2], strict=True):  # each hop
        assert client["StartNs"] <= server["StartNs"] <= server["EndNs"] <= client["EndNs"]

    # The other agent assembles the same trace; search finds it by service.
    status, other = mesh.get("client-1", f"/v1/internal/traces/{trace}")
    assert status == 200 and [s["SpanID"] for s in other["Spans"]] == [s["SpanID"] for s in spans]
    status, found = mesh.get("server-1", "/v1/internal/traces?service=api&limit=100")
    assert status == 200 and trace in [t["TraceID"] for t in found]

    otlp, zipkin = receivers
    ids = [s["SpanID"] for s in spans]
    pb = wait_for(lambda: len(otlp.otlp_spans(trace)) >= 6 and otlp.otlp_spans(trace), 30, "otlp")
    by_id = {s.span_id.hex(): s for s in pb}
    assert sorted(by_id) == sorted(ids)
    assert [by_id[i].parent_span_id.hex() for i in ids] == [s["ParentSpanID"] for s in spans]
    assert [by_id[i].kind for i in ids] == [3, 2] * 3  # SPAN_KIND_CLIENT, SPAN_KIND_SERVER
    zs = wait_for(lambda: len(zipkin.zipkin_spans(trace)) >= 6 and zipkin.zipkin_spans(trace), 30,
                  "zipkin")  # fmt: skip
    z_by_id = {s["id"]: s for s in zs}
    assert sorted(z_by_id) == sorted(ids)
    assert [z_by_id[i].get("parentId", "") for i in ids] == [s["ParentSpanID"] for s in spans]
    services = [z_by_id[i]["localEndpoint"]["serviceName"] for i in ids]
    assert services == ["edge", "web", "web", "api", "api", "db"]


def test_the_lint_names_the_service_that_drops_trace_headers(mesh: TraceMesh) -> None:
    answer = _call(mesh.to_legacy, {"x-meshd-force-trace": "1"})
    assert answer["name"] == "legacy" and answer["upstream"]["name"] == "db"
    # db got a new trace: legacy did not copy the headers it received.
    assert _trace_id(answer["upstream"]["traceparent"]) != _trace_id(answer["traceparent"])

    def named() -> list[dict[str, Any]] | None:
        status, out = mesh.get("client-1", "/v1/internal/traces/lint")  # asks server-1 too
        return [f for f in out if f["Service"] == "legacy"] if status == 200 else None

    finding = wait_for(named, 30, "lint names legacy")[0]
    assert finding["Upstreams"] == ["db"] and finding["BrokenCalls"] >= 1
    assert finding["ExampleInboundTrace"] == _trace_id(answer["traceparent"])
    assert "event=trace_propagation_broken service=legacy" in mesh.cluster.logs("server-1")
    status, own = mesh.get("server-1", "/v1/internal/traces/lint?local")
    assert [f["Service"] for f in own] == ["legacy"]
    # Unsampled traffic counts too: legacy's proxy sees every request.
    before = own[0]["BrokenCalls"]
    for _ in range(3):
        _call(mesh.to_legacy, {})

    def counted() -> int | None:
        out = mesh.get("server-1", "/v1/internal/traces/lint?local")[1]
        return out[0]["BrokenCalls"] if out[0]["BrokenCalls"] >= before + 3 else None

    assert wait_for(counted, 30, "three more broken calls counted") == before + 3
    status, metrics = mesh.get("server-1", "/v1/agent/metrics?format=prometheus")
    assert status == 200 and "meshd_tracing_spans_received_total" in metrics
    assert 'meshd_tracing_spans_exported_total{collector="otlp"}' in metrics
    assert 'meshd_tracing_spans_dropped_total{reason="otlp_queue_full"} 0.0' in metrics
