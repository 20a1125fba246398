// Canaries: the list (GET /v1/internal/canary) and one canary
// (GET /v1/internal/canary/:service), both followed with blocking queries;
// its progress through the steps, the last measured figures against the
// bounds, the history, and Pause / Resume / Abort (PUT …/pause|resume|abort;
// abort asks first, since it sends all traffic back to the old version).
import { api, describeError, watch } from "../api.js";
import { clear, h, message } from "../dom.js";
import { parseDurationMs } from "../durations.js";

const q = encodeURIComponent;
const TERMINAL = new Set(["promoted", "rolled_back", "aborted"]);
const STATE_TEXT = { running: "running", paused: "paused", promoted: "promoted", rolled_back: "rolled back", aborted: "aborted" };
const STATE_BADGE = { running: "passing", paused: "warning", promoted: "passing", rolled_back: "critical", aborted: "critical" };

export function stateText(c) {
  return STATE_TEXT[c.State] || c.State;
}

/** "step 3 of 5 (25% to v2)", the step counted from 1; how it ended once it has. */
export function progressText(c) {
  const n = (c.Steps || []).length;
  const at = `step ${(Number(c.Step) || 0) + 1} of ${n}`;
  if (c.State === "promoted") return `promoted: all traffic to ${c.To}`;
  if (c.State === "aborted" || c.State === "rolled_back") return `stopped at ${at}: all traffic back to ${c.From}`;
  return `${at} (${c.Weight}% to ${c.To})`;
}

function pct(x) {
  return x === null || x === undefined ? "–" : `${(Number(x) * 100).toFixed(2)}%`;
}

function ms(x) {
  return x === null || x === undefined ? "–" : `${Number(x).toFixed(1)} ms`;
}

function fmtTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso || "") : d.toISOString().slice(0, 19).replace("T", " ") + " UTC";
}

function stateBadge(c) {
  return h("span", { class: `badge ${STATE_BADGE[c.State] || ""}` }, stateText(c));
}

export function renderCanaries(main) {
  const body = h("div", { "aria-live": "polite" }, h("p", {}, "Loading…"));
  main.append(h("h1", {}, "Canaries"), body);
  return watch("/v1/internal/canary", (list) => drawList(body, list || []),
    (err) => clear(body, message("error", describeError(err))));
}

function drawList(el, list) {
  if (list.length === 0) {
    clear(el, h("p", {}, "No canaries (or none this token may read). Start one with ", h("code", {}, "meshd canary start"), "."));
    return;
  }
  clear(el, h("table", { class: "list", id: "canaries-table" },
    h("caption", { class: "sr-only" }, "Canary releases and where each stands"),
    h("thead", {}, h("tr", {}, ["Service", "Release", "State", "Progress", "Error rate", "p99"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, [...list].sort((a, b) => a.Service.localeCompare(b.Service)).map((c) => h("tr", {},
      h("th", { scope: "row" }, h("a", { href: `#/canaries/${q(c.Service)}` }, c.Service)),
      h("td", {}, `${c.From} → ${c.To}`),
      h("td", {}, stateBadge(c)),
      h("td", {}, progressText(c)),
      h("td", { class: "num" }, pct(c.Last?.ErrorRate)),
      h("td", { class: "num" }, ms(c.Last?.P99Ms)))))));
}

export function renderCanary(main, name) {
  const body = h("div", {}, h("p", {}, "Loading…"));
  const note = h("div", { id: "canary-message" });
  const state = { canary: null, busy: false };
  const act = (verb) => async () => {
    const c = state.canary;
    if (verb === "abort" && !window.confirm(`Abort the canary of ${name}? All traffic goes back to ${c.From} at once.`)) return;
    state.busy = true;
    draw();
    try {
      const { data } = await api("PUT", `/v1/internal/canary/${q(name)}/${verb}`);
      if (data && data.Service) state.canary = data;
      clear(note, message("ok", `${verb[0].toUpperCase()}${verb.slice(1)}: the canary is now ${stateText(state.canary)}.`));
    } catch (err) {
      clear(note, message("error", `Could not ${verb} the canary. ${describeError(err)}`));
    } finally {
      state.busy = false;
      draw();
    }
  };
  const buttons = {
    pause: h("button", { type: "button", onclick: act("pause") }, "Pause"),
    resume: h("button", { type: "button", onclick: act("resume") }, "Resume"),
    abort: h("button", { type: "button", class: "danger", onclick: act("abort") }, "Abort"),
  };
  const controls = h("div", { class: "row controls", role: "group", "aria-label": "Canary controls" }, Object.values(buttons));
  main.append(
    h("p", {}, h("a", { href: "#/canaries" }, "← All canaries")),
    h("h1", {}, `Canary of ${name}`),
    h("p", {}, h("a", { href: `#/services/${q(name)}` }, `Service ${name}`), " · ",
      h("a", { href: `#/config/service-splitter/${q(name)}` }, "Its service-splitter")),
    controls, note, body,
  );
  const draw = () => {
    const c = state.canary;
    const s = c ? c.State : "";
    buttons.pause.disabled = state.busy || s !== "running";
    buttons.resume.disabled = state.busy || s !== "paused";
    buttons.abort.disabled = state.busy || !c || TERMINAL.has(s);
    if (c) drawCanary(body, c);
  };
  draw();
  return watch(`/v1/internal/canary/${q(name)}`, (c) => { state.canary = c; draw(); }, (err) => {
    clear(body, message("error", err.status === 404 ? `No canary for ${name}.` : describeError(err)));
  });
}

function drawCanary(el, c) {
  const steps = c.Steps || [];
  clear(el,
    h("dl", { class: "decision", id: "canary-summary" },
      h("dt", {}, "State"), h("dd", { id: "canary-state" }, stateBadge(c), c.Reason ? ` ${c.Reason}` : ""),
      h("dt", {}, "Release"), h("dd", {}, `${c.From} → ${c.To}`),
      h("dt", {}, "Progress"), h("dd", {}, progressText(c)),
      h("dt", {}, "Interval"), h("dd", {}, `${c.Interval} per step`, c.StepStartedAt ? ` (this step since ${fmtTime(c.StepStartedAt)})` : "")),
    h("h2", { id: "steps-h" }, "Steps"),
    h("progress", { max: 100, value: Number(c.Weight) || 0, "aria-labelledby": "steps-h", id: "canary-progress" }),
    h("ol", { class: "steps", "aria-labelledby": "steps-h" }, steps.map((w, i) => {
      const ended = TERMINAL.has(c.State) && c.State !== "promoted";
      const where = i < c.Step || c.State === "promoted" ? "done" : i === c.Step ? (ended ? "stopped" : "current") : "todo";
      const spoken = { done: "done", current: "current", stopped: `stopped here, ${stateText(c)}`, todo: "to do" }[where];
      return h("li", { class: where, "aria-current": where === "current" ? "step" : null },
        `${w}% to ${c.To}`, h("span", { class: "sr-only" }, ` (${spoken})`));
    })),
    h("h2", { id: "bounds-h" }, "Last measurement against the bounds"),
    boundsTable(c),
    h("h2", { id: "history-h" }, "History"),
    historyTable(c.History || []));
}

/**
 * The last judged figures against the bounds. Fewer requests than
 * MinRequests is "too few to judge" (the canary holds the step), not a
 * breach; before any request (Last all zeros) nothing is measured.
 */
function boundsTable(c) {
  const last = c.Last || {};
  const n = Number(last.Requests) || 0;
  const maxP99 = parseDurationMs(c.MaxP99);
  const measured = (v) => n > 0 && v !== null && v !== undefined;
  const rows = [
    ["Requests", String(n), `at least ${c.MinRequests} to judge a step`, n >= c.MinRequests ? "within" : n > 0 ? "too few" : "none"],
    ["Error rate", n > 0 ? pct(last.ErrorRate) : "–", `at most ${pct(c.MaxErrorRate)}`,
      !measured(last.ErrorRate) ? "none" : last.ErrorRate <= c.MaxErrorRate ? "within" : "out"],
    ["p99 latency", n > 0 ? ms(last.P99Ms) : "–", `at most ${c.MaxP99}`,
      !measured(last.P99Ms) || maxP99 === null ? "none" : last.P99Ms <= maxP99 ? "within" : "out"],
  ];
  const verdict = { within: ["passing", "within"], out: ["critical", "out of bounds"], "too few": ["warning", "too few to judge"], none: ["", "not measured"] };
  return h("table", { class: "list", id: "canary-bounds" },
    h("caption", { class: "sr-only" }, "The canary's last measured figures and its bounds"),
    h("thead", {}, h("tr", {}, ["Figure", "Last", "Bound", "Verdict"].map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.map(([name, value, bound, v]) => h("tr", {},
      h("th", { scope: "row" }, name), h("td", { class: "num" }, value), h("td", {}, bound),
      h("td", {}, h("span", { class: `badge ${verdict[v][0]}` }, verdict[v][1]))))));
}

function historyTable(history) {
  if (history.length === 0) return h("p", {}, "No events yet.");
  return h("table", { class: "list", id: "canary-history" },
    h("caption", { class: "sr-only" }, "What the canary did, oldest first"),
    h("thead", {}, h("tr", {}, ["Time", "Event", "Step", "Requests", "Error rate", "p99", "Reason"].map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, history.map((e) => h("tr", { class: `event ${e.Event}` },
      h("td", { class: "mono" }, fmtTime(e.Time)), h("th", { scope: "row" }, e.Event),
      h("td", {}, `${(Number(e.Step) || 0) + 1} (${e.Weight}%)`),
      h("td", { class: "num" }, e.Requests ?? "–"), h("td", { class: "num" }, pct(e.ErrorRate)),
      h("td", { class: "num" }, ms(e.P99Ms)), h("td", {}, e.Reason || "")))));
}
