"""Keys accepted for compatibility that do nothing yet warn once, naming the key."""

from __future__ import annotations

import json
from pathlib import Path

from meshd.config import load_config


def test_inert_keys_each_warn_once_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    doc = {
        "data_dir": str(tmp_path / "d"),
        "ui_config": {"enabled": True},
        "telemetry": {"disable_hostname": True, "prometheus_retention_time": "60s"},
        "ports": {"grpc": 8502},
    }
    path.write_text(json.dumps(doc))
    _, warnings = load_config([str(path)], [], {}, dev=False)
    inert = [w for w in warnings if "has no effect yet" in w]
    assert len(inert) == 3, warnings
    assert not [w for w in warnings if "ui_config" in w]  # the UI is served (meshd/api/ui.py)
    for key in ("telemetry.disable_hostname", "ports.grpc"):
        assert sum(key in w for w in inert) == 1, (key, inert)
    assert all(str(path) in w for w in inert)


def test_grpc_port_flag_warns_too_and_dev_defaults_do_not(tmp_path: Path) -> None:
    _, quiet = load_config([], [], {}, dev=True)
    assert not [w for w in quiet if "has no effect yet" in w]
    _, warnings = load_config([], [], {"grpc_port": 8502}, dev=True)
    assert [w for w in warnings if "has no effect yet" in w and "grpc" in w]


def test_metrics_prefix_which_works_does_not_warn(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    doc = {"data_dir": str(tmp_path / "d"), "telemetry": {"metrics_prefix": "consul"}}
    path.write_text(json.dumps(doc))
    _, warnings = load_config([str(path)], [], {}, dev=False)
    assert not [w for w in warnings if "has no effect yet" in w]
