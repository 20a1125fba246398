"""The web UI in a real browser against a real ACL-enabled agent: what a
token may read, intentions created in the UI, KV check-and-set conflicts,
a service's instances, checks, edges and routing, config entries edited in
the UI, and axe-core on every page."""

from __future__ import annotations

import json
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


PAGES = ["services", "services/web", "services/api", "nodes", "kv/", "kv/app/config/limit",
         "intentions", "intentions/new", "config", "config/service-router/api", "config/new",
         "login"]  # fmt: skip
# What a page shows once its data is in, where that is what axe should see.
RENDERED = {"services/api": "#routing .chain", "config": "#config-kinds",
            "config/service-router/api": "text=ModifyIndex"}  # fmt: skip


def test_every_page_has_no_serious_accessibility_violations(
    page: Any, catalog: AgentProcess, routing: AgentProcess
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
