"""``AccessLogs``: Consul's access-log settings, and meshd's per-service switch.

Consul puts ``AccessLogs {Enabled, DisableListenerLogs, Type, Path,
JSONFormat, TextFormat}`` in the global ``proxy-defaults`` entry
(agent/structs/config_entry.go ``AccessLogsConfig``,
https://developer.hashicorp.com/consul/docs/observe/access-log). meshd
accepts the same object in ``service-defaults`` too: there it replaces the
global one for that service's sidecar, so access logs can be switched on
(or off) per service. Validation follows ``AccessLogsConfig.Validate`` and
its texts; errors name the field (``AccessLogs.Path``).

Formats use Envoy's command operators (``%START_TIME%``,
``%REQ(:METHOD)%``, ``%RESPONSE_CODE%``, ... ``OPERATORS``); an operator
meshd does not know prints ``-``, as Envoy prints an unavailable value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from connect.l7.decode import JSON, DecodeError, Fields, ValidationError

SINK_TYPES = ("", "stdout", "stderr", "file")
FIELD = "AccessLogs"


@dataclass(frozen=True)
class AccessLogs:
    """One ``AccessLogs`` object as validated (defaults: off, stdout, JSON)."""

    enabled: bool = False
    disable_listener_logs: bool = False
    type: str = ""
    path: str = ""
    json_format: str = ""
    text_format: str = ""

    @property
    def sink(self) -> str:
        """``stdout``, ``stderr`` or ``file`` (Consul's default is stdout)."""
        return self.type or "stdout"

    def to_json(self) -> dict[str, JSON]:
        """Consul's API shape (``omitempty`` on every field)."""
        out: dict[str, JSON] = {}
        for key, value in (
            ("Enabled", self.enabled),
            ("DisableListenerLogs", self.disable_listener_logs),
            ("Type", self.type),
            ("Path", self.path),
            ("JSONFormat", self.json_format),
            ("TextFormat", self.text_format),
        ):
            if value:
                out[key] = value
        return out


def parse_access_logs(raw: JSON, path: str = FIELD) -> AccessLogs:
    """Decode and validate an ``AccessLogs`` object.

    Raises DecodeError (unknown key, wrong type) or ValidationError with
    Consul's text, naming the field."""
    f = Fields(raw, path)
    logs = AccessLogs(
        enabled=f.bool("Enabled"),
        disable_listener_logs=f.bool("DisableListenerLogs"),
        type=f.str("Type"),
        path=f.str("Path"),
        json_format=f.str("JSONFormat"),
        text_format=f.str("TextFormat"),
    )
    f.finish()
    if logs.type not in SINK_TYPES:
        raise ValidationError(f"{path}.Type", f"invalid access log type: {logs.type}")
    if logs.type == "file" and not logs.path:
        raise ValidationError(
            f"{path}.Path", "path must be specified when using file type access logs"
        )
    if logs.json_format and logs.text_format:
        raise ValidationError(
            f"{path}.TextFormat", "cannot specify both access log JSONFormat and TextFormat"
        )
    if logs.type != "file" and logs.path:
        raise ValidationError(f"{path}.Path", "path is only valid for file type access logs")
    if logs.json_format:
        try:
            fmt = json.loads(logs.json_format)
        except ValueError as exc:
            raise ValidationError(
                f"{path}.JSONFormat", f"invalid access log json for JSON format: {exc}"
            ) from None
        # Envoy's json_format is a dictionary of format strings.
        if not isinstance(fmt, dict):
            raise ValidationError(
                f"{path}.JSONFormat", "invalid access log json for JSON format: not an object"
            )
    return logs


def normalize_access_logs(extra: dict[str, JSON]) -> None:
    """Validate ``extra["AccessLogs"]`` (a passthrough of an entry) in place,
    storing Consul's omitempty shape. Raises ValidationError."""
    raw = extra.get(FIELD)
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise DecodeError(FIELD, f"{FIELD} must be a JSON object")
    extra[FIELD] = parse_access_logs(raw).to_json()
