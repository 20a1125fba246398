"""ansible/site.yml applied for real: three servers and a client, each a
network namespace on this machine with its own address and file root.

The hosts are ``msh1..msh4`` on the bridge ``mshbr0`` (10.213.0.0/24; the
root namespace is 10.213.0.1 and is where ansible-playbook runs, with
``ansible_connection=local``). The role renders everything under
``<tmp>/hostN`` and, with ``meshd_service_manager: none``, runs the
``meshd_start_command`` this test writes (``ctl.py``), which starts the
``ExecStart=`` of the rendered unit inside the host's namespace. The checks
then ask the agents' HTTP API from inside a namespace: four nodes, a leader,
ACLs enforced, the inventory's service in the catalog, and a second run of
site.yml changing nothing. Needs root and iproute2 (installed if missing).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.machine_lock import machine_lock

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BRIDGE = "mshbr0"
SUBNET = "10.213.0"
# (inventory name, namespace, address, server?)
HOSTS = [
    ("server-1", "msh1", f"{SUBNET}.11", True),
    ("server-2", "msh2", f"{SUBNET}.12", True),
    ("server-3", "msh3", f"{SUBNET}.13", True),
    ("client-1", "msh4", f"{SUBNET}.14", False),
]
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")

CTL = '''\
"""meshd_start_command for the netns test: ctl.py NS ROOT start|restart|reload UNIT.

Runs the ExecStart= of ROOT/etc/systemd/system/UNIT.service (with its
EnvironmentFile=) inside network namespace NS, detached, pid in ROOT/run/.
Prints "changed" when it started, restarted or reloaded something.
"""
import os, shlex, signal, subprocess, sys, time
from pathlib import Path

ns, root, action, unit = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
unit_file = root / "etc/systemd/system" / f"{unit}.service"
run = root / "run"
run.mkdir(exist_ok=True)
pidfile = run / f"{unit}.pid"


def pid():
    try:
        p = int(pidfile.read_text())
        os.kill(p, 0)
        return p
    except (OSError, ValueError):
        return None


def start():
    env = dict(os.environ)
    argv = None
    for line in unit_file.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "ExecStart":
            argv = shlex.split(value)
        elif key == "EnvironmentFile":
            path = Path(value.lstrip("-"))
            if path.exists():
                for item in path.read_text().splitlines():
                    if item.strip() and not item.startswith("#"):
                        k, _, v = item.partition("=")
                        env[k.strip()] = v.strip()
    with open(run / f"{unit}.log", "ab") as log:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=env,
        )
    pidfile.write_text(str(proc.pid))


def stop(p):
    os.kill(p, signal.SIGTERM)
    for _ in range(300):
        if pid() is None:
            return
        time.sleep(0.1)
    os.kill(p, signal.SIGKILL)


p = pid()
if action == "start":
    if p is None:
        start()
        print("changed")
    else:
        print("running")
elif action == "restart":
    if p is not None:
        stop(p)
    start()
    print("changed")
elif action == "reload":
    if p is not None:
        os.kill(p, signal.SIGHUP)
        print("changed")
else:
    sys.exit(f"unknown action {action}")
'''


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def _cleanup_network() -> None:
    """Remove the namespaces (and whatever still runs in them), the veths and the bridge.

    A namespace outlives ``ip netns del`` while a process is in it, and the
    kernel destroys it (and its veth) asynchronously, so the processes are
    killed and waited for and the veths deleted explicitly.
    """
    listed = _sh("ip", "netns", "list", check=False).stdout
    pids: list[int] = []
    for _, ns, _, _ in HOSTS:
        if re.search(rf"^{ns}(\s|$)", listed, re.M):
            pids += [int(p) for p in _sh("ip", "netns", "pids", ns, check=False).stdout.split()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for i, (_, ns, _, _) in enumerate(HOSTS, start=1):
        _sh("ip", "link", "del", f"vmsh{i}", check=False)
        _sh("ip", "netns", "del", ns, check=False)
    _sh("ip", "link", "del", BRIDGE, check=False)


def _setup_network() -> None:
    _sh("ip", "link", "add", BRIDGE, "type", "bridge")
    _sh("ip", "addr", "add", f"{SUBNET}.1/24", "dev", BRIDGE)
    _sh("ip", "link", "set", BRIDGE, "up")
    for i, (_, ns, addr, _) in enumerate(HOSTS, start=1):
        veth = f"vmsh{i}"
        _sh("ip", "netns", "add", ns)
        _sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _sh("ip", "link", "set", veth, "master", BRIDGE, "up")
        _sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        _sh("ip", "-n", ns, "link", "set", "eth0", "up")
        _sh("ip", "-n", ns, "link", "set", "lo", "up")


def _need_ip() -> None:
    if shutil.which("ip") is None:
        with machine_lock("apt"):
            subprocess.run(["apt-get", "install", "-y", "-q", "iproute2"], check=False)
    assert shutil.which("ip"), "the netns test needs iproute2 (`ip`); apt-get install iproute2"


@pytest.fixture
def network() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.fail("needs root: it creates network namespaces and a bridge (CI runs as root)")
    _need_ip()
    _cleanup_network()  # leftovers of an interrupted run
    _setup_network()
    try:
        yield
    finally:
        _cleanup_network()


def _build(tmp: Path) -> tuple[Path, Path]:
    """meshd's wheel (``python -m build``: from the sdist, so nothing stale in
    the tree's build/ gets in) and a wheelhouse with its dependencies."""
    dist, wheelhouse = tmp / "dist", tmp / "wheelhouse"

    def run(*argv: str) -> None:
        proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{argv}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"

    with machine_lock("build"):  # the sdist step writes REPO/meshd.egg-info
        run("-m", "build", "--outdir", str(dist), str(REPO))
    (wheel,) = dist.glob("meshd-*.whl")
    run("-m", "pip", "-q", "wheel", "-w", str(wheelhouse), str(wheel))
    return wheel, wheelhouse


def _build_next_version(tmp: Path) -> Path:
    """A wheel of the same tree with the patch version bumped, for upgrade.yml."""
    src = tmp / "next-src"
    src.mkdir()
    for name in ("meshd", "raft", "registry", "connect"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "README.md", src / "README.md")
    text = (REPO / "pyproject.toml").read_text()
    version = re.search(r'^version = "(\d+)\.(\d+)\.(\d+)"', text, re.M)
    assert version
    major, minor, patch = version.groups()
    bumped = f'version = "{major}.{minor}.{int(patch) + 1}"'
    (src / "pyproject.toml").write_text(text.replace(version.group(0), bumped, 1))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "-q", "wheel", "--no-deps", "-w", str(tmp / "new"), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp / "new").glob("meshd-*.whl")
    return wheel


def _inventory(tmp: Path, wheel: Path, wheelhouse: Path) -> dict[str, Any]:
    ctl = tmp / "ctl.py"
    ctl.write_text(CTL)
    hosts: dict[str, dict[str, dict[str, Any]]] = {"meshd_servers": {}, "meshd_clients": {}}
    for name, ns, addr, server in HOSTS:
        root = tmp / name
        hostvars: dict[str, Any] = {
            "meshd_root": str(root),
            "meshd_bind_addr": addr,
            "meshd_client_addr": f"127.0.0.1 {addr}",
            "meshd_api_url": f"http://{addr}:8500",
            "meshd_start_command": f"{sys.executable} {ctl} {ns} {root}",
        }
        if not server:
            hostvars["meshd_services"] = [
                {"name": "web", "port": 8080, "tags": ["v1"], "meta": {"owner": "ansible-test"}}
            ]
        hosts["meshd_servers" if server else "meshd_clients"][name] = hostvars
    return {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "meshd_service_manager": "none",
                "meshd_user": "root",
                "meshd_group": "root",
                "meshd_create_user": False,
                "meshd_wheel": str(wheel),
                "meshd_python": os.path.realpath(sys._base_executable),  # type: ignore[attr-defined]
                "meshd_pip_extra_args": f"--no-index --find-links {wheelhouse}",
                "meshd_secrets_dir": str(tmp / "secrets"),
                "meshd_controller_cli": f"{sys.executable} -m meshd",
                "meshd_retry_interval": "1s",
                "meshd_config_extra": {"performance": {"raft_multiplier": 1}},
            },
            "children": {group: {"hosts": members} for group, members in hosts.items()},
        }
    }


def _playbook(
    tmp: Path, inventory: Path, playbook: str, log_name: str, *extra: str
) -> tuple[str, float]:
    """Run a playbook; returns its output and how long it took. Fails on error."""
    env = {
        **os.environ,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORKS": "10",
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
        "ANSIBLE_REMOTE_TEMP": str(tmp / "ansible-tmp"),
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
    }
    started = time.monotonic()
    proc = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(inventory),
            str(REPO / "ansible" / playbook),
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    took = time.monotonic() - started
    out = proc.stdout + proc.stderr
    (tmp / log_name).write_text(out)
    assert proc.returncode == 0, f"{playbook} failed:\n{out[-6000:]}"
    return out, took


def _recap(out: str) -> dict[str, dict[str, int]]:
    text = out[out.index("PLAY RECAP") :]
    found = {}
    for line in text.splitlines()[1:]:
        m = RECAP.match(line)
        if m:
            ok, changed, unreachable, failed = map(int, m.groups()[1:])
            found[m.group(1)] = {"ok": ok, "changed": changed, "failed": failed + unreachable}
    return found


def _api(ns: str, path: str, token: str = "") -> tuple[int, Any]:
    """GET 127.0.0.1:8500 from inside namespace ``ns``: (status, JSON body)."""
    code = textwrap.dedent(
        """
        import json, sys, urllib.error, urllib.request
        req = urllib.request.Request("http://127.0.0.1:8500" + sys.argv[1])
        if sys.argv[2]:
            req.add_header("X-Consul-Token", sys.argv[2])
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        try:
            body = json.loads(body)
        except ValueError:
            body = body.decode(errors="replace")
        print(json.dumps([status, body]))
        """
    )
    proc = _sh("ip", "netns", "exec", ns, sys.executable, "-c", code, path, token)
    status, body = json.loads(proc.stdout)
    return status, body


def _wait(what: str, predicate: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout}s (last: {last!r})")


def _check_rpc_is_mutual_tls(secrets: Path) -> None:
    """Server RPC presents server.dc1.consul and refuses a client without a certificate."""
    ca = str(secrets / "meshd-agent-ca.pem")
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    raw = socket.create_connection((HOSTS[0][2], 8300), timeout=5)
    with ctx.wrap_socket(raw) as tls:
        cert: Any = tls.getpeercert()
        names = [value for kind, value in cert["subjectAltName"] if kind == "DNS"]
        assert "server.dc1.consul" in names, names
        with pytest.raises((ssl.SSLError, ConnectionError, TimeoutError)):
            tls.sendall(b"\x00\x00\x00\x01\x80")
            if not tls.recv(1):
                raise ConnectionError("closed")


def _check_units_are_the_repositorys(tmp: Path) -> None:
    """The rendered units are systemd/'s, byte for byte, but for the file root and user."""
    for name, *_ in HOSTS:
        root = tmp / name
        for unit in ("meshd.service", "meshd-proxy.service"):
            rendered = (root / "etc/systemd/system" / unit).read_text()
            rendered = rendered.replace(str(root), "")
            rendered = re.sub(r"(?m)^(User|Group)=root$", r"\1=meshd", rendered)
            assert rendered == (REPO / "systemd" / unit).read_text(), (name, unit)


def _check_rolling_order(out: str) -> None:
    """upgrade.yml restarted one host at a time, clients first, and waited for
    autopilot's all-healthy after each before touching the next."""
    events = re.findall(
        r"^(RUNNING HANDLER \[meshd : Restart the agent \(meshd_start_command\)\]"
        r"|TASK \[meshd : Wait until autopilot reports every server healthy\])"
        r".*\n(?:FAILED - RETRYING.*\n)*(?:changed|ok): \[(\S+)\]",
        out,
        re.M,
    )
    order = [(("restart" if "HANDLER" in kind else "healthy"), host) for kind, host in events]
    expected = []
    for host in ["client-1", "server-1", "server-2", "server-3"]:
        expected += [("restart", host), ("healthy", host)]
    assert order == expected, order


def _logs(tmp: Path) -> str:
    parts = []
    for name, *_ in HOSTS:
        log = tmp / name / "run" / "meshd.log"
        if log.exists():
            parts.append(f"--- {name}\n" + "\n".join(log.read_text().splitlines()[-15:]))
    return "\n".join(parts)


def test_site_yml_builds_a_cluster_with_mtls_and_acls_and_is_idempotent(
    network: None, tmp_path: Path
) -> None:
    timings: dict[str, float] = {}
    started = time.monotonic()
    wheel, wheelhouse = _build(tmp_path)
    timings["build"] = time.monotonic() - started
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps(_inventory(tmp_path, wheel, wheelhouse), indent=2))

    out, timings["first apply"] = _playbook(tmp_path, inventory, "site.yml", "first.log")
    first = _recap(out)
    assert set(first) == {name for name, *_ in HOSTS}, out[-3000:]
    assert all(r["failed"] == 0 and r["changed"] > 0 for r in first.values()), first

    try:
        secrets = tmp_path / "secrets"
        management = (secrets / "acl-management.token").read_text().strip()
        assert (secrets / "acl-management.token").stat().st_mode & 0o777 == 0o600
        # Four nodes, a leader, and the inventory's service, seen from the client's namespace.
        status, leader = _api("msh4", "/v1/status/leader")
        assert status == 200 and leader in {f"{a}:8300" for _, _, a, s in HOSTS if s}
        nodes = _wait(
            "four nodes in the catalog",
            lambda: (
                [
                    n["Node"]
                    for n in _api("msh1", "/v1/catalog/nodes", management)[1]
                    if isinstance(n, dict)
                ]
                if len(_api("msh1", "/v1/catalog/nodes", management)[1]) == 4
                else None
            ),
        )
        assert sorted(nodes) == sorted(name for name, *_ in HOSTS)
        web = _wait(
            "the inventory's web service in the catalog",
            lambda: _api("msh2", "/v1/catalog/service/web", management)[1] or None,
        )
        assert [(s["Node"], s["ServicePort"], s["ServiceTags"]) for s in web] == [
            ("client-1", 8080, ["v1"])
        ]
        # ACLs are on with default deny: no token, no catalog and no ACL API.
        assert _api("msh1", "/v1/acl/tokens")[0] == 403
        assert _api("msh1", "/v1/catalog/service/web")[1] == []
        status, tokens = _api("msh1", "/v1/acl/tokens", management)
        assert status == 200
        described = sorted(t["Description"] for t in tokens if "(ansible)" in t["Description"])
        assert "meshd agent token for client-1 (ansible)" in described
        assert "meshd service-web token for client-1 (ansible)" in described
        _check_rpc_is_mutual_tls(secrets)
        status, health = _api("msh3", "/v1/operator/autopilot/health", management)
        assert status == 200 and health["Healthy"] is True, health
        assert len(health["Servers"]) == 3

        out2, timings["second apply"] = _playbook(tmp_path, inventory, "site.yml", "second.log")
        second = _recap(out2)
        assert set(second) == set(first)
        assert all(r["changed"] == 0 and r["failed"] == 0 for r in second.values()), (
            second,
            out2[-4000:],
        )
        _check_units_are_the_repositorys(tmp_path)

        # A new service in the inventory: client-1 reloads (same pid), nothing restarts.
        pid_before = (tmp_path / "client-1" / "run" / "meshd.pid").read_text()
        doc = json.loads(inventory.read_text())
        client = doc["all"]["children"]["meshd_clients"]["hosts"]["client-1"]
        client["meshd_services"].append({"name": "api", "port": 9090})
        inventory.write_text(json.dumps(doc, indent=2))
        out3, timings["services change"] = _playbook(tmp_path, inventory, "site.yml", "third.log")
        third = _recap(out3)
        assert {h for h, r in third.items() if r["changed"]} == {"client-1"}, third
        assert "RUNNING HANDLER [meshd : Reload the agent (meshd_start_command)]" in out3
        assert "Restart the agent (meshd_start_command)" not in out3
        assert (tmp_path / "client-1" / "run" / "meshd.pid").read_text() == pid_before
        api = _wait(
            "the new api service in the catalog",
            lambda: _api("msh1", "/v1/catalog/service/api", management)[1] or None,
        )
        assert [(s["Node"], s["ServicePort"]) for s in api] == [("client-1", 9090)]

        new_wheel = _build_next_version(tmp_path)
        out, timings["upgrade"] = _playbook(
            tmp_path, inventory, "upgrade.yml", "upgrade.log", "-e", f"meshd_wheel={new_wheel}"
        )
        upgrade_recap = out
        _check_rolling_order(out)
        version = new_wheel.name.split("-")[1]
        for name, ns, _, _ in HOSTS:
            status, me = _api(ns, "/v1/agent/self", management)
            assert status == 200 and me["Config"]["Version"] == version, (name, me["Config"])
        status, health = _api("msh1", "/v1/operator/autopilot/health", management)
        assert status == 200 and health["Healthy"] is True, health
        assert len(_api("msh4", "/v1/catalog/nodes", management)[1]) == 4
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nagent logs:\n{_logs(tmp_path)}") from None
    timings["whole"] = time.monotonic() - started
    print("timings:", {k: round(v, 1) for k, v in timings.items()})
    for title, text in (("second site.yml", out2), ("upgrade.yml", upgrade_recap)):
        recap_lines = [line for line in text.splitlines() if RECAP.match(line)]
        print(f"{title} PLAY RECAP:\n" + "\n".join(recap_lines))
