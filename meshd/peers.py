"""Asking the other members' agents: ``GET path?local=1`` on each, concurrently.

Used for answers assembled across agents (a whole trace, the mesh graph, the
request samples of a dry run): each agent is reached at its member address
and this agent's HTTP port, as Consul agents share their ports.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import trio

from connect.proxy.agent_client import AgentClient
from connect.proxy.errors import AgentError

# The logger these lines have always had (they began in meshd.agent.traces).
log = logging.getLogger("meshd.agent.traces")

PEER_TIMEOUT = 3.0


def _peer_addresses(members: Sequence[dict[str, Any]], self_name: str, port: int) -> list[str]:
    out = []
    for m in members:
        if m.get("Name") == self_name or m.get("Status") != 1:
            continue
        addr = str(m.get("Addr") or "")
        if addr:
            out.append(f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}")
    return out


async def ask_peers(
    members: Sequence[dict[str, Any]],
    self_name: str,
    http_port: int,
    path: str,
    query: dict[str, str],
    token: str,
) -> list[Any]:
    """``GET path?query&local=1`` on every other live member's agent, concurrently;
    the JSON answers of those that answered within ``PEER_TIMEOUT`` (others are
    logged and left out: a partial trace beats none)."""
    answers: list[Any] = []

    async def one(address: str) -> None:
        host, _, port = address.rpartition(":")
        client = AgentClient(host.strip("[]"), int(port), token=token, connect_timeout=PEER_TIMEOUT)
        try:
            resp = await client.request(
                "GET", path, query={**query, "local": "1"}, timeout=PEER_TIMEOUT
            )
            answers.append(resp.json())
        except (AgentError, ValueError) as exc:
            log.info("event=trace_peer_unanswered peer=%s reason=%s", address, exc)
        finally:
            await client.aclose()

    async with trio.open_nursery() as nursery:
        for address in _peer_addresses(members, self_name, http_port):
            nursery.start_soon(one, address)
    return answers
