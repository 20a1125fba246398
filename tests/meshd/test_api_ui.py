"""The web UI's static files (meshd/api/ui.py) on a dev agent: served at
/ui/ with their content types and ETags, / redirects, no path leaves the
shipped files, and nothing is served when the UI is off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from trio.testing import MockClock

from tests.meshd.harness import dev_agent
from tests.meshd.inproc import inproc_agent


@pytest.mark.e2e
async def test_ui_files_have_content_types_etags_and_revalidate() -> None:
    async with dev_agent() as (_, api):
        root = await api.get("/")
        assert (root.status, root.headers["location"]) == (301, "/ui/")
        index = await api.get("/ui/")
        assert index.status == 200
        assert index.headers["content-type"] == "text/html; charset=utf-8"
        assert b'<script type="module" src="app.js">' in index.body
        assert "script-src 'self'" in index.headers["content-security-policy"]
        js = await api.get("/ui/pages/kv.js")
        assert js.headers["content-type"] == "text/javascript; charset=utf-8"
        css = await api.get("/ui/app.css")
        assert css.headers["content-type"] == "text/css; charset=utf-8"
        etag = js.headers["etag"]
        assert js.headers["cache-control"] == "no-cache"
        again = await api.get("/ui/pages/kv.js", headers={"If-None-Match": etag})
        assert (again.status, again.body) == (304, b"")
        stale = await api.get("/ui/pages/kv.js", headers={"If-None-Match": '"other"'})
        assert stale.status == 200 and stale.body == js.body


@pytest.mark.parametrize(
    "path",
    [
        "/ui/../pyproject.toml",
        "/ui/../../../../etc/passwd",
        "/ui/%2e%2e/%2e%2e/etc/passwd",
        "/ui/..%2fapi%2fui.py",
        "/ui/pages/../../ui/__init__.py",
        "/ui/__init__.py",
        "/ui//etc/passwd",
        "/ui/nothing.js",
    ],
)
async def test_no_path_reaches_beyond_the_shipped_files(
    autojump_clock: MockClock, path: str
) -> None:
    async with inproc_agent() as (_, api):
        r = await api.get(path)
        assert r.status == 404, (path, r.status)
        assert b"import" not in r.body and b"root:" not in r.body


async def test_ui_off_serves_nothing(autojump_clock: MockClock, tmp_path: Path) -> None:
    cfg = tmp_path / "ui.json"
    cfg.write_text(json.dumps({"ui_config": {"enabled": False}}))
    async with inproc_agent(files=[str(cfg)]) as (agent, api):
        assert agent.config.ui_config.enabled is False
        assert (await api.get("/ui/")).status == 404
        assert (await api.get("/")).status == 404
