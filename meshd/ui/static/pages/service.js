import { api, describeError, watch } from "../api.js";
import { badge, clear, h, message } from "../dom.js";
import { explainPanel } from "./explain.js";
import { explain, decisionText } from "./intentions.js";
import { watchRouting } from "./routing.js";
import { worst } from "./services.js";

const PROXIES = "/v1/catalog/services?filter=" + encodeURIComponent('ServiceKind == "connect-proxy"');

export function renderService(main, name) {
  const state = { instances: null, error: "", sidecars: [], downstreams: [] };
  const inst = h("section", { "aria-labelledby": "inst-h" });
  const topo = h("section", { "aria-labelledby": "topo-h" });
  const routing = h("section", { "aria-labelledby": "routing-h" });
  main.append(
    h("p", {}, h("a", { href: "#/services" }, "← All services")),
    h("h1", {}, name),
    h("p", {}, h("a", { href: `#/traces?service=${encodeURIComponent(name)}` }, "Traces of this service")),
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
    drawEdges(topo, name, decided, state.sidecars.length > 0);
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

function drawEdges(el, name, edges, hasSidecar) {
  const row = (e) => h("tr", {},
    h("td", {}, e.dir),
    h("th", { scope: "row" }, h("a", { href: `#/services/${encodeURIComponent(e.dir === "upstream" ? e.dst : e.src)}` }, e.dir === "upstream" ? e.dst : e.src)),
    h("td", {}, `${e.src} → ${e.dst}`),
    h("td", {}, e.decision.error ? e.decision.error : decisionText(e.decision)),
  );
  clear(el,
    h("h2", { id: "topo-h" }, "Upstreams and downstreams"),
    !hasSidecar ? h("p", {}, "This service has no sidecar proxy registered: no upstreams are known.") : null,
    edges.length === 0 ? h("p", {}, "No edges.") : h("table", { class: "list", id: "edges" },
      h("caption", { class: "sr-only" }, `Connections of ${name} and the intention deciding each`),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Direction"), h("th", { scope: "col" }, "Service"),
        h("th", { scope: "col" }, "Edge"), h("th", { scope: "col" }, "Intention decision"))),
      h("tbody", {}, edges.map(row))),
  );
}
