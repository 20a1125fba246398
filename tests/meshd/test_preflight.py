"""The agent's startup checks turn environment failures into one-line
``StartupError``s naming the key, the value and the fix."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from meshd.agent.preflight import Listener, check_data_dir, listen_failure
from meshd.errors import StartupError

RPC = Listener("ports.server", "-server-port", "bind_addr", "-bind", (("10.0.0.9", 8301),))


def _bind_error(code: int) -> BaseException:
    # As trio hands it over: a transport error caused by the OSError, in a group.
    try:
        try:
            raise OSError(code, "boom")
        except OSError as exc:
            raise RuntimeError("cannot listen") from exc
    except RuntimeError as wrapped:
        return BaseExceptionGroup("nursery", [wrapped])


@pytest.mark.parametrize(
    ("code", "key", "text"),
    [
        (errno.EADDRINUSE, "ports.server", "ports.server = 8301: cannot listen on 10.0.0.9:8301:"
         " address already in use (is another meshd running?); stop it or choose another port"
         " (-server-port)"),
        (errno.EADDRNOTAVAIL, "bind_addr", "bind_addr = 10.0.0.9: cannot listen on 10.0.0.9:8301:"
         " not an address of this host; set bind_addr (-bind) to one of this host's addresses"),
        (errno.EACCES, "ports.server", "permission denied (ports below 1024 need privileges)"),
    ],
)  # fmt: skip
def test_bind_failures_name_the_key_value_and_fix(code: int, key: str, text: str) -> None:
    failure = listen_failure(_bind_error(code), RPC)
    assert failure is not None and failure.key == key
    assert text in str(failure) and str(failure).startswith("startup: ")
    assert "\n" not in str(failure)


def test_other_errors_are_not_taken_for_bind_failures() -> None:
    assert listen_failure(_bind_error(errno.ENOSPC), RPC) is None
    assert listen_failure(ValueError("no errno"), RPC) is None


def test_data_dir_that_is_a_file_or_under_one(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(StartupError) as info:
        check_data_dir(str(afile))
    assert str(info.value) == (
        f"startup: data_dir = {afile}: exists and is not a directory; "
        "point data_dir (-data-dir) at a directory meshd can create and write"
    )
    with pytest.raises(StartupError, match="not a directory"):
        check_data_dir(str(afile / "sub"))
    check_data_dir(str(tmp_path / "new" / "data"))
    assert (tmp_path / "new" / "data").is_dir()
