"""Save and restore through a client agent of a snapshot larger than one RPC
frame (8 MiB): 20 MiB of KV data goes to the server in Snapshot.Upload
chunks and comes back in Snapshot.Chunk ones, as Consul streams it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meshd.agent.snapshot_archive import decode_archive
from raft.transport import MAX_FRAME
from tests.meshd.test_api_status_operator import cluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

VALUE = 512 << 10  # Consul's kv_max_value_size
KEYS = 40  # 20 MiB of values that gzip cannot shrink


async def test_a_20mib_snapshot_saves_and_restores_through_a_client(tmp_path: Path) -> None:
    values = {f"big/{i:02d}": os.urandom(VALUE) for i in range(KEYS)}
    async with cluster(tmp_path, servers=1) as nodes:
        server, client = nodes
        for key, value in values.items():
            assert (await server.api.put(f"/v1/kv/{key}", raw=value)).status == 200
        r = await client.api.get("/v1/snapshot")
        assert r.status == 200, r.text
        archive = r.body
        assert len(archive) > 2 * MAX_FRAME  # more than any one frame could carry
        meta, _ = decode_archive(archive)
        assert meta.index == int(r.headers["x-consul-index"])

        assert (await server.api.delete("/v1/kv/big/00")).status == 200
        assert (await server.api.put("/v1/kv/big/01", raw=b"changed")).status == 200
        r = await client.api.put("/v1/snapshot", raw=archive)
        assert (r.status, r.text) == (200, "")
        for key in ("big/00", "big/01", f"big/{KEYS - 1}"):
            r = await client.api.get(f"/v1/kv/{key}?raw")
            assert r.status == 200 and r.body == values[key], key
        keys = (await client.api.get("/v1/kv/big?keys")).json()
        assert keys == sorted(values)
        # A truncated archive is refused on the client, before any upload.
        r = await client.api.put("/v1/snapshot", raw=archive[: len(archive) // 2])
        assert r.status == 400 and "Invalid snapshot archive" in r.text
        assert server.agent.server is not None
        assert len(server.agent.server.ops.uploads) == 0
