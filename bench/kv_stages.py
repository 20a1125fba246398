"""Where one KV PUT and one linearizable read spend their time, at 1 connection.

Starts a 3-server meshd cluster of real processes (as kv_bench does) with
``MESHD_RAFT_STAGES`` set, so each server's Raft driver logs the median time
from the start of a write (``RaftNode.apply`` called by the HTTP handler), a
read (``read_barrier``) or a follower's append (its AppendEntries received)
to every stage it passes (medians of 50; raft/stages.py). One client on one
keep-alive connection then sends ``PUT /v1/kv/<key>`` and ``GET /v1/kv/<key>?consistent``
to the leader one at a time and times each answer (and the CPU each server
used per operation). Each request carries the client's CLOCK_MONOTONIC send
time (``X-Meshd-Stages``; comparable across processes on one host), so the
leader also times the whole request in one sample (``http_put``,
``http_get``): bytes read by the connection's reader, the request handed to
the answering task, routed, the KV command built, ``RaftNode.apply`` called,
the driver's stages, the handler resumed, the answer built and written; the
client's own receive time closes the table. The followers' stages for the
same write (its log index) or read round are joined in, per sample, from
the servers' ``raft_stages_raw`` lines (``s1:decoded``: follower server-1
decoded the AppendEntries, in us from the client's send). A raw 220-byte append + fdatasync
in the same directory shows what the disk alone costs. Prints tables; never
asserts.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.loadgen.meshd_cluster import running_meshd
from bench.loadgen.procs import cpu_ticks
from bench.loadgen.pyspy import py_spy

VALUE = b"v" * 100
_LINE = re.compile(r"event=raft_stages path=(\w+) n=(\d+) (.*)")
_RAW = re.compile(r"event=raft_stages_raw path=(\w+) samples=(\S+)")

STAGE_TEXT = {
    "leader_put": {
        "proposed": "driver loop picked it up, entry placed in the log (propose)",
        "ready": "core.ready() returned the Ready holding it",
        "sent1": "first message of that Ready written to the transport (TLS send)",
        "sent2": "second message written",
        "sent": "AppendEntries handed to the transport (before the own write, §10.2.1)",
        "own_save_start": "leader's own log append starts",
        "own_save_done": "leader's own log append + fsync done",
        "ack_read": "first follower's acknowledgement: its bytes read by the transport",
        "first_ack": "first follower's acknowledgement decoded, handed to the driver",
        "ack_stepped": "that acknowledgement stepped by the leader's core",
        "committed": "commit: the driver applies it",
        "applied": "FSM applied",
        "resumed": "the HTTP handler's task resumes with the result",
    },
    "follower_append": {
        "read": "AppendEntries bytes read by the follower's transport",
        "decoded": "decoded, handed to the follower's driver",
        "stepped": "AppendEntries stepped by the follower's core",
        "ready": "core.ready() returned the Ready holding it",
        "own_save_start": "its log append starts",
        "own_save_done": "its log append + fsync done",
        "acked": "acknowledgement handed to the transport",
    },
    "leader_read": {
        "round_started": "ReadIndex round started (heartbeats queued)",
        "hb_sent1": "first heartbeat of the round written to the transport (TLS send)",
        "hb_sent2": "second heartbeat written",
        "hb_ack_read": "first follower's heartbeat answer: its bytes read",
        "first_heartbeat_ack": "first follower's heartbeat answer decoded",
        "hb_ack_stepped": "that answer stepped by the leader's core",
        "quorum": "quorum confirmed: read index known",
        "resumed": "the HTTP handler's task resumes (then reads the state store)",
    },
}
_HTTP_TEXT = {
    "read": "request bytes read by the connection's reader task (client send -> here)",
    "dequeued": "the answering task has the parsed request (a task switch)",
    "routed": "routed, ACL wrapper passed: the route's handler starts",
    "command": "KV handler: query parsed, command built and validated",
    "apply": "RaftNode.apply called (server.write: stamp, encode, leader check)",
    "barrier": "RaftNode.read_barrier called",
    "answered": "the handler's response built (App.handle returned)",
    "written": "response head + body written to the socket",
    "received": "client has read the whole answer (its p50 over the run)",
}
STAGE_TEXT["follower_heartbeat"] = {
    "read": "heartbeat (ReadIndex round) bytes read by the follower's transport",
    "decoded": "decoded, handed to the follower's driver",
    "stepped": "stepped by the follower's core",
    "acked": "its answer handed to the transport",
}
STAGE_TEXT["http_put"] = {**_HTTP_TEXT, **STAGE_TEXT["leader_put"]}
STAGE_TEXT["http_get"] = {**_HTTP_TEXT, **STAGE_TEXT["leader_read"]}
STAGE_TEXT["http_put"]["resumed"] = "the HTTP handler's task resumes with the result"


def client_latencies(host: str, port: int, method: str, seconds: float) -> list[float]:
    """Seconds per request, one at a time on one keep-alive connection."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    out: list[float] = []
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        path = f"/v1/kv/stages/{i % 100:04d}" + ("?consistent" if method == "GET" else "")
        t = time.perf_counter_ns()  # CLOCK_MONOTONIC, as the server's stamps
        headers = {"X-Meshd-Stages": str(t)}
        conn.request(method, path, body=VALUE if method == "PUT" else None, headers=headers)
        resp = conn.getresponse()
        resp.read()
        out.append((time.perf_counter_ns() - t) / 1e9)
        if resp.status != 200:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status}")
        i += 1
    conn.close()
    return out


def disk_fdatasync(directory: Path, n: int = 200) -> float:
    """Median seconds of one 220-byte append + fdatasync in ``directory``."""
    path = directory / "fdatasync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    times = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            os.write(fd, b"x" * 220)
            os.fdatasync(fd)
            times.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times)


def _frame_name(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func file.py``."""
    name, _, where = frame.partition(" (")
    return f"{name} {where.rsplit(':', 1)[0].split('/')[-1]}"


def top_frames(collapsed: Path, n: int = 30) -> list[tuple[str, float, float]]:
    """(function, inclusive %, self %) of the busiest functions below trio's
    run loop in py-spy's raw (collapsed-stack) output; % of the GIL samples."""
    incl: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        k = int(count)
        total += k
        frames = [_frame_name(f) for f in stack.split(";")]
        for f in set(frames):
            incl[f] = incl.get(f, 0) + k
        own[frames[-1]] = own.get(frames[-1], 0) + k
    # Frames at or above trio's run loop (the process's whole life) say nothing.
    cut = incl.get("unrolled_run _run.py", total + 1)
    ranked = sorted((f for f in incl if incl[f] < cut), key=lambda f: -incl[f])[:n]
    return [(f, 100 * incl[f] / total, 100 * own.get(f, 0) / total) for f in ranked]


def stage_lines(log_text: str, skip: int = 2) -> dict[str, dict[str, float]]:
    """Per path, the mean of one server's stage lines (each the median of
    ``--every`` samples, weighted by its count; the first ``skip`` lines, the
    warm-up, left out): stage -> us."""
    sums: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}
    seen: dict[str, int] = {}
    for m in _LINE.finditer(log_text):
        path, n = m[1], int(m[2])
        seen[path] = seen.get(path, 0) + 1
        if seen[path] <= skip and path not in ("leader_read", "http_get"):
            continue
        counts[path] = counts.get(path, 0) + n
        acc = sums.setdefault(path, {})
        for kv in m[3].split():
            k, v = kv.split("=", 1)
            acc[k] = acc.get(k, 0.0) + float(v) * n
    return {p: {k: v / counts[p] for k, v in acc.items()} for p, acc in sums.items()}


def raw_samples(log_text: str, path: str, label: str) -> dict[int, dict[str, int]]:
    """A server's ``raft_stages_raw`` samples of ``path`` by their ``#label``
    (a log index, a read round): stage -> absolute ns (``start`` first)."""
    out: dict[int, dict[str, int]] = {}
    for m in _RAW.finditer(log_text):
        if m[1] != path:
            continue
        for sample in m[2].split(";"):
            stamps = {k: int(v) for k, _, v in (kv.partition("=") for kv in sample.split(","))}
            key = stamps.pop("#" + label, None)
            if key is not None:
                out[key] = stamps
    return out


def joined(
    leader: dict[int, dict[str, int]], follower: dict[int, dict[str, int]], prefix: str
) -> dict[str, float]:
    """The follower's stages of the samples both servers have, in us from the
    leader's sample's start (medians; ``start`` is renamed ``read``)."""
    offsets: dict[str, list[int]] = {}
    for key, lead in leader.items():
        if (fol := follower.get(key)) is not None:
            for stage, at in fol.items():
                name = prefix + ("read" if stage == "start" else stage)
                offsets.setdefault(name, []).append(at - lead["start"])
    return {k: statistics.median(v) / 1000 for k, v in offsets.items()}


def commit_race(
    leader: dict[int, dict[str, int]], followers: list[dict[int, dict[str, int]]]
) -> dict[str, float] | None:
    """Per write (joined by log index), what its commit waited for: the
    leader's own fsync or the first follower's acknowledgement (it needs
    both, of 3 servers). Medians in us from the client's send: the later of
    the two (``both_ready``), the ack's bytes read on the leader after that
    (``ack_read_after``), and the share of writes whose own fsync was last."""
    rows = []
    for key, lead in leader.items():
        acks = [f[key]["acked"] for f in followers if key in f and "acked" in f[key]]
        if not acks or "own_save_done" not in lead or "ack_read" not in lead:
            continue
        ready = max(lead["own_save_done"], min(acks))
        rows.append(
            (ready - lead["start"], lead["ack_read"] - ready, lead["own_save_done"] > min(acks))
        )
    if not rows:
        return None
    return {
        "writes": len(rows),
        "both_ready": statistics.median(r[0] for r in rows) / 1000,
        "ack_read_after": statistics.median(r[1] for r in rows) / 1000,
        "own_fsync_last": sum(r[2] for r in rows) / len(rows),
    }


def print_path(title: str, stages: dict[str, float], texts: dict[str, str]) -> None:
    print(f"\n{title}")
    print(f"  {'stage':<20} {'us from start':>13} {'us since prev':>13}  meaning")
    prev = 0.0
    for name, at in sorted(stages.items(), key=lambda kv: kv[1]):
        print(f"  {name:<20} {at:>13.0f} {at - prev:>13.0f}  {texts.get(name, '')}")
        prev = at


def _spy(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` (GIL samples, raw collapsed stacks) to ``out``."""
    return subprocess.Popen(
        [
            py_spy(),
            "record",
            "--gil",
            "--nonblocking",
            "--format",
            "raw",
            "-r",
            "500",
            "-d",
            str(int(seconds)),
            "-o",
            str(out),
            "-p",
            str(pid),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=5.0, help="per operation")
    p.add_argument("--subnet", default="127.0.10")
    p.add_argument("--every", type=int, default=50, help="samples per logged median")
    p.add_argument("--profile", type=Path, help="py-spy raw profile of the leader's PUTs here")
    p.add_argument("--profile-follower", type=Path, help="the same of a follower, here")
    p.add_argument("--logs", type=Path, help="copy the servers' logs here")
    args = p.parse_args(argv)
    os.environ["MESHD_RAFT_STAGES"] = str(args.every)
    with tempfile.TemporaryDirectory(prefix="meshd-kv-stages-") as tmp:
        root = Path(tmp)
        with running_meshd(root / "meshd", args.subnet) as cluster:
            leader = cluster.leader()
            host = cluster.agents[leader].ip
            client_latencies(host, 8500, "PUT", 2.0)  # warm-up: every key exists
            pids = {n: a.proc.pid for n, a in cluster.agents.items() if a.proc is not None}
            follower = next((n for n in sorted(pids) if n != leader), leader)
            spies = [
                _spy(pids[server], out, args.seconds)
                for server, out in ((leader, args.profile), (follower, args.profile_follower))
                if out is not None and server in pids
            ]
            before = {n: cpu_ticks(pid) for n, pid in pids.items()}
            puts = client_latencies(host, 8500, "PUT", args.seconds)
            put_cpu = {n: cpu_ticks(pid) - before[n] for n, pid in pids.items()}
            for spy in spies:
                spy.wait(timeout=60)
            before = {n: cpu_ticks(pid) for n, pid in pids.items()}
            reads = client_latencies(host, 8500, "GET", args.seconds)
            read_cpu = {n: cpu_ticks(pid) - before[n] for n, pid in pids.items()}
            disk = disk_fdatasync(root)
            logs = {name: cluster.logs(name) for name in cluster.agents}
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
        for name, text in logs.items():
            (args.logs / f"{name}.log").write_text(text)
    print(
        f"one client, one connection, to the leader ({len(puts)} PUTs, {len(reads)} reads);"
        f" disk: 220-byte append + fdatasync median {disk * 1e6:.0f} us"
    )
    tick = 1e6 / os.sysconf("SC_CLK_TCK")
    for op, lat, cpu in (("PUT", puts, put_cpu), ("GET ?consistent", reads, read_cpu)):
        followers = sum(t for n, t in cpu.items() if n != leader) / max(1, len(cpu) - 1)
        print(
            f"  client {op}: p50 {statistics.median(lat) * 1e6:.0f} us,"
            f" mean {statistics.mean(lat) * 1e6:.0f} us; CPU (utime+stime) per op:"
            f" leader {cpu.get(leader, 0) * tick / len(lat):.0f} us,"
            f" follower {followers * tick / len(lat):.0f} us"
            f" (load average {os.getloadavg()[0]:.2f})"
        )
    for who, out in (("leader", args.profile), ("a follower", args.profile_follower)):
        if out is not None and out.exists():
            print(f"\n{who}'s CPU profile during the PUTs (py-spy --gil): inclusive %, self %")
            for f, inc, own in top_frames(out):
                print(f"  {inc:5.1f} {own:5.1f}  {f}")
    lead = stage_lines(logs[leader])
    client = {"http_put": puts, "http_get": reads}
    # The followers' samples of the same write (index) or read round.
    theirs = {"http_put": ("follower_append", "index"), "http_get": ("follower_heartbeat", "round")}
    for path in ("http_put", "http_get", "leader_put", "leader_read"):
        if path in lead:
            stages = dict(lead[path])
            texts = dict(STAGE_TEXT[path])
            if path in client:
                stages["received"] = statistics.median(client[path]) * 1e6
                fpath, label = theirs[path]
                mine = raw_samples(logs[leader], path, label)
                for name, text in logs.items():
                    if name != leader:
                        short = "s" + name.rsplit("-", 1)[-1] + ":"
                        stages.update(joined(mine, raw_samples(text, fpath, label), short))
                        texts.update({short + k: v for k, v in STAGE_TEXT[fpath].items()})
            print_path(f"{path} (leader {leader}, median)", stages, texts)
            if path == "http_put":
                others = [
                    raw_samples(t, "follower_append", "index")
                    for n, t in logs.items()
                    if n != leader
                ]
                race = commit_race(raw_samples(logs[leader], path, "index"), others)
                if race is not None:
                    print(
                        f"  per write ({race['writes']:.0f}): own fsync done and first follower"
                        f" ack sent by {race['both_ready']:.0f} us (median); the ack's bytes read"
                        f" {race['ack_read_after']:.0f} us after that; own fsync was the later"
                        f" one in {race['own_fsync_last']:.0%} of writes"
                    )
    for name, text in logs.items():
        fol = stage_lines(text) if name != leader else {}
        for path in ("follower_append", "follower_heartbeat"):
            if path in fol:
                print_path(f"{path} ({name}, median)", fol[path], STAGE_TEXT[path])


if __name__ == "__main__":
    main()
