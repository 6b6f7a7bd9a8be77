"""The alert tracker: hold-down, keep-firing, flap control, muting, unknown and restarts (no clock, no sleep)."""

from __future__ import annotations

from pathlib import Path

from collector.alerting.config import AlertingConfig
from collector.alerting.model import Evaluation, Finding
from collector.alerting.tracker import AlertTracker
from zonewatch import strict

S = 1_000_000_000
T0 = 1_764_000_000 * S


def config(text: str = "") -> AlertingConfig:
    return strict.load(AlertingConfig, text or "restart_grace: 0s\n", "alerting.yaml")


def down(device: str = "bts-01", muted_by: str | None = None, carrier: str = "452-04") -> Finding:
    labels = {"alertname": "DeviceDown", "severity": "critical", "zone": "dv", "device": device, "carrier": carrier}
    return Finding(labels, {"summary": f"{device} does not answer"}, muted_by)


def hole() -> Finding:
    return Finding({"alertname": "CoverageHole", "severity": "warning", "zone": "dv", "area": "a", "carrier": "452-04"})


def run(tracker: AlertTracker, steps: list[tuple[int, list[Finding]]]) -> list[tuple[int, str, str]]:
    sent = []
    for t, findings in steps:
        for n in tracker.update(Evaluation(findings), T0 + t * S):
            sent.append((t, n.status, n.labels["alertname"]))
    return sent


def test_an_event_alert_fires_at_once_and_resolves_once() -> None:
    tracker = AlertTracker(config())
    sent = run(tracker, [(0, [down()]), (10, [down()]), (20, []), (30, [])])
    assert sent == [(0, "firing", "DeviceDown"), (20, "resolved", "DeviceDown")]
    assert tracker.alerts() == []


def test_hold_down_keeps_a_short_dip_quiet_and_starts_at_the_first_sighting() -> None:
    tracker = AlertTracker(config("restart_grace: 0s\nrules: {CoverageHole: {for: 60s, keep_firing_for: 30s}}\n"))
    # 50 s of hole, then gone: never fires.
    assert run(tracker, [(0, [hole()]), (50, [hole()]), (60, [])]) == []
    notes = []
    for t, f in [(100, [hole()]), (130, [hole()]), (160, [hole()])]:
        notes += tracker.update(Evaluation(f), T0 + t * S)
    assert [(n.status, n.starts_ns) for n in notes] == [("firing", T0 + 100 * S)]
    # Clears for 20 s (under keep_firing_for), returns: nothing sent. Then clears for good.
    sent = run(tracker, [(170, []), (190, [hole()]), (200, []), (220, []), (230, [])])
    assert sent == [(230, "resolved", "CoverageHole")]


def test_resolved_carries_the_time_the_condition_cleared() -> None:
    tracker = AlertTracker(config("restart_grace: 0s\nrules: {DeviceDown: {keep_firing_for: 30s}}\n"))
    tracker.update(Evaluation([down()]), T0)
    assert tracker.update(Evaluation([]), T0 + 10 * S) == []
    (note,) = tracker.update(Evaluation([]), T0 + 40 * S)
    assert (note.status, note.starts_ns, note.ends_ns) == ("resolved", T0, T0 + 10 * S)


def test_a_flapping_alert_pages_once_more_then_holds_until_it_settles() -> None:
    tracker = AlertTracker(config("restart_grace: 0s\nflap: {window: 30m, changes: 4, settle: 5m}\n"))
    steps: list[tuple[int, list[Finding]]] = [(t, [down()] if (t // 60) % 2 == 0 else []) for t in range(0, 1200, 60)]
    sent = run(tracker, steps)
    # fire, resolve, fire, resolve, fire (flapping): five messages in twenty minutes of flapping, not twenty.
    assert [s[1] for s in sent] == ["firing", "resolved", "firing", "resolved", "firing"]
    (alert,) = tracker.alerts()
    assert alert.flapping and alert.state == "firing"
    # Quiet for the settle time: resolved once.
    later = run(tracker, [(1200 + 60 * i, []) for i in range(7)])
    assert [s[1] for s in later] == ["resolved"]


def test_the_flapping_notification_says_so() -> None:
    tracker = AlertTracker(config("restart_grace: 0s\nflap: {changes: 3}\n"))
    notes = []
    for t in range(6):
        notes += tracker.update(Evaluation([down()] if t % 2 == 0 else []), T0 + t * S)
    assert [n.flapping for n in notes] == [False, False, True]
    assert notes[-1].annotations["flapping"] == "true"
    # It says why it may stay firing while its condition is clear (its group whole again, say).
    assert "stays firing until its condition has been clear for 10 min" in notes[-1].annotations["description"]


def test_a_muted_alert_is_tracked_but_never_pages_and_sends_no_lone_resolve() -> None:
    tracker = AlertTracker(config())
    assert run(tracker, [(0, [down(muted_by="DeviceDown sw-core")]), (10, [down(muted_by="DeviceDown sw-core")])]) == []
    (alert,) = tracker.alerts()
    assert alert.state == "firing" and alert.muted
    assert run(tracker, [(20, [])]) == []


def test_muted_after_paging_still_gets_its_resolve() -> None:
    tracker = AlertTracker(config())
    sent = run(tracker, [(0, [down()]), (10, [down(muted_by="ServiceOutage g1")]), (20, [])])
    assert sent == [(0, "firing", "DeviceDown"), (20, "resolved", "DeviceDown")]


def test_an_alert_still_firing_when_its_mute_lifts_pages_then() -> None:
    tracker = AlertTracker(config())
    sent = run(tracker, [(0, [down(muted_by="DeviceDown sw-core")]), (10, [down()]), (20, [down()])])
    assert sent == [(10, "firing", "DeviceDown")]


def test_unknown_leaves_an_alert_as_it_was() -> None:
    tracker = AlertTracker(config())
    tracker.update(Evaluation([down()]), T0)
    assert tracker.update(Evaluation([], unknown=[{"device": "bts-01"}]), T0 + 600 * S) == []
    assert [a.state for a in tracker.alerts()] == ["firing"]
    # Another device's matcher does not protect it.
    (note,) = tracker.update(Evaluation([], unknown=[{"device": "olt-9"}]), T0 + 610 * S)
    assert note.status == "resolved"


def test_two_owners_are_two_alerts() -> None:
    tracker = AlertTracker(config())
    notes = tracker.update(Evaluation([down(carrier="452-04"), down(carrier="452-02")]), T0)
    assert sorted(n.carrier or "" for n in notes) == ["452-02", "452-04"]


def test_a_restart_neither_pages_again_nor_forgets(tmp_path: Path) -> None:
    store = str(tmp_path / "alerts.db")
    cfg = config("restart_grace: 2m\n")
    first = AlertTracker(cfg, store, started_ns=T0)
    assert len(first.update(Evaluation([down()]), T0 + 200 * S)) == 1
    first.close()
    second = AlertTracker(cfg, store, started_ns=T0 + 300 * S)
    # Same fault seen again: no page. Within the grace, no evidence is not a recovery.
    assert second.update(Evaluation([]), T0 + 310 * S) == []
    assert second.update(Evaluation([down()]), T0 + 320 * S) == []
    assert second.update(Evaluation([]), T0 + 330 * S) == []
    # After the grace, the clear is believed, and the resolve goes out once.
    (note,) = second.update(Evaluation([]), T0 + 430 * S)
    assert (note.status, note.starts_ns) == ("resolved", T0 + 200 * S)
    second.close()
    third = AlertTracker(cfg, store, started_ns=T0 + 500 * S)
    assert third.alerts() == []


def test_within_the_restart_grace_only_evidence_of_the_end_resolves_and_it_sets_ends_at(tmp_path: Path) -> None:
    store = str(tmp_path / "alerts.db")
    cfg = config("restart_grace: 2m\n")
    first = AlertTracker(cfg, store, started_ns=T0)
    first.update(Evaluation([down("bts-01"), down("bts-02"), down("bts-03")]), T0 + 200 * S)
    first.close()
    second = AlertTracker(cfg, store, started_ns=T0 + 300 * S)
    # bts-01 answers since 280 s (a poll the broker kept while the collector was away); nothing is known of
    # bts-02 or bts-03 yet: they are held. Evidence for another device, or another alert, changes nothing.
    clear = [({"alertname": "DeviceDown", "device": "bts-01"}, T0 + 280 * S),
             ({"alertname": "DeviceDown", "device": "bts-09"}, T0 + 250 * S),
             ({"alertname": "LinkDown", "device": "bts-02"}, T0 + 250 * S)]
    (note,) = second.update(Evaluation([], clear=clear), T0 + 301 * S)
    assert (note.status, note.labels["device"], note.ends_ns) == ("resolved", "bts-01", T0 + 280 * S)
    assert [e.alert.labels["device"] for e in second.ended] == ["bts-01"] and not second.ended[0].held
    assert {a.labels["device"] for a in second.alerts()} == {"bts-02", "bts-03"}
    # Evidence older than the alert's start cannot end it before it began.
    early = [({"alertname": "DeviceDown", "device": "bts-03"}, T0 + 100 * S)]
    (note,) = second.update(Evaluation([down("bts-02")], clear=early), T0 + 302 * S)
    assert (note.labels["device"], note.ends_ns) == ("bts-03", T0 + 200 * S)
    second.close()


def test_alerts_clearing_together_resolve_newest_first() -> None:
    tracker = AlertTracker(config())
    lost = Finding({"alertname": "RedundancyLost", "severity": "warning", "zone": "dv", "group": "g", "carrier": "1"})
    outage = Finding({"alertname": "ServiceOutage", "severity": "critical", "zone": "dv", "group": "g", "carrier": "1"})
    tracker.update(Evaluation([lost]), T0)
    tracker.update(Evaluation([lost, outage]), T0 + 10 * S)
    notes = tracker.update(Evaluation([]), T0 + 20 * S)
    assert [(n.status, n.labels["alertname"]) for n in notes] == [("resolved", "ServiceOutage"),
                                                                  ("resolved", "RedundancyLost")]
