"""``load_config``: defaults, then files, then config directories, then flags.

The order and merge rules are Consul's (agent/config/builder.go): each
source is checked on its own first, so an error names the file that holds
the bad value, then the sources are merged, derived values filled in, and
the rules that span keys checked on the result.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from meshd.config.aliases import apply_deprecated
from meshd.config.derive import HostInfo, SystemHost, derive
from meshd.config.merge import Layer, merge_layers
from meshd.config.model import AgentConfig
from meshd.config.schema import Origin, build, normalize
from meshd.config.sources import dir_files, flag_values, read_file
from meshd.config.validate import validate

__all__ = ["DEV_DEFAULTS", "load_config"]

StrPath = str | os.PathLike[str]

# What -dev changes (Consul's DevSource): a single self-elected server on
# loopback with fast Raft timing, the mesh and the UI on, state in memory.
DEV_DEFAULTS: Mapping[str, Any] = {
    "server": True,
    "bootstrap": True,
    "bind_addr": "127.0.0.1",
    "client_addr": "127.0.0.1",
    "connect": {"enabled": True},
    "ui_config": {"enabled": True},
    "performance": {"raft_multiplier": 1},
}


def _file_layer(path: str, warnings: list[str]) -> Layer:
    origin = Origin(file=path)
    raw = apply_deprecated(read_file(path), origin, warnings)
    return Layer(origin, normalize(raw, AgentConfig, origin, warnings))


def load_config(
    files: Sequence[StrPath],
    dirs: Sequence[StrPath],
    flags: Mapping[str, Any],
    *,
    dev: bool,
    host: HostInfo | None = None,
) -> tuple[AgentConfig, list[str]]:
    """Load, merge and validate the agent configuration; return it and warnings.

    Sources in order: built-in defaults (dev defaults with ``dev``), each of
    ``files`` in order, each of ``dirs``' ``*.hcl``/``*.json``/``*.toml`` files in
    lexical order (then any ``config_file``/``config_dir`` flags), then the
    other ``flags``. Later sources override scalars, append to lists and
    update maps. ``flags`` maps the CLI's flag names (``http_port``,
    ``retry_join``, ...; see ``sources.FLAGS``) to values; ``None`` means not
    given. ``host`` supplies the host name and address for derived defaults.

    Raises ``ConfigError`` naming the file (or flag) and key of the first
    problem, and ``ValueError`` for a flag name it does not know (a caller
    bug). Blocking file I/O: call through ``trio.to_thread`` from async code.
    """
    warnings: list[str] = []
    extra = flag_values(flags)
    layers: list[Layer] = []
    if dev:
        layers.append(Layer(Origin(), normalize(DEV_DEFAULTS, AgentConfig, Origin(), warnings)))
    for path in [*(os.fspath(f) for f in files), *extra.files]:
        layers.append(_file_layer(path, warnings))
    for directory in [*(os.fspath(d) for d in dirs), *extra.dirs]:
        for path in dir_files(directory, warnings):
            layers.append(_file_layer(path, warnings))
    for flag, raw in extra.layers:
        origin = Origin(flag=flag)
        layers.append(Layer(origin, normalize(raw, AgentConfig, origin, warnings)))
    merged, origins = merge_layers(layers)
    derive(merged, dev=dev, host=host or SystemHost())
    config = build(AgentConfig, merged)
    warnings += validate(config, origins, layers)
    return config, warnings
