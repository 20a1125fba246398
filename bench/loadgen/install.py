"""Install the Debian tools a benchmark needs (etcd, wrk, gcc) with apt-get.

A benchmark never skips a baseline because a tool is missing: it installs it
or fails loudly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping


class MissingTool(RuntimeError):
    """A command is missing and could not be installed."""


def ensure_commands(commands: Mapping[str, str]) -> None:
    """Make every command in ``commands`` (command -> Debian package) available.

    Missing ones are installed with ``apt-get install -y`` (after an
    ``apt-get update`` if the first attempt fails). Raises ``MissingTool``
    when not root or when apt-get cannot install them.
    """
    missing = sorted({pkg for cmd, pkg in commands.items() if shutil.which(cmd) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        raise MissingTool(f"need {missing}: run `apt-get install -y {' '.join(missing)}` as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {' '.join(missing)} with apt-get", flush=True)
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        proc = subprocess.run(install, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise MissingTool(f"apt-get install {missing} failed:\n{proc.stderr[-2000:]}")
    still = [cmd for cmd in commands if shutil.which(cmd) is None]
    if still:
        raise MissingTool(f"{still} still missing after installing {missing}")


BASELINE_TOOLS = {"etcd": "etcd-server", "etcdctl": "etcd-client", "wrk": "wrk"}
