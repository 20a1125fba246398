"""``GET /v1/agent/monitor`` and ``meshd monitor``: the agent's log lines
streamed to each client at the level it asks for, a slow client losing
(and being told about) lines instead of slowing the agent."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from meshd.api.log_stream import LogFanout, fanout, format_json, format_text, parse_level
from tests.meshd.cli_support import one_error_line, run_cli
from tests.meshd.harness import APIClient, dev_agent
from tests.meshd.test_api_acl import acl_agent

DEADLINE = 30.0


def addr(api: APIClient) -> list[str]:
    return ["-http-addr", f"{api.host}:{api.port}"]


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    with trio.move_on_after(DEADLINE):
        while not condition():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out waiting for {what}")


def test_levels_follow_consul_names() -> None:
    assert parse_level("TRACE") == parse_level("debug") == logging.DEBUG
    assert parse_level("Warn") == logging.WARNING and parse_level("err") == logging.ERROR
    assert parse_level("loud") is None
    record = logging.LogRecord("meshd.agent", logging.WARNING, "", 0, "disk %s", ("full",), None)
    assert format_text(record).endswith(" [WARN]  meshd.agent: disk full")
    assert '"@level": "warn"' in format_json(record) and '"@message": "disk full"' in format_json(
        record
    )


async def test_a_full_buffer_drops_and_counts_lines_without_blocking() -> None:
    hub = LogFanout()
    sub = hub.subscribe(logging.INFO, False, capacity=3)
    try:
        log = logging.getLogger("meshd.test.fanout")
        for i in range(5):
            hub.handle(log.makeRecord(log.name, logging.INFO, "", 0, "line %d", (i,), None))
        hub.handle(log.makeRecord(log.name, logging.DEBUG, "", 0, "too verbose", (), None))
        assert (sub.dropped, sub.dropped_total) == (2, 2)
        batches = sub.batches()
        text = (await batches.__anext__()).decode()
        lines = text.splitlines()
        assert [line.rsplit(": ", 1)[1] for line in lines[:3]] == ["line 0", "line 1", "line 2"]
        assert lines[3] == "[WARN] Monitor dropped 2 logs during monitor request"
        assert sub.dropped == 0 and sub.dropped_total == 2
        await batches.aclose()
    finally:
        hub.unsubscribe(sub)
    assert hub.subscribers == 0 and hub not in logging.getLogger().handlers


async def test_a_verbose_subscriber_gets_debug_lines_and_the_agent_log_stays_at_its_level() -> None:
    root = logging.getLogger()
    saved = root.level
    root.setLevel(logging.WARNING)
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    own = Collect()
    root.addHandler(own)
    hub = LogFanout()
    try:
        sub = hub.subscribe(logging.DEBUG, False)
        logging.getLogger("meshd.test.level").debug("only for the monitor")
        logging.getLogger("meshd.test.level").warning("for everyone")
        hub.unsubscribe(sub)
        lines, _ = sub._take()
        assert [line.rsplit(": ", 1)[1] for line in lines] == [
            "only for the monitor",
            "for everyone",
        ]
        assert seen == ["for everyone"]  # the agent's own handler kept its level
        assert root.level == logging.WARNING and not own.filters
    finally:
        root.removeHandler(own)
        root.setLevel(saved)


async def test_a_package_logger_with_its_own_level_is_lowered_and_restored() -> None:
    # After a reload the agent sets the "meshd" logger's level explicitly.
    root, pkg = logging.getLogger(), logging.getLogger("meshd")
    saved = (root.level, pkg.level)
    root.setLevel(logging.WARNING)
    pkg.setLevel(logging.INFO)
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    own = Collect()
    root.addHandler(own)
    hub = LogFanout()
    try:
        sub = hub.subscribe(logging.DEBUG, False)
        log = logging.getLogger("meshd.test.pkg")
        log.debug("debug for the monitor")
        log.info("info for everyone")
        logging.getLogger("elsewhere").info("third-party info")
        hub.unsubscribe(sub)
        lines, _ = sub._take()
        got = [x.rsplit(": ", 1)[1] for x in lines]
        assert got == ["debug for the monitor", "info for everyone", "third-party info"]
        assert seen == ["info for everyone"]
        assert (root.level, pkg.level) == (logging.WARNING, logging.INFO)
    finally:
        root.removeHandler(own)
        root.setLevel(saved[0])
        pkg.setLevel(saved[1])


@pytest.mark.e2e
async def test_unknown_level_is_400_and_acl_needs_agent_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with dev_agent() as (_agent, api):
        resp = await api.get("/v1/agent/monitor?loglevel=loud")
        assert resp.status == 400 and resp.text.startswith("Unknown log level: loud")
        line = one_error_line(await run_cli(["monitor", "-log-level", "loud", *addr(api)]))
        assert line.startswith(
            "Error starting monitor: Unexpected response code: 400 (Unknown log level: loud"
        )
    assert fanout.subscribers == 0
    async with acl_agent(tmp_path, monkeypatch, initial=None) as (_agent, api):
        resp = await api.get("/v1/agent/monitor")
        assert resp.status == 403


@pytest.mark.e2e
async def test_monitor_command_streams_lines_until_interrupted() -> None:
    async with dev_agent() as (_agent, api):
        env = {k: v for k, v in os.environ.items() if not k.endswith("HTTP_TOKEN")}
        args = [sys.executable, "-m", "meshd", "monitor", "-log-level", "debug", *addr(api)]
        # SIGINT at its default, as in a terminal: a run started in the
        # background (`make test &`, a CI script) ignores SIGINT, children
        # inherit that, and Python then installs no KeyboardInterrupt.
        proc = await trio.lowlevel.open_process(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            assert proc.stdout is not None and proc.stderr is not None
            await wait_for(lambda: fanout.subscribers == 1, "the monitor to subscribe")
            logging.getLogger("meshd.test.monitor").debug("probe-%s", "debug")
            resp = await api.put("/v1/agent/reload")
            assert resp.status == 200
            out = b""
            with trio.move_on_after(DEADLINE):
                while b"event=reloaded" not in out or b"probe-debug" not in out:
                    out += await proc.stdout.receive_some(65536)
            text = out.decode()
            assert "probe-debug" in text and "event=reloaded" in text, text
            reloaded = next(line for line in text.splitlines() if "event=reloaded" in line)
            assert " [INFO]  meshd.agent: event=reloaded" in reloaded
            assert " [DEBUG]  meshd.test.monitor: probe-debug" in text
            proc.send_signal(signal.SIGINT)
            with trio.fail_after(DEADLINE):
                # Read on to EOF, as a terminal does: debug lines keep coming,
                # and a full pipe would hold the monitor in write().
                while await proc.stdout.receive_some(65536):
                    pass
                status = await proc.wait()
            assert status == 0, (await proc.stderr.receive_some(65536)).decode()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await wait_for(lambda: fanout.subscribers == 0, "the monitor's subscription to end")


@pytest.mark.e2e
async def test_monitor_says_the_remote_side_ended_when_the_agent_stops() -> None:
    results = []
    async with trio.open_nursery() as nursery, dev_agent() as (_agent, api):

        async def run() -> None:
            results.append(await run_cli(["monitor", *addr(api)]))

        nursery.start_soon(run)
        await wait_for(lambda: fanout.subscribers == 1, "the monitor to subscribe")
    [result] = results
    assert result.exit_code == 1
    assert result.stderr == (
        "Remote side ended the monitor! This usually means that the\n"
        "remote side has exited or crashed.\n"
    )
    assert fanout.subscribers == 0


@pytest.mark.e2e
async def test_logjson_streams_hclog_json_lines() -> None:
    async with dev_agent() as (_agent, api):
        stream = await trio.open_tcp_stream(api.host, api.port)
        request = "GET /v1/agent/monitor?logjson&loglevel=warn HTTP/1.1\r\nHost: x\r\n\r\n"
        await stream.send_all(request.encode())
        await wait_for(lambda: fanout.subscribers == 1, "the stream to subscribe")
        logging.getLogger("meshd.test.json").info("not at warn")
        logging.getLogger("meshd.test.json").warning("disk %d%% full", 91)
        data = b""
        with trio.fail_after(DEADLINE):
            while b"disk 91% full" not in data:
                data += await stream.receive_some(65536)
        await stream.aclose()
        head, _, body = data.partition(b"\r\n\r\n")
        assert b"content-type: application/json" in head.lower()
        [line] = [x for x in body.split(b"\r\n") if x.startswith(b"{")]
        record = json.loads(line)
        assert record["@level"] == "warn" and record["@module"] == "meshd.test.json"
        assert record["@message"] == "disk 91% full" and record["@timestamp"].endswith("Z")
        assert b"not at warn" not in body
        await wait_for(lambda: fanout.subscribers == 0, "the subscription to end")


def test_json_lines_carry_the_event_fields_as_keys() -> None:
    record = logging.LogRecord(
        "meshd.sync", logging.WARNING, "", 0, "event=sync_failed reason=%s", ("no leader",), None
    )
    line = json.loads(format_json(record))
    assert line["@message"] == "event=sync_failed reason=no leader"
    assert (line["event"], line["reason"]) == ("sync_failed", "no leader")
