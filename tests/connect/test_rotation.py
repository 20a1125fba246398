"""CA root rotation: initial root, rotate, overlap verification, prune timing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from connect import ca, rotation
from connect.errors import CAError
from connect.rotation import Root
from connect.spiffe import ServiceID

TD = "11111111-2222-3333-4444-555555555555.consul"
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
ROOT_TTL = timedelta(days=3650)
LEAF_TTL = timedelta(hours=72)
WEB = ServiceID(TD, "dc1", "web")


def _initial(serial: int = 1, bits: int = 256) -> Root:
    return rotation.initial_root(
        trust_domain=TD, key_type="ec", bits=bits, root_ttl=ROOT_TTL, now=NOW, serial=serial
    )


def _rotate(
    roots: tuple[Root, ...], *, now: datetime = NOW, serial: int = 100, bits: int = 256
) -> tuple[Root, ...]:
    return rotation.rotate(
        roots,
        trust_domain=TD,
        key_type="ec",
        bits=bits,
        root_ttl=ROOT_TTL,
        now=now,
        serial=serial,
    )


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def _leaf(signer: Root, now: datetime = NOW) -> x509.Certificate:
    info = ca.parse_csr(ca.make_csr(ca.generate_private_key("ec", 256), WEB))
    leaf = ca.sign_leaf(
        info,
        signing_cert_pem=signer.signing_cert,
        signing_key_pem=signer.signing_key,
        ttl=LEAF_TTL,
        now=now,
        serial=4242,
    )
    return _cert(leaf.cert_pem)


def _verify(leaf: x509.Certificate, intermediates: tuple[str, ...], trusted: list[str]) -> str:
    """Verify as a peer trusting only ``trusted`` would; returns the SPIFFE URI."""
    store = Store([_cert(p) for p in trusted])
    verifier = PolicyBuilder().store(store).time(NOW + timedelta(hours=1)).build_client_verifier()
    verified = verifier.verify(leaf, [_cert(p) for p in intermediates])
    uris = [
        n.value for n in verified.subjects or () if isinstance(n, x509.UniformResourceIdentifier)
    ]
    return uris[0]


# -- RFC 3339 ----------------------------------------------------------------------------------


def test_rfc3339_writes_consuls_json_form() -> None:
    assert rotation.rfc3339(datetime(2026, 11, 22, 6, 50, tzinfo=UTC)) == "2026-11-22T06:50:00Z"
    assert rotation.rfc3339(datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)) == (
        "2026-01-02T03:04:05.12Z"
    )
    plus2 = timezone(timedelta(hours=2))
    assert rotation.rfc3339(datetime(2026, 1, 2, 3, 0, tzinfo=plus2)) == "2026-01-02T01:00:00Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T06:50:00Z", datetime(2026, 11, 22, 6, 50, tzinfo=UTC)),
        ("2026-11-22T06:50:00.123456789Z", datetime(2026, 11, 22, 6, 50, 0, 123456, tzinfo=UTC)),
        ("2026-11-22T08:50:00+02:00", datetime(2026, 11, 22, 6, 50, tzinfo=UTC)),
    ],
)
def test_parse_rfc3339_reads_go_timestamps_as_utc(text: str, expected: datetime) -> None:
    parsed = rotation.parse_rfc3339(text)
    assert parsed == expected and parsed.tzinfo == UTC


@pytest.mark.parametrize("text", ["", "2026-11-22", "2026-11-22T06:50:00", "yesterday"])
def test_parse_rfc3339_rejects_other_text(text: str) -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        rotation.parse_rfc3339(text)


# -- initial root and needs_rotation -----------------------------------------------------------


def test_initial_root_is_active_and_signs_for_itself() -> None:
    root = _initial()
    assert root.active and root.rotated_out_at == ""
    assert root.signing_cert == root.root_cert and root.signing_key
    assert root.name == "meshd CA Primary Cert"
    assert root.id == ca.fingerprint_id(root.root_cert)
    assert root.signing_key_id == ca.key_id(_cert(root.root_cert).public_key())
    assert root.external_trust_domain == "11111111-2222-3333-4444-555555555555"
    assert (root.not_before, root.not_after) == ("2026-05-01T11:59:00Z", "2036-04-28T12:00:00Z")
    assert (root.private_key_type, root.private_key_bits, root.serial_number) == ("ec", 256, 1)
    assert root.intermediate_certs == ()


@pytest.fixture(scope="module")
def active() -> Root:
    return _initial()


@pytest.mark.parametrize(
    ("key_type", "bits", "expected"),
    [("ec", 256, False), ("ec", 384, True), ("rsa", 2048, True)],
)
def test_needs_rotation_when_key_type_or_bits_change(
    active: Root, key_type: str, bits: int, expected: bool
) -> None:
    assert rotation.needs_rotation(active, key_type=key_type, bits=bits, key_pem=None) is expected


def test_needs_rotation_when_a_supplied_key_differs(active: Root) -> None:
    other = ca.generate_private_key("ec", 256)
    assert rotation.needs_rotation(active, key_type="ec", bits=256, key_pem=other) is True
    same = active.signing_key
    assert rotation.needs_rotation(active, key_type="ec", bits=256, key_pem=same) is False


# -- rotate ------------------------------------------------------------------------------------


def test_rotate_activates_a_new_root_and_retires_the_old_one() -> None:
    stale = replace(_initial(serial=7), active=False, rotated_out_at="2026-04-01T00:00:00Z")
    old = _initial(serial=8)
    later = NOW + timedelta(days=30)
    roots = _rotate((stale, old), now=later, serial=9, bits=384)
    assert [r.active for r in roots] == [False, False, True]
    assert roots[0] is stale
    retired, new = roots[1], roots[2]
    assert retired.id == old.id and retired.root_cert == old.root_cert
    assert retired.rotated_out_at == "2026-05-31T12:00:00Z"
    assert retired.signing_key == ""
    assert new.id != old.id and new.serial_number == 9
    assert (new.private_key_type, new.private_key_bits) == ("ec", 384)
    assert new.signing_cert == new.root_cert and new.signing_key
    (cross_pem,) = new.intermediate_certs
    cross = _cert(cross_pem)
    assert cross.subject == _cert(new.root_cert).subject
    assert cross.issuer == _cert(old.root_cert).subject
    assert cross.serial_number == 10  # serial + 1 by default


def test_rotate_without_an_active_root_is_an_error() -> None:
    inactive = replace(_initial(), active=False)
    with pytest.raises(CAError, match="no active CA root"):
        _rotate((inactive,))
    with pytest.raises(CAError, match="no active CA root"):
        _rotate(())


def test_rotate_can_skip_cross_signing_when_forced() -> None:
    roots = rotation.rotate(
        (_initial(),),
        trust_domain=TD,
        key_type="ec",
        bits=256,
        root_ttl=ROOT_TTL,
        now=NOW,
        serial=2,
        force_without_cross_signing=True,
    )
    assert roots[-1].active and roots[-1].intermediate_certs == ()


@pytest.fixture(scope="module")
def overlap() -> tuple[Root, Root]:
    old = _initial(serial=1)
    retired, new = _rotate((old,), serial=2)
    return replace(retired, signing_key=old.signing_key), new


def test_new_leaf_with_intermediates_verifies_for_old_root_only_peers(
    overlap: tuple[Root, Root],
) -> None:
    old, new = overlap
    leaf = _leaf(new)
    assert _verify(leaf, new.intermediate_certs, [old.root_cert]) == WEB.uri()


def test_new_leaf_with_intermediates_verifies_for_new_root_only_peers(
    overlap: tuple[Root, Root],
) -> None:
    _old, new = overlap
    assert _verify(_leaf(new), new.intermediate_certs, [new.root_cert]) == WEB.uri()


def test_new_leaf_without_intermediates_fails_for_old_root_only_peers(
    overlap: tuple[Root, Root],
) -> None:
    old, new = overlap
    with pytest.raises(VerificationError):
        _verify(_leaf(new), (), [old.root_cert])


def test_old_leaf_verifies_against_the_bundle_of_both_roots(overlap: tuple[Root, Root]) -> None:
    old, new = overlap
    old_leaf = _leaf(old)  # signed before the rotation (key restored by the fixture)
    assert _verify(old_leaf, (), [old.root_cert, new.root_cert]) == WEB.uri()


# -- prune -------------------------------------------------------------------------------------


def test_prune_drops_retired_roots_at_exactly_two_leaf_ttls() -> None:
    roots = _rotate((_initial(),), now=NOW)
    due = NOW + 2 * LEAF_TTL
    just_before = rotation.prune(roots, now=due - timedelta(microseconds=1), leaf_ttl=LEAF_TTL)
    assert just_before == roots
    at_due = rotation.prune(roots, now=due, leaf_ttl=LEAF_TTL)
    assert at_due == (roots[1],) and at_due[0].active


def test_prune_keeps_active_roots_and_retired_ones_without_a_time() -> None:
    undated = replace(_initial(serial=3), active=False)
    active = _initial(serial=4)
    far = NOW + timedelta(days=10_000)
    assert rotation.prune((undated, active), now=far, leaf_ttl=LEAF_TTL) == (undated, active)


def test_next_prune_at_is_the_earliest_retired_root_plus_two_leaf_ttls() -> None:
    first = _rotate((_initial(),), now=NOW)
    second = _rotate(first, now=NOW + timedelta(hours=5), serial=200)
    assert rotation.next_prune_at(second, LEAF_TTL) == NOW + 2 * LEAF_TTL
    assert rotation.next_prune_at((_initial(),), LEAF_TTL) is None
    later = rotation.prune(second, now=NOW + 2 * LEAF_TTL, leaf_ttl=LEAF_TTL)
    assert rotation.next_prune_at(later, LEAF_TTL) == NOW + timedelta(hours=5) + 2 * LEAF_TTL
