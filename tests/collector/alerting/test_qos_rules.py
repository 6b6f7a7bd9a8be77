"""DataAccessFailure and ThroughputBelowTarget: per carrier and area, from the probes' ``qos`` samples (pure)."""

from __future__ import annotations

import json

from collector.alerting.config import RuleSettings
from collector.alerting.facts import Facts
from collector.alerting.model import Evaluation, Finding
from collector.alerting.rules import evaluate
from collector.inventory import Inventory
from collector.scope import Scope
from zonewatch import strict, wire

S = 1_000_000_000
T0 = 1_764_288_000 * S
VT, VNP = "452-04", "452-02"

INVENTORY = """
zones:
  dv: {name: Dinh Vu, areas: [gate-a, port]}
carriers:
  viettel: {plmn: 452-04, name: Viettel}
  vinaphone: {plmn: 452-02, name: VinaPhone}
probes:
  p1: {zone: dv, area: gate-a, modems: [{name: viettel, carrier: viettel}, {name: vinaphone, carrier: vinaphone}]}
  p2: {zone: dv, area: port, modems: [{name: viettel, carrier: viettel}]}
"""
INV = strict.load(Inventory, INVENTORY, "inventory.yaml")


class Feed:
    """Feeds Facts as probes would: times in seconds from T0."""

    def __init__(self, settings: RuleSettings | None = None) -> None:
        self.settings = settings or RuleSettings()
        self.facts = Facts(self.settings, started_ns=T0)
        self.seq = 0

    def send(self, probe: str, at: float, *samples: wire.Sample) -> Feed:
        self.seq += 1
        arrived = T0 + int(at * S)
        self.facts.observe(wire.Batch("dv", probe, self.seq, arrived, samples), arrived)
        return self

    def cell(self, probe: str, at: float, plmn: str, registered: bool = True) -> Feed:
        modem = "viettel" if plmn == VT else "vinaphone"
        return self.send(probe, at, wire.Sample("cellular", {"carrier": plmn, "modem": modem, "rat": "lte"},
                                                {"rsrp_dbm": -85.0, "registered": registered}, T0 + int(at * S)))

    def qos(self, probe: str, at: float, plmn: str, test: str, **fields: wire.FieldValue) -> Feed:
        modem = "viettel" if plmn == VT else "vinaphone"
        tags = {"carrier": plmn, "modem": modem, "test": test, "target": "qos.zone"}
        return self.send(probe, at, wire.Sample("qos", tags, dict(fields), T0 + int(at * S)))

    def round(self, probe: str, at: float, plmn: str, ok: bool, access_ms: float = 80.0) -> Feed:
        """One round of short tests (dns, tcp, http) and the cellular reading beside it."""
        self.cell(probe, at, plmn)
        for test in ("dns", "tcp", "http"):
            fields: dict[str, wire.FieldValue] = {"success": ok}
            if ok:
                fields["time_ms"] = access_ms
            self.qos(probe, at, plmn, test, **fields)
        return self

    def judge(self, at: float) -> Evaluation:
        return evaluate(self.facts, INV, self.settings, T0 + int(at * S))


def found(ev: Evaluation, name: str) -> list[Finding]:
    return [f for f in ev.findings if f.alertname == name]


def where(ev: Evaluation, name: str) -> set[tuple[str, str]]:
    return {(f.labels["area"], f.labels["carrier"]) for f in found(ev, name)}


def unknown(ev: Evaluation, name: str, area: str, carrier: str) -> bool:
    return {"alertname": name, "zone": "dv", "area": area, "carrier": carrier} in ev.unknown


def test_registered_but_access_fails_pages_that_carrier_in_that_area_only() -> None:
    feed = Feed()
    for i in range(3):
        feed.round("p1", i * 300, VT, ok=False).round("p1", i * 300, VNP, ok=True).round("p2", i * 300, VT, ok=True)
    ev = feed.judge(610)
    assert where(ev, "DataAccessFailure") == {("gate-a", VT)}
    (f,) = found(ev, "DataAccessFailure")
    assert f.labels == {"alertname": "DataAccessFailure", "severity": "critical", "zone": "dv", "area": "gate-a",
                        "carrier": VT}   # the carrier label routes it to Viettel's receivers
    assert "9 of 9 service access tests failed (100 %, the limit is 10 %)" in f.annotations["description"]
    assert "registered" in f.annotations["description"]
    assert {"alertname": "DataAccessFailure", "zone": "dv", "area": "gate-a", "carrier": VNP} in [
        c[0] for c in ev.clear]


def test_one_failure_in_a_good_half_hour_is_within_the_regulation_limit() -> None:
    feed = Feed()
    for i in range(6):
        feed.round("p1", i * 300, VT, ok=True)
    feed.qos("p1", 1500, VT, "dns", success=False)   # 1 of 19: 5 %
    assert found(feed.judge(1510), "DataAccessFailure") == []
    feed.qos("p1", 1510, VT, "tcp", success=False)   # 2 of 20: 10 %, not over
    assert found(feed.judge(1520), "DataAccessFailure") == []
    feed.qos("p1", 1520, VT, "http", success=False)  # 3 of 21: over 10 %
    assert where(feed.judge(1530), "DataAccessFailure") == {("gate-a", VT)}


def test_slow_access_counts_as_failing_service() -> None:
    feed = Feed()
    for i in range(2):
        feed.round("p1", i * 300, VT, ok=True, access_ms=12_500.0)
    (f,) = found(feed.judge(310), "DataAccessFailure")
    assert "the mean access time is 12.5 s (the limit is 10 s)" in f.annotations["description"]


def test_not_registered_is_no_service_not_a_data_failure() -> None:
    feed = Feed()
    for i in range(3):
        feed.cell("p1", i * 300, VT, registered=False)
        for test in ("dns", "tcp", "http"):
            feed.qos("p1", i * 300, VT, test, success=False)
    ev = feed.judge(610)
    assert found(ev, "DataAccessFailure") == [] and unknown(ev, "DataAccessFailure", "gate-a", VT)
    assert where(ev, "NoService") == {("gate-a", VT)}


def test_too_few_tests_decide_nothing_and_a_recovery_clears() -> None:
    feed = Feed()
    feed.round("p1", 0, VT, ok=False)
    assert unknown(feed.judge(10), "DataAccessFailure", "gate-a", VT)   # 3 tests, 6 needed
    feed.round("p1", 300, VT, ok=False)
    assert where(feed.judge(310), "DataAccessFailure") == {("gate-a", VT)}
    for i in range(2, 9):
        feed.round("p1", i * 300, VT, ok=True)
    ev = feed.judge(2410)   # the failures are out of the 30-minute window
    assert found(ev, "DataAccessFailure") == []
    assert {"alertname": "DataAccessFailure", "zone": "dv", "area": "gate-a", "carrier": VT} in [c[0] for c in ev.clear]


def test_a_probe_that_is_down_judges_nothing() -> None:
    feed = Feed()
    for i in range(3):
        feed.round("p1", i * 300, VT, ok=False)
    ev = feed.judge(700 + 120)   # nothing from p1 for 120 s, past probe_timeout (90 s)
    assert found(ev, "DataAccessFailure") == []


def transfer(feed: Feed, at: float, plmn: str, mbps: float | None, dropped: bool = False, test: str = "download",
             probe: str = "p1") -> None:
    fields: dict[str, wire.FieldValue] = {"success": not dropped, "dropped": dropped, "bytes": 10_000_000}
    if mbps is not None and not dropped:
        fields["down_mbps" if test == "download" else "up_mbps"] = mbps
    feed.cell(probe, at, plmn).qos(probe, at, plmn, test, **fields)


def test_downloads_under_the_minimum_speed_page_the_carrier() -> None:
    feed = Feed()
    for i, mbps in enumerate((12.0, 3.5, 14.0)):
        transfer(feed, i * 3600, VT, mbps)
    ev = feed.judge(3 * 3600 - 60)
    # the probe was silent between transfers in this test: keep it alive for the evaluation
    assert found(ev, "ThroughputBelowTarget") == []  # p1 looks down (silent): nothing judged
    feed.round("p1", 3 * 3600 - 60, VT, ok=True)
    (f,) = found(feed.judge(3 * 3600 - 50), "ThroughputBelowTarget")
    assert (f.labels["area"], f.labels["carrier"], f.labels["severity"]) == ("gate-a", VT, "warning")
    assert "2 of 3 downloads reached 5 Mbit/s (67 %, at least 95 % should)" in f.annotations["description"]


def test_a_carriers_declared_targets_replace_the_defaults() -> None:
    settings = RuleSettings.model_validate(json.loads(json.dumps(
        {"qos": {"carriers": {VT: {"down_min_mbps": 2, "down_avg_mbps": 20}}}})))
    feed = Feed(settings)
    for i, mbps in enumerate((12.0, 3.5, 14.0)):
        transfer(feed, i * 60, VT, mbps)
    (f,) = found(feed.judge(200), "ThroughputBelowTarget")
    description = f.annotations["description"]
    assert "reached" not in description   # every download reached 2 Mbit/s
    assert "the mean download speed is 9.8 Mbit/s (the target is 20)" in description


def test_dropped_transfers_over_the_limit_page_and_enough_good_ones_clear() -> None:
    feed = Feed()
    transfer(feed, 0, VT, 20.0)
    transfer(feed, 60, VT, None, dropped=True, test="upload")
    transfer(feed, 120, VT, 20.0)
    (f,) = found(feed.judge(130), "ThroughputBelowTarget")
    assert "1 of 3 transfers dropped (33 %, the limit is 10 %)" in f.annotations["description"]
    assert unknown(Feed().judge(10), "ThroughputBelowTarget", "gate-a", VT) is False   # no data: not even unknown
    fresh = Feed()
    for i in range(3):
        transfer(fresh, i * 60, VT, 20.0)
    ev = fresh.judge(130)
    assert found(ev, "ThroughputBelowTarget") == []
    assert {"alertname": "ThroughputBelowTarget", "zone": "dv", "area": "gate-a", "carrier": VT} in [
        c[0] for c in ev.clear]


def test_a_budget_sample_is_no_test_result() -> None:
    feed = Feed()
    feed.cell("p1", 0, VT)
    for i in range(10):
        feed.send("p1", i, wire.Sample("qos", {"carrier": VT, "modem": "viettel", "test": "budget", "target": "sim"},
                                       {"budget_left_bytes": 0, "budget_used_bytes": 10, "refused": 3},
                                       T0 + i * S))
    assert unknown(feed.judge(20), "DataAccessFailure", "gate-a", VT)


def test_a_probe_may_report_qos_only_for_carriers_it_has_a_modem_on() -> None:
    scope = Scope(INV)
    tags = {"carrier": VNP, "modem": "vinaphone", "test": "dns", "target": "qos.zone"}
    assert scope.why("dv", "p1", "qos", tags) is None
    assert scope.why("dv", "p2", "qos", tags) == ("not_assigned", f"carrier {VNP}")
