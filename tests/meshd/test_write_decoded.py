"""The leader applies a KV write from the command object it encoded (no
decode of its own log entry); other commands go through the bytes."""

from __future__ import annotations

from typing import Any

from tests.meshd.inproc import inproc_agent


async def test_leader_applies_kv_put_without_decoding_other_writes_from_bytes(
    autojump_clock: Any,
) -> None:
    async with inproc_agent() as (agent, api):
        server = agent.server
        assert server is not None
        real = server.node._apply_decoded
        assert real is not None
        decoded: list[str] = []

        def spy(index: int, command: Any) -> Any:
            decoded.append(type(command).__name__)
            return real(index, command)

        server.node._apply_decoded = spy
        resp = await api.put("/v1/kv/dec/k?flags=3", raw=b"value")
        assert resp.status == 200 and resp.json() is True
        got = await api.get("/v1/kv/dec/k")
        assert got.status == 200
        assert got.json()[0]["Flags"] == 3 and got.json()[0]["Value"] == "dmFsdWU="
        assert decoded == ["KVRequest"]
        reg = {"Node": "n1", "Address": "10.0.0.1"}
        assert (await api.put("/v1/catalog/register", reg)).status == 200
        assert decoded == ["KVRequest"]
