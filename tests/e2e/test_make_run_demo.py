"""``make run`` (python -m meshd.demo): the dev agent starts with the mTLS
proxy and its demo services in the mesh, prints what to try, the things it
suggests work (web reaches api through its upstream; the printed L7 lines,
run verbatim, show the hidden release, the 90/10 canary and the fault; a
deny intention made with the CLI cuts web off; the proxy's metrics answer),
and Ctrl-C stops everything it started.

The demo runs on free ports given on its command line, never on the
defaults a user's own ``make run`` holds, and every CLI call names its
agent: a test must never reach (or leave an intention in) a user's demo."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from meshd.demo import DemoPorts
from tests.meshd.harness import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=3) as resp:
        return bytes(resp.read())


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{what} within {timeout}s (last: {last!r})")


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def free_demo_ports() -> DemoPorts:
    """A free port for each of the demo's, all distinct (two free_port()
    calls can return the same port once the first socket is closed)."""
    names = [f.name for f in dataclasses.fields(DemoPorts)]
    chosen: dict[str, int] = {}
    for name in names:
        port = free_port()
        while port in chosen.values():
            port = free_port()
        chosen[name] = port
    return DemoPorts(**chosen)


def demo_args(ports: DemoPorts) -> list[str]:
    args = []
    for f in dataclasses.fields(ports):
        args += [f"--{f.name.replace('_', '-')}-port", str(getattr(ports, f.name))]
    return args


def l7_effect(command: str, out: str) -> bool | None:
    """Whether ``out`` shows the effect the demo's L7 ``command`` promises
    (None for a line with no effect to see, such as a config write)."""
    if re.match(r"meshd explain .*x-version: v2' /(\s|$)", command):  # the hidden release
        return re.search(r"forwarded to \S+ \(v2\.api\.", out) is not None
    if not command.startswith(("curl", "for ")):
        return None
    if "x-version: v2" in command:
        return out.strip() == "hello from api v2"
    if "seq 100" in command:  # the canary: ~90 v1, ~10 v2 of 100
        counts = Counter({m[1]: int(m[0]) for m in re.findall(r"(\d+) hello from api (v\d)", out)})
        return sum(counts.values()) == 100 and 1 <= counts["v2"] <= 30
    if "http_code" in command:  # the fault: about half 503
        return set(out.split()) == {"200", "503"}
    if re.fullmatch(r"curl -s \S+/", command):
        return out.strip() == "hello from api v1"
    return None


L7_CHECKED = 5  # lines l7_effect checks in the demo's help and the README


def run_l7_line(command: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """Run a printed L7 line; one whose effect follows a config write is
    retried until the effect shows (changes apply within a second; longer
    on a loaded machine). Returns (exit status, stdout, stderr)."""
    deadline = time.monotonic() + 20
    while True:
        done = subprocess.run(
            command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=60
        )
        effect = l7_effect(command, done.stdout)
        if effect is not False or done.returncode != 0 or time.monotonic() > deadline:
            return done.returncode, done.stdout, done.stderr
        time.sleep(0.5)


def demo_l7_lines(text: str) -> list[str]:
    """The L7 commands of the demo's help, without their comments."""
    section = text.split("changes apply within a second):\n", 1)[1].split("Ctrl-C", 1)[0]
    return [re.sub(r"\s+#.*$", "", line).strip() for line in section.splitlines() if line.strip()]


def cli_env() -> dict[str, str]:
    """The environment for typed lines: this checkout's ``meshd`` first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for name in ("MESHD_HTTP_ADDR", "CONSUL_HTTP_ADDR", "MESHD_HTTP_TOKEN", "CONSUL_HTTP_TOKEN"):
        env.pop(name, None)
    return env


def _check_l7_lines(text: str, cwd: Path) -> None:
    lines = [
        re.sub(r"(?<![\w/.])\.venv/bin/meshd\b", "meshd", line) for line in demo_l7_lines(text)
    ]
    assert sum(l7_effect(line, "") is not None for line in lines) == L7_CHECKED, lines
    failures = []
    for line in lines:
        status, out, err = run_l7_line(line, cli_env(), cwd)
        if status != 0 or l7_effect(line, out) is False:
            failures.append(f"{line!r} -> exit {status}: {out[-300:]}{err[-300:]}")
    assert not failures, "\n".join(failures)


def test_demo_runs_the_mesh_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    ports = free_demo_ports()
    http = f"127.0.0.1:{ports.http}"

    def api(path: str) -> Any:
        return json.loads(get(f"http://{http}{path}"))

    def meshd(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "meshd", *args, "-http-addr", http]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30)

    data_dir = tmp_path / "demo-data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshd.demo", *demo_args(ports), "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    upstream = f"http://127.0.0.1:{ports.upstream}/"
    web = f"http://127.0.0.1:{ports.web}/"
    try:
        wait_for(lambda: {"web", "api"} <= set(api("/v1/catalog/services")), 60, "services")
        # The demo is done starting once it says what to try.
        wait_for(lambda: b"Ctrl-C stops" in b"".join(lines), 90, "the demo's help")
        through = wait_for(lambda: get(upstream), 60, "api via the upstream")
        healthy = api("/v1/health/connect/api?passing")
        got = sorted((h["Service"]["ID"], h["Service"]["Port"]) for h in healthy)
        assert got == [
            ("api-sidecar-proxy", ports.api_sidecar),
            ("api-v2-sidecar-proxy", ports.api_v2_sidecar),
        ]
        assert through == b"hello from api v1\n"  # everything to v1 by default
        assert b"api says: hello from api v1" in get(web)
        # The printed L7 lines, verbatim: hidden release, canary, fault.
        _check_l7_lines(b"".join(lines).decode(), tmp_path)
        assert {p.name for p in data_dir.iterdir()} == {
            "hidden-release.json",
            "canary.json",
            "fault.json",
            "api-defaults.json",
        }
        denied = meshd("intention", "create", "--deny", "--replace", "web", "api")
        assert denied.returncode == 0, denied.stderr
        wait_for(lambda: b"api says: hello" not in get(web), 10, "web cut off")
        check = meshd("intention", "check", "web", "api")
        assert check.returncode == 2, check.stdout + check.stderr
        metrics = get(f"http://127.0.0.1:{ports.metrics}/metrics").decode()
        assert "meshd_proxy" in metrics
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        reader.join(timeout=10)
    text = b"".join(lines).decode()
    assert "Try next" in text and f"curl 127.0.0.1:{ports.upstream}/" in text
    assert f"meshd intention create --deny --replace web api -http-addr {http}" in text
    assert "Traceback" not in text
    for port in dataclasses.astuple(ports):
        assert not port_open(port), f"port {port} still open after Ctrl-C"


@pytest.mark.parametrize(
    ("taken", "expected"),
    [
        (
            "http",
            "in use (is another meshd running?): stop it, or give the demo another port"
            " with --http-port",
        ),
        ("web", "in use (the demo's web): stop it, or give the demo another port with --web-port"),
    ],
)
def test_a_second_demo_says_the_port_is_in_use_in_one_line(taken: str, expected: str) -> None:
    ports = free_demo_ports()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", getattr(ports, taken)))
        holder.listen()
        result = subprocess.run(
            [sys.executable, "-m", "meshd.demo", *demo_args(ports)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"port {getattr(ports, taken)} {expected}\n"
    # It started nothing: none of its other ports is listening.
    others = [p for name, p in dataclasses.asdict(ports).items() if name != taken]
    assert not any(port_open(p) for p in others)


def test_a_data_dir_it_cannot_write_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    ports = free_demo_ports()
    (tmp_path / "file").write_text("")
    bad = tmp_path / "file" / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "meshd.demo", *demo_args(ports), "--data-dir", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"cannot write the demo's config entries into {bad}: Not a directory; "
        "give it another with --data-dir\n"
    )
    assert not any(port_open(p) for p in dataclasses.astuple(ports))
