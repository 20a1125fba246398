import { api, describeError, watch } from "../api.js";
import { badge, clear, field, h, message } from "../dom.js";

const KINDS = ["connect-proxy", "mesh-gateway", "ingress-gateway", "terminating-gateway"];
const kindQuery = (k) => "/v1/catalog/services?filter=" + encodeURIComponent(`ServiceKind == "${k}"`);

/** name -> kind, for the services that have one (one filtered read per kind). */
async function readKinds() {
  const kinds = {};
  const answers = await Promise.all(KINDS.map((k) => api("GET", kindQuery(k))));
  answers.forEach(({ data }, i) => {
    for (const name of Object.keys(data || {})) kinds[name] = KINDS[i];
  });
  return kinds;
}

/** Worst state of a list of checks (Consul's order: critical > warning > passing). */
export function worst(states) {
  if (states.includes("critical")) return "critical";
  if (states.includes("warning")) return "warning";
  return "passing";
}

export function renderServices(main) {
  const state = { services: null, checks: [], kinds: {}, error: "" };
  const search = h("input", { type: "search", name: "search", placeholder: "name or tag" });
  const kind = h(
    "select",
    { name: "kind" },
    h("option", { value: "" }, "all kinds"),
    h("option", { value: "typical" }, "services"),
    h("option", { value: "connect-proxy" }, "sidecar proxies"),
    h("option", { value: "mesh-gateway" }, "mesh gateways"),
    h("option", { value: "ingress-gateway" }, "ingress gateways"),
    h("option", { value: "terminating-gateway" }, "terminating gateways"),
  );
  const body = h("div", { "aria-live": "polite" });
  main.append(
    h("h1", {}, "Services"),
    h("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
      field("Search services", search), field("Kind", kind)),
    body,
  );
  const draw = () => draw_(body, state, search.value.trim().toLowerCase(), kind.value);
  search.addEventListener("input", draw);
  kind.addEventListener("change", draw);
  const fail = (err) => {
    state.error = describeError(err);
    draw();
  };
  const stops = [
    watch("/v1/catalog/services", (d) => {
      state.services = d;
      state.error = "";
      draw();
      // Kinds change only with the service list: one plain read per change,
      // not a third long poll (a browser allows 6 connections per host).
      readKinds().then((k) => { state.kinds = k; draw(); }, () => {});
    }, fail),
    watch("/v1/health/state/any", (d) => { state.checks = d; draw(); }, fail),
  ];
  return () => stops.forEach((s) => s());
}

function draw_(body, state, q, kindWanted) {
  if (state.error && !state.services) {
    clear(body, message("error", state.error));
    return;
  }
  if (!state.services) {
    clear(body, h("p", {}, "Loading…"));
    return;
  }
  const byService = {};
  for (const c of state.checks) {
    if (!c.ServiceName) continue;
    (byService[c.ServiceName] ||= []).push(c.Status);
  }
  const nodeChecks = state.checks.filter((c) => !c.ServiceName);
  const rows = [];
  const names = Object.keys(state.services).sort();
  for (const name of names) {
    const tags = state.services[name] || [];
    const k = state.kinds[name] || "typical";
    if (kindWanted && k !== kindWanted) continue;
    if (q && !name.toLowerCase().includes(q) && !tags.some((t) => t.toLowerCase().includes(q))) continue;
    const states = byService[name] || [];
    const counts = { passing: 0, warning: 0, critical: 0 };
    for (const s of states) counts[s] = (counts[s] || 0) + 1;
    rows.push(
      h("tr", {},
        h("th", { scope: "row" }, h("a", { href: `#/services/${encodeURIComponent(name)}` }, name)),
        h("td", {}, badge(worst(states))),
        h("td", { class: "counts" }, `${counts.passing} passing, ${counts.warning} warning, ${counts.critical} critical`),
        h("td", {}, k === "typical" ? "" : k),
        h("td", {}, tags.map((t) => h("span", { class: "tag" }, t))),
      ),
    );
  }
  const warn = nodeChecks.some((c) => c.Status === "critical")
    ? message("warn", "Some node checks are critical: see Nodes.") : null;
  clear(body,
    state.error ? message("error", state.error) : null,
    warn,
    h("p", { class: "count" }, `${rows.length} of ${names.length} services`),
    h("table", { class: "list", id: "services-table" },
      h("caption", { class: "sr-only" }, "Services and their health"),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Service"), h("th", { scope: "col" }, "Health"),
        h("th", { scope: "col" }, "Checks"), h("th", { scope: "col" }, "Kind"),
        h("th", { scope: "col" }, "Tags"))),
      h("tbody", {}, rows)),
  );
}
