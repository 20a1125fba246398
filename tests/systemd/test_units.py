"""systemd/: the unit files pass ``systemd-analyze verify``, score at most
2.5 in ``systemd-analyze security --offline=yes`` (also with the port-53
drop-in), say what the issue requires, and the agent really serves under
the units' system call filter and MemoryDenyWriteExecute.

``systemd-analyze`` comes with Debian's ``systemd`` package; when it is
missing the tests install it (as root, with apt-get) rather than skip."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.machine_lock import machine_lock
from tests.meshd.harness import free_port

UNITS = Path(__file__).resolve().parents[2] / "systemd"
MESHD_BIN = Path("/opt/meshd/bin/meshd")
MAX_EXPOSURE = 2.5
OVERALL = re.compile(r"Overall exposure level for (\S+): (\d+(?:\.\d+)?)")
MISSING_BINARY = "Command /opt/meshd/bin/meshd is not executable"


def _apt_install(*packages: str) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(f"{' '.join(packages)} missing and this is not root with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    with machine_lock("apt"):
        if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
            subprocess.run(cmd, env=env, capture_output=True, check=True)


@pytest.fixture(scope="module")
def analyze() -> str:
    """The path of systemd-analyze, installed first when missing."""
    if shutil.which("systemd-analyze") is None:
        _apt_install("systemd")
    path = shutil.which("systemd-analyze")
    assert path is not None, "systemd-analyze still missing after installing systemd"
    return path


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file as (key, value) lists: keys may repeat."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is not KEY=VALUE"
        current.append((key, value))
    return sections


def values(path: Path, section: str, key: str) -> list[str]:
    return [v for k, v in parse_unit(path).get(section, []) if k == key]


def one(path: Path, section: str, key: str) -> str:
    found = values(path, section, key)
    assert len(found) == 1, f"{path.name}: [{section}] {key}= appears {len(found)} times"
    return found[0]


# ------------------------------------------------------------ what they say

COMMON_SERVICE = {
    "Restart": "on-failure",
    "LimitNOFILE": "65536",
    "User": "meshd",
    "Group": "meshd",
    "ConfigurationDirectory": "meshd",
    "UMask": "0077",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "DevicePolicy": "closed",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "ProtectProc": "invisible",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
}


@pytest.mark.parametrize("unit", ["meshd.service", "meshd-proxy.service"])
@pytest.mark.parametrize("key", sorted(COMMON_SERVICE))
def test_both_units_set_the_required_service_settings(unit: str, key: str) -> None:
    assert one(UNITS / unit, "Service", key) == COMMON_SERVICE[key]


def test_the_agent_unit_is_type_notify_and_reloads_with_sighup() -> None:
    unit = UNITS / "meshd.service"
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "main"
    assert one(unit, "Service", "ExecStart") == (
        "/opt/meshd/bin/meshd agent --config-dir /etc/meshd"
    )
    assert one(unit, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(unit, "Service", "StateDirectory") == "meshd"
    assert one(unit, "Service", "RestrictAddressFamilies").split() == [
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
        "AF_NETLINK",
    ]
    assert values(unit, "Service", "SystemCallFilter")[0] == "@system-service"
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_the_proxy_unit_binds_to_the_agent_and_reads_its_token_from_a_file() -> None:
    unit = UNITS / "meshd-proxy.service"
    assert one(unit, "Service", "Type") == "notify"  # the proxy sends READY=1
    assert one(unit, "Service", "NotifyAccess") == "main"
    assert "meshd.service" in one(unit, "Unit", "BindsTo").split()
    assert "meshd.service" in one(unit, "Unit", "After").split()
    assert one(unit, "Service", "EnvironmentFile") == "-/etc/meshd/proxy.env"
    assert one(unit, "Service", "ExecStart") == (
        "/opt/meshd/bin/meshd proxy --http-addr 127.0.0.1:8500 --metrics-addr 127.0.0.1:9102"
    )
    assert "--token" not in one(unit, "Service", "ExecStart")  # ps would show it
    assert one(unit, "Service", "RestrictAddressFamilies").split() == [
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
    ]


def test_the_dns_drop_in_adds_only_the_bind_service_capability() -> None:
    sections = parse_unit(UNITS / "meshd-dns-port53.conf")
    assert sections == {
        "Service": [
            ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
            ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ]
    }


# ------------------------------------------------------- systemd-analyze


@pytest.fixture
def unit_dir(tmp_path: Path) -> Iterator[Path]:
    """The units copied into a directory of their own (systemd-analyze adds
    a unit file's directory to its search path, drop-ins included)."""
    d = tmp_path / "units"
    d.mkdir()
    for name in ("meshd.service", "meshd-proxy.service"):
        shutil.copy(UNITS / name, d / name)
    yield d


def _with_drop_in(unit_dir: Path) -> None:
    (unit_dir / "meshd.service.d").mkdir()
    shutil.copy(UNITS / "meshd-dns-port53.conf", unit_dir / "meshd.service.d")


def _verify(analyze: str, unit_dir: Path) -> list[str]:
    proc = subprocess.run(
        [analyze, "verify", str(unit_dir / "meshd.service"), str(unit_dir / "meshd-proxy.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]


def _expected_verify_noise() -> int:
    """Lines about the missing binary: one per unit, none where meshd is installed."""
    return 0 if os.access(MESHD_BIN, os.X_OK) else 2


def test_verify_reports_nothing_but_the_missing_binary(analyze: str, unit_dir: Path) -> None:
    lines = _verify(analyze, unit_dir)
    assert [line for line in lines if MISSING_BINARY not in line] == []
    assert len(lines) == _expected_verify_noise(), lines


def test_verify_with_the_dns_drop_in_reports_nothing_else(analyze: str, unit_dir: Path) -> None:
    _with_drop_in(unit_dir)
    lines = _verify(analyze, unit_dir)
    assert [line for line in lines if MISSING_BINARY not in line] == []
    assert len(lines) == _expected_verify_noise(), lines


def exposure(analyze: str, unit: Path) -> float:
    proc = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = OVERALL.search(proc.stdout + proc.stderr)
    assert found is not None, f"no overall exposure in:\n{proc.stdout}\n{proc.stderr}"
    assert found.group(1) == unit.name
    print(f"{unit.name}: overall exposure {found.group(2)}")
    return float(found.group(2))


@pytest.mark.parametrize("name", ["meshd.service", "meshd-proxy.service"])
def test_each_unit_scores_at_most_2_5(analyze: str, unit_dir: Path, name: str) -> None:
    assert exposure(analyze, unit_dir / name) <= MAX_EXPOSURE


def test_the_agent_with_the_dns_drop_in_still_scores_at_most_2_5(
    analyze: str, unit_dir: Path
) -> None:
    plain = exposure(analyze, unit_dir / "meshd.service")
    _with_drop_in(unit_dir)
    with_caps = exposure(analyze, unit_dir / "meshd.service")
    assert plain < with_caps <= MAX_EXPOSURE  # the drop-in is applied, and costs little


def test_a_unit_without_hardening_scores_worse(analyze: str, tmp_path: Path) -> None:
    # The score parser must be able to fail: an unhardened unit is far above 2.5.
    bare = tmp_path / "bare.service"
    bare.write_text("[Service]\nExecStart=/bin/true\n")
    assert exposure(analyze, bare) > 9


# ------------------------------------------ the agent inside the sandbox

# Installs what the units' SystemCallFilter= (allow list minus deny groups,
# SystemCallErrorNumber=EPERM) and MemoryDenyWriteExecute= install, the way
# systemd 252 does (seccomp filters), then execs the command.
SANDBOX = textwrap.dedent(
    """
    import errno, mmap, os, subprocess, sys
    import seccomp

    def group(name):
        out = subprocess.run(["systemd-analyze", "syscall-filter", name],
                             capture_output=True, text=True, check=True).stdout
        calls = set()
        for line in out.splitlines()[1:]:
            word = line.strip()
            if word.startswith("@"):
                calls |= group(word)
            elif word and not word.startswith("#"):
                calls.add(word)
        return calls

    allow, deny = set(), set()
    for spec in sys.argv[1].split(";"):
        target = deny if spec.startswith("~") else allow
        for name in spec.lstrip("~").split():
            target |= group(name) if name.startswith("@") else {name}
    calls = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
    for name in sorted(allow - deny):
        try:
            calls.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError, OSError):
            pass  # not a system call of this architecture
    wx = mmap.PROT_WRITE | mmap.PROT_EXEC
    mdwe = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    mdwe.add_rule(seccomp.ERRNO(errno.EPERM), "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, wx, wx))
    for name in ("mprotect", "pkey_mprotect"):
        mdwe.add_rule(seccomp.ERRNO(errno.EPERM), name,
                      seccomp.Arg(2, seccomp.MASKED_EQ, mmap.PROT_EXEC, mmap.PROT_EXEC))
    mdwe.load()
    calls.load()
    try:
        mmap.mmap(-1, 4096, prot=wx)
    except OSError:
        print("sandbox: on", file=sys.stderr, flush=True)
    else:
        sys.exit("sandbox: writable+executable memory still allowed")
    os.execv(sys.argv[2], sys.argv[2:])
    """
)


@pytest.fixture(scope="module")
def system_python_with_seccomp(analyze: str) -> str:
    python = "/usr/bin/python3"
    probe = [python, "-c", "import seccomp"]
    if not os.path.exists(python) or subprocess.run(probe, capture_output=True).returncode:
        _apt_install("python3", "python3-seccomp")
    assert subprocess.run(probe, capture_output=True).returncode == 0
    return python


def _get(url: str, method: str = "GET", body: bytes | None = None) -> bytes:
    req = urllib.request.Request(url, data=body, method=method)
    with urllib.request.urlopen(req, timeout=10) as resp:
        data: bytes = resp.read()
        return data


@pytest.mark.e2e
@pytest.mark.slow
def test_the_agent_serves_under_the_units_syscall_filter_and_mdwe(
    system_python_with_seccomp: str, tmp_path: Path
) -> None:
    unit = UNITS / "meshd.service"
    assert one(unit, "Service", "SystemCallErrorNumber") == "EPERM"
    assert one(unit, "Service", "MemoryDenyWriteExecute") == "yes"
    filters = ";".join(values(unit, "Service", "SystemCallFilter"))
    (tmp_path / "sandbox.py").write_text(SANDBOX)
    http = free_port()
    config = {
        "node_name": "sandboxed",
        "ports": {"http": http, "dns": free_port(), "server": free_port()},
    }
    (tmp_path / "agent.json").write_text(json.dumps(config))
    notify_dir = tempfile.mkdtemp(prefix="sdu-", dir="/tmp")
    notify_path = os.path.join(notify_dir, "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.settimeout(30)
    log = tmp_path / "agent.log"
    cmd = [system_python_with_seccomp, str(tmp_path / "sandbox.py"), filters, sys.executable]
    cmd += ["-m", "meshd", "agent", "--dev", "--config-file", str(tmp_path / "agent.json")]
    with open(log, "wb") as out:
        env = {**os.environ, "NOTIFY_SOCKET": notify_path}
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        while b"READY=1" not in listener.recv(4096):
            assert time.monotonic() < deadline, log.read_text()
        base = f"http://127.0.0.1:{http}"
        assert _get(f"{base}/v1/kv/sandbox", "PUT", b"works") == b"true"
        assert _get(f"{base}/v1/kv/sandbox?raw") == b"works"
        leaf = json.loads(_get(f"{base}/v1/agent/connect/ca/leaf/web"))  # ECDSA signing
        assert leaf["CertPEM"].startswith("-----BEGIN CERTIFICATE-----")
        assert json.loads(_get(f"{base}/v1/agent/host"))["Memory"]["total"] > 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        text = log.read_text()
        assert "sandbox: on" in text
        assert "Operation not permitted" not in text and "Traceback" not in text, text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        listener.close()
        shutil.rmtree(notify_dir)
