// Explain, on a service's page: describe one request from a source service
// (method, path, headers) and see what the mesh would do with it, from
// POST /v1/internal/explain (the proxy's own decision core, run by the agent).
import { api, describeError } from "../api.js";
import { clear, field, h, message } from "../dom.js";
import { matchText } from "./routing.js";

const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
const OUTCOMES = {
  ok: "forwarded",
  bad_path: "refused: the path is not valid (400 from the proxy)",
  no_route: "no route matches (404 from the proxy)",
  unknown_node: "the chain names a step that does not exist (503 from the proxy)",
  no_healthy_upstream: "no healthy upstream (503 from the proxy)",
};

/** "name: value" lines -> {name: value | [values]}; throws on a bad line. */
export function parseHeaders(text) {
  const out = {};
  text.split("\n").map((l) => l.trim()).filter(Boolean).forEach((line, i) => {
    const at = line.indexOf(":");
    if (at <= 0) throw new Error(`Header line ${i + 1} must be "name: value", not "${line}"`);
    const name = line.slice(0, at).trim();
    const value = line.slice(at + 1).trim();
    out[name] = name in out ? [].concat(out[name], value) : value;
  });
  return out;
}

/** The explain form and its answer, for requests to `name`. */
export function explainPanel(name) {
  const source = h("input", { name: "explain-source", required: true, autocomplete: "off" });
  const method = h("select", { name: "explain-method" }, METHODS.map((m) => h("option", { value: m }, m)));
  const path = h("input", { name: "explain-path", value: "/", autocomplete: "off", placeholder: "/path?query" });
  const headers = h("textarea", { name: "explain-headers", rows: 3, placeholder: "x-canary: 1" });
  const out = h("div", { id: "explain-decision", "aria-live": "polite" });
  const form = h("form", { class: "card", "aria-labelledby": "explain-h" },
    h("h2", { id: "explain-h" }, `Explain a request to ${name}`),
    h("div", { class: "row" }, field("Source service", source), field("Method", method), field("Path", path)),
    field("Headers", headers, "one per line, name: value"),
    h("button", { type: "submit" }, "Explain request"),
    out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    let hdrs;
    try {
      hdrs = parseHeaders(headers.value);
    } catch (err) {
      out.replaceChildren(message("error", err.message));
      return;
    }
    const body = { Source: source.value.trim(), Destination: name, Method: method.value, Path: path.value.trim() || "/", Headers: hdrs };
    try {
      const { data } = await api("POST", "/v1/internal/explain", { body });
      clear(out, drawDecision(data));
    } catch (err) {
      out.replaceChildren(message("error", describeError(err)));
    }
  });
  return form;
}

function drawDecision(d) {
  const rows = [];
  const row = (term, ...desc) => rows.push(h("dt", {}, term), h("dd", {}, ...desc));
  const ix = d.Intention || {};
  // The source's proxy decides first (route, split, target); only a request
  // it forwards reaches the destination's proxy, which applies intentions.
  if (d.Outcome !== "ok") row("Verdict", OUTCOMES[d.Outcome] || d.Outcome);
  else if (!ix.Allowed) row("Verdict", "forwarded, then denied by the intention: RBAC: access denied (403)");
  else row("Verdict", `allowed and forwarded${d.Endpoint ? ` to ${d.Endpoint}` : ""}`);
  row("Intention", `${ix.Allowed ? "allowed" : "denied"}${ix.Destination ? ` to ${ix.Destination}` : ""}` +
    `${ix.Reason ? `: ${ix.Reason}` : ""} (judged at ${ix.Evaluated || "L4"})`);
  if (!d.L7) row("Protocol", `${d.Protocol}: served at L4, no HTTP routing`);
  if (d.Route) {
    row("Route", d.Route.Default ? "the default route (no route of the router matched)" :
      `route ${d.Route.Index + 1}: match ${matchText(d.Route.Match)}`);
  }
  for (const s of d.Splits || []) {
    const b = s.Buckets[s.Picked] || {};
    row("Split", `picked ${b.Weight}% → ${b.NextNode} (of ${s.Buckets.map((x) => `${x.Weight}%`).join(" / ")}; one random draw)`);
  }
  (d.Targets || []).forEach((t, i) => {
    const what = `${t.Service}${t.ServiceSubset ? `, subset ${t.ServiceSubset}` : ""} in ${t.Datacenter}`;
    row(i === 0 ? "Target" : `Failover ${i}`, what, t.RedirectedFrom ? ` (redirected from ${t.RedirectedFrom})` : "",
      ` · ${t.Eligible.length} eligible, ${t.Ejected.length} ejected instance(s)`);
  });
  if (d.Endpoint) row("Instance", String(d.Endpoint));
  if (d.TimeoutSeconds) row("Timeout", `${d.TimeoutSeconds} s`);
  if (d.Retry && d.Retry.NumRetries) row("Retries", `${d.Retry.NumRetries} on ${(d.Retry.RetryOn || []).join(", ") || "default conditions"}`);
  if (d.Mirror) row("Mirror", String(d.Mirror));
  const f = d.Fault || {};
  if (f.DelaySeconds || f.AbortStatus) row("Fault", [f.DelaySeconds ? `delay ${f.DelaySeconds} s` : "", f.AbortStatus ? `abort ${f.AbortStatus}` : ""].filter(Boolean).join(", "));
  return [h("p", {}, `${d.Request?.Method || ""} ${d.Request?.Path || ""} from ${d.Source} to ${d.Destination}:`),
    h("dl", { class: "decision" }, rows)];
}
