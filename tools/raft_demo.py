"""``python -m tools.raft_demo``: a live 3-server Raft cluster on loopback, over mTLS.

Starts three ``raft.kvserver`` processes (127.0.1.1-3, segmented log under
``.demo/``), increments a replicated counter through whichever server leads,
and prints the cluster's state every second. Kill the leader from another
terminal and watch a new one take over without losing an increment.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import trio

from tools.raft_cluster import KVClient, LocalKVCluster, call, find_leader, wait_ready


async def _status_line(cluster: LocalKVCluster) -> str:
    parts = []
    for sid, s in cluster.servers.items():
        try:
            st = (await call(s.client_addr, {"op": "status"}, timeout=0.5))["result"]
            parts.append(f"{sid}={st['role'][:6]}@t{st['term']}/c{st['commit']}")
        except (OSError, trio.TooSlowError, KeyError):
            parts.append(f"{sid}=down")
    return "  ".join(parts)


async def _run(root: Path) -> None:
    cluster = LocalKVCluster(root, log_level="WARNING")
    cluster.start_all()
    try:
        await wait_ready(cluster, list(cluster.servers))
        leader = await find_leader(cluster)
        pids = {sid: s.proc.pid for sid, s in cluster.servers.items() if s.proc}
        print(f"meshd raft demo: 3 servers over mTLS, leader {leader}; pids {pids}")
        print("Try next (in another terminal):")
        print(f"  kill -9 {pids[leader]}      # kill the leader; a new one is elected in ~1-2 s")
        print("  make sim SEEDS=50         # deterministic chaos simulation")
        print("  make bench                # commits/s and latency vs the disk's fsync rate")
        print("Ctrl-C stops everything.\n")
        acked = 0
        last_print = 0.0
        client: KVClient | None = None
        while True:
            if client is None:
                leader = await find_leader(cluster)
                client = KVClient(cluster.servers[leader].client_addr)
            try:
                resp = await client.request({"op": "incr", "key": "counter"}, timeout=1)
            except (OSError, trio.TooSlowError, Exception):
                resp = {"ok": False}
            if resp.get("ok"):
                acked = int(resp["result"])
            else:
                await client.aclose()
                client = None
            if time.monotonic() - last_print >= 1:
                last_print = time.monotonic()
                print(f"counter={acked:6d}  {await _status_line(cluster)}", flush=True)
                for sid in cluster.servers:
                    if sid not in cluster.alive():
                        cluster.start(sid, bootstrap=False)
                        print(f"  (restarted {sid} from its log files)")
            await trio.sleep(0.2)
    finally:
        cluster.stop_all()


def main() -> None:
    root = Path(".demo")
    shutil.rmtree(root, ignore_errors=True)
    try:
        trio.run(_run, root)
    except KeyboardInterrupt:
        print("\nstopped; logs and data are in .demo/")


if __name__ == "__main__":
    main()
