"""``meshd proxy --log-json``: events are JSON objects with real fields."""

from __future__ import annotations

import json
import logging

import pytest

from connect.proxy.logfmt import emit, log
from connect.proxy.main import _JSONFormatter


def test_emitted_event_becomes_json_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    emit(logging.WARNING, "worker_exited", worker=1, code=-9, restart_in=0.5)
    (record,) = caplog.records
    assert record.getMessage() == "event=worker_exited worker=1 code=-9 restart_in=0.5"
    line = json.loads(_JSONFormatter(worker=2).format(record))
    assert line["event"] == "worker_exited"
    assert (line["worker"], line["code"], line["restart_in"]) == (2, -9, 0.5)
    assert line["level"] == "WARNING" and "ts" in line and "msg" not in line


def test_plain_line_keeps_its_text_in_msg(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    log.info("event=started pid=%s", 42)
    line = json.loads(_JSONFormatter(worker=None).format(caplog.records[0]))
    assert line["msg"] == "event=started pid=42" and "worker" not in line
