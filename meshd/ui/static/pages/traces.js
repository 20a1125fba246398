// Traces: a search over the agents' recent traces (/v1/internal/traces) and
// a waterfall of one trace (/v1/internal/traces/:id). The search endpoint is
// not a blocking query, so "live" re-reads it on a timer only while asked.
import { api, describeError } from "../api.js";
import { clear, field, h, message } from "../dom.js";

const LIVE_MS = 5000;
const METHOD = "http.request.method";
const PATH = "url.path";
const CODE = "http.response.status_code";
const FLAGS = "meshd.response_flags";

/** A duration in nanoseconds as text: 850 µs, 12.3 ms, 2.05 s. */
export function fmtDuration(ns) {
  const n = Number(ns) || 0;
  if (n < 1e6) return `${(n / 1e3).toFixed(n < 1e4 ? 1 : 0)} µs`;
  if (n < 1e9) return `${(n / 1e6).toFixed(n < 1e8 ? 1 : 0)} ms`;
  return `${(n / 1e9).toFixed(2)} s`;
}

function fmtTime(ns) {
  const d = new Date(Number(ns) / 1e6);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString().replace("T", " ").replace("Z", " UTC");
}

function hashQuery() {
  return new URLSearchParams(location.hash.split("?")[1] || "");
}

/** The search inputs, filled from the address (#/traces?service=…). */
function searchInputs() {
  const q = hashQuery();
  const service = h("input", { type: "search", name: "service", placeholder: "any service", value: q.get("service") || "" });
  const wanted = q.get("status") || "";
  const isCode = /^\d{3}$/.test(wanted);
  const status = h("select", { name: "status" },
    ["", "ok", "error", "code"].map((v) => h("option", { value: v, selected: (isCode ? "code" : wanted) === v },
      { "": "any", ok: "ok", error: "error", code: "HTTP status code…" }[v])));
  const code = h("input", { type: "number", name: "code", min: 100, max: 599, value: isCode ? wanted : "" });
  const codeField = field("Status code", code);
  codeField.hidden = !isCode;
  status.addEventListener("change", () => { codeField.hidden = status.value !== "code"; });
  const minDur = h("input", { type: "text", name: "min_duration", placeholder: "e.g. 250ms", value: q.get("min_duration") || "" });
  const limit = h("input", { type: "number", name: "limit", min: 1, max: 1000, value: q.get("limit") || "20" });
  return { service, status, code, codeField, minDur, limit };
}

export function renderTraces(main) {
  const { service, status, code, codeField, minDur, limit } = searchInputs();
  const live = h("input", { type: "checkbox", name: "live" });
  const results = h("div", { id: "trace-results", "aria-live": "polite" });
  const inputs = [minDur, limit, code];
  let timer = null;
  let seq = 0;
  const params = () => {
    const p = new URLSearchParams();
    if (service.value.trim()) p.set("service", service.value.trim());
    const st = status.value === "code" ? code.value.trim() : status.value;
    if (st) p.set("status", st);
    if (minDur.value.trim()) p.set("min_duration", minDur.value.trim());
    if (limit.value.trim() && limit.value.trim() !== "20") p.set("limit", limit.value.trim());
    return p;
  };
  const search = async () => {
    const mine = ++seq;
    const p = params().toString();
    try {
      const { data, headers } = await api("GET", "/v1/internal/traces" + (p ? `?${p}` : ""));
      if (mine !== seq) return;
      drawResults(results, data || [], headers.get("X-Consul-Results-Filtered-By-ACLs") === "true");
      inputs.forEach((i) => i.removeAttribute("aria-invalid"));
    } catch (err) {
      if (mine !== seq) return;
      // A 400 names its field (min_duration, limit, status): mark that input.
      const bad = err.status === 400 && inputs.find((i) => err.message.includes(i.name === "code" ? "status" : i.name));
      inputs.forEach((i) => (i === bad ? i.setAttribute("aria-invalid", "true") : i.removeAttribute("aria-invalid")));
      clear(results, message("error", describeError(err)));
    }
  };
  live.addEventListener("change", () => {
    clearInterval(timer);
    timer = live.checked ? setInterval(search, LIVE_MS) : null;
  });
  const submit = (e) => {
    e.preventDefault();
    const p = params().toString();
    // Keep the search in the address (bookmarkable) without re-routing.
    history.replaceState(null, "", "#/traces" + (p ? `?${p}` : ""));
    search();
  };
  main.append(
    h("h1", {}, "Traces"),
    h("form", { class: "filters", role: "search", "aria-label": "Search traces", onsubmit: submit },
      field("Service", service), field("Status", status), codeField,
      field("Minimum duration", minDur), field("Limit", limit),
      h("div", { class: "field" }, h("span", { "aria-hidden": "true" }, "\u00a0"), h("button", { type: "submit" }, "Search")),
      h("div", { class: "field check" }, h("label", {}, live, " Live (every 5 s)"))),
    results,
  );
  clear(results, h("p", {}, "Loading…"));
  search();
  return () => { seq++; clearInterval(timer); };
}

function drawResults(el, traces, filtered) {
  const rows = traces.map((t) => h("tr", {},
    h("th", { scope: "row" }, h("a", { class: "mono", href: `#/traces/${t.TraceID}` }, t.TraceID)),
    h("td", {}, h("div", {}, t.RootName), h("div", { class: "meta" }, (t.Services || []).join(", "))),
    h("td", {}, fmtTime(t.StartNs)),
    h("td", { class: "num" }, fmtDuration(t.DurationNs)),
    h("td", { class: "num" }, String(t.SpanCount)),
    h("td", {}, t.Error ? h("span", { class: "badge critical" }, "error") : h("span", { class: "badge passing" }, "ok")),
  ));
  clear(el,
    filtered ? message("warn", "Some traces are hidden: they include services this token may not read.") : null,
    h("p", { class: "count" }, `${traces.length} trace${traces.length === 1 ? "" : "s"}`),
    traces.length === 0 ? null : h("table", { class: "list", id: "traces-table" },
      h("caption", { class: "sr-only" }, "Recent traces, newest first"),
      h("thead", {}, h("tr", {}, ["Trace", "Root operation and services", "Start", "Duration", "Spans", "Result"]
        .map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows)),
  );
}

/** Depth of each span: its parent's depth + 1 (0 when the parent is not in the trace). */
export function depths(spans) {
  const byId = new Map(spans.map((s) => [s.SpanID, s]));
  const out = new Map();
  const depthOf = (s, guard = 0) => {
    if (out.has(s.SpanID)) return out.get(s.SpanID);
    const parent = byId.get(s.ParentSpanID);
    const d = parent && parent !== s && guard < spans.length ? depthOf(parent, guard + 1) + 1 : 0;
    out.set(s.SpanID, d);
    return d;
  };
  spans.forEach((s) => depthOf(s));
  return out;
}

export function renderTrace(main, traceId) {
  const body = h("div", { "aria-live": "polite" }, h("p", {}, "Loading…"));
  main.append(
    h("p", {}, h("a", { href: "#/traces" }, "← All traces")),
    h("h1", {}, "Trace ", h("span", { class: "mono" }, traceId)),
    body,
  );
  let gone = false;
  api("GET", `/v1/internal/traces/${encodeURIComponent(traceId)}`).then(
    ({ data }) => { if (!gone) drawWaterfall(body, data.Spans || []); },
    (err) => {
      if (gone) return;
      const text = err.status === 404 ? `No agent holds trace ${traceId} (it may have been evicted).` : describeError(err);
      clear(body, message("error", text));
    },
  );
  return () => { gone = true; };
}

function drawWaterfall(el, spans) {
  const start = Math.min(...spans.map((s) => Number(s.StartNs)));
  const end = Math.max(...spans.map((s) => Number(s.EndNs)));
  const total = Math.max(end - start, 1);
  const depth = depths(spans);
  const services = [...new Set(spans.map((s) => s.Service))].sort();
  const rows = spans.flatMap((s, i) => spanRows(s, i, depth.get(s.SpanID), start, total));
  const table = h("table", { class: "list waterfall", id: "waterfall" },
    h("caption", { class: "sr-only" }, "Spans in start order; each nested under its parent"),
    h("thead", {}, h("tr", {}, ["Service", "Kind", "Operation", "Status", "Flags", "Duration", "Timeline"]
      .map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows));
  table.addEventListener("keydown", (e) => moveFocus(table, e));
  clear(el,
    h("p", { class: "meta" }, `${spans.length} spans · ${fmtDuration(total)} · services: ${services.join(", ")}`),
    table);
}

function spanRows(s, i, depth, t0, total) {
  const a = s.Attributes || {};
  const offset = Number(s.StartNs) - t0;
  const dur = Number(s.DurationNs ?? Number(s.EndNs) - Number(s.StartNs));
  const detailsId = `span-attrs-${i}`;
  const error = s.Status === "ERROR";
  const toggle = h("button", { type: "button", class: "span-toggle", "aria-expanded": "false", "aria-controls": detailsId },
    h("span", { "aria-hidden": "true", class: "caret" }, "▸"), " ", s.Service);
  const details = h("tr", { id: detailsId, class: "span-attrs", hidden: true },
    h("td", { colspan: 7 }, h("dl", { class: "decision" },
      Object.entries({ SpanID: s.SpanID, ParentSpanID: s.ParentSpanID || "(root)", Name: s.Name, ...a,
        ...(s.StatusMessage ? { StatusMessage: s.StatusMessage } : {}) })
        .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]))));
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    details.hidden = !open;
  });
  const cell = h("th", { scope: "row", class: "span-name", "data-depth": depth }, toggle,
    depth ? h("span", { class: "sr-only" }, ` (nested ${depth} deep)`) : null);
  cell.style.paddingLeft = `${10 + depth * 18}px`;
  const bar = h("span", { class: `bar${error ? " error" : ""}`, "aria-hidden": "true" });
  bar.style.left = `${(offset / total) * 100}%`;
  bar.style.width = `${Math.max((dur / total) * 100, 0.5)}%`;
  const code = a[CODE];
  const row = h("tr", { class: `span${error ? " error" : ""}`, "data-span-id": s.SpanID },
    cell,
    h("td", {}, s.Kind),
    h("td", {}, a[METHOD] || a[PATH] ? `${a[METHOD] || ""} ${a[PATH] || ""}`.trim() : s.Name),
    h("td", {}, code ? `${code} ` : "", error ? h("span", { class: "badge critical" }, "error") : null),
    h("td", {}, a[FLAGS] || ""),
    h("td", { class: "num" }, fmtDuration(dur)),
    h("td", { class: "timeline" }, h("span", { class: "track" }, bar),
      h("span", { class: "sr-only" }, `starts at +${fmtDuration(offset)}, lasts ${fmtDuration(dur)}`)),
  );
  return [row, details];
}

/** Up/Down (and Home/End) move between the span toggles. */
function moveFocus(table, e) {
  const keys = { ArrowDown: 1, ArrowUp: -1, Home: "first", End: "last" };
  if (!(e.key in keys) || !e.target.classList.contains("span-toggle")) return;
  const all = [...table.querySelectorAll("button.span-toggle")];
  const i = all.indexOf(e.target);
  const k = keys[e.key];
  const next = k === "first" ? all[0] : k === "last" ? all[all.length - 1] : all[i + k];
  if (next) {
    e.preventDefault();
    next.focus();
  }
}
