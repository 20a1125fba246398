"""Closed-loop HTTP load with ``wrk`` and a generated Lua script.

The script cycles through a fixed list of requests (one per key), spreads
wrk's threads over several targets when asked (``thread.addr`` in
``setup``), and reports from ``done()`` as one JSON line, so no text of
wrk's own report is parsed.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .install import ensure_commands


@dataclass(frozen=True)
class Requests:
    """What to send: ``method`` to ``paths[i]`` with ``bodies[i]`` (cycled),
    plus ``headers`` (e.g. an ``X-Consul-Token``) on every request."""

    method: str
    paths: Sequence[str]
    bodies: Sequence[bytes] | None = None
    content_type: str | None = None
    headers: Sequence[tuple[str, str]] = ()


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # connect/read/write/timeout errors and non-2xx answers

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _lua_string(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return (
        '"'
        + "".join(f"\\{b:03d}" if b < 32 or b > 126 or b in (34, 92) else chr(b) for b in raw)
        + '"'
    )


def lua_script(reqs: Requests, targets: Sequence[tuple[str, int]]) -> str:
    """The wrk script for ``reqs``; thread i goes to ``targets[i % len]``."""
    paths = ",\n".join(_lua_string(p) for p in reqs.paths)
    bodies = "nil"
    if reqs.bodies is not None:
        bodies = "{" + ",\n".join(_lua_string(b) for b in reqs.bodies) + "}"
    pairs = list(reqs.headers)
    if reqs.content_type:
        pairs.append(("Content-Type", reqs.content_type))
    headers = "{" + ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in pairs) + "}"
    target_list = ", ".join(f"{{{_lua_string(h)}, {_lua_string(str(p))}}}" for h, p in targets)
    return f"""
local targets = {{{target_list}}}
local paths = {{{paths}}}
local bodies = {bodies}
local headers = {headers}
local next_thread = 0

function setup(thread)
  local t = targets[next_thread % #targets + 1]
  thread.addr = wrk.lookup(t[1], t[2])[1]
  thread:set("id", next_thread)
  next_thread = next_thread + 1
end

function init(args)
  reqs = {{}}
  for i = 1, #paths do
    local body = nil
    if bodies then body = bodies[(i - 1) % #bodies + 1] end
    reqs[i] = wrk.format({_lua_string(reqs.method)}, paths[i], headers, body)
  end
  n = id * 7919
end

function request()
  n = n + 1
  return reqs[n % #reqs + 1]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests": %.0f, "duration_us": %.0f, "p50_us": %.0f, "p99_us": %.0f, '
    .. '"errors": %.0f}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def run_wrk(
    reqs: Requests,
    targets: Sequence[tuple[str, int]],
    *,
    connections: int,
    seconds: float,
    threads: int | None = None,
    timeout: float = 10.0,
) -> WrkResult:
    """Run wrk with ``connections`` keep-alive connections for ``seconds``.

    One wrk thread per target (at least), connections split between them.
    Raises ``RuntimeError`` if wrk fails or prints no result.
    """
    ensure_commands({"wrk": "wrk"})
    threads = threads or max(len(targets), min(connections, 2))
    threads = min(threads, connections)
    host, port = targets[0]
    with tempfile.TemporaryDirectory(prefix="meshd-wrk-") as tmp:
        script = Path(tmp) / "load.lua"
        script.write_text(lua_script(reqs, targets))
        argv = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={timeout:g}s",
            "-s",
            str(script),
            f"http://{host}:{port}/",
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    for line in proc.stdout.splitlines():
        if line.startswith("WRKJSON "):
            d = json.loads(line[len("WRKJSON ") :])
            return WrkResult(
                requests=d["requests"],
                seconds=d["duration_us"] / 1e6,
                p50_ms=d["p50_us"] / 1000,
                p99_ms=d["p99_us"] / 1000,
                errors=d["errors"],
            )
    raise RuntimeError(f"wrk printed no result (rc={proc.returncode}): {proc.stderr[-2000:]}")
