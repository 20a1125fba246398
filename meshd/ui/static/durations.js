// Go durations as the API writes them ("300ms", "1m0s", "72h0m0s").

/** A Go duration ("300ms", "1m30s", "1.5s") in milliseconds; null when unreadable. */
export function parseDurationMs(text) {
  const str = String(text || "").trim();
  const unit = { h: 3600000, m: 60000, s: 1000, ms: 1, us: 0.001, "µs": 0.001, ns: 1e-6 };
  const re = /(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)/gy;
  let total = 0, m, end = 0;
  while ((m = re.exec(str))) {
    total += Number(m[1]) * unit[m[2]];
    end = re.lastIndex;
  }
  return str && end === str.length ? total : null;
}
