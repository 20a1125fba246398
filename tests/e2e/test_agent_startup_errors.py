"""A real ``meshd agent`` that cannot start in its environment says so in one
line naming the configuration key, exits non-zero and leaves nothing running."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshd.agent_tls import create_ca, create_cert, write_pem
from tests.meshd.harness import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _ports() -> list[str]:
    return [
        "-http-port",
        str(free_port()),
        "-dns-port",
        str(free_port()),
        "-server-port",
        str(free_port()),
    ]


def _start(args: list[str], cwd: Path) -> tuple[int, str, int]:
    """Run ``meshd agent ARGS`` until it exits (60 s at most); return its exit
    code, its stderr and its process group (for the leftover check)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshd", "agent", "-node", "n1", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError("the agent started instead of failing") from None
    return proc.returncode, err, proc.pid


def _assert_one_line(code: int, err: str, pgid: int, *expected: str) -> str:
    assert code != 0
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    for text in expected:
        assert text in lines[0], lines[0]
    # Nothing of the process group (a child proxy, a helper) is left running.
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    return lines[0]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key = create_ca(domain="consul")
    write_pem(str(root / "ca.pem"), ca_cert)
    for kind in ("server", "client"):
        cert, key = create_cert(ca_cert, ca_key, kind=kind, dc="dc1", domain="consul")
        write_pem(str(root / f"{kind}.pem"), cert)
        write_pem(str(root / f"{kind}-key.pem"), key, private=True)
    (root / "not-pem.pem").write_text("this is not a certificate\n")
    return root


def _server_config(tmp: Path, pki: Path, **files: str) -> str:
    tls = {
        "ca_file": str(pki / files.get("ca", "ca.pem")),
        "cert_file": str(pki / files.get("cert", "server.pem")),
        "key_file": str(pki / files.get("key", "server-key.pem")),
    }
    config = {
        "server": True,
        "bootstrap": True,
        "bind_addr": "127.0.0.1",
        "data_dir": str(tmp / "data"),
        "tls": {"defaults": tls},
    }
    path = tmp / "server.json"
    path.write_text(json.dumps(config))
    return str(path)


@pytest.fixture
def busy_port() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_http_port_in_use_names_the_key_and_address(tmp_path: Path, busy_port: int) -> None:
    args = [*_ports(), "-http-port", str(busy_port)]
    line = _assert_one_line(*_start(["-dev", *args], tmp_path), "ports.http", "-http-port")
    assert f"127.0.0.1:{busy_port}: address already in use (is another meshd running?)" in line


def test_dns_port_in_use(tmp_path: Path, busy_port: int) -> None:
    # A TCP listener is enough: DNS binds UDP and TCP on the same port.
    args = [*_ports(), "-dns-port", str(busy_port)]
    _assert_one_line(*_start(["-dev", *args], tmp_path), "ports.dns", f"127.0.0.1:{busy_port}")


def test_server_port_in_use(tmp_path: Path, busy_port: int) -> None:
    args = [*_ports(), "-server-port", str(busy_port)]
    _assert_one_line(*_start(["-dev", *args], tmp_path), "ports.server", "already in use")


@pytest.mark.parametrize(
    ("files", "key", "reason"),
    [
        ({"key": "missing-key.pem"}, "tls.defaults.key_file", "no such file"),
        ({"cert": "missing.pem"}, "tls.defaults.cert_file", "no such file"),
        ({"key": "client-key.pem"}, "tls.defaults.key_file", "does not match the certificate"),
        ({"ca": "not-pem.pem"}, "tls.defaults.ca_file", "not a PEM certificate"),
        (
            {"cert": "client.pem", "key": "client-key.pem"},
            "tls.defaults.cert_file",
            "a server needs a certificate for server.dc1.consul",
        ),
    ],
)
def test_bad_tls_files_name_the_file_and_key(
    tmp_path: Path, pki: Path, files: dict[str, str], key: str, reason: str
) -> None:
    config = _server_config(tmp_path, pki, **files)
    which = {"ca_file": "ca", "cert_file": "cert", "key_file": "key"}[key.rsplit(".", 1)[1]]
    wrong = str(pki / files[which])
    _assert_one_line(
        *_start([*_ports(), "-config-file", config], tmp_path), f"{key} = {wrong}", reason
    )


def test_data_dir_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    bad = str(tmp_path / "a-file" / "data")
    _assert_one_line(
        *_start(["-dev", *_ports(), "-data-dir", bad], tmp_path),
        f"data_dir = {bad}",
        "not a directory",
        "-data-dir",
    )


def test_data_dir_not_writable(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        bad = "/proc/meshd-data"  # not creatable, even for root
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        bad = str(tmp_path / "ro" / "data")
    _assert_one_line(
        *_start(["-dev", *_ports(), "-data-dir", bad], tmp_path), f"data_dir = {bad}", "-data-dir"
    )


def test_bind_address_not_on_this_host(tmp_path: Path, pki: Path) -> None:
    config = _server_config(tmp_path, pki)
    # 192.0.2.1 (TEST-NET-1) is never configured here: nothing is sent to it.
    args = [*_ports(), "-config-file", config, "-bind", "192.0.2.1"]
    line = _assert_one_line(*_start(args, tmp_path), "bind_addr = 192.0.2.1", "-bind")
    assert "not an address of this host" in line


def test_client_address_not_on_this_host(tmp_path: Path) -> None:
    args = ["-dev", *_ports(), "-client", "192.0.2.1"]
    _assert_one_line(*_start(args, tmp_path), "client_addr = 192.0.2.1", "-client")
