import { api, describeError, watch } from "../api.js";
import { clear, field, h, message } from "../dom.js";
import { navigate } from "../app.js";

const enc = (key) => key.split("/").map(encodeURIComponent).join("/");

function decodeValue(b64) {
  if (!b64) return "";
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

export function renderKV(main, path) {
  return path === "" || path.endsWith("/") ? renderFolder(main, path) : renderKey(main, path);
}

function crumbs(path) {
  const parts = path.split("/").filter(Boolean);
  const links = [h("a", { href: "#/kv/" }, "root")];
  let acc = "";
  for (const p of parts) {
    acc += p + "/";
    links.push(" / ", h("a", { href: `#/kv/${enc(acc)}` }, p));
  }
  return h("nav", { "aria-label": "Key path", class: "crumbs" }, links);
}

function renderFolder(main, prefix) {
  const body = h("div", { "aria-live": "polite" });
  const name = h("input", { name: "key", required: true, autocomplete: "off" });
  const value = h("textarea", { name: "value", rows: 4 });
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "card", "aria-labelledby": "kv-new-h" },
    h("h2", { id: "kv-new-h" }, "Create a key"),
    field(`Key (under ${prefix || "the root"}; end with / for a folder)`, name),
    field("Value", value),
    h("button", { type: "submit" }, "Create"), out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const key = prefix + name.value.trim();
    try {
      // cas=0: create only, never overwrite a key someone else just made.
      const { data } = await api("PUT", `/v1/kv/${enc(key)}?cas=0`, { body: key.endsWith("/") ? "" : value.value });
      if (data === false) {
        out.replaceChildren(message("error", `The key ${key} already exists.`));
        return;
      }
      name.value = "";
      value.value = "";
      out.replaceChildren(message("ok", `Created ${key}.`));
    } catch (err) {
      out.replaceChildren(message("error", describeError(err)));
    }
  });
  main.append(h("h1", {}, "Key/Value"), crumbs(prefix), body, form);
  return watch(`/v1/kv/${enc(prefix)}?keys&separator=/`, (keys) => {
    const list = (keys || []).filter((k) => k !== prefix);
    clear(body, list.length === 0 ? h("p", {}, "No keys here.") :
      h("ul", { class: "keys", id: "kv-keys" }, list.map((k) => h("li", {},
        h("a", { href: `#/kv/${enc(k)}` }, k.slice(prefix.length) || k)))));
  }, (err) => clear(body, err.status === 404 ? h("p", {}, "No keys here.") : message("error", describeError(err))));
}

function renderKey(main, key) {
  const value = h("textarea", { name: "value", rows: 10, id: "kv-value" });
  const out = h("div", { "aria-live": "polite", id: "kv-message" });
  const meta = h("p", { class: "meta" });
  let index = null;
  let dirty = false;
  value.addEventListener("input", () => { dirty = true; });
  const parent = key.includes("/") ? key.slice(0, key.lastIndexOf("/") + 1) : "";
  const save = async (ev) => {
    ev.preventDefault();
    try {
      const { data } = await api("PUT", `/v1/kv/${enc(key)}?cas=${index ?? 0}`, { body: value.value });
      if (data === false) {
        out.replaceChildren(message("error",
          "Conflict: someone else changed this key since you opened it, so your edit was not saved. " +
          "Reload to see their value, then apply your change again."));
        return;
      }
      dirty = false;
      out.replaceChildren(message("ok", "Saved."));
    } catch (err) {
      out.replaceChildren(message("error", describeError(err)));
    }
  };
  const del = async () => {
    if (!confirm(`Delete ${key}?`)) return;
    try {
      const { data } = await api("DELETE", `/v1/kv/${enc(key)}?cas=${index ?? 0}`);
      if (data === false) {
        out.replaceChildren(message("error", "Conflict: the key changed since you opened it; not deleted."));
        return;
      }
      navigate(`#/kv/${enc(parent)}`);
    } catch (err) {
      out.replaceChildren(message("error", describeError(err)));
    }
  };
  const reload = h("button", { type: "button", onclick: () => { dirty = false; stop(); stop = start(); } }, "Reload");
  const form = h("form", { class: "card", onsubmit: save, "aria-labelledby": "kv-h" },
    h("h1", { id: "kv-h" }, key), meta, field("Value", value),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Save"), reload,
      h("button", { type: "button", class: "danger", onclick: del }, "Delete")),
    out);
  main.append(crumbs(parent), form);
  const start = () => watch(`/v1/kv/${enc(key)}`, (d) => {
    const e = d[0];
    if (dirty) {
      out.replaceChildren(message("warn", "This key was changed elsewhere while you edit it; saving will report a conflict."));
      return;
    }
    index = e.ModifyIndex;
    value.value = decodeValue(e.Value);
    meta.textContent = `ModifyIndex ${e.ModifyIndex} · Flags ${e.Flags}` + (e.Session ? ` · locked by session ${e.Session}` : "");
  }, (err) => out.replaceChildren(message("error", err.status === 404 ? "This key does not exist." : describeError(err))));
  let stop = start();
  return () => stop();
}
