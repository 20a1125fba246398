// The whole-mesh graph: services as nodes (versions, instances, health),
// who calls whom as edges with requests/s, error rate, p99, mTLS and the
// intention decision, from GET /v1/internal/ui/mesh-graph?window=….
// Drawn as plain SVG (a layered left-to-right layout computed here: a mesh
// has tens of services, not thousands, and a library would be the largest
// file of the UI); the same edges are listed in a table, which is what
// screen readers and keyboard users read. The graph is a computed window
// over recent traffic, not a blocking query, so it is re-read every 5 s
// while the page is visible (poll.js).
import { api, describeError } from "../api.js";
import { clear, field, h, message, redrawKeepingFocus, s } from "../dom.js";
import { parseDurationMs } from "../durations.js";
import { pollWhileVisible } from "../poll.js";

export const GRAPH_MS = 5000;
const WINDOWS = [["60s", "last minute"], ["5m", "last 5 minutes"], ["15m", "last 15 minutes"], ["1h", "last hour"]];
const ERROR_RATE_BAD = 0.05; // an edge this bad is drawn red; any error at all, amber
const q = encodeURIComponent;

/** GET the graph; resolves to {graph, filtered}. */
export async function readGraph(window, service, signal) {
  const p = new URLSearchParams({ window });
  if (service) p.set("service", service);
  const { data, headers } = await api("GET", `/v1/internal/ui/mesh-graph?${p}`, { signal });
  return { graph: data || { Nodes: [], Edges: [] }, filtered: headers.get("X-Consul-Results-Filtered-By-ACLs") === "true" };
}

export function fmtRps(e) {
  const r = Number(e?.RequestsPerSecond) || 0;
  return `${r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2)} req/s`;
}

export function fmtErrorRate(e) {
  const r = Number(e?.ErrorRate) || 0;
  if (!e || !e.Requests) return "–";
  return `${(r * 100).toFixed(r === 0 ? 0 : r < 0.001 ? 3 : r < 0.1 ? 2 : 1)}%`;
}

export function fmtP99(e) {
  const v = e?.P99Ms;
  if (v === null || v === undefined) return "–";
  return v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(v < 10 ? 1 : 0)} ms`;
}

export function intentionShort(i) {
  if (!i) return "unknown";
  const how = i.HasPermissions ? " (L7 permissions)" : i.DefaultAllow ? " (default policy)" : "";
  return `${i.Allowed ? "allowed" : "denied"}${how}`;
}

/** "ok", "warn" (some errors) or "error" (error rate at or above 5%). */
export function edgeHealth(e) {
  if (!e.Errors) return "ok";
  return (Number(e.ErrorRate) || 0) >= ERROR_RATE_BAD ? "error" : "warn";
}

function hashWindow() {
  const w = new URLSearchParams(location.hash.split("?")[1] || "").get("window");
  return WINDOWS.some(([v]) => v === w) ? w : "60s";
}

export function renderGraph(main) {
  const win = h("select", { name: "window" }, WINDOWS.map(([v, label]) => h("option", { value: v, selected: v === hashWindow() }, label)));
  const status = h("p", { id: "graph-status", class: "meta" }, "Loading…");
  const alert = h("div", { id: "graph-error" });
  const picture = h("div", { id: "graph", class: "graph" });
  const table = h("div", { id: "graph-table" });
  main.append(
    h("h1", {}, "Traffic graph"),
    h("form", { class: "filters", onsubmit: (e) => e.preventDefault() }, field("Time window", win)),
    status, alert, legend(), picture,
    h("h2", { id: "graph-edges-h" }, "Connections"), table,
  );
  let stop = null;
  const start = () => {
    if (stop) stop();
    stop = pollWhileVisible(async (signal) => {
      try {
        const { graph, filtered } = await readGraph(win.value, "", signal);
        clear(alert, filtered ? message("warn", "Some services are hidden: this token may not read them.") : null);
        redrawKeepingFocus(picture, () => drawGraph(picture, graph));
        redrawKeepingFocus(table, () => drawEdgeTable(table, graph.Edges || []));
        status.textContent = `${plural((graph.Nodes || []).length, "service")}, ${plural((graph.Edges || []).length, "connection")} over the ${label(graph.Window || win.value)}` +
          ` · computed ${fmtClock(graph.GeneratedAt)} · re-read every ${GRAPH_MS / 1000} s while this page is visible`;
      } catch (err) {
        if (err.name === "AbortError") return;
        clear(alert, message("error", `The traffic graph could not be read. ${describeError(err)}`));
      }
    }, GRAPH_MS);
  };
  win.addEventListener("change", () => {
    history.replaceState(null, "", `#/graph?window=${q(win.value)}`);
    start();
  });
  start();
  return () => stop && stop();
}

function label(window) {
  const ms = parseDurationMs(window);
  const found = WINDOWS.find(([v]) => parseDurationMs(v) === ms);
  return found ? found[1] : `last ${window}`;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function fmtClock(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "now" : d.toISOString().slice(11, 19) + " UTC";
}

function legend() {
  const item = (cls, text) => h("li", {}, h("span", { class: `swatch ${cls}`, "aria-hidden": "true" }), text);
  return h("ul", { class: "legend", "aria-label": "Legend" },
    item("ok", "no errors (thicker: more requests/s)"),
    item("warn", "some errors"),
    item("error", `error rate ${ERROR_RATE_BAD * 100}% or more`),
    item("idle", "no requests in the window"),
    item("denied", "denied by intentions (dashed)"),
    item("plain", "not mTLS (dotted)"));
}

/** Columns by longest path from the callers (cycles cut after n rounds). */
export function layers(nodes, edges) {
  const rank = Object.fromEntries(nodes.map((n) => [n.Name, 0]));
  for (let round = 0; round < nodes.length; round++) {
    let moved = false;
    for (const e of edges) {
      if (e.Source === e.Destination || !(e.Source in rank) || !(e.Destination in rank)) continue;
      if (rank[e.Destination] < rank[e.Source] + 1 && rank[e.Source] + 1 < nodes.length) {
        rank[e.Destination] = rank[e.Source] + 1;
        moved = true;
      }
    }
    if (!moved) break;
  }
  // A caller only (no incoming edge) sits just left of its nearest callee,
  // so short edges stay short.
  for (const n of nodes) {
    if (edges.some((e) => e.Destination === n.Name && e.Source !== n.Name)) continue;
    const callees = edges.filter((e) => e.Source === n.Name && e.Destination in rank && e.Destination !== n.Name);
    if (callees.length) rank[n.Name] = Math.max(rank[n.Name], Math.min(...callees.map((e) => rank[e.Destination])) - 1);
  }
  return rank;
}

const NODE_W = 170, NODE_H = 58, COL = 400, ROW = 100, PAD = 30;

/** Columns by rank; inside a column, callers' average row first (fewer crossings). */
function place(nodes, edges) {
  const rank = layers(nodes, edges);
  const cols = {};
  for (const n of [...nodes].sort((a, b) => a.Name.localeCompare(b.Name))) (cols[rank[n.Name]] ||= []).push(n);
  const row = {};
  const callers = (name) => edges.filter((e) => e.Destination === name && e.Source in row).map((e) => row[e.Source]);
  const pos = {};
  let rows = 1;
  for (const c of Object.keys(cols).map(Number).sort((a, b) => a - b)) {
    const key = (n) => { const r = callers(n.Name); return r.length ? r.reduce((x, y) => x + y, 0) / r.length : Infinity; };
    const list = cols[c].map((n, i) => ({ n, k: key(n), i })).sort((a, b) => a.k - b.k || a.i - b.i).map((x) => x.n);
    rows = Math.max(rows, list.length);
    list.forEach((n, i) => { row[n.Name] = i; pos[n.Name] = { x: PAD + c * COL, y: PAD + i * ROW }; });
  }
  const width = PAD * 2 + (Object.keys(cols).length - 1) * COL + NODE_W;
  return { pos, width: Math.max(width, 400), height: PAD * 2 + (rows - 1) * ROW + NODE_H + 50 };
}

function drawGraph(el, graph) {
  const nodes = graph.Nodes || [];
  const edges = graph.Edges || [];
  if (nodes.length === 0) {
    clear(el, h("p", {}, "No services with mesh traffic or registrations in this window (or none this token may read)."));
    return;
  }
  const { pos, width, height } = place(nodes, edges);
  const maxRps = Math.max(1, ...edges.map((e) => Number(e.RequestsPerSecond) || 0));
  const drawn = edges.filter((e) => pos[e.Source] && pos[e.Destination]).map((e) => drawEdge(e, pos, maxRps));
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "group", "aria-label": "Services and the traffic between them; the table below lists every connection" },
    s("defs", {}, ["ok", "warn", "error", "idle"].map((k) => s("marker", { id: `arrow-${k}`, viewBox: "0 0 10 10", refX: 9, refY: 5, markerUnits: "userSpaceOnUse", markerWidth: 12, markerHeight: 12, orient: "auto" },
      s("path", { d: "M0,0 L10,5 L0,10 z", class: `arrow ${k}` })))),
    s("g", { "aria-hidden": "true" }, drawn.map((d) => d.path)),
    s("g", { "aria-hidden": "true" }, drawn.map((d) => d.label)), // labels above every line
    nodes.map((n) => drawNode(n, pos[n.Name])));
  clear(el, svg);
}

function drawEdge(e, pos, maxRps) {
  const a = pos[e.Source], b = pos[e.Destination];
  const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2;
  const back = x2 <= x1; // same column or backwards: loop around below
  const d = back
    ? `M${a.x + NODE_W / 2},${a.y + NODE_H} C${a.x + NODE_W / 2},${a.y + NODE_H + 60} ${b.x + NODE_W / 2},${b.y + NODE_H + 60} ${b.x + NODE_W / 2},${b.y + NODE_H}`
    : `M${x1},${y1} C${x1 + 80},${y1} ${x2 - 80},${y2} ${x2},${y2}`;
  const rps = Number(e.RequestsPerSecond) || 0;
  const kind = rps === 0 && !e.Requests ? "idle" : edgeHealth(e);
  const widthPx = kind === "idle" ? 1.5 : 2 + 8 * Math.sqrt(rps / maxRps);
  const cls = ["edge", kind, e.Intention && !e.Intention.Allowed ? "denied" : "", e.MTLS === false ? "plain" : ""].join(" ").trim();
  const mx = back ? (a.x + b.x + NODE_W) / 2 : (x1 + x2) / 2;
  const my = back ? Math.max(a.y, b.y) + NODE_H + 48 : (y1 + y2) / 2 - 8;
  const text = kind === "idle" ? "no requests" : `${fmtRps(e)} · ${fmtErrorRate(e)} err · p99 ${fmtP99(e)}`;
  const title = `${e.Source} → ${e.Destination}: ${text}; ${e.MTLS === false ? "not mTLS" : "mTLS"}; ${intentionShort(e.Intention)}`;
  return {
    path: s("g", { class: cls, "data-edge": `${e.Source}>${e.Destination}` }, s("title", {}, title),
      s("path", { d, "stroke-width": widthPx.toFixed(1), "marker-end": `url(#arrow-${kind})` })),
    label: s("text", { x: mx, y: my, "text-anchor": "middle", class: `edge-label ${kind}`, "data-edge": `${e.Source}>${e.Destination}` }, text),
  };
}

function drawNode(n, p) {
  const health = n.ChecksCritical ? "critical" : n.ChecksWarning ? "warning" : "passing";
  const versions = (n.Versions || []).filter(Boolean);
  const sub = `${n.Instances ?? 0} instance${n.Instances === 1 ? "" : "s"}${versions.length ? " · " + versions.join(", ") : ""}`;
  const spoken = `${n.Name}${n.Kind ? ` (${n.Kind})` : ""}: ${sub}, health ${health}. Open the service page.`;
  return s("a", { href: `#/services/${q(n.Name)}`, class: `node ${health}`, "aria-label": spoken, "data-service": n.Name },
    s("rect", { x: p.x, y: p.y, width: NODE_W, height: NODE_H, rx: 8 }),
    s("text", { x: p.x + 12, y: p.y + 24, class: "node-name" }, n.Name.length > 20 ? n.Name.slice(0, 19) + "…" : n.Name),
    s("text", { x: p.x + 12, y: p.y + 44, class: "node-sub" }, sub.length > 26 ? sub.slice(0, 25) + "…" : sub));
}

/** Each destination version's share: "v1: 18.3 req/s, 0.27%" (a canary's split, live). */
function bySubset(e) {
  const subs = (e.Subsets || []).filter((x) => x.Subset && x.Subset !== "unknown");
  if (subs.length === 0) return "–";
  return h("ul", { class: "subsets" }, subs.map((x) => h("li", {}, `${x.Subset}: ${fmtRps(x)}, ${fmtErrorRate(x)}`)));
}

function drawEdgeTable(el, edges) {
  if (edges.length === 0) {
    clear(el, h("p", {}, "No connections with traffic in this window."));
    return;
  }
  const link = (n) => h("a", { href: `#/services/${q(n)}` }, n);
  const sorted = [...edges].sort((a, b) => (b.RequestsPerSecond || 0) - (a.RequestsPerSecond || 0) || a.Source.localeCompare(b.Source));
  clear(el, h("table", { class: "list", id: "graph-edges" },
    h("caption", { class: "sr-only" }, "Connections between services with their traffic over the window"),
    h("thead", {}, h("tr", {}, ["Source", "Destination", "Protocol", "Requests/s", "Error rate", "p99", "By version", "mTLS", "Intention"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, sorted.map((e) => h("tr", { class: `edge-row ${edgeHealth(e)}`, "data-edge": `${e.Source}>${e.Destination}` },
      h("th", { scope: "row" }, link(e.Source)),
      h("td", {}, link(e.Destination)),
      h("td", {}, e.Protocol || "tcp"),
      h("td", { class: "num" }, fmtRps(e)),
      h("td", { class: "num" }, fmtErrorRate(e), e.Errors ? h("span", { class: "meta" }, ` (${e.Errors} of ${e.Requests})`) : null),
      h("td", { class: "num" }, fmtP99(e)),
      h("td", {}, bySubset(e)),
      h("td", {}, e.MTLS === false ? "no" : "yes"),
      h("td", {}, intentionShort(e.Intention)))))));
}
