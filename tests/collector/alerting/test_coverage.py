"""Coverage per probe (collector.alerting.coverage): a probe's level and interference, and the area rules."""

from __future__ import annotations

import pytest

from collector.alerting.coverage import FAIR, GOOD, HOLE, NO_SERVICE, WEAK, area_has, area_level, judge_probe
from collector.alerting.facts import Reading
from collector.inventory import CoverageRule, Inventory, Zone
from zonewatch.strict import ConfigError, load

ZONE = Zone(name="Dinh Vu")
WORST = CoverageRule()
HALF = CoverageRule(area="share", share_pct=50)


def readings(*rows: tuple[float | None, float | None, float | None], registered: bool = True) -> list[Reading]:
    return [Reading(i, rsrp, registered, "lte", sinr, rsrq) for i, (rsrp, sinr, rsrq) in enumerate(rows)]


def test_a_probe_is_judged_on_its_own_median_against_the_zone_defaults() -> None:
    probe = judge_probe("p1", readings((-112, 5, -10), (-130, 5, -10), (-108, 5, -10)), ZONE)
    assert (probe.level, probe.rsrp_dbm, probe.interference) == (HOLE, -112, False)
    assert judge_probe("p1", readings((-95, 8, -11)), ZONE).level == FAIR
    assert judge_probe("p1", readings((-105, None, None)), ZONE).level == WEAK


def test_strong_signal_with_poor_sinr_or_rsrq_is_interference_and_a_weak_one_is_not() -> None:
    drowned = judge_probe("p2", readings((-85, -3, -9), (-86, -2, -9), (-84, 4, -9)), ZONE)
    assert drowned.level == GOOD and drowned.interference
    assert drowned.why_interference() == "SINR -2 dB (under 0 dB)"
    loaded = judge_probe("p2", readings((-92, 6, -17)), ZONE)
    assert loaded.interference and loaded.why_interference() == "RSRQ -17 dB (under -15 dB)"
    # weak RSRP explains the poor SINR: that is a weak signal, not interference
    assert not judge_probe("p2", readings((-104, -3, -18)), ZONE).interference
    # a UMTS or GSM reading has neither SINR nor RSRQ: never interference
    assert not judge_probe("p2", readings((-80, None, None)), ZONE).interference


def test_a_probe_whose_modem_is_not_registered_has_no_service() -> None:
    assert judge_probe("p1", readings((-125, None, None), registered=False), ZONE).level == NO_SERVICE


@pytest.mark.parametrize(("levels", "rule", "expected"), [
    ([HOLE, GOOD, FAIR, GOOD], WORST, HOLE),          # one gate in a hole is a hole
    ([HOLE, GOOD, FAIR, GOOD], HALF, FAIR),           # half the probes are fair or worse
    ([HOLE, HOLE, GOOD, GOOD], HALF, HOLE),
    ([HOLE, WEAK, GOOD, GOOD], HALF, WEAK),           # a probe in a hole counts as weak or worse too
    ([GOOD], WORST, GOOD),
    ([], WORST, None),
])
def test_the_area_level_follows_the_zone_rule(levels: list[int], rule: CoverageRule, expected: int | None) -> None:
    assert area_level(levels, rule) == expected


def test_an_area_has_a_condition_by_the_same_rule() -> None:
    assert area_has(1, 4, WORST) and not area_has(0, 4, WORST)
    assert not area_has(1, 4, HALF) and area_has(2, 4, HALF)


INVENTORY = """\
zones:
  dv:
    name: Dinh Vu
    coverage: {rule}
"""


@pytest.mark.parametrize(("rule", "expected"), [
    ("{area: share}", "i.yaml:4: zones.dv.coverage.share_pct: area: share needs share_pct, a percentage over 0 "
                      "and at most 100 (got None)"),
    ("{area: share, share_pct: 150}", "i.yaml:4: zones.dv.coverage.share_pct: area: share needs share_pct"),
    ("{share_pct: 30}", "i.yaml:4: zones.dv.coverage.share_pct: share_pct applies to area: share only"),
    ("{area: median}", "i.yaml:4: zones.dv.coverage.area: expected 'worst' or 'share'"),
])
def test_a_bad_area_rule_is_named(rule: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(Inventory, INVENTORY.format(rule=rule), "i.yaml")
    assert str(err.value).startswith(expected)


def test_the_sinr_and_rsrq_bounds_default_to_the_poor_levels_and_can_be_set() -> None:
    inv = load(Inventory, INVENTORY.format(rule="{area: share, share_pct: 30}")
               + "    thresholds: {lte: {sinr_poor_db: -3, rsrq_poor_db: -16}}\n", "i.yaml")
    zone = inv.zones["dv"]
    assert (zone.threshold("lte").sinr_poor_db, zone.threshold("lte").rsrq_poor_db) == (-3, -16)
    assert (zone.threshold(None).sinr_poor_db, zone.threshold(None).rsrq_poor_db) == (0, -15)
    assert zone.coverage.share_pct == 30
