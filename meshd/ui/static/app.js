// The single-page shell: hash routes (#/services, #/kv/a/b, ...) so the
// agent serves one index.html; each page returns a cleanup that stops its
// blocking queries when the user leaves it.
import { api, getToken, onStatus, setToken, status } from "./api.js";
import { clear, h } from "./dom.js";
import { renderCanaries, renderCanary } from "./pages/canaries.js";
import { renderConfigEdit, renderConfigKinds, renderConfigList, renderConfigNew } from "./pages/config.js";
import { renderGraph } from "./pages/graph.js";
import { renderIntentions, renderIntentionEdit } from "./pages/intentions.js";
import { renderKV } from "./pages/kv.js";
import { renderLogin } from "./pages/login.js";
import { renderNodes } from "./pages/nodes.js";
import { renderService } from "./pages/service.js";
import { renderServices } from "./pages/services.js";
import { renderTrace, renderTraces } from "./pages/traces.js";

// [pattern, page, title]; a new page adds a row.
const ROUTES = [
  [/^\/login$/, renderLogin, "Log in"],
  [/^\/services$/, renderServices, "Services"],
  [/^\/services\/(.+)$/, renderService, "Service"],
  [/^\/nodes$/, renderNodes, "Nodes"],
  [/^\/kv\/(.*)$/, renderKV, "Key/Value"],
  [/^\/intentions$/, renderIntentions, "Intentions"],
  [/^\/intentions\/new$/, renderIntentionEdit, "New intention"],
  [/^\/intentions\/edit\/([^/]+)\/([^/]+)$/, renderIntentionEdit, "Edit intention"],
  [/^\/config$/, renderConfigKinds, "Config entries"],
  [/^\/config\/new$/, renderConfigNew, "New config entry"],
  [/^\/config\/new\/([^/]+)$/, renderConfigNew, "New config entry"],
  [/^\/config\/([^/]+)$/, renderConfigList, "Config entries"],
  [/^\/config\/([^/]+)\/(.+)$/, renderConfigEdit, "Config entry"],
  [/^\/traces(?:\?.*)?$/, renderTraces, "Traces"], // ?service=&status=&min_duration=&limit=
  [/^\/traces\/([0-9a-fA-F]{32})$/, renderTrace, "Trace"],
  [/^\/graph(?:\?.*)?$/, renderGraph, "Traffic graph"], // ?window=
  [/^\/canaries$/, renderCanaries, "Canaries"],
  [/^\/canaries\/([^/?]+)$/, renderCanary, "Canary"],
];

let cleanup = null;

function route(ev) {
  if (cleanup) cleanup();
  cleanup = null;
  const hash = location.hash.replace(/^#/, "") || "/services";
  const main = document.getElementById("main");
  for (const [pattern, page, title] of ROUTES) {
    const m = hash.match(pattern);
    if (!m) continue;
    document.title = `${title} · meshd`;
    markNav(hash);
    clear(main);
    // Move focus to the new content, so keyboard and screen-reader users
    // start there (a page may then focus its first field).
    if (ev) main.focus({ preventScroll: true }); // not on the first load
    const params = m.slice(1).map((p) => decodeURIComponent(p));
    cleanup = page(main, ...params) || null;
    return;
  }
  clear(main, h("h1", {}, "Not found"), h("p", {}, "No page at this address."));
}

function markNav(hash) {
  for (const a of document.querySelectorAll("#nav a")) {
    const target = a.getAttribute("href").slice(1);
    if (hash.startsWith(target.replace(/\/$/, ""))) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

export function navigate(hash) {
  if (location.hash === hash) route(true);
  else location.hash = hash;
}

function renderBanner() {
  const el = document.getElementById("banner");
  const parts = [];
  if (status.agentDown) parts.push("The agent is not answering: showing the last data received; retrying.");
  else if (status.noLeader) parts.push("The cluster has no leader: data may be stale and writes will fail until one is elected.");
  clear(el, parts.map((p) => h("p", { class: "banner" }, p)));
}

async function renderWho() {
  const who = document.getElementById("who");
  const logout = document.getElementById("logout");
  const link = document.getElementById("login-link");
  const token = getToken();
  logout.hidden = !token;
  link.hidden = Boolean(token);
  if (!token) {
    who.textContent = "anonymous token";
    return;
  }
  try {
    const { data } = await api("GET", "/v1/acl/token/self");
    who.textContent = `token: ${data.Description || data.AccessorID.slice(0, 8)}`;
  } catch {
    who.textContent = "logged in";
  }
}

export function loggedIn() {
  renderWho();
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  onStatus(renderBanner);
  document.getElementById("logout").addEventListener("click", () => {
    setToken("");
    renderWho();
    navigate("#/login");
  });
  renderWho();
  route();
});
