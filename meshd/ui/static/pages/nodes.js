import { describeError, watch } from "../api.js";
import { badge, clear, h, message } from "../dom.js";
import { worst } from "./services.js";

export function renderNodes(main) {
  const state = { nodes: null, checks: [], error: "" };
  const body = h("div", { "aria-live": "polite" });
  main.append(h("h1", {}, "Nodes"), body);
  const draw = () => {
    if (!state.nodes) {
      clear(body, state.error ? message("error", state.error) : h("p", {}, "Loading…"));
      return;
    }
    const byNode = {};
    for (const c of state.checks) (byNode[c.Node] ||= []).push(c);
    clear(body,
      state.error ? message("error", state.error) : null,
      h("table", { class: "list" },
        h("caption", { class: "sr-only" }, "Nodes and their health"),
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, "Node"), h("th", { scope: "col" }, "Address"),
          h("th", { scope: "col" }, "Health"), h("th", { scope: "col" }, "Failing checks"))),
        h("tbody", {}, state.nodes.map((n) => {
          const checks = byNode[n.Node] || [];
          const failing = checks.filter((c) => c.Status !== "passing");
          return h("tr", {},
            h("th", { scope: "row" }, n.Node),
            h("td", {}, n.Address),
            h("td", {}, badge(worst(checks.map((c) => c.Status)))),
            h("td", {}, failing.map((c) => h("div", {}, `${c.Name}: ${c.Status}`))));
        }))),
    );
  };
  const fail = (err) => { state.error = describeError(err); draw(); };
  const stops = [
    watch("/v1/catalog/nodes", (d) => { state.nodes = d; state.error = ""; draw(); }, fail),
    watch("/v1/health/state/any", (d) => { state.checks = d; draw(); }, fail),
  ];
  return () => stops.forEach((s) => s());
}
