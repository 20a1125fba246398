"""CPU per KV PUT in the whole HTTP app, the Raft write stubbed (issue #18).

A ``--dev`` agent runs in this trio process with in-memory Raft storage; its
registry write is replaced by a stub that stamps and validates the
command as ``MeshServer.write`` does and answers ``ok`` at once, so what is
measured is everything between a PUT's bytes and its answer: the HTTP server
(parse, response), ``App`` (routing, hooks, metrics), the ACL wrapper and
``meshd/api/kv.py`` (query, validation, command, ``true``). Two rows:

- ``app``: ``Request.build`` + ``App.handle`` in a loop (no sockets);
- ``server``: the agent's app behind ``serve_http`` on a free loopback port,
  driven by bench/http_server_bench.py's raw-socket client (1 connection).

Prints the process's CPU (utime + stime) per PUT, medians of ``--rounds``
with the load average. Run it from another source tree (``cd`` there, with
``PYTHONPATH=.``) for the before figure, alternating A B A B; never asserts.

    .venv/bin/python -m bench.kv_app_bench [--puts 20000] [--rounds 5] [--only app] [--acl]

``--acl``: ACLs on with default deny, every PUT carrying a management token.

The ``server`` row is bimodal on a loaded 2-core machine (~35 or ~55 us,
by where the scheduler puts the client and the server): run it under
``taskset -c 1`` (both processes on one core) for steady figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import trio

from bench.http_server_bench import CLIENT
from meshd.acl import GLOBAL_MANAGEMENT_POLICY_ID
from meshd.acl.builtin import GLOBAL_MANAGEMENT_RULES
from meshd.agent.agent import Agent
from meshd.config import load_config
from meshd.http import Request, open_http_listeners, serve_http
from meshd.wire import WriteResult
from raft.storage import MemoryStorage
from registry.commands import ACLPolicySet, ACLTokenSet, stamped
from registry.records import ACLLink, ACLPolicy, ACLToken
from tests.meshd.harness import free_port

_OK = WriteResult(True, True, None, "", 1)
_BODY = b"v" * 100


async def _stub_write(cmd: Any) -> WriteResult:
    # What MeshServer.write does before Raft: stamp and validate.
    stamped(cmd, time.time()).validate()
    return _OK


async def _acl_token(agent: Agent) -> str:
    """A global-management token's secret (ACLs on, default deny)."""
    mgmt = ACLPolicy(
        id=GLOBAL_MANAGEMENT_POLICY_ID, name="global-management", rules=GLOBAL_MANAGEMENT_RULES
    )
    assert (await agent.write(ACLPolicySet(policies=(mgmt,)))).ok
    secret = str(uuid.uuid4())
    link = ACLLink(GLOBAL_MANAGEMENT_POLICY_ID, "global-management")
    root = ACLToken(accessor_id=str(uuid.uuid4()), secret_id=secret, policies=(link,))
    assert (await agent.write(ACLTokenSet(tokens=(root,)))).ok
    return secret


async def _app_row(agent: Agent, puts: int, token: str) -> float:
    app = agent.app
    assert app is not None
    paths = [f"/v1/kv/bench/{i:04d}" for i in range(1000)]
    headers = [("Host", "x"), ("Content-Length", "100")]
    if token:
        headers.append(("X-Consul-Token", token))
    cpu = time.process_time()
    for i in range(puts):
        req = Request.build(
            "PUT", paths[i % 1000], headers=headers, body=_BODY, remote_addr=("127.0.0.1", 5000)
        )
        resp = await app.handle(req)
        if resp.status != 200:
            raise RuntimeError(f"PUT answered {resp.status}: {resp.body!r}")
    return (time.process_time() - cpu) / puts * 1e6


async def _server_row(agent: Agent, puts: int, token: str) -> float:
    assert agent.app is not None
    listeners = await open_http_listeners([("127.0.0.1", 0)])
    port = listeners[0].socket.getsockname()[1]  # type: ignore[attr-defined]
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_http, listeners, agent.app)
        cpu = time.process_time()
        await trio.run_process(
            [sys.executable, "-c", _client(token), str(port), str(puts), "1"],
            capture_stdout=True,
            stderr=subprocess.DEVNULL,
        )
        cpu = time.process_time() - cpu
        nursery.cancel_scope.cancel()
    return cpu / puts * 1e6


def _client(token: str) -> str:
    """http_server_bench's client, sending ``X-Consul-Token`` when ``token``."""
    if not token:
        return CLIENT
    header = f"X-Consul-Token: {token}\\r\\n"
    assert CLIENT.count("Host: x\\r\\n") == 1
    return CLIENT.replace("Host: x\\r\\n", "Host: x\\r\\n" + header)


async def _run(a: argparse.Namespace) -> dict[str, list[float]]:
    real = Agent._storage
    Agent._storage = lambda self: MemoryStorage()  # type: ignore[method-assign]
    try:
        return await _rows(a)
    finally:  # the class is shared: every later agent of this process (a test
        # worker's) must write its real data dir again
        Agent._storage = real  # type: ignore[method-assign]


async def _rows(a: argparse.Namespace) -> dict[str, list[float]]:
    flags = {"http_port": -1, "dns_port": -1, "server_port": free_port(), "node": "bench"}
    files = []
    with tempfile.TemporaryDirectory(prefix="meshd-kvapp-") as tmp:
        if a.acl:
            cfg = Path(tmp) / "acl.json"
            cfg.write_text(json.dumps({"acl": {"enabled": True, "default_policy": "deny"}}))
            files.append(str(cfg))
        config, _ = load_config(files, [], flags, dev=True)
    agent = Agent(config)
    rows: dict[str, list[float]] = {"app": [], "server": []}
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await agent.wait_synced(5)
        token = await _acl_token(agent) if a.acl else ""
        agent.backend.write = _stub_write  # type: ignore[union-attr]
        for r in range(a.rounds + 1):  # the first round warms up
            for name, row in (("app", _app_row), ("server", _server_row)):
                if a.only in (None, name):
                    figure = await row(agent, a.puts, token)
                    if r:
                        rows[name].append(figure)
        nursery.cancel_scope.cancel()
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--puts", type=int, default=20000, help="per round and row")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--only", choices=("app", "server"))
    p.add_argument("--acl", action="store_true", help="ACLs on (default deny), a management token")
    p.add_argument("--quick", action="store_true", help="CI smoke run: 2,000 PUTs, 1 round")
    a = p.parse_args(argv)
    if a.quick:
        a.puts, a.rounds = 2000, 1
    for name, figures in trio.run(_run, a).items():
        if figures:
            print(
                f"KV PUT {name}{' ACL' if a.acl else ''} (stub write): CPU"
                f" {statistics.median(figures):.1f} us/PUT"
                f" (median of {len(figures)}: {' '.join(f'{f:.1f}' for f in figures)};"
                f" load average {os.getloadavg()[0]:.2f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
