"""``meshd tls ca create`` and ``meshd tls cert create`` (like ``consul tls``).

Files are written to the current directory: ``meshd-agent-ca.pem`` and
``meshd-agent-ca-key.pem`` for the CA; ``<dc>-server-meshd-<n>.pem`` and
``-key.pem`` (or ``-client-``) for certificates, ``n`` counting up from 0.
Existing files are never overwritten.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from ..agent_tls import create_ca, create_cert, write_pem

CA_CERT = "meshd-agent-ca.pem"
CA_KEY = "meshd-agent-ca-key.pem"


@click.group()
def tls() -> None:
    """Create the agent CA and agent certificates for mTLS between agents."""


@tls.group("ca")
def ca_group() -> None:
    """Manage the agent certificate authority."""


@ca_group.command("create")
@click.option("--domain", default="consul", show_default=True, help="The cluster's DNS domain.")
@click.option("--days", default=1825, show_default=True, type=click.IntRange(1, 36500))
@click.option("--name-constraint", is_flag=True, help="Limit the CA to the domain and localhost.")
def ca_create(domain: str, days: int, name_constraint: bool) -> None:
    """Create a new agent CA in the current directory."""
    for name in (CA_CERT, CA_KEY):
        if Path(name).exists():
            raise click.ClickException(f"{name} already exists; refusing to overwrite it")
    try:
        cert, key = create_ca(domain=domain, days=days, name_constraint=name_constraint)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    write_pem(CA_CERT, cert)
    write_pem(CA_KEY, key, private=True)
    click.echo(f"==> Saved {CA_CERT}")
    click.echo(f"==> Saved {CA_KEY}")


def _next_name(dc: str, kind: str) -> tuple[str, str]:
    n = 0
    while True:
        base = f"{dc}-{kind}-meshd-{n}"
        if not Path(f"{base}.pem").exists() and not Path(f"{base}-key.pem").exists():
            return f"{base}.pem", f"{base}-key.pem"
        n += 1


def _check_ips(ips: tuple[str, ...]) -> list[str]:
    for ip in ips:
        try:
            ipaddress.ip_address(ip)
        except ValueError as exc:
            raise click.BadParameter(
                f"{ip!r} is not an IP address", param_hint="--additional-ipaddress"
            ) from exc
    return list(ips)


@tls.group("cert")
def cert_group() -> None:
    """Issue agent certificates signed by the agent CA."""


@cert_group.command("create")
@click.option("--server", "kind", flag_value="server", help="A server certificate.")
@click.option("--client", "kind", flag_value="client", help="A client certificate.")
@click.option("--dc", default="dc1", show_default=True)
@click.option("--domain", default="consul", show_default=True)
@click.option(
    "--ca", "ca_file", default=CA_CERT, show_default=True, type=click.Path(dir_okay=False)
)
@click.option(
    "--key", "key_file", default=CA_KEY, show_default=True, type=click.Path(dir_okay=False)
)
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 36500))
@click.option("--additional-ipaddress", "ips", multiple=True, help="Extra IP SAN (repeatable).")
@click.option("--additional-dnsname", "names", multiple=True, help="Extra DNS SAN (repeatable).")
def cert_create(
    kind: str | None,
    dc: str,
    domain: str,
    ca_file: str,
    key_file: str,
    days: int,
    ips: tuple[str, ...],
    names: tuple[str, ...],
) -> None:
    """Create a server or client certificate in the current directory."""
    if kind is None:
        raise click.UsageError("one of --server or --client is required")
    try:
        ca_pem = Path(ca_file).read_text()
        key_pem = Path(key_file).read_text()
    except OSError as exc:
        raise click.ClickException(
            f"cannot read the CA ({exc.filename}): {exc.strerror}; run 'meshd tls ca create' first"
        ) from exc
    try:
        cert, key = create_cert(
            ca_pem,
            key_pem,
            kind=kind,  # type: ignore[arg-type]
            dc=dc,
            domain=domain,
            ips=_check_ips(ips),
            dns_names=list(names),
            days=days,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    cert_name, key_name = _next_name(dc, kind)
    write_pem(cert_name, cert)
    write_pem(key_name, key, private=True)
    click.echo(f"==> Using {ca_file} and {key_file}")
    click.echo(f"==> Saved {cert_name}")
    click.echo(f"==> Saved {key_name}")
