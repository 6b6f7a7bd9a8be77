"""Every rule scenario in ``scenarios/`` runs and meets its expectations (see ``scenario.py`` for the format)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.collector.alerting import scenario

FILES = sorted((Path(__file__).parent / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario(path: Path, tmp_path: Path) -> None:
    try:
        scenario.run(scenario.load(path), tmp_path)
    except scenario.ScenarioError as exc:
        failure = str(exc)
    else:
        return
    pytest.fail(failure, pytrace=False)


def test_series_notation() -> None:
    assert scenario.parse_series("1x3 0 _x2 1") == [1, 1, 1, 0, None, None, 1]
    assert scenario.parse_series("-90-2x4 1.5x2") == [-90, -92, -94, -96, 1.5, 1.5]
    assert scenario.parse_series("primaryx2 unknown:9f3a01bc backup") == ["primary", "primary", "unknown:9f3a01bc",
                                                                           "backup"]
    with pytest.raises(scenario.ScenarioError, match="cannot read '1y2'"):
        scenario.parse_series("1x2 1y2")


SMALL = """
interval: 30s
inventory:
  zones: {dv: {name: DV}}
  carriers: {viettel: {plmn: 452-04, name: Viettel}}
  sites: {pop: {zone: dv, owners: [viettel]}}
  devices: {sw: {site: pop, probe: p1}}
  probes: {p1: {zone: dv}}
input:
  - device: {probe: p1, device: sw}
    values: "1x2 0x4"
expect:
  - at: 2m
    alerts: [{alertname: DeviceDown, device: sw, state: firing}]
    notified: [{alertname: DeviceDown, device: sw}]
"""


def test_a_scenario_that_expects_what_does_not_happen_fails_naming_the_time(tmp_path: Path) -> None:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    scenario.run(scenario.load(path))
    path.write_text(SMALL.replace("at: 2m", "at: 1m30s"))        # two polls missed, not three
    with pytest.raises(scenario.ScenarioError, match=r"small at 1m30s: alerts differ\n  expected: .*DeviceDown"):
        scenario.run(scenario.load(path))
    path.write_text(SMALL.replace("    notified: [{alertname: DeviceDown, device: sw}]\n", ""))
    with pytest.raises(scenario.ScenarioError, match="notifications since the previous check differ"):
        scenario.run(scenario.load(path))
    path.write_text(SMALL.replace("state: firing}", "state: firing, muted: true}"))
    with pytest.raises(scenario.ScenarioError, match="alerts differ"):
        scenario.run(scenario.load(path))


def test_a_scenario_with_an_unknown_key_or_a_bad_inventory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(SMALL.replace("interval: 30s", "intervall: 30s"))
    with pytest.raises(scenario.ScenarioError, match=r"unknown key\(s\) \['intervall'\]"):
        scenario.load(path)
    path.write_text(SMALL.replace("probe: p1}}\n  probes", "probe: p9}}\n  probes"))
    with pytest.raises(scenario.ScenarioError, match="inventory devices.sw.probe: unknown probe 'p9'"):
        scenario.load(path)
