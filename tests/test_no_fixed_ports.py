"""Guard: no test listens on or talks to the ports a user's own agent or
``make run`` demo holds on 127.0.0.1 (Consul's defaults and the demo's).

With ``make run`` up, ``make test`` must neither fail on a taken port nor
reach the user's agent (a test once left a deny intention in the user's
demo). Tests take ports from ``free_port()``; the files listed in ALLOWED
only parse or print such addresses and bind nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).parent
FIXED = "8500|8501|8600|8300|9191|9102|8080|9090|9091|21000|21001|21002"
# A loopback address followed by a fixed port ("127.0.0.1:8500",
# ("127.0.0.1", 8500), "localhost:8600"), or a port option set to one.
PATTERNS = [
    re.compile(rf"""(127\.0\.0\.1|localhost|::1)\]?["']?\s*[:,]\s*({FIXED})\b"""),
    re.compile(rf"""(http|dns|server|metrics)[_-](port|addr)["']?\s*[=:,]\s*["']?({FIXED})\b"""),
    re.compile(rf"""["']-?-(http|dns|server)-port["']\s*,\s*["']({FIXED})["']"""),
    re.compile(rf"""["'](http|dns|server)["']\s*:\s*({FIXED})\b"""),
]
ALLOWED = {
    "test_no_fixed_ports.py": "this guard",
    "meshd/test_cli_client.py": "parses addresses (the 127.0.0.1:8500 default); binds nothing",
    "meshd/test_config_rules.py": "configuration values only",
    "meshd/test_config.py": "configuration values only",
    "meshd/test_api_sidecar.py": "asserts the default sidecar port an agent assigns; no proxy",
    "connect/proxy/test_flags.py": "parses the proxy's flags (their defaults); binds nothing",
    "connect/proxy/test_config_ownership.py": "pure listener-ownership computation",
    "meshd/test_registration_validation.py": "in-process API; asserts refusal texts",
    "connect/proxy/test_config.py": "proxy configuration diffing; binds nothing",
    "systemd/test_units.py": "checks the text of the unit files",
    "ansible/test_site_netns.py": "runs inside its own network namespaces",
    "test_readme_commands.py": "README lines as keys; rewritten to free ports before they run",
}


def test_tests_use_no_fixed_ports_on_loopback() -> None:
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        name = path.relative_to(TESTS).as_posix()
        if name in ALLOWED:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(p.search(line) for p in PATTERNS):
                found.append(f"{name}:{number}: {line.strip()}")
    assert found == [], "tests must use free_port(), not a user's fixed ports:\n" + "\n".join(found)


def test_the_guard_catches_the_spellings_that_collided() -> None:
    bad = [
        'get("http://127.0.0.1:8500/v1/kv/x")',
        'get(f"http://127.0.0.1:9191/")',
        'socket.create_connection(("127.0.0.1", 9102))',
        '"ports": {"http": 8500}',
        'flags = {"http_port": 8600}',
        '["agent", "-dev", "-http-port", "8500"]',
    ]
    missed = [line for line in bad if not any(p.search(line) for p in PATTERNS)]
    assert missed == []
    fine = ['("127.0.0.1", free_port())', '"127.0.5.2:9191"', '"10.0.0.1:8300"']
    assert not [line for line in fine if any(p.search(line) for p in PATTERNS)]
