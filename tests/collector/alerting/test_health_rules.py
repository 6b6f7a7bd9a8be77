"""Probe and modem health alerts (``collector.alerting.health``), one behaviour at a time (pure, time as an
argument): ModemDown, SimProblem, ProbeClockSkew, SpoolFilling, ProbeDiskLow; who is paged; unknown is not clear.
"""

from __future__ import annotations

from collector.alerting.config import RuleSettings
from collector.alerting.model import LABELS, SEVERITY, Evaluation
from collector.clockskew import ClockView
from tests.collector.alerting.test_rules import SETTINGS, T0, Feed, found, inventory, unknown
from zonewatch import wire

S = 1_000_000_000
VT = {"probe": "p1", "modem": "viettel"}


def modem(feed: Feed, at: float, answering: bool = True, step: int = 0, probe: str = "p1", name: str = "viettel",
          carrier: str = "452-04", **fields: wire.FieldValue) -> Feed:
    """A poll of the modem as the agent reports it: its ``cellular`` reading, or a ``modem`` sample when it did not
    answer (after ``step`` of the recovery ladder)."""
    tags, t = {"modem": name, "carrier": carrier}, T0 + int(at * S)
    if not answering:
        return feed.send(probe, at, wire.Sample("modem", tags, {"answering": False, "recovery_step": step}, t))
    values: dict[str, wire.FieldValue] = {"rsrp_dbm": -90, "registered": True, "sim_state": 0, "reg_state": 1}
    return feed.send(probe, at, wire.Sample("cellular", {**tags, "rat": "lte"}, {**values, **fields}, t))


def report(feed: Feed, at: float, probe: str = "p1", **fields: wire.FieldValue) -> Feed:
    return feed.send(probe, at, wire.Sample("probe", {}, {"up": True, "spool_depth": 0, **fields}, T0 + int(at * S)))


def cleared(ev: Evaluation, alertname: str, **labels: str) -> int | None:
    """Return since when ``alertname`` with exactly these labels is clear by the evidence, None if it is not."""
    return next((since for m, since in ev.clear if dict(m) == {"alertname": alertname, **labels}), None)


def test_modem_down_after_the_polls_it_missed_to_the_noc_naming_the_steps_then_resolved() -> None:
    feed = modem(Feed().alive("p2", 300), 0)
    modem(feed, 30, answering=False, step=1)
    ev = feed.evaluate(31)
    assert not found(ev, "ModemDown") and unknown(ev, alertname="ModemDown", **VT)   # one miss: not down yet
    modem(feed, 60, answering=False, step=2)
    (down,) = found(feed.evaluate(61), "ModemDown")
    assert dict(down.labels) == {"alertname": "ModemDown", "severity": "warning", "zone": "dv", "area": "gate-a",
                                 "probe": "p1", "modem": "viettel"}   # no carrier: the NOC's, not Viettel's
    assert list(down.labels) == [k for k in LABELS if k in down.labels] and SEVERITY["ModemDown"] == "warning"
    description = down.annotations["description"]
    assert "has not answered for 31s (2 polls in a row since 2025-11-28 00:00:30 UTC" in description
    assert "run so far: reopen, cfun" in description and "Viettel" in description
    assert unknown(feed.evaluate(61), alertname="SimProblem", **VT)   # it cannot say anything of its SIM
    modem(feed, 90)
    ev = feed.evaluate(91)
    assert not found(ev, "ModemDown") and cleared(ev, "ModemDown", **VT) == T0 + 90 * S


def test_a_modem_of_a_probe_that_is_down_is_unknown_and_one_no_longer_polled_is_clear() -> None:
    feed = modem(Feed().alive("p2", 1200), 0, answering=False)
    modem(feed, 5, answering=False).offline("p1", 10)
    ev = feed.evaluate(20)
    assert not found(ev, "ModemDown") and unknown(ev, alertname="ModemDown", **VT)
    feed = modem(Feed().alive("p1", 1200).alive("p2", 1200), 0, answering=False)
    modem(feed, 30, answering=False)
    assert found(feed.evaluate(40), "ModemDown")
    ev = feed.evaluate(700)   # the probe is up and has said nothing of the modem for stale_after
    assert not found(ev, "ModemDown") and cleared(ev, "ModemDown", **VT) == T0 + 700 * S


def test_sim_problems_name_what_is_wrong_and_resolve_when_the_sim_is_ready() -> None:
    feed = Feed().alive("p2", 600)
    for state, words in ((1, "no SIM card is inserted"), (2, "asks for its PIN"), (3, "asks for its PUK"),
                         (4, "cannot be used")):
        modem(feed, 30 * state, sim_state=state, registered=False, reg_state=0)
        (sim,) = found(feed.evaluate(30 * state + 1), "SimProblem")
        assert "carrier" not in sim.labels and words in sim.annotations["description"]
    modem(feed, 200)
    ev = feed.evaluate(201)
    assert not found(ev, "SimProblem") and cleared(ev, "SimProblem", **VT) == T0 + 200 * S


def test_not_registered_for_sim_hold_is_a_sim_problem_and_a_denied_one_goes_to_the_carrier_too() -> None:
    feed = Feed().alive("p2", 1200)
    for at in range(0, 700, 30):
        modem(feed, at, registered=False, reg_state=2)
        feed.cell("p2", at, -90, modem="vt2")   # p2 is registered on Viettel there: no NoService
    assert not found(feed.evaluate(599), "SimProblem")   # 9m59s: within sim_hold
    (searching,) = found(feed.evaluate(601), "SimProblem")
    assert "carrier" not in searching.labels and "(searching)" in searching.annotations["description"]
    assert searching.muted_by is None
    modem(feed, 700, registered=False, reg_state=3)
    (denied,) = found(feed.evaluate(701), "SimProblem")
    assert denied.labels["carrier"] == "452-04" and "The network refuses this SIM" in denied.annotations["description"]
    modem(feed, 730)
    ev = feed.evaluate(731)
    assert not found(ev, "SimProblem") and cleared(ev, "SimProblem", **VT) == T0 + 730 * S


def test_no_service_in_the_area_mutes_the_unregistered_modem_it_explains() -> None:
    feed = Feed().alive("p2", 1200)
    for at in range(0, 700, 30):   # nobody in the area is registered on Viettel: NoService
        modem(feed, at, registered=False, reg_state=2)
    ev = feed.evaluate(690)
    assert found(ev, "NoService", carrier="452-04")
    (sim,) = found(ev, "SimProblem")
    assert sim.muted_by == "NoService 452-04 in area gate-a"


def test_a_clock_off_by_more_than_clock_skew_pages_the_noc_and_says_its_data_is_corrected() -> None:
    feed = Feed().alive("p1", 300).alive("p2", 300)
    view = ClockView(offset_ns=600 * S, since_ns=T0 + 10 * S, floor_ns=600 * S, upper_ns=None,
                     measured_ns=T0 + 290 * S, corrected=42)
    feed.facts.health.clocks = {"dv/p1": view}
    (skew,) = found(feed.evaluate(300), "ProbeClockSkew")
    assert dict(skew.labels) == {"alertname": "ProbeClockSkew", "severity": "warning", "zone": "dv", "area": "gate-a",
                                 "probe": "p1"}
    assert skew.annotations["summary"] == "Clock of probe p1 is 10m00s ahead of the collector's"
    assert "stored at corrected times (42 messages" in skew.annotations["description"]
    feed.facts.health.clocks = {"dv/p1": ClockView(30 * S, T0, 30 * S, None, T0 + 290 * S, 0)}
    assert not found(feed.evaluate(300), "ProbeClockSkew")   # 30 s: corrected, but under the limit
    feed.facts.health.clocks = {"dv/p1": ClockView(0, 0, -300 * S, None, T0 + 290 * S, 0)}
    ev = feed.evaluate(300)   # its messages arrive five minutes late, and nothing bounds their transit
    assert not found(ev, "ProbeClockSkew") and unknown(ev, alertname="ProbeClockSkew", probe="p1")
    feed.facts.health.clocks = {"dv/p1": ClockView(0, T0 + 250 * S, -5_000_000, 2 * S, T0 + 290 * S, 0)}
    assert cleared(feed.evaluate(300), "ProbeClockSkew", probe="p1") == T0 + 250 * S
    feed.offline("p1", 301)
    assert unknown(feed.evaluate(302), alertname="ProbeClockSkew", probe="p1")


def test_a_spool_filling_and_a_disk_running_low_page_the_noc_until_they_are_back() -> None:
    settings = RuleSettings.model_validate({"health": {"disk_low_mb": 1024}})
    feed = Feed(settings).alive("p2", 600)
    report(feed, 30, spool_fill_pct=12.5, disk_free_pct=80.0, disk_free_mb=20_000.0)
    ev = feed.evaluate(31, settings=settings)
    assert not found(ev, "SpoolFilling") and not found(ev, "ProbeDiskLow")
    report(feed, 60, spool_fill_pct=63.0, disk_free_pct=40.0, disk_free_mb=900.0)
    ev = feed.evaluate(61, settings=settings)
    (filling,) = found(ev, "SpoolFilling")
    assert filling.annotations["summary"] == "Spool of probe p1 is 63 % full" and "carrier" not in filling.labels
    (disk,) = found(ev, "ProbeDiskLow")
    assert "40.0 % and 900 MiB free" in disk.annotations["description"]
    report(feed, 90, spool_fill_pct=20.0, disk_free_pct=40.0, disk_free_mb=5000.0)
    ev = feed.evaluate(91, settings=settings)
    assert cleared(ev, "SpoolFilling", probe="p1") == T0 + 90 * S
    assert cleared(ev, "ProbeDiskLow", probe="p1") == T0 + 90 * S
    report(feed, 120, probe="p3", spool_fill_pct=99.0)   # p3 says nothing of its disk (an older agent)
    ev = feed.evaluate(121, settings=settings)
    assert found(ev, "SpoolFilling", probe="p3") and unknown(ev, alertname="ProbeDiskLow", probe="p3")
    ev = feed.evaluate(1000, settings=settings)   # reports older than stale_after: unknown, not clear
    assert unknown(ev, alertname="SpoolFilling", probe="p1") and not found(ev, "SpoolFilling")


def test_an_older_reading_does_not_undo_a_newer_one() -> None:
    feed = modem(Feed().alive("p2", 300), 0, answering=False)
    modem(feed, 30, answering=False)
    modem(feed, 60)                       # back
    modem(feed, 45, answering=False)      # a replayed backlog: history
    assert not found(feed.evaluate(61), "ModemDown")
    assert SETTINGS.health.modem_down_polls == 2 and inventory().probes["p1"].area == "gate-a"
