"""Reading configuration sources: JSON, HCL and TOML files, config directories, flags.

Files are size-limited (1 MiB) and must decode to an object. Directories
contribute their ``*.json``, ``*.hcl`` and ``*.toml`` files in lexical order, as
Consul's ``-config-dir`` does. Flags arrive from the CLI as a mapping of
flag name to value; ``None`` (and ``False`` for on/off flags) means "not
given", so click's defaults never override a file.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from meshd.config.values import shown
from meshd.errors import ConfigError

__all__ = ["FLAGS", "MAX_CONFIG_BYTES", "FlagValues", "dir_files", "flag_values", "read_file"]

MAX_CONFIG_BYTES = 1 << 20
EXTENSIONS = (".json", ".hcl", ".toml")

FlagKind = Literal["on", "value", "int", "list", "meta", "file", "dir"]

# Flag name (as the CLI passes it) -> (dotted configuration key, kind).
# "on" flags only ever turn something on; False means "not given".
FLAGS: Mapping[str, tuple[str, FlagKind]] = {
    "server": ("server", "on"),
    "bootstrap": ("bootstrap", "on"),
    "bootstrap_expect": ("bootstrap_expect", "int"),
    "node": ("node_name", "value"),
    "node_id": ("node_id", "value"),
    "data_dir": ("data_dir", "value"),
    "bind": ("bind_addr", "value"),
    "client": ("client_addr", "value"),
    "advertise": ("advertise_addr", "value"),
    "datacenter": ("datacenter", "value"),
    "domain": ("domain", "value"),
    "retry_join": ("retry_join", "list"),
    "retry_interval": ("retry_interval", "value"),
    "retry_max": ("retry_max", "int"),
    "join": ("start_join", "list"),
    "http_port": ("ports.http", "int"),
    "https_port": ("ports.https", "int"),
    "dns_port": ("ports.dns", "int"),
    "server_port": ("ports.server", "int"),
    "grpc_port": ("ports.grpc", "int"),
    "log_level": ("log_level", "value"),
    "log_json": ("log_json", "on"),
    "ui": ("ui_config.enabled", "on"),
    "recursor": ("recursors", "list"),
    "node_meta": ("node_meta", "meta"),
    "enable_script_checks": ("enable_script_checks", "on"),
    "enable_local_script_checks": ("enable_local_script_checks", "on"),
    "config_file": ("", "file"),
    "config_dir": ("", "dir"),
}


def flag_display(name: str) -> str:
    """How a flag is written on the command line: ``http_port`` -> ``--http-port``."""
    return "--" + name.replace("_", "-")


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError(path, None, "not a regular file")
            if info.st_size > MAX_CONFIG_BYTES:
                raise ConfigError(path, None, f"larger than {MAX_CONFIG_BYTES} bytes (1 MiB)")
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(path, None, "no such file") from None
    except IsADirectoryError:
        raise ConfigError(path, None, "is a directory (use a config directory for it)") from None
    except PermissionError:
        raise ConfigError(path, None, "permission denied") from None
    except OSError as err:
        raise ConfigError(path, None, f"cannot read: {err.strerror or err}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(path, None, f"larger than {MAX_CONFIG_BYTES} bytes (1 MiB)")
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise ValueError(f"duplicate key {json.dumps(name)}")
        out[name] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_json(path: str, text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        reason = f"invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        raise ConfigError(path, None, reason) from None
    except ValueError as err:
        raise ConfigError(path, None, f"invalid JSON: {err}") from None


def _parse_toml(path: str, text: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        match = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", str(err))
        if match:
            message, line, column = match.groups()
            reason = f"invalid TOML at line {line}, column {column}: {message}"
        else:
            reason = f"invalid TOML: {err}"
        raise ConfigError(path, None, reason) from None


def _parse_hcl(path: str, text: str) -> Any:
    from meshd.config.hcl import HCLSyntaxError, parse_hcl

    try:
        return parse_hcl(text)
    except HCLSyntaxError as err:
        raise ConfigError(path, None, str(err)) from None


_PARSERS = {".json": _parse_json, ".hcl": _parse_hcl, ".toml": _parse_toml}


def read_file(path: str) -> dict[str, Any]:
    """Read and decode one configuration file (``.json``, ``.hcl`` or ``.toml``).

    Raises ``ConfigError`` naming the file for an unsupported extension, a
    missing or unreadable file, one over 1 MiB, bad UTF-8, a syntax error
    (with line and column) or a top level that is not an object. Blocking
    I/O: call it through ``trio.to_thread`` from async code.
    """
    ext = os.path.splitext(path)[1].lower()
    if ext not in EXTENSIONS:
        raise ConfigError(path, None, "unsupported file extension; use .json, .hcl or .toml")
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(path, None, f"not valid UTF-8 (byte {err.start})") from None
    decoded = _PARSERS[ext](path, text)
    if not isinstance(decoded, dict):
        raise ConfigError(path, None, "the top level must be an object")
    return decoded


def dir_files(path: str, warnings: list[str]) -> list[str]:
    """The ``.json``/``.hcl``/``.toml`` files of a config directory, in lexical order.

    Subdirectories are skipped; other files are skipped with a warning, as
    Consul does.
    Raises ``ConfigError`` if the directory does not exist or cannot be read.
    """
    try:
        entries = sorted(os.scandir(path), key=lambda entry: entry.name)
    except FileNotFoundError:
        raise ConfigError(path, None, "no such directory") from None
    except NotADirectoryError:
        raise ConfigError(path, None, "not a directory (use a config file for it)") from None
    except OSError as err:
        raise ConfigError(path, None, f"cannot read: {err.strerror or err}") from None
    files = []
    for entry in entries:
        if not entry.is_file():
            continue
        ext = os.path.splitext(entry.name)[1].lower()
        if ext in EXTENSIONS:
            files.append(entry.path)
        else:
            text = "skipped: not .json, .hcl or .toml"
            warnings.append(ConfigError.describe(entry.path, None, text))
    return files


@dataclass(frozen=True)
class FlagValues:
    """Flags sorted out: one raw layer per flag, plus extra config files and dirs."""

    layers: tuple[tuple[str, dict[str, Any]], ...]
    files: tuple[str, ...]
    dirs: tuple[str, ...]


def _nest(path: str, value: Any) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    return {head: _nest(rest, value) if rest else value}


def _strings(value: Any) -> list[Any]:
    return [value] if isinstance(value, str | os.PathLike) else list(value)


def _flag_value(name: str, kind: FlagKind, value: Any) -> Any:
    if kind == "int" and isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    if kind == "list":
        return _strings(value)
    if kind == "meta":
        meta = {}
        for item in _strings(value):
            meta_key, sep, meta_value = str(item).partition(":")
            if not sep:
                raise ConfigError(
                    None, flag_display(name), f'must be "key:value", got {shown(item)}'
                )
            meta[meta_key] = meta_value
        return meta
    return value


def flag_values(flags: Mapping[str, Any]) -> FlagValues:
    """Sort the CLI's flags into raw configuration layers and extra sources.

    Raises ``ValueError`` for a flag name this module does not know (a bug in
    the caller, not bad input) and ``ConfigError`` for a malformed value.
    """
    layers, files, dirs = [], [], []
    for name, value in flags.items():
        if name not in FLAGS:
            raise ValueError(f"unknown agent flag {name!r}")
        path, kind = FLAGS[name]
        empty = isinstance(value, list | tuple) and not value
        if value is None or empty or (kind == "on" and value is False):
            continue
        if kind == "file":
            files += [os.fspath(v) for v in _strings(value)]
        elif kind == "dir":
            dirs += [os.fspath(v) for v in _strings(value)]
        else:
            layers.append((flag_display(name), _nest(path, _flag_value(name, kind, value))))
    return FlagValues(tuple(layers), tuple(files), tuple(dirs))
