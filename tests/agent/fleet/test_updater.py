"""The privileged updater's decisions, without installing anything: the health verdict (pure), what it takes from
the agent's request, and the order of its steps against a stand-in installer and a stand-in clock (no sleep). The
real install, restart and roll back are in tests/integration/test_update.py."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.fleet import updater
from agent.fleet.software import HEALTH, REQUEST, RESULT, UpdateSettings, read_json, write_json
from agent.fleet.updater import AgentHealth, judge

S = 10**9
T0 = 1_800_000_000 * S
OLD, NEW = "0.1.0", "0.2.0"
DEADLINE = T0 + 120 * S


def health(version: str = NEW, started: int = T0 + 5 * S, published: bool = True, sources: int = 4,
           polled: int = 4, failed: int = 0) -> AgentHealth:
    return AgentHealth(version, started, published, sources, polled, failed)


@pytest.mark.parametrize("now, seen, before, verdict", [
    (T0 + 9 * S, health(), None, ("healthy", "")),
    (T0 + 9 * S, health(polled=3), None, ("wait", "")),                       # a source has not polled yet
    (T0 + 9 * S, health(published=False), None, ("wait", "")),
    (T0 + 9 * S, health(version=OLD), None, ("wait", "")),                    # the old release still runs
    (T0 + 9 * S, health(started=T0 - S), None, ("wait", "")),                 # an agent from before the install
    (DEADLINE, health(polled=3), None, ("healthy", "")),                      # at the end, what polled is judged
    (DEADLINE, health(failed=3), None, ("unhealthy", "release 0.2.0: 3 of its 4 sources failed their last poll "
                                                     "within 120s (before the update: 0)")),
    (T0 + 9 * S, health(failed=3), health(OLD, T0 - 99 * S, failed=3), ("healthy", "")),   # no worse than before
    (T0 + 9 * S, health(failed=2), None, ("healthy", "")),                    # half may fail
    (DEADLINE, None, None, ("unhealthy", "release 0.2.0 did not start, or did not say so, within 120s")),
    (DEADLINE, health(version=OLD), None, ("unhealthy", "release 0.2.0 did not start, or did not say so, within "
                                                        "120s")),
    (DEADLINE, health(published=False), None, ("unhealthy", "release 0.2.0 started, but the broker acknowledged "
                                                            "nothing from it within 120s")),
])
def test_the_health_verdict(now: int, seen: AgentHealth | None, before: AgentHealth | None,
                            verdict: tuple[str, str]) -> None:
    got = judge(seen, NEW, T0, before, now, DEADLINE, 120)
    assert (got.action, got.reason) == verdict


def test_health_from_the_agents_file_is_taken_only_whole() -> None:
    doc = {"version": NEW, "started_ns": T0, "published": True, "sources": 2, "polled": 2, "failed": 0}
    assert updater.parse_health(doc) == AgentHealth(NEW, T0, True, 2, 2, 0)
    for bad in ({**doc, "failed": -1}, {**doc, "published": 1}, {**doc, "sources": "2"}, {"version": NEW}, None):
        assert updater.parse_health(bad) is None


def test_the_request_is_taken_away_and_only_a_release_version_is_taken_from_it(tmp_path: Path) -> None:
    write_json(tmp_path, REQUEST, {"id": "ab12", "version": NEW, "from": OLD, "source": "http://evil/", "x": 1})
    assert updater.take_request(tmp_path) == {"id": "ab12", "version": NEW, "from": OLD}
    assert not (tmp_path / REQUEST).exists() and updater.take_request(tmp_path) is None
    for bad, message in (({"id": "ab12", "version": "0.2; rm -rf /"}, "not a release version"),
                         ({"id": "../x", "version": NEW}, "no request id")):
        write_json(tmp_path, REQUEST, bad)
        with pytest.raises(ValueError, match=message):
            updater.take_request(tmp_path)
        assert not (tmp_path / REQUEST).exists()
    (tmp_path / "shadow").write_text("root:secret\n")
    (tmp_path / REQUEST).symlink_to(tmp_path / "shadow")
    with pytest.raises(ValueError, match="a link is never followed") as refused:
        updater.take_request(tmp_path)
    assert "secret" not in str(refused.value) and not (tmp_path / REQUEST).is_symlink()
    assert (tmp_path / "shadow").read_text() == "root:secret\n"


class Run(updater._Run):
    """The updater's steps with a stand-in install.sh: ``on_install(argv)`` says what it did and returns its exit
    code and last line."""

    def __init__(self, folder: Path, on_install: Callable[[tuple[str, ...]], tuple[int, str]]) -> None:
        self.settings = UpdateSettings.model_validate({"source": "http://10.0.0.5/simple/", "health_timeout": "2m"})
        self.folder, self.install, self.options, self.restart = folder, "install.sh", [], []
        self.on_install = on_install
        self.calls: list[tuple[str, ...]] = []

    def installer(self, *argv: str) -> tuple[int, str]:
        self.calls.append(argv)
        return self.on_install(argv)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += int(seconds * S)


def agent_says(folder: Path, version: str, started: int, published: bool = True) -> None:
    write_json(folder, HEALTH, {"v": 1, "version": version, "pid": 7, "started_ns": started, "at_ns": started,
                                "published": published, "sources": 1, "polled": 1, "failed": 0})


def request() -> dict[str, Any]:
    return {"id": "ab12", "version": NEW, "from": OLD}


def test_a_release_that_comes_up_healthy_is_kept(tmp_path: Path) -> None:
    clock = Clock()
    agent_says(tmp_path, OLD, T0 - 999 * S)

    def install(argv: tuple[str, ...]) -> tuple[int, str]:
        agent_says(tmp_path, NEW, clock.now + 3 * S)   # restarted by install.sh, on the new release
        clock.now += 10 * S
        return 0, "install.sh: zonewatch-agent.service is running zonewatch 0.2.0"

    run = Run(tmp_path, install)
    assert updater.update(run, request(), clock, clock.sleep) == 0
    assert run.calls == [("--from", "http://10.0.0.5/simple/", "--version", NEW)]
    result = read_json(tmp_path, RESULT)
    assert result is not None and (result["id"], result["result"], result["error"], result["seconds"]) == \
        ("ab12", "installed", "", 10.0)


def test_a_release_that_never_says_it_is_healthy_is_rolled_back_at_the_timeout(tmp_path: Path) -> None:
    clock = Clock()
    agent_says(tmp_path, OLD, T0 - 999 * S)
    run = Run(tmp_path, lambda argv: (0, "install.sh: ok"))
    assert updater.update(run, request(), clock, clock.sleep) == 1
    assert run.calls[-1] == ("--rollback",) and clock.now == T0 + 120 * S
    result = json.loads((tmp_path / RESULT).read_text())
    assert result["result"] == "rolled_back"
    assert result["error"] == ("release 0.2.0 did not start, or did not say so, within 120s; rolled back to the "
                               "release before")


@pytest.mark.parametrize("said, outcome", [
    ("install.sh: zonewatch 0.2.0 did not start (journalctl -u zonewatch-agent.service): switched back to 0.1.0",
     "rolled_back"),
    ("install.sh: agent: failed while fetching zonewatch; current is unchanged (0.1.0)", "failed"),
])
def test_an_install_that_fails_is_reported_with_install_shs_reason(tmp_path: Path, said: str, outcome: str) -> None:
    clock = Clock()
    run = Run(tmp_path, lambda argv: (1, said))
    assert updater.update(run, request(), clock, clock.sleep) == 1
    assert len(run.calls) == 1   # no health wait, no second roll back
    result = json.loads((tmp_path / RESULT).read_text())
    assert (result["result"], result["error"]) == (outcome, said.removeprefix("install.sh: "))


def test_the_updater_refuses_a_probe_without_an_update_section(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    conf = tmp_path / "agent.yaml"
    conf.write_text(f"probe: {{id: p1, zone: z}}\nspool: {{path: '{tmp_path / 'spool.db'}'}}\n")
    assert updater.main(["-c", str(conf), "--install", str(conf)]) == 2
    assert "has no update section: this probe takes no release from the centre" in caplog.text
    conf.write_text(conf.read_text() + "update: {source: 'file:///srv/index'}\n")
    assert updater.main(["-c", str(conf), "--install", str(conf)]) == 0   # nothing asked
    assert "nothing asked" in caplog.text
