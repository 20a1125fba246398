"""``make run`` shows the agent's log lines with time and level."""

from __future__ import annotations

import re
import subprocess
import sys

SCRIPT = """
import logging
from meshd import demo
demo._show_agent_log()
logging.getLogger("meshd.agent").info("event=agent_started node=%s", "meshd-dev")
logging.getLogger("meshd.config").warning("%s", "config key 'ui_config' has no effect yet")
"""
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


def test_demo_prints_agent_info_and_warnings_with_time_and_level() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    lines = out.stderr.splitlines()
    assert len(lines) == 2, out.stderr
    assert re.fullmatch(
        rf"{STAMP} \[INFO\] meshd.agent: event=agent_started node=meshd-dev", lines[0]
    )
    assert re.fullmatch(
        rf"{STAMP} \[WARNING\] meshd.config: config key 'ui_config' has no effect yet", lines[1]
    )
