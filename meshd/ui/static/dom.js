// A tiny element builder: h("tag", {attrs}, ...children). Text is always set
// as text (never innerHTML), so names and check output cannot inject markup.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A labelled form field: a <label for> bound to its input. */
let fieldSeq = 0;
export function field(label, input, hint) {
  const id = input.id || `f${++fieldSeq}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("small", {}, hint) : null);
}

export function badge(state) {
  const label = { passing: "passing", warning: "warning", critical: "critical" }[state] || state;
  return h("span", { class: `badge ${state}` }, label);
}

export function message(kind, text) {
  return h("p", { class: `msg ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

const SVG_NS = "http://www.w3.org/2000/svg";
/** The SVG twin of h(): attributes as given, text as text nodes. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

/**
 * Run `draw()` (which rebuilds `el`'s content) and put the keyboard focus
 * back on the matching link or control, so views re-drawn on a timer do not
 * throw a keyboard user back to the top of the page.
 */
export function redrawKeepingFocus(el, draw) {
  const a = document.activeElement;
  let sel = null;
  let nth = 0;
  if (a && a !== el && el.contains(a)) {
    const href = a.getAttribute("href");
    if (href) sel = `[href="${CSS.escape(href)}"]`;
    else if (a.id) sel = `#${CSS.escape(a.id)}`;
    if (sel) nth = [...el.querySelectorAll(sel)].indexOf(a);
  }
  draw();
  if (!sel) return;
  const again = el.querySelectorAll(sel)[Math.max(nth, 0)] || el.querySelector(sel);
  if (again) again.focus({ preventScroll: true });
}
