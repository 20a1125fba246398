// The API client: every read and write goes through the agent's /v1 API with
// the user's token in the X-Consul-Token header (never in a URL), so the UI
// sees exactly what the API lets that token see.
const TOKEN_KEY = "meshd-ui-token";

export class APIError extends Error {
  constructor(status, text, path) {
    super(text || `HTTP ${status}`);
    this.status = status;
    this.path = path;
  }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

const listeners = new Set();
// Agent reachability and leader state, shown as a banner by app.js.
export const status = { agentDown: false, noLeader: false, forbidden: "" };

export function onStatus(fn) {
  listeners.add(fn);
}

function setStatus(patch) {
  let changed = false;
  for (const [k, v] of Object.entries(patch)) {
    if (status[k] !== v) {
      status[k] = v;
      changed = true;
    }
  }
  if (changed) for (const fn of listeners) fn(status);
}

/** One API call; resolves to {data, index, headers}; rejects with APIError. */
export async function api(method, path, { body, signal, raw = false } = {}) {
  const headers = {};
  const token = getToken();
  if (token) headers["X-Consul-Token"] = token;
  let payload;
  if (body !== undefined) {
    payload = typeof body === "string" ? body : JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: payload, signal, cache: "no-store" });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    setStatus({ agentDown: true });
    throw new APIError(0, "The agent cannot be reached", path);
  }
  setStatus({ agentDown: false });
  const text = await resp.text();
  if (!resp.ok) {
    if (resp.status === 500 && /no (cluster )?leader/i.test(text)) setStatus({ noLeader: true });
    throw new APIError(resp.status, text.trim(), path);
  }
  if (resp.headers.get("X-Consul-KnownLeader") === "false") setStatus({ noLeader: true });
  else setStatus({ noLeader: false });
  let data = text;
  if (!raw && text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  return { data, index: resp.headers.get("X-Consul-Index"), headers: resp.headers };
}

/**
 * Follow `path` with blocking queries (?index=N&wait=…): `onData(data)` runs
 * on the first answer and on each change. Errors back off and retry (and
 * `onError` sees them). Returns a function that stops the watch.
 */
export function watch(path, onData, onError = () => {}) {
  const ctrl = new AbortController();
  let index = "0";
  let delay = 500;
  const sep = path.includes("?") ? "&" : "?";
  (async () => {
    while (!ctrl.signal.aborted) {
      const url = index === "0" ? path : `${path}${sep}index=${index}&wait=5m`;
      try {
        const { data, index: next } = await api("GET", url, { signal: ctrl.signal });
        delay = 500;
        if (next && next === index) continue; // the wait timed out unchanged
        // An index going backwards (a snapshot restore) restarts the watch.
        index = next && Number(next) >= Number(index) ? next : "0";
        if (!next) index = "0";
        onData(data);
        if (!next) await sleep(5000, ctrl.signal); // not a blocking endpoint
      } catch (err) {
        if (ctrl.signal.aborted) return;
        onError(err);
        if (err.status === 403 || err.status === 404) index = "0";
        await sleep(delay, ctrl.signal);
        delay = Math.min(delay * 2, 10000);
      }
    }
  })();
  return () => ctrl.abort();
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });
}

export function describeError(err) {
  if (err.status === 403) {
    return `Permission denied: your token may not do this (${err.message}). Log in with a token that has the needed policy.`;
  }
  if (err.status === 0) return "The agent cannot be reached.";
  return `Error ${err.status}: ${err.message}`;
}

export function setForbidden(msg) {
  setStatus({ forbidden: msg });
}
