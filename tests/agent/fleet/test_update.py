"""The agent's part in a software update, step by step with a stand-in for the running agent (no clock, no sleep):
when it asks the updater for a release, what it says of its health, what it reports, and what it refuses to trust."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent.config import AgentConfig
from agent.fleet.apply import Held, State
from agent.fleet.deadman import Health, Trial
from agent.fleet.software import HEALTH, REQUEST, RESULT, read_json, update_dir, write_json
from agent.fleet.update import SoftwareUpdate
from zonewatch import wire
from zonewatch.strict import ConfigError, load

S = 10**9
T0 = 1_800_000_000 * S
RUNNING, WANTED = "0.1.0", "0.2.0"


def config(tmp: Path, update: bool = True, software: str | None = WANTED) -> AgentConfig:
    text = f"probe: {{id: p1, zone: z}}\nspool: {{path: '{tmp / 'spool.db'}'}}\n"
    if update:
        text += "update: {source: 'http://10.0.0.5:8080/simple/', request_timeout: 10m}\n"
    if software:
        text += f"software: {{version: '{software}'}}\n"
    return load(AgentConfig, text, "agent.yaml")


class Host:
    """The running agent as ``SoftwareUpdate`` sees it."""

    def __init__(self, cfg: AgentConfig, config_version: int = 3, trial: bool = False) -> None:
        self.cfg = cfg
        held = Held(config_version, "sha256:" + "1" * 64, "", "z", "p1")
        self.remote: Any = SimpleNamespace(state=State(current=held, good=held,
                                                       trial=Trial(held.hash, 3, T0, T0 + S) if trial else None))
        self.acked = 0
        self.sources = Health(True, 2, 0, 0)
        self.reports: list[wire.UpdateReport] = []

    def health(self) -> Health:
        return self.sources

    def acknowledged(self) -> int:
        return self.acked

    def report(self, event: wire.Event) -> None:
        report = wire.read_update_report(event)
        assert report is not None, event
        self.reports.append(report)


def made(tmp: Path, cfg: AgentConfig, version: str = RUNNING, started: int = T0) -> SoftwareUpdate:
    return SoftwareUpdate(cfg.update, update_dir(cfg.spool.path), version, started, pid=4242)


def test_it_asks_once_the_configuration_saying_the_release_passed_its_trial(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    host, updates = Host(cfg, trial=True), made(tmp_path, cfg)
    updates.step(host, T0)
    assert host.reports == [] and not (tmp_path / "update" / REQUEST).exists()   # a restart now would roll it back
    host.remote.state.trial = None
    updates.step(host, T0 + S)
    request = read_json(tmp_path / "update", REQUEST)
    assert request is not None and (request["version"], request["from"], request["requested_ns"]) == \
        (WANTED, RUNNING, T0 + S)
    assert [(r.result, r.wanted, r.running) for r in host.reports] == [("requested", WANTED, RUNNING)]
    # the updater took it away; the agent does not ask again, even after a restart (the old release runs again)
    (tmp_path / "update" / REQUEST).unlink()
    updates.step(host, T0 + 2 * S)
    again = made(tmp_path, cfg)
    again.step(host, T0 + 3 * S)
    assert len(host.reports) == 1 and not (tmp_path / "update" / REQUEST).exists()
    # the centre issues the release again (a new configuration version): asked again
    host.remote.state.current = Held(4, "sha256:" + "1" * 64, "", "z", "p1")
    again.step(host, T0 + 4 * S)
    assert [r.result for r in host.reports] == ["requested", "requested"]


def test_nothing_is_asked_when_the_release_runs_or_none_is_said(tmp_path: Path) -> None:
    for cfg, version in ((config(tmp_path), WANTED), (config(tmp_path, software=None), RUNNING)):
        host = Host(cfg)
        made(tmp_path, cfg, version).step(host, T0)
        assert host.reports == [] and not (tmp_path / "update" / REQUEST).exists()


def test_a_probe_without_an_update_section_refuses_once_and_writes_nothing(tmp_path: Path) -> None:
    cfg = config(tmp_path, update=False)
    host, updates = Host(cfg), made(tmp_path, cfg)
    for second in range(3):
        updates.step(host, T0 + second * S)
    assert [(r.result, r.error) for r in host.reports] == [
        ("refused", "this probe takes no release from the centre: its local file has no update section")]
    assert not (tmp_path / "update").exists()


def test_the_updaters_result_is_reported_once_by_whichever_release_runs(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    host, updates = Host(cfg), made(tmp_path, cfg)
    updates.step(host, T0)
    rid = read_json(tmp_path / "update", REQUEST)["id"]  # type: ignore[index]
    # the new release runs (it wants nothing more) and finds the updater's verdict
    new_host, new = Host(cfg), made(tmp_path, cfg, version=WANTED, started=T0 + 20 * S)
    write_json(tmp_path / "update", RESULT, {"v": 1, "id": rid, "version": WANTED, "result": "installed",
                                             "error": "", "seconds": 31.5})
    new.step(new_host, T0 + 30 * S)
    new.step(new_host, T0 + 32 * S)
    assert [(r.result, r.wanted, r.running, r.seconds) for r in new_host.reports] == [
        ("installed", WANTED, WANTED, 31.5)]
    made(tmp_path, cfg, version=WANTED).step(new_host, T0 + 40 * S)   # restarted: not reported twice
    assert len(new_host.reports) == 1


def test_a_request_no_updater_takes_is_taken_back_and_reported_failed(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    host, updates = Host(cfg), made(tmp_path, cfg)
    updates.step(host, T0)
    updates.step(host, T0 + 599 * S)
    assert (tmp_path / "update" / REQUEST).exists()
    updates.step(host, T0 + 600 * S)
    assert not (tmp_path / "update" / REQUEST).exists()
    assert host.reports[-1].result == "failed" and "zonewatch-agent-update.path" in host.reports[-1].error


def test_the_health_file_says_what_the_updater_judges_and_is_written_only_on_change(tmp_path: Path) -> None:
    cfg = config(tmp_path, software=None)
    host, updates = Host(cfg), made(tmp_path, cfg)
    health = tmp_path / "update" / HEALTH
    updates.step(host, T0)
    assert json.loads(health.read_text()) == {"v": 1, "version": RUNNING, "pid": 4242, "started_ns": T0,
                                              "at_ns": T0, "published": False, "sources": 2, "polled": 0,
                                              "failed": 0}
    written = health.stat().st_mtime_ns
    updates.step(host, T0 + 5 * S)
    assert health.stat().st_mtime_ns == written
    host.acked, host.sources = 3, Health(True, 2, 2, 1)
    updates.step(host, T0 + 6 * S)
    assert json.loads(health.read_text())["published"] is True and json.loads(health.read_text())["failed"] == 1


def test_a_link_planted_in_the_shared_folder_is_never_followed(tmp_path: Path) -> None:
    cfg = config(tmp_path, software=None)
    folder = tmp_path / "update"
    folder.mkdir()
    secret = tmp_path / "secret"
    secret.write_text('{"id": "x", "result": "installed", "version": "9.9"}')
    (folder / RESULT).symlink_to(secret)
    (folder / HEALTH).symlink_to(secret)
    host, updates = Host(cfg), made(tmp_path, cfg)
    updates.step(host, T0)
    assert host.reports == []                                  # the link's target is not read as a result
    assert not (folder / HEALTH).is_symlink()                  # replaced by the agent's own file ...
    assert secret.read_text().startswith('{"id": "x"')         # ... and the target untouched
    with pytest.raises(ValueError, match="a link is never followed"):
        read_json(folder, RESULT)
    os.unlink(folder / RESULT)


def test_the_update_event_round_trips_and_is_bounded() -> None:
    report = wire.UpdateReport("rolled_back", WANTED, RUNNING, "line one\nline two " + "x" * 400, 12.3456, T0)
    event = wire.update_report(report)
    assert event.tags["error"].startswith("line one line two") and len(event.tags["error"]) == wire.MAX_TAG_VALUE
    back = wire.read_update_report(event)
    assert back is not None and (back.result, back.wanted, back.running, back.seconds) == \
        ("rolled_back", WANTED, RUNNING, 12.346)
    with pytest.raises(wire.WireError, match="update result 'maybe'"):
        wire.update_report(wire.UpdateReport("maybe", WANTED, RUNNING))
    assert wire.read_update_report(wire.Event("update", {"result": "installed"}, {}, T0)) is None
    assert [wire.valid_version(v) for v in ("0.2.0", "0.1.0+upgrade", "1.0rc1", "../x", "-1", "0.1 x", "")] == \
        [True, True, True, False, False, False, False]


def test_the_configuration_checks_the_release_and_the_source_and_the_centre_may_not_say_the_source(
        tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"agent.yaml:3: software.version: .*got '\.\./x'"):
        load(AgentConfig, "probe: {id: p1, zone: z}\n\nsoftware: {version: ../x}\n", "agent.yaml")
    with pytest.raises(ConfigError, match=r"agent.yaml:1: update.source: expected the zone's package index"):
        load(AgentConfig, "update: {source: /srv/wheels}\nprobe: {id: p1, zone: z}\n", "agent.yaml")
    from agent.fleet.desired import effective
    local = config(tmp_path, software=None)
    text = "probe: {id: p1, zone: z}\nsoftware: {version: 0.3.0}\n"
    cfg = effective(wire.DesiredConfig("z", "p1", 1, wire.config_hash(text), 0, text), local)
    assert cfg.software is not None and cfg.software.version == "0.3.0" and cfg.update == local.update
    text = "probe: {id: p1, zone: z}\nupdate: {source: 'http://elsewhere/simple/'}\n"
    with pytest.raises(ConfigError, match=r"desired config v1:2: update: update is set in the probe's local"):
        effective(wire.DesiredConfig("z", "p1", 1, wire.config_hash(text), 0, text), local)
