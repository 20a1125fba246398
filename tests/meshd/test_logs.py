"""Structured logs: JSON lines carry real fields; text lines stay key=value."""

from __future__ import annotations

import json
import logging
import sys

from meshd.logs import StructuredFormatter, log_event, record_fields


def _record(msg: str, *args: object, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("meshd.test", level, __file__, 1, msg, args, None)


def test_template_with_spaces_in_a_value_keeps_one_field_per_key() -> None:
    rec = _record("event=sync_failed reason=%s retry_in=%.1fs", "connection refused", 2.0)
    assert record_fields(rec) == {
        "event": "sync_failed",
        "reason": "connection refused",
        "retry_in": "2.0s",
    }


def test_whole_value_arguments_keep_their_json_type() -> None:
    rec = _record("event=sync_done writes=%d full=%s", 3, True)
    line = json.loads(StructuredFormatter(as_json=True).format(rec))
    assert line["event"] == "sync_done"
    assert line["writes"] == 3
    assert line["full"] is True
    assert line["level"] == "INFO" and line["logger"] == "meshd.test"
    assert line["ts"].endswith("Z") and "T" in line["ts"]
    assert "msg" not in line


def test_free_text_goes_to_msg_and_header_names_are_not_overwritten() -> None:
    rec = _record("http client went away conn=%x level=%s", 255, "x")
    line = json.loads(StructuredFormatter(as_json=True).format(rec))
    assert line["msg"] == "http client went away"
    assert line["conn"] == "ff"
    assert line["level"] == "INFO" and line["field_level"] == "x"


def test_unparseable_template_falls_back_to_the_rendered_message() -> None:
    rec = _record("%s", "config key 'x' is ignored")
    line = json.loads(StructuredFormatter(as_json=True).format(rec))
    assert line["msg"] == "config key 'x' is ignored"


def test_log_event_carries_a_dict_and_renders_logfmt_text() -> None:
    logger = logging.getLogger("meshd.test.event")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger.addHandler(Keep())
    logger.setLevel(logging.DEBUG)
    try:
        log_event(logger, logging.WARNING, "peer_wait", known=2, why="connection refused")
    finally:
        logger.handlers.clear()
    (rec,) = records
    text = StructuredFormatter(as_json=False).format(rec)
    tail = 'event=peer_wait known=2 why="connection refused"'
    assert text.endswith(f"[WARNING] meshd.test.event: {tail}")
    as_json = json.loads(StructuredFormatter(as_json=True).format(rec))
    assert as_json["known"] == 2 and as_json["why"] == "connection refused"


def test_exception_text_is_a_field_of_the_same_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord(
            "meshd.t", logging.ERROR, __file__, 1, "event=x", (), sys.exc_info()
        )
    line = StructuredFormatter(as_json=True).format(rec)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["error"]
