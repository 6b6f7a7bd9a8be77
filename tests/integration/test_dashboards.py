"""Every query of every dashboard, run against a real VictoriaMetrics filled with the zone scenario through
mosquitto and the collector, returns exactly the series and values the scenario implies (written by hand in
``zone_scenario``): at the dashboard's "now" for instant queries, at chosen minutes of the hour for range
queries. Template variables are filled in as Grafana does: first with "All", then with one value each."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests import services
from tests.dashboards import grafana
from tests.integration import zone_scenario as scn

pytestmark = pytest.mark.integration

TARGETS = grafana.targets()
ALL = {"zone": scn.ZONE, "area": ".*", "carrier": ".*", "site": ".*", "device": ".*", "severity": ".*"}
# The value chosen for each filter variable (when the panel has series with it; else the first it has).
ONE = {"carrier": scn.VN, "area": scn.LG, "site": "bts-a", "device": "sw-pop", "severity": "critical"}


@dataclass(frozen=True)
class Filled:
    url: str
    t0_s: int

    @property
    def now_s(self) -> float:
        return self.t0_s + scn.EVAL_OFFSET_S


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    tmp = tmp_path_factory.mktemp("dashboards")
    t0_ns = scn.start_minute_ns(time.time())
    broker = services.start_mosquitto(tmp / "mosquitto")
    vm = services.start_victoriametrics(tmp / "vm")
    try:
        scn.fill(broker.port, tmp, {"vm": f"storage: {{type: victoriametrics, url: '{vm.url}'}}"}, t0_ns)
        scn.wait_for_vm(vm.url, t0_ns)
        yield Filled(vm.url, t0_ns // 10**9)
    finally:
        vm.stop()
        broker.stop()


def _labels(metric: dict[str, str]) -> scn.Labels:
    return frozenset(metric.items())


def _show(labels: scn.Labels) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(labels)) + "}"


def _value(expected: scn.Expected, t0_s: int) -> float:
    return float((t0_s + expected.minute * 60) * 1000) if isinstance(expected, scn.At) else float(expected)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def run(filled: Filled, target: grafana.Target, values: dict[str, str]) -> dict[scn.Labels, object]:
    """Run ``target``'s query as Grafana would for the scenario hour; return labels -> value (instant) or
    labels -> {minute: value} (range)."""
    expr = grafana.interpolate(target.expr, {**values, **grafana.hour_range()})
    if target.instant:
        data = scn.vm_api(filled.url, "query", query=expr, time=filled.now_s)
        assert data["resultType"] == "vector", (expr, data)
        out: dict[scn.Labels, object] = {}
        for r in data["result"]:
            labels = _labels(r["metric"])
            assert labels not in out, f"{target}: two results for {_show(labels)}"
            out[labels] = float(r["value"][1])
        return out
    data = scn.vm_api(filled.url, "query_range", query=expr, start=filled.t0_s,
                      end=filled.t0_s + (scn.MINUTES - 1) * scn.STEP_S, step=f"{scn.STEP_S}s")
    series: dict[scn.Labels, object] = {}
    for r in data["result"]:
        series[_labels(r["metric"])] = {(int(t) - filled.t0_s) // scn.STEP_S: float(v) for t, v in r["values"]}
    return series


def check(filled: Filled, target: grafana.Target, expected: scn.Instant | scn.Range,
          got: dict[scn.Labels, object]) -> None:
    """Assert that ``got`` has exactly the expected series, with the expected values."""
    missing = [_show(labels) for labels in expected.series if labels not in got]
    extra = [_show(labels) for labels in got if labels not in expected.series]
    assert not missing and not extra, f"{target}: series missing {missing}, unexpected {extra}"
    problems = []
    if isinstance(expected, scn.Instant):
        assert target.instant, f"{target} is a range query but expected as instant"
        for labels, want in expected.series.items():
            value = got[labels]
            assert isinstance(value, float)
            if not _close(value, _value(want, filled.t0_s)):
                problems.append(f"{_show(labels)} = {value}, expected {want}")
    else:
        assert not target.instant, f"{target} is an instant query but expected as range"
        for labels, points in expected.series.items():
            have = got[labels]
            assert isinstance(have, dict)
            for minute, want in points.items():
                if want is None:
                    if minute in have:
                        problems.append(f"{_show(labels)} at m{minute} = {have[minute]}, expected no point")
                elif minute not in have or not _close(have[minute], _value(want, filled.t0_s)):
                    problems.append(f"{_show(labels)} at m{minute} = {have.get(minute)}, expected {want}")
    assert not problems, f"{target}:\n  " + "\n  ".join(problems)


def test_every_query_has_an_expectation_and_every_expectation_a_query() -> None:
    keys = {t.key for t in TARGETS}
    assert sorted(keys - set(scn.PANELS)) == [], "queries with no expected answer in zone_scenario.PANELS"
    assert sorted(set(scn.PANELS) - keys) == [], "expected answers for queries no dashboard has"


@pytest.mark.parametrize("target", TARGETS, ids=str)
def test_query_returns_what_the_scenario_implies(filled: Filled, target: grafana.Target) -> None:
    check(filled, target, scn.PANELS[target.key], run(filled, target, ALL))


def _filtered_cases() -> Iterator[tuple[grafana.Target, str]]:
    for target in TARGETS:
        expected = scn.PANELS.get(target.key)
        for var in sorted(grafana.variables_used(target.expr) & set(ONE)):
            if expected is not None and all(var in dict(labels) for labels in expected.series):
                yield target, var


@pytest.mark.parametrize(("target", "var"), list(_filtered_cases()), ids=lambda v: str(v))
def test_query_with_one_value_chosen_returns_only_that(filled: Filled, target: grafana.Target, var: str) -> None:
    expected = scn.PANELS[target.key]
    offered = sorted({dict(labels)[var] for labels in expected.series})
    choice = ONE[var] if ONE[var] in offered else offered[0]
    kept = {labels: v for labels, v in expected.series.items() if dict(labels)[var] == choice}
    narrowed: scn.Instant | scn.Range = (scn.Instant(kept) if isinstance(expected, scn.Instant)  # type: ignore[arg-type]
                                         else scn.Range(kept))  # type: ignore[arg-type]
    check(filled, target, narrowed, run(filled, target, {**ALL, var: choice}))


def test_variables_offer_the_zone_s_values(filled: Filled) -> None:
    seen: dict[str, list[str]] = {}
    for dash in grafana.dashboards().values():
        for var in dash["templating"]["list"]:
            if var["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((\w+(?:\{[^}]*\})?), (\w+)\)", var["query"]["query"])
            assert match, var["query"]["query"]
            selector = grafana.interpolate(match.group(1), ALL)
            values = scn.vm_api(filled.url, f"label/{match.group(2)}/values", **{"match[]": selector},
                                start=filled.t0_s, end=int(filled.now_s))
            assert seen.setdefault(var["name"], values) == values, f"{var['name']} differs between dashboards"
    assert seen == scn.VARIABLES

