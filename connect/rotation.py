"""CA root rotation as a pure state machine over ``Root`` values.

The leader decides; this module only computes the next set of roots
(https://developer.hashicorp.com/consul/docs/connect/ca#root-certificate-rotation):

    initial_root            -> (A active)
    rotate (A active)       -> (A inactive, rotated_out_at=now, no key;
                                B active, intermediate_certs=(B cross-signed by A,))
    prune (now >= rotated_out_at + 2 * leaf TTL)
                            -> (B active)

During the overlap every root stays in the trust bundle, so leaves signed
by A keep verifying; leaves signed by B are presented as leaf + B's
``intermediate_certs``, so peers that still trust only A accept them too.
Two leaf TTLs is enough for every leaf signed by A to have expired or
been renewed (agents renew at about half the TTL).

Times in roots are RFC 3339 strings as in Consul's JSON. ``Root`` carries
the fields of Consul's ``structs.CARoot`` that rotation reads or writes; the
agent maps its registry records to and from it (meshd/agent/ca_records.py),
so this package imports nothing of the registry.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone

from .ca import (
    MAX_SERIAL,
    IssuedRoot,
    create_root,
    cross_sign,
    key_id,
    load_cert,
    load_private_key,
)
from .errors import CAError

ROOT_NAME = "meshd CA Primary Cert"
_TRUST_DOMAIN_SUFFIX = ".consul"
_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})"
)


@dataclass(frozen=True, slots=True)
class Root:
    """A CA root (Consul ``structs.CARoot`` without the Raft indexes).

    ``signing_key`` is the root's private key, blanked once rotated out;
    ``intermediate_certs`` are presented after a leaf it signed.
    """

    id: str
    name: str = ""
    serial_number: int = 0
    signing_key_id: str = ""
    external_trust_domain: str = ""
    not_before: str = ""
    not_after: str = ""
    root_cert: str = ""
    intermediate_certs: tuple[str, ...] = ()
    signing_cert: str = ""
    signing_key: str = ""
    active: bool = False
    rotated_out_at: str = ""
    private_key_type: str = "ec"
    private_key_bits: int = 256


def rfc3339(dt: datetime) -> str:
    """``2026-11-22T06:50:00Z`` (UTC; fractional seconds only when non-zero,
    trailing zeros trimmed, as Go's ``time.RFC3339Nano``)."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("rfc3339 needs a timezone-aware datetime")
    dt = dt.astimezone(UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_rfc3339(s: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime (sub-microsecond
    digits are dropped). Raises ``ValueError`` if ``s`` is not one."""
    m = _RFC3339_RE.fullmatch(s.strip())
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {s!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or "0")[:6].ljust(6, "0"))
    zone = m.group(8)
    if zone in ("Z", "z"):
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz).astimezone(UTC)


def _cluster_id(trust_domain: str) -> str:
    # Consul's ExternalTrustDomain is the cluster ID, not "<id>.consul".
    return trust_domain.removesuffix(_TRUST_DOMAIN_SUFFIX)


def _root(issued: IssuedRoot, trust_domain: str, intermediates: tuple[str, ...]) -> Root:
    return Root(
        id=issued.id,
        name=ROOT_NAME,
        serial_number=issued.serial,
        signing_key_id=issued.signing_key_id,
        external_trust_domain=_cluster_id(trust_domain),
        not_before=rfc3339(issued.not_before),
        not_after=rfc3339(issued.not_after),
        root_cert=issued.cert_pem,
        intermediate_certs=intermediates,
        signing_cert=issued.cert_pem,
        signing_key=issued.key_pem,
        active=True,
        rotated_out_at="",
        private_key_type=issued.key_type,
        private_key_bits=issued.bits,
    )


def initial_root(
    *,
    trust_domain: str,
    key_type: str,
    bits: int,
    root_ttl: timedelta,
    now: datetime,
    serial: int,
    key_pem: str | None = None,
) -> Root:
    """The first, active root of a cluster (it signs leaves itself:
    ``signing_cert == root_cert``). Raises ``CAError`` like ``create_root``."""
    issued = create_root(
        trust_domain=trust_domain,
        key_type=key_type,
        bits=bits,
        ttl=root_ttl,
        now=now,
        serial=serial,
        key_pem=key_pem,
    )
    return _root(issued, trust_domain, ())


def needs_rotation(active: Root, *, key_type: str, bits: int, key_pem: str | None) -> bool:
    """Does the configured key differ from the active root's?

    With ``key_pem`` (operator-supplied) the answer is whether its public key
    differs from the active root's (type and bits then come from the key);
    otherwise whether ``key_type``/``bits`` differ. Raises ``CAError`` if
    ``key_pem`` or the root certificate cannot be parsed.
    """
    if key_pem is None:
        return (key_type, bits) != (active.private_key_type, active.private_key_bits)
    supplied = load_private_key(key_pem).public_key()
    current = load_cert(active.root_cert).public_key()
    return key_id(supplied) != key_id(current)


def _active(roots: Sequence[Root]) -> Root:
    for root in roots:
        if root.active:
            return root
    raise CAError("there is no active CA root to rotate from")


def rotate(
    roots: Sequence[Root],
    *,
    trust_domain: str,
    key_type: str,
    bits: int,
    root_ttl: timedelta,
    now: datetime,
    serial: int,
    key_pem: str | None = None,
    cross_serial: int | None = None,
    force_without_cross_signing: bool = False,
) -> tuple[Root, ...]:
    """Replace the active root with a new one.

    The new root is active and its ``intermediate_certs`` hold it
    cross-signed by the old active root (serial ``cross_serial``, default
    ``serial + 1``); the old root stays, inactive, with ``rotated_out_at`` =
    ``now`` and its signing key blanked (it will not sign again). Other
    roots are unchanged; the new root comes last. With
    ``force_without_cross_signing`` no cross-certificate is made (Consul's
    ``ForceWithoutCrossSigning``: old-root-only peers then reject new leaves).
    Raises ``CAError`` if there is no active root, or the old root has no
    signing key to cross-sign with.
    """
    old = _active(roots)
    issued = create_root(
        trust_domain=trust_domain,
        key_type=key_type,
        bits=bits,
        ttl=root_ttl,
        now=now,
        serial=serial,
        key_pem=key_pem,
    )
    intermediates: tuple[str, ...] = ()
    if not force_without_cross_signing:
        if not old.signing_key:
            raise CAError(f"active root {old.id} has no signing key to cross-sign the new root")
        cross = cross_sign(
            new_root_cert_pem=issued.cert_pem,
            old_root_cert_pem=old.root_cert,
            old_root_key_pem=old.signing_key,
            now=now,
            serial=cross_serial if cross_serial is not None else min(serial + 1, MAX_SERIAL),
        )
        intermediates = (cross,)
    retired = replace(old, active=False, rotated_out_at=rfc3339(now), signing_key="")
    kept = tuple(retired if r is old else r for r in roots)
    return (*kept, _root(issued, trust_domain, intermediates))


def _prune_at(root: Root, leaf_ttl: timedelta) -> datetime | None:
    if root.active or not root.rotated_out_at:
        return None
    return parse_rfc3339(root.rotated_out_at) + 2 * leaf_ttl


def prune(roots: Sequence[Root], *, now: datetime, leaf_ttl: timedelta) -> tuple[Root, ...]:
    """Drop inactive roots rotated out at least two leaf TTLs before ``now``.

    Active roots and inactive ones without ``rotated_out_at`` are kept.
    Raises ``ValueError`` on a malformed ``rotated_out_at``.
    """
    kept = []
    for root in roots:
        at = _prune_at(root, leaf_ttl)
        if at is None or now < at:
            kept.append(root)
    return tuple(kept)


def next_prune_at(roots: Sequence[Root], leaf_ttl: timedelta) -> datetime | None:
    """When ``prune`` will next drop a root, or ``None`` if it never will."""
    times = [at for r in roots if (at := _prune_at(r, leaf_ttl)) is not None]
    return min(times, default=None)
