"""The CA leader's mapping between registry CARoot records and connect's rotation.Root."""

from __future__ import annotations

from dataclasses import fields

from connect.rotation import Root
from meshd.agent.ca_records import record_from_root, records_from_roots, root_from_record
from registry.records import CARoot

STORED = CARoot(
    id="r1",
    name="meshd CA Primary Cert",
    serial_number=7,
    signing_key_id="aa:bb",
    external_trust_domain="11111111-2222",
    not_before="2026-05-01T12:00:00Z",
    not_after="2036-05-01T12:00:00Z",
    root_cert="ROOT-PEM",
    intermediate_certs=("CROSS-PEM",),
    signing_cert="SIGN-PEM",
    signing_key="KEY-PEM",
    active=True,
    rotated_out_at="",
    private_key_type="rsa",
    private_key_bits=2048,
    create_index=3,
    modify_index=9,
)


def test_every_root_field_is_a_record_field() -> None:
    record_fields = {f.name for f in fields(CARoot)}
    root_fields = {f.name for f in fields(Root)}
    assert record_fields - root_fields == {"create_index", "modify_index"}


def test_a_record_round_trips_through_a_root_except_its_raft_indexes() -> None:
    root = root_from_record(STORED)
    assert (root.id, root.serial_number, root.signing_key, root.private_key_bits) == (
        "r1",
        7,
        "KEY-PEM",
        2048,
    )
    back = record_from_root(root)
    assert (back.create_index, back.modify_index) == (0, 0)
    assert back == CARoot(**{f.name: getattr(STORED, f.name) for f in fields(Root)})
    assert records_from_roots([root, root]) == (back, back)
