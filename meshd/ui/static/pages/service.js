import { api, describeError, watch } from "../api.js";
import { badge, clear, h, message, redrawKeepingFocus } from "../dom.js";
import { pollWhileVisible } from "../poll.js";
import { progressText, stateText } from "./canaries.js";
import { explainPanel } from "./explain.js";
import { edgeHealth, fmtErrorRate, fmtP99, fmtRps, GRAPH_MS, intentionShort, readGraph } from "./graph.js";
import { explain, decisionText } from "./intentions.js";
import { watchRouting } from "./routing.js";
import { worst } from "./services.js";

const PROXIES = "/v1/catalog/services?filter=" + encodeURIComponent('ServiceKind == "connect-proxy"');

export function renderService(main, name) {
  const state = { instances: null, error: "", sidecars: [], downstreams: [] };
  // The edges' traffic (mesh-graph?service=) and the service's canary are
  // computed views, re-read every 5 s while the page is visible.
  const live = { decided: null, hasSidecar: false, traffic: null, trafficError: "" };
  const canary = h("div", { id: "canary-link" });
  const inst = h("section", { "aria-labelledby": "inst-h" });
  const topo = h("section", { "aria-labelledby": "topo-h" });
  const routing = h("section", { "aria-labelledby": "routing-h" });
  main.append(
    h("p", {}, h("a", { href: "#/services" }, "← All services")),
    h("h1", {}, name),
    h("p", {}, h("a", { href: `#/traces?service=${encodeURIComponent(name)}` }, "Traces of this service"), " · ",
      h("a", { href: "#/graph" }, "Traffic graph")),
    canary,
    inst,
    topo,
    routing,
    explainPanel(name),
  );
  const draw = () => {
    drawInstances(inst, state);
  };
  let topoSeq = 0;
  const drawTopo = async () => {
    const seq = ++topoSeq;
    const ups = new Set();
    for (const sc of state.sidecars) {
      for (const u of sc.Service?.Proxy?.Upstreams || []) ups.add(u.DestinationName);
    }
    const edges = [
      ...[...ups].map((u) => ({ dir: "upstream", src: name, dst: u })),
      ...state.downstreams.map((d) => ({ dir: "downstream", src: d, dst: name })),
    ];
    const decided = await Promise.all(
      edges.map(async (e) => ({ ...e, decision: await explain(e.src, e.dst).catch((err) => ({ error: describeError(err) })) })),
    );
    if (seq !== topoSeq) return;
    Object.assign(live, { decided, hasSidecar: state.sidecars.length > 0 });
    redrawKeepingFocus(topo, () => drawEdges(topo, name, live));
  };
  const fail = (err) => { state.error = describeError(err); draw(); };
  const stops = [
    watch(`/v1/health/service/${encodeURIComponent(name)}`, (d) => { state.instances = d; state.error = ""; draw(); }, fail),
    watch(`/v1/health/connect/${encodeURIComponent(name)}`, (d) => { state.sidecars = d; drawTopo(); }, () => {}),
    watch(PROXIES, async (d) => {
      state.downstreams = await downstreamsOf(name, Object.keys(d || {}));
      drawTopo();
    }, () => {}),
    watch("/v1/connect/intentions", () => drawTopo(), () => {}),
    watchRouting(routing, name),
    pollWhileVisible(async (signal) => {
      await Promise.all([
        readGraph("60s", name, signal).then(({ graph }) => {
          Object.assign(live, { traffic: graph.Edges || [], trafficError: "" });
        }, (err) => {
          if (err.name !== "AbortError") live.trafficError = describeError(err);
        }),
        drawCanaryLink(canary, name, signal),
      ]);
      if (!signal.aborted) redrawKeepingFocus(topo, () => drawEdges(topo, name, live));
    }, GRAPH_MS),
  ];
  draw();
  return () => stops.forEach((s) => s());
}

/** Services whose sidecars name `name` as an upstream. */
async function downstreamsOf(name, proxyNames) {
  const found = new Set();
  await Promise.all(proxyNames.map(async (p) => {
    try {
      const { data } = await api("GET", `/v1/catalog/service/${encodeURIComponent(p)}`);
      for (const sn of data) {
        const ups = sn.ServiceProxy?.Upstreams || [];
        if (ups.some((u) => u.DestinationName === name)) {
          found.add(sn.ServiceProxy.DestinationServiceName || p.replace(/-sidecar-proxy$/, ""));
        }
      }
    } catch {
      // a proxy this token may not read is left out, as the API leaves it out
    }
  }));
  return [...found].sort();
}

function drawInstances(el, state) {
  if (!state.instances) {
    clear(el, h("h2", { id: "inst-h" }, "Instances"),
      state.error ? message("error", state.error) : h("p", {}, "Loading…"));
    return;
  }
  clear(el,
    h("h2", { id: "inst-h" }, `Instances (${state.instances.length})`),
    state.error ? message("error", state.error) : null,
    state.instances.length === 0 ? h("p", {}, "No instances (or none this token may read).") : null,
    state.instances.map((e) => {
      const s = e.Service;
      const checks = e.Checks || [];
      return h("article", { class: "card instance", "aria-label": `Instance ${s.ID} on ${e.Node.Node}` },
        h("h3", {}, s.ID, " ", badge(worst(checks.map((c) => c.Status)))),
        h("p", {}, `Node ${e.Node.Node} · ${s.Address || e.Node.Address}:${s.Port}`,
          s.Kind ? ` · ${s.Kind}` : "",
          (s.Tags || []).map((t) => h("span", { class: "tag" }, t))),
        h("table", { class: "list checks" },
          h("caption", { class: "sr-only" }, `Checks of ${s.ID}`),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Check"), h("th", { scope: "col" }, "Status"), h("th", { scope: "col" }, "Output"))),
          h("tbody", {}, checks.map((c) => h("tr", {},
            h("th", { scope: "row" }, c.Name || c.CheckID),
            h("td", {}, badge(c.Status)),
            h("td", {}, h("pre", { class: "output" }, c.Output || "")))))),
      );
    }),
  );
}

async function drawCanaryLink(el, name, signal) {
  try {
    const { data: c } = await api("GET", `/v1/internal/canary/${encodeURIComponent(name)}`, { signal });
    clear(el, h("p", { class: "canary-link" }, h("a", { href: `#/canaries/${encodeURIComponent(name)}` },
      `Canary ${c.From} → ${c.To}: ${stateText(c)}, ${progressText(c)}`)));
  } catch (err) {
    if (err.name !== "AbortError") clear(el); // 404: no canary for this service
  }
}

/**
 * The upstreams and downstreams (from the sidecars' registrations, plus any
 * edge the traffic shows) with their intention decision and the last
 * minute's requests/s, error rate and p99.
 */
function drawEdges(el, name, live) {
  const traffic = new Map((live.traffic || []).map((t) => [`${t.Source}>${t.Destination}`, t]));
  if (live.decided === null) {
    clear(el, h("h2", { id: "topo-h" }, "Upstreams and downstreams"), h("p", {}, "Loading…"));
    return;
  }
  const edges = [...live.decided];
  const known = new Set(edges.map((e) => `${e.src}>${e.dst}`));
  for (const t of live.traffic || []) {
    if (known.has(`${t.Source}>${t.Destination}`)) continue;
    const dir = t.Source === name ? "upstream" : "downstream";
    edges.push({ dir, src: t.Source, dst: t.Destination, fromTraffic: t.Intention });
  }
  const stat = (e, fmt) => {
    const t = traffic.get(`${e.src}>${e.dst}`);
    if (live.traffic === null) return live.trafficError ? "–" : "…";
    return t ? fmt(t) : fmt({ RequestsPerSecond: 0, Requests: 0, P99Ms: null });
  };
  const decision = (e) => e.decision ? (e.decision.error ? e.decision.error : decisionText(e.decision)) : intentionShort(e.fromTraffic);
  const row = (e) => {
    const t = traffic.get(`${e.src}>${e.dst}`);
    return h("tr", { class: `edge-row ${t ? edgeHealth(t) : ""}`, "data-edge": `${e.src}>${e.dst}` },
      h("td", {}, e.dir),
      h("th", { scope: "row" }, h("a", { href: `#/services/${encodeURIComponent(e.dir === "upstream" ? e.dst : e.src)}` }, e.dir === "upstream" ? e.dst : e.src)),
      h("td", {}, `${e.src} → ${e.dst}`),
      h("td", { class: "num" }, stat(e, fmtRps)),
      h("td", { class: "num" }, stat(e, fmtErrorRate)),
      h("td", { class: "num" }, stat(e, fmtP99)),
      h("td", {}, decision(e)),
    );
  };
  const cols = ["Direction", "Service", "Edge", "Requests/s", "Error rate", "p99", "Intention decision"];
  clear(el,
    h("h2", { id: "topo-h" }, "Upstreams and downstreams"),
    !live.hasSidecar ? h("p", {}, "This service has no sidecar proxy registered: no upstreams are known.") : null,
    h("p", { class: "meta" }, "Requests/s, error rate and p99 over the last minute, measured by the proxies; re-read every 5 s."),
    live.trafficError ? message("warn", `Traffic figures are not available. ${live.trafficError}`) : null,
    edges.length === 0 ? h("p", {}, "No edges.") : h("table", { class: "list", id: "edges" },
      h("caption", { class: "sr-only" }, `Connections of ${name}, their traffic over the last minute and the intention deciding each`),
      h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, edges.map(row))),
  );
}
