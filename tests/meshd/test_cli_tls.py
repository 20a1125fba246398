"""``meshd tls`` writes Consul-named files, counts up, and never overwrites."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from meshd.cli import cli


@pytest.fixture
def in_tmp(tmp_path: Path) -> Path:
    old = os.getcwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(old)


def test_ca_then_server_and_client_certs(in_tmp: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["tls", "ca", "create"])
    assert res.exit_code == 0, res.output
    assert (in_tmp / "meshd-agent-ca.pem").exists()
    assert stat.S_IMODE((in_tmp / "meshd-agent-ca-key.pem").stat().st_mode) == 0o600
    for expected in ("dc1-server-meshd-0.pem", "dc1-server-meshd-1.pem"):
        res = runner.invoke(
            cli, ["tls", "cert", "create", "--server", "--additional-ipaddress", "10.0.0.5"]
        )
        assert res.exit_code == 0, res.output
        assert (in_tmp / expected).exists()
    cert = x509.load_pem_x509_certificate((in_tmp / "dc1-server-meshd-0.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "server.dc1.consul" in san.get_values_for_type(x509.DNSName)
    assert "10.0.0.5" in [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    res = runner.invoke(cli, ["tls", "cert", "create", "--client", "--dc", "east"])
    assert res.exit_code == 0, res.output
    assert (in_tmp / "east-client-meshd-0.pem").exists()


def test_errors_are_one_clear_line(in_tmp: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["tls", "cert", "create", "--server"])
    assert res.exit_code != 0 and "meshd tls ca create" in res.output
    runner.invoke(cli, ["tls", "ca", "create"])
    res = runner.invoke(cli, ["tls", "ca", "create"])
    assert res.exit_code != 0 and "refusing to overwrite" in res.output
    res = runner.invoke(cli, ["tls", "cert", "create"])
    assert res.exit_code != 0 and "--server or --client" in res.output
    res = runner.invoke(
        cli, ["tls", "cert", "create", "--server", "--additional-ipaddress", "nope"]
    )
    assert res.exit_code != 0 and "not an IP address" in res.output
    assert "Traceback" not in res.output
