"""Where a meshd write's time goes, from the servers' own Prometheus
histograms (``/v1/agent/metrics?format=prometheus``) scraped before and
after a benchmark row: the mean per stage over the row.

A write sent to a follower: follower HTTP (parse, ACL, validate) -> the
follower's ``WriteBatcher`` -> ``Registry.ApplyBatch`` RPC to the leader ->
the leader's Raft (propose, replicate, fsync, commit) -> FSM apply -> the
answer back. The leader's ``Registry.ApplyBatch`` time covers its Raft and
FSM stages; the follower's HTTP time minus it is the forwarding overhead
(waiting for a batch slot, encoding, the RPC round trip, decoding).
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

_LINE = re.compile(r"^(\w+?)_(sum|count)(?:\{(.*)\})? ([0-9.eE+-]+)$")
_WANT = (
    "meshd_http_request_duration_seconds",
    "meshd_rpc_request_duration_seconds",
    "meshd_raft_commit_time_seconds",
    "meshd_raft_fsm_apply_seconds",
)

Sample = dict[tuple[str, str], tuple[float, float]]  # (metric, labels) -> (sum, count)


def scrape(http_base: str, timeout: float = 10) -> Sample:
    """The sums and counts of the histograms this module reads."""
    url = http_base + "/v1/agent/metrics?format=prometheus"
    with urllib.request.urlopen(url, timeout=timeout) as r:
        text = r.read().decode()
    out: dict[tuple[str, str], list[float]] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None or m.group(1) not in _WANT:
            continue
        slot = out.setdefault((m.group(1), m.group(3) or ""), [0.0, 0.0])
        slot[0 if m.group(2) == "sum" else 1] = float(m.group(4))
    return {k: (v[0], v[1]) for k, v in out.items()}


@dataclass
class Stage:
    name: str
    count: float
    mean_ms: float


def _delta(before: Sample, after: Sample, metric: str, labels: str = "") -> tuple[float, float]:
    s1, c1 = after.get((metric, labels), (0.0, 0.0))
    s0, c0 = before.get((metric, labels), (0.0, 0.0))
    return s1 - s0, c1 - c0


def _put_http(before: Sample, after: Sample) -> tuple[float, float]:
    total_s = total_c = 0.0
    for metric, labels in after:
        if metric == _WANT[0] and 'method="PUT"' in labels and "kv" in labels:
            s, c = _delta(before, after, metric, labels)
            total_s, total_c = total_s + s, total_c + c
    return total_s, total_c


def stages(before: Mapping[str, Sample], after: Mapping[str, Sample], leader: str) -> list[Stage]:
    """Per-stage means over the row, from each server's ``before`` and
    ``after`` scrape (by server name)."""
    out: list[Stage] = []
    fs = fc = 0.0
    for name in after:
        s, c = _put_http(before[name], after[name])
        if name == leader:
            out.append(Stage("leader: HTTP PUT sent to it directly", c, s / c * 1000 if c else 0))
        else:
            fs, fc = fs + s, fc + c
    out.append(Stage("followers: HTTP PUT, forwarded (whole)", fc, fs / fc * 1000 if fc else 0))
    b, a = before[leader], after[leader]
    rs, rc = _delta(b, a, _WANT[1], 'method="Registry.ApplyBatch"')
    out.append(Stage("leader: Registry.ApplyBatch (one batch)", rc, rs / rc * 1000 if rc else 0))
    if rc:
        out.append(Stage("  forwarded writes per batch (mean)", fc / rc, 0.0))
    cs, cc = _delta(b, a, _WANT[2])
    out.append(Stage("leader: Raft propose -> commit (per entry)", cc, cs / cc * 1000 if cc else 0))
    ps, pc = _delta(b, a, _WANT[3])
    out.append(Stage("leader: FSM apply (per entry)", pc, ps / pc * 1000 if pc else 0))
    if fc and rc:
        overhead = fs / fc - rs / rc
        out.append(Stage("followers: forwarding overhead (whole - batch)", fc, overhead * 1000))
    return out


def print_stages(label: str, rows: list[Stage]) -> None:
    print(f"per-stage timing, meshd, {label} (means over the row)")
    for st in rows:
        mean = f"{st.mean_ms:8.2f} ms" if st.mean_ms else " " * 11
        print(f"  {st.name:<52} {mean}  n={st.count:,.0f}")
