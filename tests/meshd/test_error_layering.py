"""Errors are mapped at the edge: domain and server code raise
``meshd.errors.RequestError``\\ s (a code, no status); one function in
meshd/http turns a code into a status, and an error crosses RPC as its code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from meshd.agent.server import _to_rpc, http_error_from_rpc
from meshd.errors import REQUEST_ERRORS, InvalidArgument, RequestError
from meshd.http import error_response, status_for

ROOT = Path(__file__).resolve().parents[2] / "meshd"
# The packages below the HTTP edge: they must not speak HTTP.
DOMAIN = ["agent", "acl", "checks", "dns", "config", "rpc.py"]
HTTP_NAMES = {
    "HTTPError",
    "BadRequest",
    "NoLeader",
    "error_response",
    "status_for",
    "ErrorMapping",
}


def _http_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and "http" in node.module.split("."):
            found += [f"{path.name}: {a.name}" for a in node.names if a.name in HTTP_NAMES]
    return found


def test_domain_code_raises_no_http_errors() -> None:
    files = [
        p for d in DOMAIN for p in ((ROOT / d).rglob("*.py") if (ROOT / d).is_dir() else [ROOT / d])
    ]
    assert len(files) > 40
    offenders = [hit for f in files for hit in _http_imports(f)]
    assert offenders == []


def test_a_violation_is_found(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from ..http import BadRequest, Request\n")
    assert _http_imports(bad) == ["bad.py: BadRequest"]


@pytest.mark.parametrize("code", sorted(REQUEST_ERRORS))
def test_every_code_has_a_status_and_survives_rpc(code: str) -> None:
    cls = REQUEST_ERRORS[code]
    status = status_for(code)
    assert 400 <= status < 600
    assert (status < 500) == cls.caller_fault
    err = cls("some text", "Field")
    wire = _to_rpc(err)
    assert wire is not None and wire.code == code
    back = http_error_from_rpc(wire)
    assert type(back) is cls and isinstance(back, RequestError)
    assert (back.message, back.field) == ("some text", "Field")
    assert error_response(back).status == status


def test_answers_keep_consuls_texts() -> None:
    assert error_response(InvalidArgument("Invalid wait time")).body == b"Invalid wait time"
    named = error_response(InvalidArgument("must be positive", "Config.LeafCertTTL"))
    assert named.body == b'must be positive (field "Config.LeafCertTTL")'
    denied = error_response(REQUEST_ERRORS["PermissionDenied"]("token lacks 'acl:write'"))
    assert (denied.status, denied.body) == (403, b"Permission denied: token lacks 'acl:write'")
    missing = error_response(REQUEST_ERRORS["ACLNotFound"]())
    assert (missing.status, missing.body) == (403, b"ACL not found")
    assert status_for("SomethingNew") == 500
