// Where a field the API names (`Routes[0].Destination.Mirror.Percent`,
// `Failover["v1"].Targets[0]`) is in the JSON text a user typed, so the
// config-entry editor can select it: a small JSON scanner that keeps the
// offsets JSON.parse throws away.

/** `Routes[0].Destination["a.b"]` -> ["Routes", 0, "Destination", "a.b"]. */
export function parseFieldPath(path) {
  const out = [];
  const re = /([^.[\]"]+)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]|\./gy;
  let m;
  while (re.lastIndex < path.length && (m = re.exec(path))) {
    if (m[1] !== undefined) out.push(m[1]);
    else if (m[2] !== undefined) out.push(Number(m[2]));
    else if (m[3] !== undefined) out.push(m[3].replace(/\\(.)/g, "$1"));
  }
  return out;
}

/** The field the API named in a 400 text: Consul's `(field "X")` suffix. */
export function fieldOfError(text) {
  // Greedy: a map key inside the path is quoted too (Failover["v1"].Targets).
  const m = /\(field "(.*)"\)\s*$/s.exec(text || "");
  return m ? m[1] : "";
}

class ScanError extends Error {
  constructor(pos, what) {
    super(what);
    this.pos = pos;
  }
}

/** A tree of {type, start, end, members|items} for `text`; throws ScanError. */
export function scan(text) {
  let i = 0;
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i++;
  };
  const expect = (c) => {
    ws();
    if (text[i] !== c) throw new ScanError(i, `expected '${c}'`);
    i++;
  };
  const string = () => {
    if (text[i] !== '"') throw new ScanError(i, "expected a string");
    const start = i++;
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    if (i >= text.length) throw new ScanError(start, "unterminated string");
    i++;
    return JSON.parse(text.slice(start, i));
  };
  const literal = /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null/y;
  const value = () => {
    ws();
    const start = i;
    if (text[i] === "{") return container("}", start, true);
    if (text[i] === "[") return container("]", start, false);
    if (text[i] === '"') {
      string();
      return { type: "scalar", start, end: i };
    }
    literal.lastIndex = i;
    const m = literal.exec(text);
    if (!m) throw new ScanError(i, "expected a value");
    i += m[0].length;
    return { type: "scalar", start, end: i };
  };
  const container = (close, start, isObject) => {
    i++;
    const node = isObject ? { type: "object", start, members: [] } : { type: "array", start, items: [] };
    ws();
    if (text[i] === close) {
      i++;
      return { ...node, end: i };
    }
    for (;;) {
      ws();
      if (isObject) {
        const keyStart = i;
        const key = string();
        const keyEnd = i;
        expect(":");
        node.members.push({ key, start: keyStart, end: keyEnd, value: value() });
      } else {
        node.items.push(value());
      }
      ws();
      if (text[i] === ",") {
        i++;
        continue;
      }
      expect(close);
      return { ...node, end: i };
    }
  };
  const root = value();
  ws();
  if (i < text.length) throw new ScanError(i, "unexpected text after the value");
  return root;
}

// The API accepts CamelCase and snake_case keys alike (as Consul's decoder does).
const norm = (k) => String(k).toLowerCase().replace(/_/g, "");

/**
 * Where `path` (segments from parseFieldPath) is in `text`: {start, end,
 * found} where found counts the segments matched (the deepest existing
 * prefix is returned when the rest is missing). A key is located by its
 * quoted name, an array element by its value. null when text is not JSON.
 */
export function locate(text, path) {
  let node;
  try {
    node = scan(text);
  } catch {
    return null;
  }
  let at = { start: node.start, end: node.end };
  let found = 0;
  for (const seg of path) {
    let next = null;
    if (node.type === "object") {
      const member = node.members.find((m) => norm(m.key) === norm(seg));
      if (member) next = { node: member.value, at: { start: member.start, end: member.end } };
    } else if (node.type === "array" && typeof seg === "number" && seg < node.items.length) {
      const item = node.items[seg];
      next = { node: item, at: { start: item.start, end: item.end } };
    }
    if (!next) break;
    node = next.node;
    at = next.at;
    found++;
  }
  return { ...at, found };
}

/** 1-based line and column of offset `pos` in `text`. */
export function lineCol(text, pos) {
  const before = text.slice(0, pos).split("\n");
  return { line: before.length, column: before[before.length - 1].length + 1 };
}

/** The offset at which `text` stops being JSON (null when it parses). */
export function syntaxErrorAt(text) {
  try {
    scan(text);
    return null;
  } catch (err) {
    return err instanceof ScanError ? { pos: err.pos, what: err.message } : { pos: 0, what: String(err) };
  }
}
