// A service's routing, drawn from its compiled discovery chain
// (GET /v1/discovery-chain/:service) as nested, labelled lists: routes
// (match → destination), splits with weights, resolvers with their target,
// subset and failover. Lists read well to screen readers and need no SVG
// text alternative; the indentation shows the tree to everyone else.
import { api, describeError, watch } from "../api.js";
import { clear, h, message } from "../dom.js";

const q = encodeURIComponent;
// The kinds that configure one service by its name (linked from its page).
const SERVICE_KINDS = ["service-defaults", "service-router", "service-splitter", "service-resolver", "service-intentions"];

/** Follow `name`'s discovery chain into `el`; returns the stop function. */
export function watchRouting(el, name) {
  const body = h("div", { id: "routing", "aria-live": "polite" }, h("p", {}, "Loading…"));
  const entries = h("div", { id: "service-config" });
  clear(el, h("h2", { id: "routing-h" }, "Routing"), body,
    h("h3", { id: "service-config-h" }, `Config entries of ${name}`), entries);
  let seq = 0;
  return watch(`/v1/discovery-chain/${q(name)}`, (d) => {
    const chain = d && d.Chain;
    clear(body, chain ? drawChain(chain) : h("p", {}, "No discovery chain."));
    const mine = ++seq;
    linkedEntries(name).then((found) => { if (mine === seq) drawEntries(entries, name, found); });
  }, (err) => clear(body, message("error", describeError(err))));
}

async function linkedEntries(name) {
  const answers = await Promise.all(SERVICE_KINDS.map((kind) =>
    api("GET", `/v1/config/${kind}/${q(name)}`).then(({ data }) => ({ kind, entry: data }), (err) => ({ kind, err }))));
  return answers.filter((a) => a.entry || (a.err && a.err.status !== 404));
}

function drawEntries(el, name, found) {
  clear(el, found.length === 0 ? h("p", {}, `No config entries are named ${name}; the defaults apply.`) :
    h("ul", { "aria-labelledby": "service-config-h" }, found.map((a) => h("li", {},
      a.err ? `${a.kind}: ${describeError(a.err)}` :
        h("a", { href: `#/config/${a.kind}/${q(name)}` }, `${a.kind} / ${name}`),
      a.entry ? h("span", { class: "meta" }, ` · ModifyIndex ${a.entry.ModifyIndex}`) : null))));
}

export function drawChain(chain) {
  return [
    h("p", { class: "meta" }, `Protocol ${chain.Protocol || "tcp"} · datacenter ${chain.Datacenter}. ` +
      (chain.StartNode.startsWith("resolver:") ? "Every connection goes to the resolver's target." :
        "Requests enter at the first step below; routes are tried in order and the first match wins.")),
    h("div", { class: "chain" }, drawNode(chain, chain.StartNode, new Set())),
  ];
}

function drawNode(chain, id, seen) {
  const node = chain.Nodes[id];
  if (!node) return h("p", {}, `missing step ${id}`);
  if (seen.has(id)) return h("p", {}, `back to ${id}`); // never loop on a malformed chain
  const inner = new Set(seen).add(id);
  if (node.Type === "router") return drawRouter(chain, node, inner);
  if (node.Type === "splitter") return drawSplitter(chain, node, inner);
  return drawResolver(chain, node);
}

function drawRouter(chain, node, seen) {
  const label = `Routes of router ${shortName(node.Name)}`;
  return h("div", { class: "chain-node router" },
    h("p", { class: "chain-title" }, h("strong", {}, "Router "), shortName(node.Name), ` · ${node.Routes.length} routes, first match wins`),
    h("ol", { "aria-label": label, class: "routes" }, node.Routes.map((r, i) => h("li", { class: "route" },
      h("p", {}, h("span", { class: "label" }, `Route ${i + 1}: `), "match ", h("span", { class: "match" }, matchText(r.Definition?.Match)),
        destinationText(r.Definition?.Destination), " →"),
      drawNode(chain, r.NextNode, seen)))));
}

function drawSplitter(chain, node, seen) {
  return h("div", { class: "chain-node splitter" },
    h("p", { class: "chain-title" }, h("strong", {}, "Splitter "), shortName(node.Name)),
    h("ul", { "aria-label": `Splits of splitter ${shortName(node.Name)}`, class: "splits" }, node.Splits.map((s) => h("li", { class: "split" },
      h("p", {}, h("span", { class: "weight" }, `${s.Weight}%`), " of requests →"),
      drawNode(chain, s.NextNode, seen)))));
}

function drawResolver(chain, node) {
  const r = node.Resolver || {};
  const failover = r.Failover?.Targets || [];
  return h("div", { class: "chain-node resolver" },
    h("p", { class: "chain-title" }, h("strong", {}, "Resolver "), targetText(chain, r.Target),
      r.Default ? " (no service-resolver entry: defaults)" : "", r.ConnectTimeout ? ` · connect timeout ${r.ConnectTimeout}` : ""),
    failover.length === 0 ? null : h("div", {},
      h("p", {}, "Failover, in order, when no instance of the target is healthy:"),
      h("ol", { class: "failover", "aria-label": `Failover targets of ${r.Target}` }, failover.map((t) => h("li", {}, targetText(chain, t))))));
}

/** "target api, subset v1 (Service.Meta.version == v1) in dc1", api linked. */
export function targetText(chain, id) {
  const t = chain.Targets?.[id];
  if (!t) return `target ${id}`;
  let text = "";
  if (t.ServiceSubset) text += `, subset ${t.ServiceSubset}`;
  if (t.Subset?.Filter) text += ` (${t.Subset.Filter})`;
  if (t.Subset?.OnlyPassing) text += ", passing instances only";
  if (t.Peer) text += ` on peer ${t.Peer}`;
  else text += ` in ${t.Datacenter}`;
  return ["target ", h("a", { href: `#/services/${q(t.Service)}` }, t.Service), text];
}

/** A route's match as words: "path prefix /v2, header x-canary = 1, methods GET". */
export function matchText(match) {
  const http = match?.HTTP;
  if (!http) return "any request";
  const parts = [];
  if (http.PathExact) parts.push(`path ${http.PathExact}`);
  if (http.PathPrefix) parts.push(`path prefix ${http.PathPrefix}`);
  if (http.PathRegex) parts.push(`path matching ${http.PathRegex}`);
  for (const hd of http.Header || []) parts.push(`header ${condition(hd)}`);
  for (const qp of http.QueryParam || []) parts.push(`query ${condition(qp)}`);
  if ((http.Methods || []).length) parts.push(`methods ${http.Methods.join(", ")}`);
  return parts.length ? parts.join("; ") : "any request";
}

function condition(c) {
  const not = c.Invert ? "not " : "";
  if (c.Present) return `${c.Name} ${not}present`;
  if (c.Exact !== undefined && c.Exact !== "") return `${c.Name} ${not}= ${c.Exact}`;
  if (c.Prefix) return `${c.Name} ${not}starting with ${c.Prefix}`;
  if (c.Suffix) return `${c.Name} ${not}ending with ${c.Suffix}`;
  if (c.Regex) return `${c.Name} ${not}matching ${c.Regex}`;
  return `${c.Name}`;
}

function destinationText(d) {
  if (!d) return "";
  const extras = [];
  if (d.PrefixRewrite) extras.push(`rewrite prefix to ${d.PrefixRewrite}`);
  if (d.RequestTimeout) extras.push(`timeout ${d.RequestTimeout}`);
  if (d.NumRetries) extras.push(`${d.NumRetries} retries`);
  if (d.Mirror?.Service) extras.push(`mirror ${d.Mirror.Percent ?? 100}% to ${d.Mirror.Service}`);
  return extras.length ? ` (${extras.join(", ")})` : "";
}

const shortName = (n) => String(n || "").replace(/\.default\.default(\.[^.]+)?$/, "");
