"""The replicated autopilot configuration: set, CAS, validation, indexes."""

from __future__ import annotations

from registry.commands import AutopilotConfigSet
from registry.errors import ErrorCode
from registry.records import AutopilotConfig
from registry.state.autopilot import autopilot_config
from registry.state.watch import WatchSet

from .builders import Log


def test_unset_configuration_reads_as_none(log: Log) -> None:
    assert autopilot_config(log.store, None) == (1, None)


def test_set_keeps_create_index_and_bumps_modify_index(log: Log) -> None:
    log.ok(AutopilotConfigSet(config=AutopilotConfig(cleanup_dead_servers=False)))
    first = log.index
    ws = WatchSet()
    autopilot_config(log.store, ws)
    fired: list[int] = []
    ws.register(lambda: fired.append(1))
    log.ok(AutopilotConfigSet(config=AutopilotConfig(last_contact_threshold=0.5)))
    idx, config = autopilot_config(log.store, None)
    assert config is not None and fired == [1]
    assert (config.create_index, config.modify_index, idx) == (first, log.index, log.index)
    assert config.last_contact_threshold == 0.5 and config.cleanup_dead_servers is True


def test_cas_applies_only_on_the_current_modify_index(log: Log) -> None:
    # With nothing stored only cas=0 matches (Consul's AutopilotCASConfig).
    lost = log.apply(AutopilotConfigSet(config=AutopilotConfig(min_quorum=3), cas=5))
    assert lost.error == ErrorCode.CAS_CONFLICT
    log.ok(AutopilotConfigSet(config=AutopilotConfig(min_quorum=3), cas=0))
    current = log.index
    lost = log.apply(AutopilotConfigSet(config=AutopilotConfig(min_quorum=5), cas=current - 1))
    assert lost.error == ErrorCode.CAS_CONFLICT
    log.ok(AutopilotConfigSet(config=AutopilotConfig(min_quorum=5), cas=current))
    _, config = autopilot_config(log.store, None)
    assert config is not None and config.min_quorum == 5


def test_negative_values_are_refused_naming_the_field(log: Log) -> None:
    for config, field in (
        (AutopilotConfig(last_contact_threshold=-1.0), "LastContactThreshold"),
        (AutopilotConfig(server_stabilization_time=-0.5), "ServerStabilizationTime"),
        (AutopilotConfig(max_trailing_logs=-1), "MaxTrailingLogs"),
        (AutopilotConfig(min_quorum=-2), "MinQuorum"),
    ):
        result = log.apply(AutopilotConfigSet(config=config))
        assert result.error == ErrorCode.INVALID and field in result.message
    assert autopilot_config(log.store, None)[1] is None
