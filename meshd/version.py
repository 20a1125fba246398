"""meshd's version, from the installed distribution's metadata."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version


def meshd_version() -> str:
    try:
        return dist_version("meshd")
    except PackageNotFoundError:
        return "0.0.0+unknown"
