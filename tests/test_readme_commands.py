"""The README's commands are run, so the README cannot drift from the product.

A ```sh block preceded by ``<!-- readme-test: demo -->`` is typed line by
line, in README order, into a shell (one shared scratch directory) against
``python -m meshd.demo`` (what ``make run`` starts: a dev agent, the proxy
and the two demo services) on free ports: the fixed ports the README shows
(8500, 8600, ...) are rewritten to the demo's, and ``MESHD_HTTP_ADDR`` points
the CLI at its agent, and the demo's data directory (``/tmp/meshd-demo``)
is the test's own. Each line must exit 0, or with the code its comment
documents (``# exit 2``), and where the README shows what a command prints,
the output must show it (``EXPECTED_OUTPUT``, ``EXPECTED_FILES``; the L7
lines' effects, hidden release, canary and fault, with ``l7_effect``,
retried until the config change applied).

Every other ```sh block is skipped by design, with the reason in
``SKIPPED_BLOCKS``; a new unmarked block fails the test until it is marked or
given a reason there. The rows of the CLI table must each be exercised by a
run line or named in ``SKIPPED_COMMANDS`` with the reason.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.e2e.test_make_run_demo import (
    L7_CHECKED,
    DemoPorts,
    demo_args,
    free_demo_ports,
    get,
    l7_effect,
    run_l7_line,
    wait_for,
)

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "<!-- readme-test: demo -->"
DEMO_DATA_DIR = "/tmp/meshd-demo"  # the README's; the test's demo writes elsewhere

# Unmarked ```sh blocks, by (section, first line): why the test cannot type them.
SKIPPED_BLOCKS = {
    ("", "make run"): "make run is the demo the test starts; make test is this suite",
    ("## Install", "git clone"): "cloning and installing; the test runs the demo make run starts",
    ("## Quick start: a 3-server cluster", "meshd agent"): (
        "needs three servers on 10.0.0.1-3 and /etc/meshd (tests/e2e/test_agent_cluster.py)"
    ),
    ("## ACLs", "export"): (
        "needs ACLs enabled and a management token (tests/meshd/test_cli_acl.py)"
    ),
    ("## ACLs", "meshd acl auth-method"): (
        "needs a JWT issuer and its keys (tests/meshd/test_cli_login.py)"
    ),
    ("## Production install with Ansible", ".venv/bin/pip"): (
        "builds a wheel and runs ansible against hosts (tests/ansible)"
    ),
    ("## Production install with Ansible", "export"): "needs the cluster ansible installed",
    ("## Manual install with systemd", "python3 -m venv"): (
        "installs under /opt and /etc and runs systemctl as root (tests/systemd)"
    ),
    ("## Upgrading", ".venv/bin/python"): "runs ansible against hosts (tests/ansible)",
    ("## Backing up and restoring", "export"): (
        "needs the ansible token file; restore replaces a cluster's state "
        "(tests/e2e/test_snapshot_restore_cluster.py); save and inspect are run below"
    ),
}

# CLI table commands no run line exercises, and why.
SKIPPED_COMMANDS = {
    "meshd agent": "the demo runs the agent; its flags: tests/meshd/test_cli_startup.py",
    "meshd proxy": "the demo runs the proxy (tests/meshd/test_cli_proxy.py)",
    "meshd acl": "the demo runs without ACLs (tests/meshd/test_cli_acl.py)",
    "meshd leave": "would stop the demo's agent (tests/meshd/test_cli_agent_commands.py)",
    "meshd join": "needs a second agent (tests/meshd/test_cli_cluster_commands.py)",
    "meshd force-leave": "needs a second agent (tests/meshd/test_cli_cluster_commands.py)",
    "meshd monitor": "follows the log until interrupted (tests/meshd/test_cli_monitor.py)",
    "meshd login": "needs an auth method (tests/meshd/test_cli_login.py)",
    "meshd logout": "needs a login token (tests/meshd/test_cli_login.py)",
}

# What a line prints, where the README says so (a substring of its output).
EXPECTED_OUTPUT = {
    "curl 127.0.0.1:9191/": "hello from api",
    "curl 127.0.0.1:8080/": "api says: hello from api",
    "meshd intention check web api": "Denied",
    "curl http://127.0.0.1:9102/metrics": "meshd_proxy",
    "curl http://127.0.0.1:8500/v1/agent/connect/ca/leaf/web": '"CertPEM"',
    "dig @127.0.0.1 -p 8600 api.service.consul SRV": "status: NOERROR",
    "meshd members": "alive",
    "meshd catalog services": "consul",
    "meshd kv get app/greeting": "hello",
    "meshd kv get -recurse copy/": "copy/app/greeting:hello",
    "meshd watch -type key -key app/greeting": '"Key": "app/greeting"',
    "meshd lock app/lock echo locked": "locked",
    "meshd maint": "upgrade",
    "meshd intention match -source web": "web => api (allow)",
    "meshd config list -kind service-defaults": "redis",
    "meshd operator raft list-peers": "leader",
    "meshd validate agent.hcl": "Configuration is valid!",
}

# Files a line's comment says it writes.
EXPECTED_FILES = {
    "meshd tls ca create": ["meshd-agent-ca.pem", "meshd-agent-ca-key.pem"],
    "meshd tls cert create --server --additional-ipaddress 10.0.0.1": [
        "dc1-server-meshd-0.pem",
        "dc1-server-meshd-0-key.pem",
    ],
    "meshd tls cert create --server --additional-ipaddress 10.0.0.3": ["dc1-server-meshd-2.pem"],
    "meshd tls cert create --client": ["dc1-client-meshd-0.pem"],
    "meshd snapshot save backup.snap": ["backup.snap"],
}


@dataclasses.dataclass
class Block:
    section: str
    lines: list[str]
    marked: bool


def readme_blocks(text: str) -> list[Block]:
    """Every ```sh block with its ``## `` section and whether it is marked."""
    blocks: list[Block] = []
    section = ""
    previous = ""
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("## "):
            section = line.strip()
        if line.strip() == "```sh":
            body: list[str] = []
            for inner in lines:
                if inner.startswith("```"):
                    break
                body.append(inner)
            blocks.append(Block(section, body, previous.strip() == MARKER))
        if line.strip():
            previous = line
    return blocks


def command_of(line: str) -> str:
    """The command of a README line: without its ``# comment`` and padding,
    and ``.venv/bin/meshd`` (the checkout's) spelled ``meshd``."""
    command = re.sub(r"\s+#.*$", "", line).strip()
    return re.sub(r"(?<![\w/.])\.venv/bin/meshd\b", "meshd", command)


def typed_lines(blocks: list[Block]) -> list[str]:
    return [
        line
        for b in blocks
        if b.marked
        for line in b.lines
        if line.strip() and not line.lstrip().startswith("#")
    ]


def expected_exit(line: str) -> int:
    found = re.search(r"#.*\bexit (\d+)", line)
    return int(found.group(1)) if found else 0


def localize(command: str, ports: DemoPorts, data_dir: Path | None = None) -> str:
    """``command`` aimed at the test's demo instead of ``make run``'s ports
    (and data directory)."""
    if data_dir is not None:
        command = command.replace(DEMO_DATA_DIR, str(data_dir))
    fixed = {
        8500: ports.http,
        8600: ports.dns,
        8300: ports.server,
        9191: ports.upstream,
        8080: ports.web,
        9090: ports.api,
        9102: ports.metrics,
    }
    return re.sub(
        r"(?<!\d)(8500|8600|8300|9191|8080|9090|9102)(?!\d)",
        lambda m: str(fixed[int(m.group(1))]),
        command,
    )


def cli_table_commands(text: str) -> list[str]:
    """``meshd X`` for every backticked ``meshd`` command in the CLI table."""
    section = text.split("## The CLI", 1)[1].split("\n## ", 1)[0]
    found: list[str] = []
    for row in section.splitlines():
        if not row.startswith("| `"):
            continue
        first_cell = row.split(" | ")[0]
        for cmd in re.findall(r"`(meshd [^`]*)`", first_cell):
            key = " ".join(cmd.split()[:2])
            if key not in found:
                found.append(key)
    return found


def test_the_readme_marks_typed_blocks_and_gives_a_reason_for_the_others() -> None:
    blocks = readme_blocks(README.read_text())
    typed = [command_of(line) for line in typed_lines(blocks)]
    assert len(typed) >= 30, typed
    assert "meshd intention check web api" in typed
    assert "meshd tls ca create" in typed
    matched: set[tuple[str, str]] = set()
    unexplained: list[tuple[str, str]] = []
    for b in blocks:
        if b.marked:
            continue
        keys = [k for k in SKIPPED_BLOCKS if k[0] == b.section and b.lines[0].startswith(k[1])]
        matched.update(keys)
        if not keys:
            unexplained.append((b.section, b.lines[0]))
    assert not unexplained, (
        f"unmarked ```sh blocks without a reason: {unexplained}; mark them {MARKER!r}"
        " or add them to SKIPPED_BLOCKS"
    )
    assert matched == set(SKIPPED_BLOCKS), set(SKIPPED_BLOCKS) - matched
    # The expectations name lines that exist, so they cannot go stale.
    assert set(EXPECTED_OUTPUT) <= set(typed), set(EXPECTED_OUTPUT) - set(typed)
    assert set(EXPECTED_FILES) <= set(typed), set(EXPECTED_FILES) - set(typed)
    # The hidden release, the canary, the fault and a plain request are checked.
    assert sum(l7_effect(c, "") is not None for c in typed) == L7_CHECKED, typed


def test_every_cli_table_command_is_run_or_skipped_with_a_reason() -> None:
    text = README.read_text()
    table = cli_table_commands(text)
    assert len(table) >= 25, table
    run = {" ".join(command_of(line).split()[:2]) for line in typed_lines(readme_blocks(text))}
    missing = [c for c in table if c not in run and c not in SKIPPED_COMMANDS]
    assert not missing, f"CLI table commands no README line runs: {missing}"
    assert set(SKIPPED_COMMANDS) <= set(table), set(SKIPPED_COMMANDS) - set(table)
    assert not set(SKIPPED_COMMANDS) & run, "listed as skipped but run"


def _start_demo(ports: DemoPorts, data_dir: Path) -> tuple[subprocess.Popen[bytes], list[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshd.demo", *demo_args(ports), "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lines: list[bytes] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True).start()
    return proc, lines


def _run(
    line: str, ports: DemoPorts, cwd: Path, data_dir: Path
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MESHD_HTTP_ADDR"] = f"127.0.0.1:{ports.http}"
    for name in ("CONSUL_HTTP_ADDR", "MESHD_HTTP_TOKEN", "CONSUL_HTTP_TOKEN"):
        env.pop(name, None)
    command = localize(command_of(line), ports, data_dir)
    # Never the user's make run demo: no fixed port survives the rewrite.
    assert not re.search(r"(?<!\d)(8500|8600|8300|9191|8080|9090|9102)(?!\d)", command), command
    assert DEMO_DATA_DIR not in command, command
    if l7_effect(command, "") is not None:
        status, out, err = run_l7_line(command, env, cwd)
        return subprocess.CompletedProcess(command, status, out, err)
    return subprocess.run(
        command,
        shell=True,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.e2e
@pytest.mark.slow
def test_the_readme_commands_work_against_the_demo(tmp_path: Path) -> None:
    lines = typed_lines(readme_blocks(README.read_text()))
    ports = free_demo_ports()
    data_dir = tmp_path / "demo-data"
    proc, out = _start_demo(ports, data_dir)
    failures: list[str] = []
    try:
        wait_for(lambda: b"Try next" in b"".join(out), 90, "the demo's help")
        wait_for(lambda: get(f"http://127.0.0.1:{ports.upstream}/"), 60, "api via the mesh")
        for line in lines:
            command = command_of(line)
            done = _run(line, ports, tmp_path, data_dir)
            shown = f"{command!r} -> exit {done.returncode}: {done.stdout[-400:]}{done.stderr}"
            if done.returncode != expected_exit(line):
                failures.append(f"exit {expected_exit(line)} expected: {shown}")
            if EXPECTED_OUTPUT.get(command, "") not in done.stdout:
                failures.append(f"{EXPECTED_OUTPUT[command]!r} expected: {shown}")
            if l7_effect(command, done.stdout) is False:
                failures.append(f"the L7 effect its comment promises: {shown}")
            for name in EXPECTED_FILES.get(command, []):
                if not (tmp_path / name).is_file():
                    failures.append(f"{name} not written: {shown}")
            if "Traceback" in done.stderr:
                failures.append(f"traceback: {shown}")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert not failures, "\n".join(failures)
