// Config entries (/v1/config): the kinds, the entries of one kind (live),
// and a JSON editor that writes with ?cas=ModifyIndex so two editors never
// overwrite each other, and points at the field a 400 names.
import { api, describeError, watch } from "../api.js";
import { clear, field, h, message } from "../dom.js";
import { navigate } from "../app.js";
import { fieldOfError, lineCol, locate, parseFieldPath, syntaxErrorAt } from "../jsonpath.js";

const q = encodeURIComponent;

// Every kind /v1/config takes (registry CONFIG_ENTRY_KINDS), L7 kinds first.
export const KINDS = [
  ["service-defaults", "protocol and defaults of one service"],
  ["proxy-defaults", "defaults of every proxy (named global)"],
  ["service-router", "HTTP routes: match a request, pick a destination"],
  ["service-splitter", "weighted splits between services or subsets"],
  ["service-resolver", "subsets, default subset, redirect and failover"],
  ["service-intentions", "who may call a service (L4 and L7 permissions)"],
  ["mesh", "mesh-wide settings (named mesh)"],
  ["ingress-gateway", "listeners of an ingress gateway"],
  ["terminating-gateway", "services a terminating gateway reaches"],
  ["api-gateway", "listeners of an API gateway"],
  ["exported-services", "services exported to peers"],
  ["sameness-group", "groups of partitions or peers"],
  ["jwt-provider", "JWT issuers for intentions"],
];

const TEMPLATES = {
  "service-defaults": { Protocol: "http" },
  "proxy-defaults": { Name: "global", Config: {} },
  "service-router": { Routes: [{ Match: { HTTP: { PathPrefix: "/" } }, Destination: { Service: "" } }] },
  "service-splitter": { Splits: [{ Weight: 90, ServiceSubset: "" }, { Weight: 10, ServiceSubset: "" }] },
  "service-resolver": { DefaultSubset: "", Subsets: {}, ConnectTimeout: "5s" },
  "service-intentions": { Sources: [{ Name: "", Action: "allow" }] },
  mesh: { Name: "mesh" },
};

const entryHref = (kind, name) => `#/config/${q(kind)}/${q(name)}`;

export function template(kind) {
  return JSON.stringify({ Kind: kind, Name: "", ...(TEMPLATES[kind] || {}) }, null, 2);
}

/** #/config: every kind with its entries (read once: one GET per kind). */
export function renderConfigKinds(main) {
  const body = h("div", { "aria-live": "polite" }, h("p", {}, "Loading…"));
  main.append(
    h("h1", {}, "Config entries"),
    h("p", {}, h("a", { href: "#/config/new", class: "button" }, "Create a config entry")),
    body,
  );
  let live = true;
  Promise.all(KINDS.map(([kind]) => api("GET", `/v1/config/${kind}`).then(
    ({ data }) => ({ kind, entries: data || [] }), (err) => ({ kind, error: err }))))
    .then((rows) => {
      if (!live) return;
      clear(body, h("table", { class: "list", id: "config-kinds" },
        h("caption", { class: "sr-only" }, "Config entry kinds and their entries"),
        h("thead", {}, h("tr", {}, ["Kind", "What it configures", "Entries"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows.map((r, i) => h("tr", {},
          h("th", { scope: "row" }, h("a", { href: `#/config/${r.kind}` }, r.kind)),
          h("td", {}, KINDS[i][1]),
          h("td", {}, r.error ? (r.error.status === 403 ? "not readable with this token" : describeError(r.error)) :
            r.entries.length === 0 ? "none" :
              r.entries.map((e, j) => [j ? ", " : "", h("a", { href: entryHref(r.kind, e.Name) }, e.Name)])))))));
    });
  return () => { live = false; };
}

/** #/config/:kind: the entries of one kind, followed with a blocking query. */
export function renderConfigList(main, kind) {
  const body = h("div", { "aria-live": "polite" }, h("p", {}, "Loading…"));
  main.append(
    h("p", {}, h("a", { href: "#/config" }, "← All kinds")),
    h("h1", {}, `Config entries: ${kind}`),
    h("p", {}, h("a", { href: `#/config/new/${q(kind)}`, class: "button" }, `Create a ${kind}`)),
    body,
  );
  return watch(`/v1/config/${q(kind)}`, (list) => {
    list = list || [];
    clear(body, list.length === 0 ? h("p", {}, `No ${kind} entries (or none this token may read).`) :
      h("table", { class: "list", id: "config-entries" },
        h("caption", { class: "sr-only" }, `${kind} entries`),
        h("thead", {}, h("tr", {}, ["Name", "Modify index", "Settings"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, list.map((e) => h("tr", {},
          h("th", { scope: "row" }, h("a", { href: entryHref(kind, e.Name) }, e.Name)),
          h("td", {}, String(e.ModifyIndex)),
          h("td", {}, summary(e)))))));
  }, (err) => clear(body, message("error", describeError(err))));
}

function summary(e) {
  const keys = Object.keys(e).filter((k) => !["Kind", "Name", "CreateIndex", "ModifyIndex"].includes(k));
  return keys.join(", ") || "(defaults only)";
}

/** #/config/new and #/config/new/:kind: create an entry (cas=0). */
export function renderConfigNew(main, kind = "service-defaults") {
  const ed = editor(main, { creating: true, kind });
  ed.text.value = template(kind);
  ed.kindSelect.focus();
}

/** #/config/:kind/:name: read, edit (cas=ModifyIndex), delete; live. */
export function renderConfigEdit(main, kind, name) {
  const ed = editor(main, { creating: false, kind, name });
  const start = () => watch(`/v1/config/${q(kind)}/${q(name)}`, (e) => ed.show(e),
    (err) => ed.say("error", err.status === 404 ? "This entry does not exist (it may have been deleted)." : describeError(err)));
  let stop = start();
  ed.onReload = () => { stop(); stop = start(); };
  return () => stop();
}

/** The editor form shared by create and edit; returns its parts. */
function editor(main, { creating, kind, name }) {
  const text = h("textarea", { name: "entry", id: "config-json", rows: 22, spellcheck: "false", autocomplete: "off",
    "aria-describedby": "config-hint" });
  const out = h("div", { id: "config-message" });
  const meta = h("p", { class: "meta" });
  const kindSelect = creating ? h("select", { name: "kind" }, KINDS.map(([k]) => h("option", { value: k, selected: k === kind }, k))) : null;
  const ed = { text, kindSelect, index: null, dirty: false, onReload: null };
  ed.say = (kindOf, t) => { clearInvalid(ed); out.replaceChildren(message(kindOf, t)); };
  ed.show = (e) => showEntry(ed, e, meta);
  text.addEventListener("input", () => { ed.dirty = true; });
  if (kindSelect) {
    kindSelect.addEventListener("change", () => {
      if (!ed.dirty || confirm("Replace your text with the template of this kind?")) {
        text.value = template(kindSelect.value);
        ed.dirty = false;
      }
    });
  }
  const buttons = [h("button", { type: "submit" }, creating ? "Create" : "Save")];
  if (!creating) {
    buttons.push(
      h("button", { type: "button", onclick: () => { ed.dirty = false; out.replaceChildren(); ed.onReload?.(); } }, "Reload"),
      h("button", { type: "button", class: "danger", onclick: () => remove(ed, kind, name) }, "Delete"));
  }
  buttons.push(h("a", { href: `#/config/${q(kind)}` }, "Cancel"));
  const title = creating ? "Create a config entry" : `${kind} / ${name}`;
  const form = h("form", { class: "card", "aria-labelledby": "config-h", onsubmit: (ev) => { ev.preventDefault(); save(ed, creating, kind, name); } },
    h("h1", { id: "config-h" }, title), meta,
    kindSelect ? field("Kind", kindSelect) : null,
    field("Entry (JSON)", text),
    h("small", { id: "config-hint", class: "meta" },
      "The entry as JSON, as PUT /v1/config takes it. Kind and Name identify it; other fields follow Consul's config entry docs."),
    out,
    h("div", { class: "row" }, buttons));
  ed.out = out;
  main.append(h("p", {}, h("a", { href: creating ? "#/config" : `#/config/${q(kind)}` }, creating ? "← All kinds" : `← All ${kind} entries`)), form);
  return ed;
}

function showEntry(ed, e, meta) {
  if (ed.dirty) {
    ed.out.replaceChildren(message("warn",
      `This entry was changed elsewhere while you edit it (ModifyIndex now ${e.ModifyIndex}); saving will report a conflict.`));
    return;
  }
  ed.index = e.ModifyIndex;
  const body = { ...e };
  delete body.CreateIndex;
  delete body.ModifyIndex;
  ed.text.value = JSON.stringify(body, null, 2);
  meta.textContent = `CreateIndex ${e.CreateIndex} · ModifyIndex ${e.ModifyIndex}`;
}

async function save(ed, creating, kind, name) {
  const text = ed.text.value;
  let entry;
  try {
    entry = JSON.parse(text);
  } catch (err) {
    const at = syntaxErrorAt(text) || { pos: 0 };
    const { line, column } = lineCol(text, at.pos);
    pointAt(ed, `This is not valid JSON at line ${line}, column ${column}: ${err.message}`, { start: at.pos, end: at.pos + 1 });
    return;
  }
  if (!entry || typeof entry !== "object" || Array.isArray(entry)) {
    pointAt(ed, "The entry must be a JSON object with Kind and Name.", null);
    return;
  }
  if (creating && ed.kindSelect && !entry.Kind) entry.Kind = ed.kindSelect.value;
  if (!creating && (String(entry.Kind || "").toLowerCase() !== kind || entry.Name !== name)) {
    const loc = locate(text, ["Name"]);
    pointAt(ed, `Kind and Name identify this entry (${kind} / ${name}) and cannot be changed here; create a new entry instead.`, loc);
    return;
  }
  try {
    const { data } = await api("PUT", `/v1/config?cas=${creating ? 0 : ed.index ?? 0}`, { body: entry });
    if (data === false) {
      ed.say("error", creating
        ? `A ${entry.Kind} named ${entry.Name} already exists: nothing was stored. Open it to edit it.`
        : "Conflict: someone else changed this entry since you opened it, so your edit was not saved. " +
          "Reload to see their version, then apply your change again.");
      return;
    }
    ed.dirty = false;
    if (creating) navigate(entryHref(String(entry.Kind).toLowerCase(), entry.Name));
    else ed.say("ok", "Saved.");
  } catch (err) {
    if (err.status === 400) showFieldError(ed, err.message);
    else ed.say("error", describeError(err));
  }
}

/** A 400: the API's text, and the field it names selected in the editor. */
function showFieldError(ed, apiText) {
  const text = ed.text.value;
  let path = fieldOfError(apiText);
  const key = /config key "([^"]+)"/.exec(apiText);
  if (!path && key) path = key[1]; // an unknown top-level key
  const loc = path ? locate(text, parseFieldPath(path)) : null;
  let where = "";
  if (loc && loc.found > 0) {
    const { line } = lineCol(text, loc.start);
    const shown = text.split("\n")[line - 1].trim();
    where = ` Field ${path}, line ${line}: ${shown}`;
  }
  pointAt(ed, `The API refused this entry, nothing was stored: ${apiText}.${where}`, loc && loc.found > 0 ? loc : null);
}

/** Show `msg` as an alert describing the textarea, and select `loc` in it. */
function pointAt(ed, msg, loc) {
  const alert = message("error", msg);
  alert.id = "config-error";
  ed.out.replaceChildren(alert);
  ed.text.setAttribute("aria-invalid", "true");
  ed.text.setAttribute("aria-describedby", "config-error config-hint");
  if (!loc) return;
  ed.text.focus();
  ed.text.setSelectionRange(loc.start, loc.end);
  const { line } = lineCol(ed.text.value, loc.start);
  const lineHeight = parseFloat(getComputedStyle(ed.text).lineHeight) || 20;
  ed.text.scrollTop = Math.max(0, (line - 4) * lineHeight);
}

function clearInvalid(ed) {
  ed.text.removeAttribute("aria-invalid");
  ed.text.setAttribute("aria-describedby", "config-hint");
}

async function remove(ed, kind, name) {
  if (!confirm(`Delete the ${kind} ${name}?`)) return;
  try {
    const { data } = await api("DELETE", `/v1/config/${q(kind)}/${q(name)}?cas=${ed.index ?? 0}`);
    if (data === false) {
      ed.say("error", "Conflict: the entry changed since you opened it; not deleted. Reload and try again.");
      return;
    }
    navigate(`#/config/${q(kind)}`);
  } catch (err) {
    ed.say("error", describeError(err));
  }
}
