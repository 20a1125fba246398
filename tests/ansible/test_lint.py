"""The Ansible content passes ``ansible-lint --profile production``, the
playbooks parse, and the example inventory and upgrade.yml have the shape the
rollout relies on. (tests/ansible/test_site_netns.py applies them for real.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ANSIBLE = Path(__file__).resolve().parents[2] / "ansible"
BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1"}
    return subprocess.run(
        argv, cwd=ANSIBLE, capture_output=True, text=True, env=env, timeout=300, check=False
    )


def test_ansible_lint_production_profile_is_clean() -> None:
    proc = _run(str(BIN / "ansible-lint"), "--profile", "production", "--offline", "--nocolor")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "0 failure(s), 0 warning(s)" in out, out
    assert "Profile 'production' was required, and it passed" in out, out


def test_playbooks_pass_the_syntax_check() -> None:
    proc = _run(
        str(BIN / "ansible-playbook"),
        "--syntax-check",
        "-i",
        "inventory.example.ini",
        "site.yml",
        "upgrade.yml",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "playbook: site.yml" in proc.stdout and "playbook: upgrade.yml" in proc.stdout


def test_example_inventory_has_three_servers_and_two_clients() -> None:
    proc = _run(str(BIN / "ansible-inventory"), "-i", "inventory.example.ini", "--list")
    assert proc.returncode == 0, proc.stderr
    groups = json.loads(proc.stdout)
    assert len(groups["meshd_servers"]["hosts"]) == 3
    assert len(groups["meshd_clients"]["hosts"]) == 2
    hostvars = groups["_meta"]["hostvars"]
    addresses = {h: v["meshd_bind_addr"] for h, v in hostvars.items()}
    assert len(set(addresses.values())) == 5, addresses


def test_upgrade_goes_one_host_at_a_time_clients_before_servers() -> None:
    plays = yaml.safe_load((ANSIBLE / "upgrade.yml").read_text())
    assert [p["hosts"] for p in plays] == ["meshd_clients", "meshd_servers"]
    assert all(p["serial"] == 1 for p in plays)
    assert all(
        t["ansible.builtin.include_role"] == {"name": "meshd", "tasks_from": "upgrade.yml"}
        for p in plays
        for t in p["tasks"]
    )
    steps = yaml.safe_load((ANSIBLE / "roles/meshd/tasks/upgrade.yml").read_text())
    imported = [s.get("ansible.builtin.import_tasks") for s in steps]
    assert imported[-1] == "wait.yml", imported
    waits = yaml.safe_load((ANSIBLE / "roles/meshd/tasks/wait.yml").read_text())
    urls = [w["ansible.builtin.uri"]["url"] for w in waits]
    assert any(u.endswith("/v1/status/leader") for u in urls)
    assert any(u.endswith("/v1/operator/autopilot/health") for u in urls)
    health = next(w for w in waits if w["ansible.builtin.uri"]["url"].endswith("/health"))
    assert "Healthy" in health["until"]
