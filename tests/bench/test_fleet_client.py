"""The fleet bench's lean decoding of index-only watch answers."""

from __future__ import annotations

import msgpack

from bench.loadgen.fleet_client import _decode


def _frame(rid: int) -> bytes:
    value = [{"Node": {"Node": f"n{i}"}, "Checks": [{"Status": "passing"}]} for i in range(3)]
    read = {"r": value, "i": 42, "kl": True, "lc": 0.0, "ec": "default", "f": False}
    return msgpack.packb({"v": 1, "id": rid, "ok": True, "r": read}, use_bin_type=True)


def test_an_index_only_answer_keeps_its_index_but_not_its_value() -> None:
    skip = {7}
    lean = _decode(_frame(7), skip)
    assert lean["id"] == 7 and lean["ok"] is True
    assert lean["r"]["i"] == 42 and lean["r"]["kl"] is True
    assert lean["r"]["r"] is None
    assert skip == set()  # each id is skipped once
    full = _decode(_frame(8), skip)
    assert full["r"]["r"][2]["Node"]["Node"] == "n2"
    assert full == msgpack.unpackb(_frame(8), raw=False)
