"""Applying what the centre sends, against a fake agent (no sockets, no sleeps: time is an argument).

Checked: a valid configuration is switched to and reported applied, on trial; an invalid one (or one a source
refuses to be made from) is rejected with the error, and what ran keeps running; the dead-man rule rolls back to
the last known-good; a trial passed makes it the last known-good; a (hash, version) is tried once; a start after
a stop during a trial rolls back; everything survives a restart (the state file)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.fleet.apply import RemoteConfig, running_config
from agent.fleet.deadman import Health
from zonewatch import wire
from zonewatch.strict import load

S = 10**9
T0 = 1_800_000_000 * S


class FakeAgent:
    """What the controller drives: records the configurations run and the reports spooled."""

    def __init__(self, cfg: AgentConfig) -> None:
        self.running = cfg
        self.reports: list[wire.ConfigReport] = []
        self.now_health = Health(True, 1, 1, 0)
        self.refuse: Exception | None = None

    async def reconfigure(self, cfg: AgentConfig) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.running = cfg

    def report(self, event: wire.Event) -> None:
        report = wire.read_config_report(event)
        assert report is not None
        self.reports.append(report)

    def health(self) -> Health:
        return self.now_health


class Probe:
    """A controller and its fake agent, made again from the same state file to play a restart."""

    def __init__(self, tmp: Path) -> None:
        self.local = load(AgentConfig, f"probe: {{id: p1, zone: z}}\nspool: {{path: '{tmp / 'spool.db'}'}}\n"
                                       "remote_config: {deadman: 60s}\nsources:\n"
                                       "  - {type: reach, name: local-ping, target: 10.0.0.1}\n", "agent.yaml")
        self.ticks = iter(range(T0, T0 + 10**6 * S, S // 100))   # a clock for timing switches: 10 ms a read
        self.agent = FakeAgent(self.local)
        self.remote = RemoteConfig(self.local, clock=lambda: next(self.ticks))

    def restart(self, now_ns: int) -> AgentConfig:
        self.remote = RemoteConfig(self.local, clock=lambda: next(self.ticks))
        self.agent = FakeAgent(self.local)
        started = self.remote.startup(self.agent, now_ns)
        self.agent.running = started
        return started

    def send(self, payload: bytes, now_ns: int) -> None:
        self.remote.offer(payload)
        asyncio.run(self.remote.step(self.agent, now_ns))

    def tick(self, now_ns: int) -> None:
        asyncio.run(self.remote.step(self.agent, now_ns))

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.agent.running.sources]


def config(version: int, *names: str, extra: str = "") -> tuple[bytes, str]:
    text = "probe: {id: p1, zone: z}\n" + extra + "sources:\n" + "".join(
        f"  - {{type: reach, name: {n}, target: 10.0.0.2}}\n" for n in names)
    desired = wire.DesiredConfig("z", "p1", version, wire.config_hash(text), T0, text)
    return wire.encode_config(desired), desired.hash


@pytest.fixture
def probe(tmp_path: Path) -> Probe:
    return Probe(tmp_path)


def test_a_valid_configuration_runs_is_reported_applied_and_becomes_good_after_its_trial(probe: Probe) -> None:
    payload, digest = config(1, "core")
    probe.send(payload, T0)
    assert probe.names == ["core"] and probe.agent.running.spool == probe.local.spool
    (report,) = probe.agent.reports
    assert (report.result, report.hash, report.version, report.running, report.running_version) == \
        ("applied", digest, 1, digest, 1)
    assert report.seconds == pytest.approx(0.01)
    assert probe.remote.state.trial is not None and probe.remote.state.good is None
    probe.tick(T0 + 59 * S)
    assert probe.remote.state.trial is not None
    probe.tick(T0 + 60 * S)   # the deadline: broker reached, nothing failed
    assert probe.remote.state.trial is None and probe.remote.state.good is not None
    assert probe.remote.state.good.hash == digest and len(probe.agent.reports) == 1


def test_an_invalid_configuration_is_rejected_with_its_line_and_the_old_one_runs_on(probe: Probe) -> None:
    good, good_hash = config(1, "core")
    probe.send(good, T0)
    bad, bad_hash = config(2, "core", extra="self_interval: fast\n")
    probe.send(bad, T0 + S)
    assert probe.names == ["core"]
    report = probe.agent.reports[-1]
    assert (report.result, report.hash, report.version, report.running) == ("rejected", bad_hash, 2, good_hash)
    assert report.error == ("desired config v2:2: self_interval: expected a duration like '500ms', '30s', '1m30s' or "
                            "'2h', got 'fast'")
    probe.send(bad, T0 + 2 * S)   # the retained message again, after a reconnect: decided already
    assert len(probe.agent.reports) == 2


def test_a_configuration_the_agent_cannot_start_is_rejected_and_changes_nothing(probe: Probe) -> None:
    probe.agent.refuse = ValueError("no such profile")
    payload, digest = config(1, "core")
    probe.send(payload, T0)
    assert probe.names == ["local-ping"] and probe.remote.state.current is None
    assert probe.agent.reports[-1].result == "rejected"
    assert probe.agent.reports[-1].error == "ValueError: no such profile"
    assert probe.agent.reports[-1].running == wire.LOCAL_CONFIG


def test_the_dead_man_rolls_back_to_the_last_known_good_when_the_broker_is_not_reached(probe: Probe) -> None:
    good, good_hash = config(1, "core")
    probe.send(good, T0)
    probe.tick(T0 + 60 * S)
    bad, bad_hash = config(2, "core", "more", extra="mqtt: {host: 127.0.0.1, port: 1}\n")
    probe.send(bad, T0 + 100 * S)
    assert probe.names == ["core", "more"] and probe.agent.running.mqtt.port == 1
    probe.agent.now_health = Health(False, 2, 2, 0)
    probe.tick(T0 + 159 * S)
    assert probe.names == ["core", "more"]
    probe.tick(T0 + 160 * S)
    assert probe.names == ["core"] and probe.agent.running.mqtt == probe.local.mqtt
    report = probe.agent.reports[-1]
    assert (report.result, report.hash, report.version, report.running, report.running_version) == \
        ("rolled_back", bad_hash, 2, good_hash, 1)
    assert report.error == "the broker was not reached within 60s of applying it"
    probe.send(bad, T0 + 200 * S)   # it comes again when the old broker is back: not tried again
    assert probe.names == ["core"] and len(probe.agent.reports) == 3


def test_most_sources_failing_roll_back_at_once_to_the_local_file(probe: Probe) -> None:
    payload, digest = config(1, "a", "b", "c")
    probe.send(payload, T0)
    probe.agent.now_health = Health(True, 3, 3, 2)
    probe.tick(T0 + 5 * S)
    assert probe.names == ["local-ping"] and probe.remote.state.current is None
    assert probe.agent.reports[-1].error == "2 of its 3 sources failed their last poll"
    assert probe.agent.reports[-1].running == wire.LOCAL_CONFIG


def test_the_same_text_issued_again_is_retried_after_a_roll_back(probe: Probe) -> None:
    payload, digest = config(1, "a", "b")
    probe.send(payload, T0)
    probe.agent.now_health = Health(True, 2, 2, 2)
    probe.tick(T0 + S)
    again, same = config(2, "a", "b")
    assert same == digest
    probe.agent.now_health = Health(True, 2, 0, 0)
    probe.send(again, T0 + 10 * S)
    assert probe.names == ["a", "b"] and probe.agent.reports[-1].result == "applied"
    assert probe.agent.reports[-1].version == 2


def test_a_stop_during_the_trial_rolls_back_at_the_next_start_and_the_state_survives(probe: Probe,
                                                                                     tmp_path: Path) -> None:
    good, good_hash = config(1, "core")
    probe.send(good, T0)
    probe.tick(T0 + 60 * S)
    trial, trial_hash = config(2, "core", "new")
    probe.send(trial, T0 + 100 * S)
    started = probe.restart(T0 + 110 * S)   # the agent stopped (or crashed) while v2 was on trial
    assert [s.name for s in started.sources] == ["core"]
    (report,) = probe.agent.reports
    assert (report.result, report.hash, report.running) == ("rolled_back", trial_hash, good_hash)
    assert "stopped while it was on trial" in report.error
    started = probe.restart(T0 + 120 * S)   # a plain restart: the last known-good runs, nothing to report
    assert [s.name for s in started.sources] == ["core"] and probe.agent.reports == []
    doc = json.loads((tmp_path / "remote-config.json").read_text())
    assert doc["current"]["hash"] == good_hash and doc["trial"] is None


def test_the_running_text_issued_again_is_only_reported(probe: Probe) -> None:
    payload, digest = config(1, "core")
    probe.send(payload, T0)
    again, _ = config(4, "core")
    probe.send(again, T0 + S)
    assert [(r.result, r.version) for r in probe.agent.reports] == [("applied", 1), ("applied", 4)]
    assert probe.remote.state.current is not None and probe.remote.state.current.version == 4


def test_a_cleared_config_goes_back_to_the_local_file(probe: Probe) -> None:
    payload, digest = config(1, "core")
    probe.send(payload, T0)
    probe.send(b"", T0 + S)
    assert probe.names == ["local-ping"] and probe.remote.state.current is None
    assert probe.agent.reports[-1].hash == wire.LOCAL_CONFIG


def test_a_payload_that_breaks_the_contract_is_rejected(probe: Probe) -> None:
    payload, digest = config(1, "core")
    tampered = payload.replace(b"core", b"evil")   # the text no longer matches its hash
    probe.send(tampered, T0)
    assert probe.names == ["local-ping"]
    assert probe.agent.reports[-1].result == "rejected" and "does not match its hash" in probe.agent.reports[-1].error


def test_a_newer_config_during_a_healthy_trial_makes_the_one_on_trial_the_roll_back_target(probe: Probe) -> None:
    first, first_hash = config(1, "core")
    probe.send(first, T0)
    second, _ = config(2, "core", "more")
    probe.send(second, T0 + 10 * S)   # v1 is still on trial, with nothing against it
    probe.agent.now_health = Health(False, 2, 2, 0)
    probe.tick(T0 + 70 * S)
    assert probe.names == ["core"] and probe.agent.reports[-1].running == first_hash


def test_a_newer_config_during_a_failing_trial_keeps_the_older_roll_back_target(probe: Probe) -> None:
    first, _ = config(1, "a", "b")
    probe.send(first, T0)
    second, _ = config(2, "c")
    probe.agent.now_health = Health(True, 2, 2, 2)   # both of v1's sources fail
    probe.send(second, T0 + 10 * S)
    probe.agent.now_health = Health(False, 1, 1, 0)
    probe.tick(T0 + 70 * S)
    assert probe.names == ["local-ping"] and probe.agent.reports[-1].running == wire.LOCAL_CONFIG


def test_once_polls_what_run_would_start_with(probe: Probe) -> None:
    assert running_config(probe.local) is probe.local
    first, _ = config(1, "core")
    probe.send(first, T0)
    assert [s.name for s in running_config(probe.local).sources] == ["local-ping"]   # v1 on trial: not yet good
    probe.tick(T0 + 60 * S)
    assert [s.name for s in running_config(probe.local).sources] == ["core"]
