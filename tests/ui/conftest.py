"""Browser tests of the web UI: Debian's Chromium, headless, driven by
Playwright for Python (never a downloaded browser), against real agent
processes on free loopback ports.

The browser is installed with apt-get when /usr/bin/chromium is missing;
axe-core (test-only) is fetched once with ``npm pack`` into a cache dir.
Each test saves screenshots under tests/ui/artifacts (gitignored).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.machine_lock import machine_lock
from tests.meshd.harness import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE_VERSION = "4.10.2"
ARTIFACTS = Path(__file__).parent / "artifacts"
REPO = Path(__file__).resolve().parents[2]


def _ensure_chromium() -> None:
    if os.path.exists(CHROMIUM):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with machine_lock("apt"):
        subprocess.run(["apt-get", "update"], check=True, env=env, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "chromium"], check=True, env=env, capture_output=True
        )
    assert os.path.exists(CHROMIUM), "apt-get install chromium did not provide /usr/bin/chromium"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    _ensure_chromium()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe.min.js of the axe-core npm package (test-only), cached."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "meshd-tests"
    target = cache / f"axe-core-{AXE_VERSION}" / "axe.min.js"
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        npm = shutil.which("npm")
        assert npm, "npm is needed once to fetch axe-core for the accessibility test"
        subprocess.run(
            [npm, "pack", f"axe-core@{AXE_VERSION}", "--pack-destination", str(cache)],
            check=True,
            capture_output=True,
            cwd=cache,
        )
        with tarfile.open(cache / f"axe-core-{AXE_VERSION}.tgz") as tar:
            member = tar.getmember("package/axe.min.js")
            extracted = tar.extractfile(member)
            assert extracted is not None
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(extracted.read())
    return target.read_text()


class AgentProcess:
    """A ``meshd agent --dev`` process (optionally with ACLs, default deny)."""

    def __init__(self, root: Path, *, acl: bool, extra: dict[str, Any] | None = None) -> None:
        self.root = root
        self.mgmt = str(uuid.uuid4()) if acl else ""
        self.port = free_port()
        config = root / "agent.json"
        cfg: dict[str, Any] = {"node_name": "ui-node"}
        if acl:
            cfg["acl"] = {
                "enabled": True,
                "default_policy": "deny",
                "tokens": {"initial_management": self.mgmt},
            }
        cfg.update(extra or {})
        dev = not extra  # extra settings describe a non-dev server
        config.write_text(json.dumps(cfg))
        self.log = (root / "agent.log").open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "meshd", "agent", *(["--dev"] if dev else []),
                "--http-port", str(self.port), "--dns-port", str(free_port()),
                "--server-port", str(free_port()), "--config-file", str(config),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(lambda: self.call("GET", "/v1/agent/self", token=self.mgmt)[0] == 200, 60)
        if dev:
            wait_until(lambda: self.call("GET", "/v1/status/leader")[1] not in ("", None), 60)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        raw: bool = False,
    ) -> tuple[int, Any]:
        data = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        tok = self.mgmt if token is None else token
        if tok:
            req.add_header("X-Consul-Token", tok)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                out, status = resp.read(), resp.status
        except urllib.error.HTTPError as exc:
            out, status = exc.read(), exc.code
        except OSError:
            return 0, None
        if raw:
            return status, out.decode()
        try:
            return status, json.loads(out) if out else None
        except ValueError:
            return status, out.decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def wait_until(cond: Callable[[], Any], timeout: float, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached within {timeout}s")


@pytest.fixture(scope="module")
def acl_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    a = AgentProcess(tmp_path_factory.mktemp("ui-acl"), acl=True)
    try:
        yield a
    finally:
        a.stop()


@pytest.fixture
def page(browser: Any, axe_source: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (its own sessionStorage) with axe-core loaded
    in every page; failures in the page's console are collected."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.add_init_script(axe_source)
    p = context.new_page()
    p.set_default_timeout(20_000)
    p.urls = []  # every URL the page requested, to check no token leaks into one
    p.on("request", lambda r: p.urls.append(r.url))
    yield p
    ARTIFACTS.mkdir(exist_ok=True)
    p.screenshot(path=str(ARTIFACTS / f"{request.node.name}-final.png"))
    context.close()


def shot(page: Any, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def axe_serious(page: Any) -> list[dict[str, Any]]:
    """axe-core's critical and serious violations on the current page."""
    result = page.evaluate("async () => (await axe.run(document)).violations")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["html"] for n in v["nodes"][:3]]}
        for v in result
        if v["impact"] in ("critical", "serious")
    ]
