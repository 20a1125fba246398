"""The UI's live views against a real mesh with traffic: a dev agent, its
``meshd proxy``, ``api`` v1/v2 backends (tests/e2e/l7_backend.py) and
``web`` calling ``api`` through its upstream listener (a thread sends
about 20 requests/s, one in ten answered 503). The service page shows each
edge's requests/s, error rate and p99; the traffic graph page draws the
edges (re-read every 5 s only while the page is visible); a canary started
through the API is aborted from the UI and the splitter goes back to 100%
of the old version. axe-core on the new pages. Everything binds free ports
on 127.0.0.1.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.test_l7_mesh import Client
from tests.ports import free_port
from tests.ui.conftest import AgentProcess, axe_serious, shot, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

IP = "127.0.0.1"
BACKEND = Path(__file__).resolve().parents[1] / "e2e" / "l7_backend.py"
RESOLVER = {
    "Kind": "service-resolver",
    "Name": "api",
    "DefaultSubset": "v1",
    "Subsets": {
        "v1": {"Filter": 'Service.Meta.version == "v1"'},
        "v2": {"Filter": 'Service.Meta.version == "v2"'},
    },
}


class LiveMesh:
    """The agent, proxy and backends, and the traffic thread."""

    def __init__(self, agent: AgentProcess) -> None:
        self.agent = agent
        self.procs: list[subprocess.Popen[bytes]] = []
        self.upstream = (IP, free_port())
        self.stop = threading.Event()
        self.sent = {"ok": 0, "failed": 0}
        self.thread = threading.Thread(target=self._traffic, daemon=True)

    def spawn(self, name: str, args: list[str]) -> None:
        log = open(self.agent.root / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
        self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))

    def put(self, path: str, body: Any) -> Any:
        status, out = self.agent.call("PUT", path, body)
        assert status == 200, f"PUT {path}: {status} {out}"
        return out

    def start(self) -> None:
        for version in ("v1", "v2"):
            port = free_port()
            name = f"api-{version}"
            self.spawn(name, [sys.executable, str(BACKEND), IP, str(port), name])
            sidecar = {"Port": free_port(), "Proxy": {"LocalServiceAddress": IP}}
            self.put("/v1/agent/service/register", {
                "Name": "api", "ID": name, "Address": IP, "Port": port,
                "Meta": {"version": version},
                "Check": {"HTTP": f"http://{IP}:{port}/health", "Interval": "1s"},
                "Connect": {"SidecarService": sidecar},
            })  # fmt: skip
        up = {"DestinationName": "api", "LocalBindAddress": IP, "LocalBindPort": self.upstream[1]}
        self.put("/v1/agent/service/register", {
            "Name": "web", "Address": IP, "Port": free_port(),
            "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": [up]}}},
        })  # fmt: skip
        self.put("/v1/connect/intentions/exact?source=web&destination=api", {"Action": "allow"})
        for entry in ({"Kind": "service-defaults", "Name": "api", "Protocol": "http"}, RESOLVER):
            assert self.put("/v1/config", entry) is True
        http = f"{IP}:{self.agent.port}"
        self.spawn("proxy", [sys.executable, "-m", "meshd", "proxy", "--http-addr", http,
                             "--metrics-addr", f"{IP}:{free_port()}"])  # fmt: skip
        wait_until(
            lambda: len(self.agent.call("GET", "/v1/health/connect/api?passing")[1]) == 2,
            60,
            "both api sidecars healthy",
        )
        wait_until(self._answers, 60, "web -> api through the proxy")
        self.thread.start()

    def _answers(self) -> bool:
        c = Client(self.upstream)
        try:
            return c.request("/")[0] == 200
        finally:
            c.close()

    def _traffic(self) -> None:
        """~20 requests/s from web to api, every tenth to /status/503."""
        i = 0
        client: Client | None = None
        while not self.stop.wait(0.05):
            try:
                client = client or Client(self.upstream)
                status = client.request("/status/503" if i % 10 == 9 else "/")[0]
                self.sent["ok" if status == 200 else "failed"] += 1
            except OSError:
                client = None
            i += 1
        if client:
            client.close()

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(10)
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveMesh]:
    agent = AgentProcess(tmp_path_factory.mktemp("ui-live"), acl=False)
    m = LiveMesh(agent)
    try:
        m.start()
        yield m
    finally:
        m.close()
        agent.stop()
    proxy_log = (agent.root / "proxy.log").read_text(errors="replace")
    assert "Traceback" not in proxy_log, proxy_log


def rate(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?) req/s", text.strip())
    assert m, f"not a rate: {text!r}"
    return float(m.group(1))


def edge_cells(page: Any, table: str, edge: str) -> dict[str, str]:
    """The cells of one edge's row, by column header."""
    row = page.locator(f'{table} tr[data-edge="{edge}"]')
    heads = page.locator(f"{table} thead th").all_text_contents()  # not upper-cased by CSS
    cells = row.locator("th, td").all_text_contents()
    return dict(zip(heads, cells, strict=True))


def wait_for_traffic(page: Any, table: str, edge: str) -> dict[str, str]:
    """Wait (the page re-reads every 5 s) until the edge shows requests and
    errors (one request in ten is answered 503); its cells by column."""
    page.locator(f'{table} tr[data-edge="{edge}"]').wait_for(timeout=60_000)
    page.wait_for_function(
        """([t, e]) => {
             const heads = [...document.querySelectorAll(`${t} thead th`)]
               .map((c) => c.textContent);
             const row = document.querySelector(`${t} tr[data-edge="${e}"]`);
             if (!row) return false;
             const cell = (name) => row.cells[heads.indexOf(name)].textContent;
             return parseFloat(cell("Requests/s")) > 0 && parseFloat(cell("Error rate")) > 0;
           }""",
        arg=[table, edge],
        timeout=60_000,
    )
    return edge_cells(page, table, edge)


def test_service_page_shows_live_edges_with_nonzero_rates(page: Any, mesh: LiveMesh) -> None:
    page.goto(mesh.agent.url + "/ui/#/services/web")
    cells = wait_for_traffic(page, "#edges", "web>api")
    assert cells["Direction"] == "upstream", cells
    assert rate(cells["Requests/s"]) > 0, cells
    assert re.fullmatch(r"\d+(\.\d+)?%", cells["Error rate"]) and cells["Error rate"] != "0%", cells
    assert re.fullmatch(r"\d+(\.\d+)? (ms|s)", cells["p99"]), cells
    page.locator('#edges tr[data-edge="web>api"]').get_by_text("allowed by intention").wait_for()
    shot(page, "live-service-web-edges")
    page.goto(mesh.agent.url + "/ui/#/services/api")
    cells = wait_for_traffic(page, "#edges", "web>api")
    assert cells["Direction"] == "downstream" and rate(cells["Requests/s"]) > 0, cells
    shot(page, "live-service-api-edges")
    assert mesh.sent["ok"] > 0 and mesh.sent["failed"] > 0, mesh.sent


def _graph_reads(page: Any) -> int:
    return sum("/v1/internal/ui/mesh-graph" in u for u in page.urls)


def _reads_after(page: Any, count: int, timeout_ms: int) -> bool:
    """Whether the page reads the graph again within the time. Waits in the
    page: the sync API delivers request events only while it is called."""
    waited = 0
    while waited < timeout_ms:
        if _graph_reads(page) > count:
            return True
        page.wait_for_timeout(100)
        waited += 100
    return _graph_reads(page) > count


def _set_hidden(page: Any, hidden: bool) -> None:
    page.evaluate(
        """(h) => { Object.defineProperty(document, "hidden", {configurable: true, get: () => h});
                    document.dispatchEvent(new Event("visibilitychange")); }""",
        hidden,
    )


def test_mesh_graph_page_draws_the_edges_and_polls_only_while_visible(
    page: Any, mesh: LiveMesh
) -> None:
    page.goto(mesh.agent.url + "/ui/#/services")
    page.get_by_role("link", name="Traffic graph").click()
    cells = wait_for_traffic(page, "#graph-edges", "web>api")
    assert rate(cells["Requests/s"]) > 0 and cells["mTLS"] == "yes", cells
    assert cells["Intention"].startswith("allowed"), cells
    edge = page.locator('#graph g.edge[data-edge="web>api"]')
    # One request in ten is answered 503: drawn amber (some errors) or red (5% or more).
    expect(edge).to_have_class(re.compile(r"\b(warn|error)\b"), timeout=30_000)
    cells = edge_cells(page, "#graph-edges", "web>api")
    assert cells["By version"].startswith("v1: "), cells  # the resolver's default subset
    assert "req/s" in page.locator('#graph text.edge-label[data-edge="web>api"]').text_content()
    api_node = page.locator('#graph a[data-service="api"]')
    assert "v1, v2" in (api_node.text_content() or ""), api_node.text_content()  # SVG: no innerText
    shot(page, "live-mesh-graph")
    assert axe_serious(page) == []
    page.get_by_label("Time window").select_option("5m")
    expect(page.locator("#graph-status")).to_contain_text("over the last 5 minutes")
    assert page.url.endswith("#/graph?window=5m")
    # A node is a link, reachable with the keyboard; the focus outlives the
    # re-read (every 5 s while visible) that redraws the graph, and shows.
    api_node.focus()
    assert _reads_after(page, _graph_reads(page), 15_000), "no second read of the graph"
    page.wait_for_timeout(300)  # the answer drawn
    focused = "() => document.activeElement.getAttribute('data-service')"
    assert page.evaluate(focused) == "api"
    stroke = api_node.locator("rect").evaluate("r => getComputedStyle(r).stroke")
    assert stroke == "rgb(240, 160, 0)", stroke  # the focus colour
    # Never re-read while the page is hidden; at once when it shows again.
    _set_hidden(page, True)
    page.wait_for_timeout(500)  # a read already in flight may land
    hidden_reads = _graph_reads(page)
    page.wait_for_timeout(6_000)
    assert _graph_reads(page) == hidden_reads
    _set_hidden(page, False)
    assert _reads_after(page, hidden_reads, 3_000), "no read as soon as the page shows"
    page.wait_for_timeout(300)
    assert page.evaluate(focused) == "api"
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/#/services/api")
    page.get_by_role("heading", name="api", exact=True).wait_for()


CANARY = {
    "From": "v1",
    "To": "v2",
    "Steps": [5, 50, 100],
    "Interval": "30m",  # never steps during the test
    "MaxErrorRate": 0.5,
    "MaxP99": "5s",
    "MinRequests": 1,
}


def test_abort_a_canary_from_the_ui(page: Any, mesh: LiveMesh) -> None:
    started = mesh.agent.call("POST", "/v1/internal/canary/api", CANARY)
    assert started[0] == 200, started
    wait_until(
        lambda: mesh.agent.call("GET", "/v1/config/service-splitter/api")[0] == 200,
        30,
        "the canary's splitter written",
    )
    page.goto(mesh.agent.url + "/ui/#/services/api")
    page.locator("#canary-link").get_by_role(
        "link", name=re.compile("Canary v1 → v2: running")
    ).click()
    page.wait_for_url("**/ui/#/canaries/api")
    expect(page.locator("#canary-state")).to_contain_text("running")
    expect(page.locator("ol.steps li[aria-current=step]")).to_have_text(re.compile("^5% to v2"))
    bounds = page.locator("#canary-bounds")
    expect(bounds).to_contain_text("at least 1 to judge a step")
    assert "out of bounds" not in bounds.inner_text()  # nothing judged yet
    assert axe_serious(page) == []
    shot(page, "canary-running")
    # Dismissing the confirmation changes nothing.
    page.once("dialog", lambda d: d.dismiss())
    page.get_by_role("button", name="Abort").click()
    assert mesh.agent.call("GET", "/v1/internal/canary/api")[1]["State"] == "running"
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Abort").focus()
    page.keyboard.press("Enter")  # the keyboard alone
    expect(page.locator("#canary-state")).to_contain_text("aborted")
    expect(page.get_by_role("button", name="Abort")).to_be_disabled()
    expect(page.get_by_role("button", name="Pause")).to_be_disabled()
    page.locator("#canary-history").get_by_role("rowheader", name="abort").wait_for()
    shot(page, "canary-aborted")
    status, splitter = mesh.agent.call("GET", "/v1/config/service-splitter/api")
    assert status == 200, splitter
    weights = {s.get("ServiceSubset", ""): s["Weight"] for s in splitter["Splits"] if s["Weight"]}
    assert weights == {"v1": 100}, splitter
    assert mesh.agent.call("GET", "/v1/internal/canary/api")[1]["State"] == "aborted"
    # The list page shows it too.
    page.get_by_role("link", name="All canaries").click()
    row = page.locator("#canaries-table tbody tr").filter(has_text="api")
    expect(row).to_contain_text("aborted")
    assert axe_serious(page) == []
    shot(page, "canaries-list")


def test_intention_set_to_deny_in_the_ui_makes_the_proxy_deny_the_traffic(
    page: Any, mesh: LiveMesh
) -> None:
    """Last in the module: the UI turns web -> api into a deny and the proxy
    answers web's next requests with Envoy's 403 ``RBAC: access denied``."""
    page.goto(mesh.agent.url + "/ui/#/intentions")
    page.get_by_role("link", name="Edit web to api").click()
    page.wait_for_function("() => document.querySelector('select[name=action]').value === 'allow'")
    page.get_by_label("Action").select_option("deny")
    page.get_by_label("Description").fill("web may not call api")
    page.get_by_role("button", name="Save").click()
    page.locator("#intentions-table").get_by_text("web may not call api").wait_for()
    shot(page, "intention-deny-from-ui")
    got = mesh.agent.call("GET", "/v1/connect/intentions/exact?source=web&destination=api")[1]
    assert got["Action"] == "deny"

    def denied() -> bool:
        client = Client(mesh.upstream)
        try:
            status, _headers, body = client.request("/")
            return status == 403 and "RBAC: access denied" in body
        except OSError:
            return False
        finally:
            client.close()

    wait_until(denied, 30, "the proxy denying web -> api")
    mesh.put("/v1/connect/intentions/exact?source=web&destination=api", {"Action": "allow"})
