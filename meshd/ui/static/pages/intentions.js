import { api, describeError, watch } from "../api.js";
import { clear, field, h, message } from "../dom.js";
import { navigate } from "../app.js";

const q = encodeURIComponent;

/**
 * Which intention decides src -> dst: /v1/connect/intentions/check gives the
 * decision (default policy included), /match the intentions by precedence;
 * the first whose source matches is the one that decided.
 */
export async function explain(src, dst) {
  const [{ data: check }, { data: matched }] = await Promise.all([
    api("GET", `/v1/connect/intentions/check?source=${q(src)}&destination=${q(dst)}`),
    api("GET", `/v1/connect/intentions/match?by=destination&name=${q(dst)}`),
  ]);
  const list = (matched && matched[dst]) || [];
  const intention = list.find((i) => i.SourceName === src || i.SourceName === "*") || null;
  return { allowed: Boolean(check.Allowed), intention };
}

export function decisionText(d) {
  const verdict = d.allowed ? "allowed" : "denied";
  if (!d.intention) return `${verdict} by the default policy (no intention matches)`;
  const i = d.intention;
  return `${verdict} by intention ${i.SourceName} → ${i.DestinationName} (${i.Action})` +
    (i.Description ? `: ${i.Description}` : "");
}

export function renderIntentions(main) {
  const body = h("div", { "aria-live": "polite" });
  const src = h("input", { name: "source", required: true, autocomplete: "off" });
  const dst = h("input", { name: "destination", required: true, autocomplete: "off" });
  const why = h("div", { id: "explain-result", "aria-live": "polite" });
  const form = h("form", { class: "card", "aria-labelledby": "why-h" },
    h("h2", { id: "why-h" }, "Why is a source allowed or denied?"),
    h("div", { class: "row" }, field("Source service", src), field("Destination service", dst),
      h("button", { type: "submit" }, "Explain")),
    why);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const d = await explain(src.value.trim(), dst.value.trim());
      why.replaceChildren(message(d.allowed ? "ok" : "warn", `${src.value.trim()} → ${dst.value.trim()}: ${decisionText(d)}`));
    } catch (err) {
      why.replaceChildren(message("error", describeError(err)));
    }
  });
  main.append(
    h("h1", {}, "Intentions"),
    h("p", {}, h("a", { href: "#/intentions/new", class: "button" }, "Create intention")),
    body,
    form,
  );
  const draw = (list, error) => {
    if (error) {
      clear(body, message("error", error));
      return;
    }
    clear(body, list.length === 0 ? h("p", {}, "No intentions (or none this token may read).") :
      h("table", { class: "list", id: "intentions-table" },
        h("caption", { class: "sr-only" }, "Intentions, highest precedence first"),
        h("thead", {}, h("tr", {}, ["Source", "Destination", "Action", "Precedence", "Description", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, list.map((i) => h("tr", {},
          h("td", {}, i.SourceName), h("td", {}, i.DestinationName),
          h("td", {}, h("span", { class: `badge ${i.Action === "allow" ? "passing" : "critical"}` }, i.Action)),
          h("td", {}, String(i.Precedence ?? "")), h("td", {}, i.Description || ""),
          h("td", {},
            h("a", { href: `#/intentions/edit/${q(i.SourceName)}/${q(i.DestinationName)}`, "aria-label": `Edit ${i.SourceName} to ${i.DestinationName}` }, "Edit"), " ",
            h("button", { type: "button", class: "danger", "aria-label": `Delete ${i.SourceName} to ${i.DestinationName}`, onclick: () => remove(i, body) }, "Delete")))))));
  };
  return watch("/v1/connect/intentions", (d) => draw(d || []), (err) => draw([], describeError(err)));
}

async function remove(i, body) {
  if (!confirm(`Delete the intention ${i.SourceName} → ${i.DestinationName}?`)) return;
  try {
    await api("DELETE", `/v1/connect/intentions/exact?source=${q(i.SourceName)}&destination=${q(i.DestinationName)}`);
  } catch (err) {
    body.prepend(message("error", describeError(err)));
  }
}

export function renderIntentionEdit(main, srcName, dstName) {
  const editing = srcName !== undefined;
  const src = h("input", { name: "source", required: true, value: srcName || "", readonly: editing, autocomplete: "off" });
  const dst = h("input", { name: "destination", required: true, value: dstName || "", readonly: editing, autocomplete: "off" });
  const action = h("select", { name: "action" }, h("option", { value: "allow" }, "allow"), h("option", { value: "deny" }, "deny"));
  const desc = h("input", { name: "description", autocomplete: "off" });
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "card narrow", "aria-labelledby": "ixn-h" },
    h("h1", { id: "ixn-h" }, editing ? "Edit intention" : "Create intention"),
    field("Source service", src, "a service name, or * for any"),
    field("Destination service", dst),
    field("Action", action),
    field("Description", desc),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Save"), h("a", { href: "#/intentions" }, "Cancel")),
    out);
  if (editing) {
    api("GET", `/v1/connect/intentions/exact?source=${q(srcName)}&destination=${q(dstName)}`)
      .then(({ data }) => { action.value = data.Action; desc.value = data.Description || ""; })
      .catch((err) => out.replaceChildren(message("error", describeError(err))));
  }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const s = src.value.trim();
    const d = dst.value.trim();
    try {
      await api("PUT", `/v1/connect/intentions/exact?source=${q(s)}&destination=${q(d)}`,
        { body: { SourceName: s, DestinationName: d, Action: action.value, Description: desc.value } });
      navigate("#/intentions");
    } catch (err) {
      out.replaceChildren(message("error", describeError(err)));
    }
  });
  main.append(form);
  (editing ? action : src).focus();
}
