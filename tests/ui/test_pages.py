"""The web UI in a real browser against a real ACL-enabled agent: what a
token may read, intentions created in the UI, KV check-and-set conflicts,
a service's instances, checks, edges and routing, config entries edited in
the UI, and axe-core on every page."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import AgentProcess, axe_serious, shot

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def register(agent: AgentProcess, node: str, service: dict[str, Any], check: Any = None) -> None:
    body: dict[str, Any] = {"Node": node, "Address": "127.0.0.1", "Service": service}
    if check:
        body["Check"] = check
    status, out = agent.call("PUT", "/v1/catalog/register", body)
    assert status == 200, out


def make_token(agent: AgentProcess, name: str, rules: str) -> str:
    status, pol = agent.call("PUT", "/v1/acl/policy", {"Name": name, "Rules": rules})
    assert status == 200, pol
    status, tok = agent.call(
        "PUT", "/v1/acl/token", {"Description": name, "Policies": [{"Name": name}]}
    )
    assert status == 200, tok
    return str(tok["SecretID"])


def login(page: Any, agent: AgentProcess, token: str) -> None:
    page.goto(agent.url + "/")
    page.goto(agent.url + "/ui/#/login")
    page.get_by_label("ACL token").fill(token)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/ui/#/services")


@pytest.fixture(scope="module")
def catalog(acl_agent: AgentProcess) -> AgentProcess:
    a = acl_agent
    register(
        a,
        "node-a",
        {"ID": "web-1", "Service": "web", "Port": 8080, "Tags": ["v2", "frontend"]},
        {"Name": "web alive", "Status": "passing", "Output": "HTTP GET /health: 200 OK"},
    )
    register(
        a,
        "node-a",
        {
            "ID": "web-1-sidecar-proxy",
            "Service": "web-sidecar-proxy",
            "Kind": "connect-proxy",
            "Port": 21000,
            "Proxy": {
                "DestinationServiceName": "web",
                "Upstreams": [{"DestinationName": "db", "LocalBindPort": 9191}],
            },
        },
    )
    register(
        a,
        "node-b",
        {"ID": "db-1", "Service": "db", "Port": 5432},
        {"Name": "db disk", "Status": "critical", "Output": "disk 97% full"},
    )
    register(a, "node-b", {"ID": "vault-1", "Service": "vault", "Port": 8200})
    return a


# api: router (/v2 with a header and a method -> api-v2) -> 90/10 splitter
# over subsets v1/v2 -> resolver with failover v1 -> v2. shop: http, no router.
ROUTING = [
    {"Kind": "service-defaults", "Name": n, "Protocol": "http"}
    for n in ("api", "api-v2", "shop", "shop-admin")
] + [
    {
        "Kind": "service-resolver",
        "Name": "api",
        "DefaultSubset": "v1",
        "Subsets": {
            "v1": {"Filter": "Service.Meta.version == v1"},
            "v2": {"Filter": "Service.Meta.version == v2"},
        },
        "Failover": {"v1": {"Targets": [{"ServiceSubset": "v2"}]}},
    },
    {
        "Kind": "service-splitter",
        "Name": "api",
        "Splits": [{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}],
    },
    {
        "Kind": "service-router",
        "Name": "api",
        "Routes": [
            {
                "Match": {
                    "HTTP": {
                        "PathPrefix": "/v2",
                        "Header": [{"Name": "x-canary", "Exact": "1"}],
                        "Methods": ["GET"],
                    }
                },
                "Destination": {"Service": "api-v2"},
            }
        ],
    },
]


@pytest.fixture(scope="module")
def routing(catalog: AgentProcess) -> AgentProcess:
    status, out = catalog.call("PUT", "/v1/internal/config/batch", ROUTING)
    assert (status, out) == (200, True), out
    return catalog


def test_token_sees_only_what_it_may_read_and_403_is_explained(page: Any, catalog: Any) -> None:
    token = make_token(
        catalog,
        "ui-web-reader",
        'service "web" { policy = "read" }\nservice "db" { policy = "read" }\n'
        'node_prefix "" { policy = "read" }',
    )
    login(page, catalog, token)
    table = page.locator("#services-table")
    table.get_by_role("link", name="web", exact=True).wait_for()
    names = table.locator("tbody th").all_inner_texts()
    assert names == ["db", "web"], names  # vault and the sidecar are not readable
    assert page.get_by_text("token: ui-web-reader").is_visible()
    shot(page, "login-filtered-services")
    # Writing an intention is not granted: the API's 403 is shown as a message.
    page.get_by_role("link", name="Intentions").click()
    page.get_by_role("link", name="Create intention").click()
    # The list page has a "Source service" field too (its explain form): fill
    # the new page's, once it is there.
    page.get_by_role("heading", name="Create intention").wait_for()
    page.get_by_label("Source service").fill("web")
    page.get_by_label("Destination service").fill("db")
    page.get_by_role("button", name="Save").click()
    # Wait for the form's own outcome (a message, or the list after a save)
    # so a failure says what the page showed instead of timing out.
    page.wait_for_function(
        "() => document.querySelector('form .msg') || location.hash === '#/intentions'"
    )
    shot(page, "login-intention-403")
    assert page.evaluate("location.hash") != "#/intentions", "the refused write was saved"
    shown = page.locator("form .msg").inner_text()
    assert page.locator("form .msg").get_attribute("role") == "alert", shown
    assert "Permission denied" in shown, shown
    assert catalog.call("GET", "/v1/connect/intentions/exact?source=web&destination=db")[0] == 404
    # The token travels only in the X-Consul-Token header.
    assert not [u for u in page.urls if token in u]
    assert token not in (catalog.root / "agent.log").read_text()  # nor into the agent's log


def test_intention_created_in_the_ui_is_in_the_api_and_explained(
    page: Any, catalog: AgentProcess
) -> None:
    login(page, catalog, catalog.mgmt)
    page.goto(catalog.url + "/ui/#/intentions/new")
    page.get_by_label("Source service").fill("web")
    page.get_by_label("Destination service").fill("db")
    page.get_by_label("Action").select_option("deny")
    page.get_by_label("Description").fill("db is for the batch jobs only")
    page.get_by_role("button", name="Save").click()
    page.locator("#intentions-table").get_by_text("db is for the batch jobs only").wait_for()
    status, got = catalog.call("GET", "/v1/connect/intentions/exact?source=web&destination=db")
    assert status == 200, got
    assert got["Action"] == "deny" and got["Description"] == "db is for the batch jobs only"
    # "Why is web denied to db?"
    page.get_by_label("Source service").fill("web")
    page.get_by_label("Destination service").fill("db")
    page.get_by_role("button", name="Explain").click()
    result = page.locator("#explain-result")
    result.get_by_text("denied by intention web → db (deny)").wait_for()
    shot(page, "intention-created-and-explained")


def test_kv_edit_with_stale_index_shows_conflict(page: Any, catalog: AgentProcess) -> None:
    assert catalog.call("PUT", "/v1/kv/app/config/limit", "10")[0] == 200
    login(page, catalog, catalog.mgmt)
    page.goto(catalog.url + "/ui/#/kv/app/config/")
    page.get_by_role("link", name="limit").click()
    value = page.get_by_label("Value")
    page.wait_for_function("() => document.getElementById('kv-value').value === '10'")
    value.fill("20")
    # Another editor saves first.
    assert catalog.call("PUT", "/v1/kv/app/config/limit", "30")[0] == 200
    page.get_by_role("button", name="Save").click()
    page.locator("#kv-message").get_by_text("Conflict: someone else changed this key").wait_for()
    shot(page, "kv-conflict")
    status, raw = catalog.call("GET", "/v1/kv/app/config/limit?raw", raw=True)
    assert (status, raw) == (200, "30")  # the stale edit did not overwrite


def test_service_page_shows_instances_checks_and_edges(page: Any, catalog: AgentProcess) -> None:
    login(page, catalog, catalog.mgmt)
    page.get_by_role("link", name="web", exact=True).click()
    page.get_by_role("heading", name="Instances (1)").wait_for()
    page.get_by_text("HTTP GET /health: 200 OK").wait_for()
    assert page.get_by_role("row", name="web alive").is_visible()
    edges = page.locator("#edges")
    edges.get_by_role("link", name="db").wait_for()
    assert "upstream" in edges.inner_text()
    shot(page, "service-web")
    page.goto(catalog.url + "/ui/#/services/db")
    page.get_by_text("disk 97% full").wait_for()
    row = page.locator("#edges tbody tr").filter(has_text="downstream")
    row.get_by_role("link", name="web").wait_for()
    shot(page, "service-db")


def test_live_update_through_blocking_queries(page: Any, catalog: AgentProcess) -> None:
    login(page, catalog, catalog.mgmt)
    table = page.locator("#services-table")
    table.get_by_role("link", name="web", exact=True).wait_for()
    register(catalog, "node-c", {"ID": "cache-1", "Service": "cache", "Port": 6379})
    table.get_by_role("link", name="cache", exact=True).wait_for()  # no reload
    shot(page, "live-update")
    page.get_by_label("Kind").select_option("connect-proxy")
    table.get_by_role("link", name="web", exact=True).wait_for(state="detached")
    assert table.locator("tbody th").all_inner_texts() == ["web-sidecar-proxy"]
    assert "connect-proxy" in table.locator("tbody tr").inner_text()
    page.get_by_label("Kind").select_option("")
    page.get_by_label("Search services").fill("front")  # a tag of web
    table.get_by_role("link", name="db", exact=True).wait_for(state="detached")
    assert table.locator("tbody th").all_inner_texts() == ["web"]


# A 3-hop trace web -> api -> db (then a failing second call api -> db) as
# the proxies report it: (span id, parent, service, kind, method path, start
# ms, end ms, status code); and a short web-only trace.
T1, T2 = "4bf92f3577b34da6a3ce929d0e0e4736", "0af7651916cd43dd8448eb211c80319c"
T1_SPANS = [
    ("a1" * 8, "", "web", "CLIENT", "GET /api/order", 0, 120, 200),
    ("a2" * 8, "a1" * 8, "api", "SERVER", "GET /api/order", 2, 118, 200),
    ("a3" * 8, "a2" * 8, "api", "CLIENT", "GET /db/query", 10, 60, 200),
    ("a4" * 8, "a3" * 8, "db", "SERVER", "GET /db/query", 12, 58, 200),
    ("a5" * 8, "a2" * 8, "api", "CLIENT", "POST /db/audit", 65, 110, 503),
    ("a6" * 8, "a5" * 8, "db", "SERVER", "POST /db/audit", 67, 108, 503),
]
T2_SPANS = [("b1" * 8, "", "web", "CLIENT", "GET /static/app.css", 0, 3, 200)]


def _spans(trace: str, rows: list[tuple[Any, ...]], t0: int) -> list[dict[str, Any]]:
    out = []
    for span_id, parent, service, kind, op, start, end, code in rows:
        method, path = op.split(" ")
        out.append({
            "TraceID": trace, "SpanID": span_id, "ParentSpanID": parent, "Name": op,
            "Kind": kind, "Service": service, "StartNs": t0 + start * 1_000_000,
            "EndNs": t0 + end * 1_000_000, "Status": "ERROR" if code >= 500 else "UNSET",
            "Attributes": {"http.request.method": method, "url.path": path,
                           "http.response.status_code": code},
        })  # fmt: skip
    return out


@pytest.fixture(scope="module")
def traces(catalog: AgentProcess) -> AgentProcess:
    """The two traces PUT to the agent over HTTP, as a sidecar hands them in."""
    t0 = time.time_ns() - 60 * 1_000_000_000
    spans = _spans(T1, T1_SPANS, t0) + _spans(T2, T2_SPANS, t0 + 1_000_000_000)
    status, out = catalog.call("PUT", "/v1/internal/traces/spans", {"Spans": spans})
    assert (status, out) == (200, {"Accepted": 7}), out
    return catalog


PAGES = ["services", "services/web", "services/api", "nodes", "kv/", "kv/app/config/limit",
         "intentions", "intentions/new", "config", "config/service-router/api", "config/new",
         "traces", f"traces/{T1}", "graph", "canaries", "login"]  # fmt: skip
# What a page shows once its data is in, where that is what axe should see.
RENDERED = {"services/api": "#routing .chain", "config": "#config-kinds",
            "config/service-router/api": "text=ModifyIndex", "traces": "#traces-table",
            f"traces/{T1}": "#waterfall"}  # fmt: skip


def test_every_page_has_no_serious_accessibility_violations(
    page: Any, catalog: AgentProcess, routing: AgentProcess, traces: AgentProcess
) -> None:
    catalog.call("PUT", "/v1/kv/app/config/limit", "10")
    login(page, catalog, catalog.mgmt)
    found = {}
    for name in PAGES:
        page.goto(catalog.url + "/ui/#/" + name)
        page.locator("main h1").first.wait_for()
        if name in RENDERED:
            page.locator(RENDERED[name]).first.wait_for()
        page.wait_for_timeout(300)  # let the first blocking-query answers render
        shot(page, "axe-" + name.replace("/", "_"))
        violations = axe_serious(page)
        if violations:
            found[name] = violations
    assert not found, json.dumps(found, indent=1)


def test_keyboard_alone_logs_in_and_navigates_with_visible_focus(
    page: Any, catalog: AgentProcess
) -> None:
    page.goto(catalog.url + "/ui/#/login")
    page.locator("#main h1").wait_for()
    focused = "() => document.activeElement && document.activeElement.getAttribute('name')"
    assert page.evaluate(focused) == "token"  # the login page focuses its field
    page.keyboard.type(catalog.mgmt)
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/#/services")
    page.locator("#services-table").wait_for()
    assert page.evaluate("() => document.activeElement.id") == "main"  # focus follows the page
    page.keyboard.press("Tab")
    assert page.evaluate(focused) == "search"
    page.reload()
    page.locator("#services-table").wait_for()
    page.keyboard.press("Tab")  # from the top the first stop is the skip link, shown on focus
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"
    outline = "() => getComputedStyle(document.activeElement).outlineStyle"
    assert page.evaluate(outline) == "solid"
    page.keyboard.press("Tab")  # Services
    page.keyboard.press("Tab")  # Nodes
    assert page.evaluate("() => document.activeElement.textContent") == "Nodes"
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/#/nodes")
    page.get_by_role("heading", name="Nodes").wait_for()
    node_b = page.get_by_role("row").filter(has_text="node-b")
    node_b.get_by_text("db disk: critical").wait_for()  # node health from its checks
    assert "critical" in node_b.locator(".badge").inner_text()
    shot(page, "keyboard-nodes")


def test_intention_edited_and_deleted_in_the_ui(page: Any, catalog: AgentProcess) -> None:
    body = {"Action": "deny", "Description": "temporary"}
    assert (
        catalog.call("PUT", "/v1/connect/intentions/exact?source=vault&destination=db", body)[0]
        == 200
    )
    login(page, catalog, catalog.mgmt)
    page.goto(catalog.url + "/ui/#/intentions")
    page.get_by_role("link", name="Edit vault to db").click()
    page.wait_for_function("() => document.querySelector('select[name=action]').value === 'deny'")
    page.get_by_label("Action").select_option("allow")
    page.get_by_label("Description").fill("vault reads db credentials")
    page.get_by_role("button", name="Save").click()
    page.locator("#intentions-table").get_by_text("vault reads db credentials").wait_for()
    got = catalog.call("GET", "/v1/connect/intentions/exact?source=vault&destination=db")[1]
    assert (got["Action"], got["Description"]) == ("allow", "vault reads db credentials")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete vault to db").click()
    page.get_by_role("button", name="Delete vault to db").wait_for(state="detached")
    shot(page, "intention-deleted")
    status = catalog.call("GET", "/v1/connect/intentions/exact?source=vault&destination=db")[0]
    assert status == 404


def test_kv_create_and_delete_in_the_ui(page: Any, catalog: AgentProcess) -> None:
    login(page, catalog, catalog.mgmt)
    page.goto(catalog.url + "/ui/#/kv/feature/")
    page.get_by_label("Key (under feature/").fill("dark-mode")
    page.get_by_label("Value").fill("on")
    page.get_by_role("button", name="Create").click()
    page.locator("#kv-keys").get_by_role("link", name="dark-mode").wait_for()
    assert catalog.call("GET", "/v1/kv/feature/dark-mode?raw", raw=True) == (200, "on")
    # Creating it again does not overwrite (cas=0).
    page.get_by_label("Key (under feature/").fill("dark-mode")
    page.get_by_label("Value").fill("off")
    page.get_by_role("button", name="Create").click()
    page.get_by_text("The key feature/dark-mode already exists.").wait_for()
    assert catalog.call("GET", "/v1/kv/feature/dark-mode?raw", raw=True) == (200, "on")
    page.locator("#kv-keys").get_by_role("link", name="dark-mode").click()
    page.wait_for_function("() => document.getElementById('kv-value').value === 'on'")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url("**/ui/#/kv/feature/")
    shot(page, "kv-deleted")
    assert catalog.call("GET", "/v1/kv/feature/dark-mode")[0] == 404


def selected_text(page: Any) -> str:
    return str(
        page.evaluate(
            "() => { const t = document.getElementById('config-json');"
            " return t.value.slice(t.selectionStart, t.selectionEnd); }"
        )
    )


def test_config_entry_created_in_the_ui_and_a_bad_field_shown_at_the_editor(
    page: Any, routing: AgentProcess
) -> None:
    login(page, routing, routing.mgmt)
    page.goto(routing.url + "/ui/#/config/new")
    page.get_by_label("Kind").select_option("service-router")
    router = {
        "Kind": "service-router",
        "Name": "shop",
        "Routes": [
            {"Match": {"HTTP": {"PathPrefix": "/admin"}}, "Destination": {"Service": "shop-admin"}}
        ],
    }
    page.get_by_label("Entry (JSON)").fill(json.dumps(router, indent=2))
    page.get_by_role("button", name="Create").click()
    page.wait_for_url("**/ui/#/config/service-router/shop")
    status, got = routing.call("GET", "/v1/config/service-router/shop")
    assert status == 200, got
    assert got["Routes"][0]["Destination"] == {"Service": "shop-admin"}
    page.get_by_text(f"ModifyIndex {got['ModifyIndex']}").wait_for()  # the editor reads it back
    # Text that is not JSON is refused in the page, its position given.
    page.get_by_label("Entry (JSON)").fill('{"Kind": "service-router",\n "Name": "shop",, }')
    page.get_by_role("button", name="Save").click()
    page.locator("#config-error").get_by_text("not valid JSON at line 2, column 17").wait_for()
    # A mirror of 150 %: the API's 400 names the field; the page points at it.
    router["Routes"][0]["Destination"]["Mirror"] = {"Service": "shop", "Percent": 150}
    bad = json.dumps(router, indent=2)
    page.get_by_label("Entry (JSON)").fill(bad)
    page.get_by_role("button", name="Save").click()
    alert = page.locator("#config-error")
    alert.wait_for()
    shot(page, "config-field-error")
    assert alert.get_attribute("role") == "alert"
    text = alert.inner_text()
    assert 'field "Routes[0].Destination.Mirror.Percent"' in text, text
    line = bad[: bad.index('"Percent"')].count("\n") + 1
    assert f"line {line}:" in text and '"Percent": 150' in text, text
    editor = page.get_by_label("Entry (JSON)")
    assert "config-error" in (editor.get_attribute("aria-describedby") or "")
    assert editor.get_attribute("aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "config-json"
    assert selected_text(page) == '"Percent"'
    after = routing.call("GET", "/v1/config/service-router/shop")[1]
    assert after["ModifyIndex"] == got["ModifyIndex"] and "Mirror" not in json.dumps(after)


def test_config_entry_stale_index_shows_conflict_and_delete_confirms(
    page: Any, routing: AgentProcess
) -> None:
    login(page, routing, routing.mgmt)
    page.goto(routing.url + "/ui/#/config/service-defaults")
    page.locator("#config-entries").get_by_role("link", name="shop-admin").wait_for()
    entry = {"Kind": "service-defaults", "Name": "billing", "Protocol": "http"}
    assert routing.call("PUT", "/v1/config", entry) == (200, True)
    # The list follows a blocking query: the new entry appears without a reload.
    page.locator("#config-entries").get_by_role("link", name="billing").click()
    page.wait_for_function("() => document.getElementById('config-json').value.includes('http')")
    page.get_by_label("Entry (JSON)").fill(json.dumps({**entry, "Protocol": "grpc"}))
    # Another editor saves first.
    assert routing.call("PUT", "/v1/config", {**entry, "Protocol": "tcp"}) == (200, True)
    page.get_by_role("button", name="Save").click()
    page.locator("#config-message").get_by_text(
        "Conflict: someone else changed this entry"
    ).wait_for()
    shot(page, "config-conflict")
    assert routing.call("GET", "/v1/config/service-defaults/billing")[1]["Protocol"] == "tcp"
    page.get_by_role("button", name="Reload").click()
    page.wait_for_function("() => document.getElementById('config-json').value.includes('tcp')")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url("**/ui/#/config/service-defaults")
    page.locator("#config-entries").get_by_role("link", name="billing").wait_for(state="detached")
    assert routing.call("GET", "/v1/config/service-defaults/billing")[0] == 404


def test_service_page_shows_routing_from_the_discovery_chain(
    page: Any, routing: AgentProcess
) -> None:
    login(page, routing, routing.mgmt)
    page.goto(routing.url + "/ui/#/services/api")
    chain = page.locator("#routing")
    chain.get_by_text("Splitter").wait_for()
    shot(page, "service-api-routing")
    routes = chain.get_by_role("list", name="Routes of router api").locator(":scope > li")
    expect(routes).to_have_count(2)
    first, second = routes.nth(0).inner_text(), routes.nth(1).inner_text()
    assert "Route 1: match path prefix /v2; header x-canary = 1; methods GET" in first, first
    assert "Resolver target api-v2 in dc1" in first, first
    assert "Route 2: match path prefix /" in second, second
    splits = chain.get_by_role("list", name="Splits of splitter api").locator(":scope > li")
    v1, v2 = splits.nth(0).inner_text(), splits.nth(1).inner_text()
    assert "90% of requests" in v1 and "target api, subset v1 (Service.Meta.version == v1)" in v1
    assert "10% of requests" in v2 and "target api, subset v2 (Service.Meta.version == v2)" in v2
    failover = chain.get_by_role("list", name="Failover targets of v1.api.default.default.dc1")
    assert (
        failover.inner_text().strip() == "target api, subset v2 (Service.Meta.version == v2) in dc1"
    )
    links = page.locator("#service-config").get_by_role("link")
    kinds = ("defaults", "router", "splitter", "resolver")
    expect(links).to_have_text([f"service-{k} / api" for k in kinds])  # retried until drawn
    # Explain one request from web through that chain (/v1/internal/explain).
    page.get_by_label("Source service").fill("web")
    page.get_by_label("Path").fill("/v2/items")
    page.get_by_label("Headers").fill("x-canary: 1")
    page.get_by_role("button", name="Explain request").click()
    decision = page.locator("#explain-decision dl")
    decision.wait_for()
    terms = decision.locator("dt").all_inner_texts()
    said = dict(zip(terms, decision.locator("dd").all_inner_texts(), strict=True))
    assert said["Route"] == "route 1: match path prefix /v2; header x-canary = 1; methods GET"
    assert said["Target"].startswith("api-v2 in dc1"), said
    assert said["Verdict"] == "no healthy upstream (503 from the proxy)", said  # no instances
    assert said["Intention"].startswith("denied to api-v2"), said  # default deny
    shot(page, "service-api-explain")


def test_traces_searched_and_one_trace_drawn_as_a_waterfall_in_order(
    page: Any, traces: AgentProcess
) -> None:
    login(page, traces, traces.mgmt)
    page.goto(traces.url + "/ui/#/services/db")
    page.get_by_role("link", name="Traces of this service").click()
    page.wait_for_url("**/ui/#/traces?service=db")
    table = page.locator("#traces-table")
    ids = table.locator("tbody th")
    expect(ids).to_have_text([T1])  # the search the link asked for
    assert page.get_by_label("Service").input_value() == "db"
    cells = table.locator("tbody tr").first.locator("td").all_inner_texts()
    assert cells[0].split("\n") == ["GET /api/order", "api, db, web"], cells
    assert cells[2:] == ["120 ms", "6", "error"], cells  # duration, spans, one failed
    page.get_by_label("Service").fill("")
    page.get_by_role("button", name="Search").click()
    expect(ids).to_have_text([T2, T1])  # newest first
    page.get_by_label("Minimum duration").fill("fast")  # the API's 400, next to the field
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#trace-results").get_by_role("alert")).to_contain_text("min_duration")
    expect(page.get_by_label("Minimum duration")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Minimum duration").fill("50ms")
    page.get_by_role("button", name="Search").click()
    expect(ids).to_have_text([T1])
    assert page.url.endswith("#/traces?min_duration=50ms")
    page.get_by_label("Minimum duration").fill("")
    page.get_by_label("Status", exact=True).select_option("code")
    page.get_by_label("Status code").fill("503")  # shown only for "code"
    page.get_by_role("button", name="Search").click()
    expect(ids).to_have_text([T1])  # a span of T1 answered 503
    assert page.url.endswith("#/traces?status=503")
    shot(page, "traces-search")
    table.get_by_role("link", name=T1).click()
    waterfall = page.locator("#waterfall")
    rows = waterfall.locator("tbody tr.span")
    expect(rows).to_have_count(6)
    order = rows.evaluate_all("rs => rs.map(r => r.dataset.spanId)")
    assert order == [s[0] for s in T1_SPANS]  # start order
    names = waterfall.locator("th.span-name")
    depth = names.evaluate_all(
        "cs => cs.map(c => [+c.dataset.depth, getComputedStyle(c).paddingLeft])"
    )
    assert depth == [[d, f"{10 + 18 * d}px"] for d in (0, 1, 2, 3, 2, 3)], depth
    durations = rows.evaluate_all("rs => rs.map(r => r.cells[5].textContent)")
    assert durations == ["120 ms", "116 ms", "50.0 ms", "46.0 ms", "45.0 ms", "41.0 ms"], durations
    third = rows.nth(2)
    assert "api" in third.inner_text() and "CLIENT" in third.inner_text()
    assert "GET /db/query" in third.inner_text()
    expect(third.locator(".timeline .sr-only")).to_have_text("starts at +10.0 ms, lasts 50.0 ms")
    bar = third.locator(".bar").evaluate(
        "b => [parseFloat(b.style.left), parseFloat(b.style.width)]"
    )
    assert abs(bar[0] - 100 * 10 / 120) < 0.01 and abs(bar[1] - 100 * 50 / 120) < 0.01, bar
    assert "503" in rows.nth(4).inner_text() and "error" in rows.nth(4).inner_text()
    # Keyboard: the first toggle, Down four times, Enter opens that span's attributes.
    waterfall.locator("button.span-toggle").first.focus()
    for _ in range(4):
        page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    attrs = page.locator("tr.span-attrs:visible")
    expect(attrs).to_have_count(1)
    assert "POST /db/audit" in attrs.inner_text() and "a2" * 8 in attrs.inner_text()
    assert rows.nth(4).locator("button").get_attribute("aria-expanded") == "true"
    shot(page, "trace-waterfall")


def test_trace_with_a_service_the_token_may_not_read_shows_the_403(
    page: Any, traces: AgentProcess
) -> None:
    token = make_token(
        traces,
        "ui-trace-reader",
        'service "web" { policy = "read" }\nservice "api" { policy = "read" }',
    )
    login(page, traces, token)
    page.get_by_role("link", name="Traces", exact=True).click()
    expect(page.locator("#traces-table tbody th")).to_have_text([T2])  # T1 has db
    assert page.get_by_text("Some traces are hidden").is_visible()
    page.goto(traces.url + f"/ui/#/traces/{T1}")
    alert = page.locator("#main").get_by_role("alert")
    expect(alert).to_contain_text("Permission denied")
    assert "service:read" in alert.inner_text()
    shot(page, "trace-forbidden")


def test_read_only_token_gets_the_403_on_pause_and_a_filtered_graph(
    page: Any, catalog: AgentProcess
) -> None:
    register(catalog, "node-b", {"ID": "pay-1", "Service": "pay", "Port": 7000})
    subsets = {v: {"Filter": f'Service.Meta.version == "{v}"'} for v in ("v1", "v2")}
    for entry in (
        {"Kind": "service-defaults", "Name": "pay", "Protocol": "http"},
        {"Kind": "service-resolver", "Name": "pay", "Subsets": subsets},
    ):
        assert catalog.call("PUT", "/v1/config", entry) == (200, True)
    body = {"From": "v1", "To": "v2", "Interval": "30m"}  # never steps during the test
    status, out = catalog.call("POST", "/v1/internal/canary/pay", body)
    assert status == 200, out
    login(page, catalog, make_token(catalog, "ui-pay-reader", 'service "pay" { policy = "read" }'))
    page.get_by_role("link", name="Canaries").click()
    page.locator("#canaries-table").get_by_role("link", name="pay").click()
    expect(page.locator("#canary-state")).to_contain_text("running")
    page.get_by_role("button", name="Pause").click()
    alert = page.locator("#canary-message").get_by_role("alert")
    expect(alert).to_contain_text("Permission denied")
    shot(page, "canary-pause-forbidden")
    assert catalog.call("GET", "/v1/internal/canary/pay")[1]["State"] == "running"
    assert axe_serious(page) == []
    # The graph leaves out the services the token may not read.
    page.get_by_role("link", name="Traffic graph").click()
    expect(page.locator('#graph a[data-service="pay"]')).to_have_count(1)
    expect(page.locator("#graph a.node")).to_have_count(1)
    shot(page, "graph-filtered")
