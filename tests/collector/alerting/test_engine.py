"""The engine: batches in, one evaluation, notifications out before state is saved, derived points stored.

Driven through ``ingest`` and ``step(now)`` with a fake dispatcher and a list for the store (no threads, no clock).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from collector.alerting import engine as engine_module
from collector.alerting.config import AlertingConfig
from collector.alerting.engine import AlertEngine
from collector.alerting.model import Notification
from collector.ingest import plain_batch
from collector.inventory import Inventory
from collector.scope import Refusals
from zonewatch import strict, wire
from zonewatch.measurements import problems

S = 1_000_000_000
T0 = 1_764_288_000 * S

INVENTORY = """
zones: {dv: {name: Dinh Vu, areas: [gate-a]}}
carriers: {viettel: {plmn: 452-04, name: Viettel}}
sites: {pop: {zone: dv, area: gate-a, kind: fibre_pop, owners: [viettel]}}
devices: {sw: {site: pop, kind: switch, owners: [viettel], probe: p1}}
links:
  vt-1: {device: sw, ifname: xe-1, carriers: [viettel]}
  vt-2: {device: sw, ifname: xe-2, carriers: [viettel]}
redundancy_groups:
  vt: {zone: dv, carriers: [viettel], members: [{link: vt-1}, {link: vt-2}]}
probes: {p1: {zone: dv, area: gate-a}}
"""


class FakeDispatcher:
    def __init__(self) -> None:
        self.sent: list[Notification] = []
        self.fail = False
        self.synced: list[list[Notification]] = []

    def submit(self, notifications: Sequence[Notification]) -> None:
        if self.fail:
            raise OSError("outbox disk full")
        self.sent.extend(notifications)

    def sync_alertmanager(self, firing: Sequence[Notification], now_ns: int) -> None:
        self.synced.append(list(firing))


class Rig:
    def __init__(self, tmp: Path, extra: str = "") -> None:
        self.cfg = strict.load(AlertingConfig, f"state_path: '{tmp / 'alerts.db'}'\nrestart_grace: 0s\n{extra}")
        self.inventory = strict.load(Inventory, INVENTORY, "inventory.yaml")
        self.dispatcher = FakeDispatcher()
        self.stored: list[wire.Batch] = []
        self.seq = 0
        self.engine = AlertEngine(self.cfg, self.inventory, self.dispatcher, self.stored.extend,
                                  CollectorRegistry(), clock=lambda: T0)

    def poll(self, at_s: int, up1: bool, up2: bool) -> None:
        self.seq += 1
        samples = tuple(wire.Sample("interface", {"device": "sw", "ifname": name, "link": link},
                                    {"oper_up": up, "admin_up": True}, T0 + at_s * S)
                        for name, link, up in (("xe-1", "vt-1", up1), ("xe-2", "vt-2", up2)))
        batch = wire.Batch("dv", "p1", self.seq, T0 + at_s * S, samples)
        self.engine.ingest([(wire.topic("dv", "p1", "data"), wire.encode(batch), T0 + at_s * S)])

    def points(self, measurement: str) -> list[tuple[str, dict[str, str], dict[str, wire.FieldValue]]]:
        """(batch probe, tags with the batch's zone, fields) of every stored point of ``measurement``."""
        return [(b.probe, {**s.tags, "zone": b.zone}, dict(s.fields)) for b in self.stored for s in b.samples
                if s.measurement == measurement]


def test_a_cut_link_pages_once_and_is_stored_as_firing_then_resolved(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.poll(0, True, True)
    assert rig.engine.step(T0) == []
    rig.poll(10, False, True)
    notes = rig.engine.step(T0 + 10 * S)
    assert sorted(n.labels["alertname"] for n in notes) == ["LinkDown", "RedundancyLost"]
    assert rig.dispatcher.sent == notes
    alerts = rig.points("alert")
    assert {(t["alertname"], f["firing"], f["muted"]) for _, t, f in alerts} == {
        ("LinkDown", 1, 0), ("RedundancyLost", 1, 0)}
    assert all(t["carrier"] == "452-04" and t["zone"] == "dv" for _, t, _ in alerts)
    rig.poll(20, True, True)
    notes = rig.engine.step(T0 + 20 * S)
    assert {(n.status, n.labels["alertname"]) for n in notes} == {("resolved", "LinkDown"),
                                                                  ("resolved", "RedundancyLost")}
    assert sorted((t["alertname"], f["firing"]) for _, t, f in rig.points("alert")[len(alerts):]) == [
        ("LinkDown", 0), ("RedundancyLost", 0)]
    for batch in rig.stored:   # what the engine writes is within the measurement catalogue
        for s in batch.samples:
            assert problems(s.measurement, s.tags, s.fields) == [], s


def test_an_alert_muted_for_its_whole_life_is_stored_as_ended_when_it_clears(tmp_path: Path) -> None:
    # Both routes cut at once: ServiceOutage pages, RedundancyLost is muted under it from its first moment.
    # When they come back it resolves without a notification; its stored series must still end, at the time
    # the poll showed the routes up (not when the evaluation ran), or the dashboards show it firing for ever.
    rig = Rig(tmp_path)
    rig.poll(0, True, True)
    rig.engine.step(T0)
    rig.poll(10, False, False)
    notes = rig.engine.step(T0 + 10 * S)
    assert "RedundancyLost" not in {n.labels["alertname"] for n in notes}
    assert ("RedundancyLost", 1, 1) in {(t["alertname"], f["firing"], f["muted"]) for _, t, f in rig.points("alert")}
    before = len(rig.stored)
    rig.poll(20, True, True)
    notes = rig.engine.step(T0 + 21 * S)
    assert {(n.status, n.labels["alertname"]) for n in notes} >= {("resolved", "ServiceOutage")}
    assert "RedundancyLost" not in {n.labels["alertname"] for n in notes}
    ended = {(s.tags["alertname"], s.fields["firing"], s.time_ns) for b in rig.stored[before:] for s in b.samples
             if s.measurement == "alert"}
    assert ("RedundancyLost", 0, T0 + 20 * S) in ended
    assert ("ServiceOutage", 0, T0 + 20 * S) in ended


def test_an_alert_held_firing_after_it_cleared_ends_when_it_is_released(tmp_path: Path) -> None:
    # keep_firing_for holds LinkDown 10 s after the link is back; it was stored firing meanwhile, so its
    # ``firing 0`` comes when it is released, after every ``firing 1``.
    rig = Rig(tmp_path, "rules: {LinkDown: {keep_firing_for: 10s}}\n")
    rig.poll(0, True, True)
    rig.engine.step(T0)
    rig.poll(10, False, True)
    rig.engine.step(T0 + 10 * S)
    rig.poll(20, True, True)
    rig.engine.step(T0 + 20 * S)
    rig.poll(30, True, True)
    rig.engine.step(T0 + 30 * S)
    link = [(s.fields["firing"], s.time_ns) for b in rig.stored for s in b.samples
            if s.measurement == "alert" and s.tags["alertname"] == "LinkDown"]
    assert link[-1] == (0, T0 + 30 * S)
    assert all(t < T0 + 30 * S for firing, t in link if firing == 1)


def test_redundancy_points_are_written_on_change_and_every_30s_otherwise(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    for t in range(0, 61, 5):
        rig.poll(t, True, t < 20)
        rig.engine.step(T0 + t * S)
    written = [(f["members_up"], f["state"]) for _, tags, f in rig.points("redundancy")]
    # 0 s: first; 20 s: backup cut (changed); 50 s: 30 s without change.
    assert written == [(2, 0), (1, 1), (1, 1)]
    assert {probe for probe, _, _ in rig.points("redundancy")} == {"collector"}


def test_a_failed_hand_over_loses_nothing_the_next_evaluation_sends_it_again(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.poll(0, True, True)
    rig.engine.step(T0)
    rig.poll(10, False, True)
    rig.dispatcher.fail = True
    with pytest.raises(OSError):
        rig.engine.step(T0 + 10 * S)
    rig.dispatcher.fail = False
    notes = rig.engine.step(T0 + 11 * S)
    assert sorted(n.labels["alertname"] for n in notes) == ["LinkDown", "RedundancyLost"]
    assert rig.engine.step(T0 + 12 * S) == []


def test_the_backlog_is_bounded_and_skips_only_the_oldest_data_never_status_or_events(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(tmp_path)
    rig.engine.max_backlog = 3
    rig.engine.offer([("zw/v1/dv/p1/status", b"offline")], T0)
    rig.engine.offer([("zw/v1/dv/p1/data", str(i).encode()) for i in range(5)], T0)
    rig.engine.offer([("zw/v1/dv/p1/events", b"e")], T0)
    urgent, data = rig.engine.take()
    assert [p for _, p, *_ in urgent] == [b"offline", b"e"] and data == []   # status and events first, all
    assert [p for _, p, *_ in rig.engine.take()[1]] == [b"2", b"3", b"4"]    # then the newest data
    assert rig.engine.metrics.dropped.labels("data")._value.get() == 2
    assert "alert engine behind: skipped 2 of the oldest messages" in caplog.text
    # Only a flood of status and events past four times the bound loses any of them (counted apart).
    rig.engine.offer([("zw/v1/dv/p1/events", str(i).encode()) for i in range(14)], T0)
    urgent, _ = rig.engine.take()
    assert [p for _, p, *_ in urgent] == [str(i).encode() for i in range(2, 14)]
    assert rig.engine.metrics.dropped.labels("status_events")._value.get() == 2


def test_data_is_decoded_a_slice_at_a_time_and_status_overtakes_what_is_left(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch,
                                                                             ) -> None:
    monkeypatch.setattr("collector.alerting.engine.SLICE", 2)
    rig = Rig(tmp_path)
    rig.engine.offer([("zw/v1/dv/p1/data", str(i).encode()) for i in range(5)], T0)
    assert [p for _, p, *_ in rig.engine.take()[1]] == [b"0", b"1"]
    rig.engine.offer([("zw/v1/dv/p1/status", b"offline")], T0)
    assert [p for _, p, *_ in rig.engine.take()[0]] == [b"offline"]
    assert [p for _, p, *_ in rig.engine.take()[1]] == [b"2", b"3"]
    assert [p for _, p, *_ in rig.engine.take()[1]] == [b"4"]
    assert rig.engine.take() == ([], [])


def test_a_last_will_judged_ahead_of_older_data_is_not_undone_by_that_data(tmp_path: Path) -> None:
    # p1's data arrived, then its last will. The engine takes the will first (ProbeDown at once) and the
    # data after it: the data is older news and must not make p1 look connected again.
    rig = Rig(tmp_path)
    rig.poll(0, True, True)
    rig.engine.step(T0)
    batch = wire.Batch("dv", "p1", 9, T0 + 5 * S, (wire.Sample("interface", {"device": "sw", "ifname": "xe-1"},
                                                               {"oper_up": True}, T0 + 5 * S),))
    rig.engine.offer([(wire.topic("dv", "p1", "data"), wire.encode(batch))], T0 + 5 * S)
    rig.engine.offer([(wire.topic("dv", "p1", "status"), wire.STATUS_OFFLINE)], T0 + 6 * S)
    urgent, _ = rig.engine.take()
    rig.engine.ingest(urgent)
    assert [n.labels["alertname"] for n in rig.engine.step(T0 + 6 * S)] == ["ProbeDown"]
    _, data = rig.engine.take()
    rig.engine.ingest(data)
    assert rig.engine.step(T0 + 7 * S) == []   # still down: no resolve
    assert [a.labels["alertname"] for a in rig.engine.tracker.firing()] == ["ProbeDown"]


def test_a_message_the_engine_cannot_decode_is_counted_and_skipped(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.engine.ingest([("zw/v1/dv/p1/data", b"{not json", T0)])
    assert rig.engine.metrics.rejected._value.get() == 1
    rig.poll(0, False, False)
    # Both links down: an outage (RedundancyLost under it is muted, so not sent).
    assert sorted(n.labels["alertname"] for n in rig.engine.step(T0)) == ["LinkDown", "LinkDown", "ServiceOutage"]


def test_alertmanager_gets_the_notified_firing_alerts_again_each_resend_interval(tmp_path: Path) -> None:
    rig = Rig(tmp_path, "alertmanager: {url: 'http://127.0.0.1:9093', resend_interval: 60s}\n")
    rig.poll(0, False, True)
    rig.engine.step(T0)
    rig.engine.step(T0 + 30 * S)
    rig.engine.step(T0 + 61 * S)
    assert [sorted(n.labels["alertname"] for n in batch) for batch in rig.dispatcher.synced] == [
        ["LinkDown", "RedundancyLost"], ["LinkDown", "RedundancyLost"]]


def test_one_probes_flood_does_not_delay_another_probes_data(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.engine.offer([("zw/v1/dv/flood/data", b"f")] * 10_000, T0)
    rig.engine.offer([("zw/v1/dv/p1/data", b"p1"), ("zonewatch/tick/collector", b"1")], T0)
    _, first = rig.engine.take()
    assert b"p1" in [p for _, p, *_ in first]            # in the first slice, not after 10,000 others
    assert b"1" not in [p for _, p, *_ in first]         # the tick waits until the flood before it is taken
    taken = first
    while data := rig.engine.take()[1]:
        taken += data
    assert [p for _, p, *_ in taken][-1] == b"1" and len(taken) == 10_002


def test_the_fast_decode_feeds_the_facts_what_the_full_one_does(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    polls = [wire.Batch("dv", "p1", seq, T0 + seq * S, (
        wire.Sample("device", {"device": "sw"}, {"up": True, "uptime_s": 100.0 + seq}, T0 + seq * S),
        wire.Sample("interface", {"device": "sw", "ifname": "xe-1", "link": "vt-1"},
                    {"oper_up": seq % 2 == 0, "admin_up": True, "in_octets": 2**64 - seq}, T0 + seq * S),
        wire.Sample("probe", {}, {"spool_depth": 0}, T0 + seq * S))) for seq in range(1, 6)]
    messages = [(wire.topic("dv", "p1", "data"), wire.encode(b), T0 + b.seq * S, b.seq) for b in polls]
    for name in ("fast", "full"):
        (tmp_path / name).mkdir()
    fast, full = Rig(tmp_path / "fast"), Rig(tmp_path / "full")
    wire.decode(messages[0][1])   # the names, checked: from now on the fast way takes these messages
    taken: list[wire.Batch | None] = []
    monkeypatch.setattr(engine_module, "plain_batch", lambda *a: taken.append(plain_batch(*a)) or taken[-1])
    fast.engine.ingest(messages)
    assert all(taken) and len(taken) == 5   # every one of them went the fast way
    monkeypatch.setattr(engine_module, "plain_batch", lambda *a: None)
    full.engine.ingest(messages)
    for facts in ("probes", "polls", "devices", "interfaces", "links", "loss", "misbehaviour"):
        assert getattr(fast.engine.facts, facts) == getattr(full.engine.facts, facts), facts


def test_a_row_the_probe_may_not_send_is_refused_and_the_rest_judged(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    batch = wire.Batch("dv", "p1", 1, T0, (wire.Sample("device", {"device": "olt-9"}, {"up": False}, T0),
                                           wire.Sample("device", {"device": "sw"}, {"up": True}, T0)))
    rig.engine.ingest([(wire.topic("dv", "p1", "data"), wire.encode(batch), T0)])
    assert rig.engine.facts.misbehaviour["p1"].counts == {"not_assigned": 1}
    assert set(rig.engine.facts.polls) == {("p1", "sw")}


def test_a_scrape_during_an_evaluation_sees_the_alerts_of_the_last_one(tmp_path: Path) -> None:
    """The alert gauge was cleared and filled again at each evaluation: a scrape in between saw no alert."""
    rig = Rig(tmp_path)
    registry = rig.engine.metrics.alerts
    rig.poll(0, False, True)
    rig.engine.step(T0)

    def scrape() -> dict[tuple[str, str], float]:
        family = next(iter(registry.collect()))
        return {(s.labels["alertname"], s.labels["state"]): s.value for s in family.samples}

    assert scrape() == {("LinkDown", "firing"): 1, ("RedundancyLost", "firing"): 1}
    seen: list[dict[tuple[str, str], float]] = []
    alerts = rig.engine.tracker.alerts

    def alerts_then_scrape() -> Any:   # a scrape lands while the next evaluation counts the alerts
        seen.append(scrape())
        return alerts()

    rig.engine.tracker.alerts = alerts_then_scrape  # type: ignore[method-assign]
    rig.poll(10, False, True)
    rig.engine.step(T0 + 10 * S)
    assert seen and seen[-1] == {("LinkDown", "firing"): 1, ("RedundancyLost", "firing"): 1}


# ---------------------------------------------------------------------------------------------- fed by the preparer
# The ingest's preparer decodes every data message for storage; the engine takes its batches (``prepared``) instead
# of decoding them again, and decodes them itself only while the preparer gives nothing (storage down).

DATA, STATUS, TICK = wire.topic("dv", "p1", "data"), wire.topic("dv", "p1", "status"), "zonewatch/tick/collector"


def fed_rig(tmp: Path) -> tuple[Rig, list[float]]:
    rig = Rig(tmp)
    clock = [1000.0]
    rig.engine.monotonic = lambda: clock[0]
    rig.engine.feed_from_ingest()
    return rig, clock


def link_poll(seq: int, up: bool) -> wire.Batch:
    return wire.Batch("dv", "p1", seq, T0 + seq * S, (wire.Sample(
        "interface", {"device": "sw", "ifname": "xe-1", "link": "vt-1"}, {"oper_up": up, "admin_up": True},
        T0 + seq * S),))


def decoded(rig: Rig, by: str) -> float:
    return rig.engine.metrics.decoded.labels(by)._value.get()


def test_fed_by_the_preparer_the_engine_judges_its_batches_and_decodes_nothing(tmp_path: Path) -> None:
    rig, _ = fed_rig(tmp_path)
    poll = link_poll(1, False)
    rig.engine.offer([(DATA, b"never read"), (TICK, str(T0).encode())], T0, ids=[7, None])
    assert rig.engine.take() == ([], [])   # the data waits for the preparer, the tick behind it
    rig.engine.prepared([(99, link_poll(2, True), None), (7, poll, None)])   # 99 was never offered: passed over
    assert rig.engine.take() == ([], [])   # the tick still waits: what was given before it is not judged yet
    prepared = rig.engine.take_prepared()
    assert [(m[4], batch) for m, batch, _ in prepared] == [(7, poll)]
    rig.engine.observe_prepared(prepared)
    _, data = rig.engine.take()
    assert [m[0] for m in data] == [TICK]   # now nothing offered before it is left
    rig.engine.ingest(data)
    assert rig.engine.facts.interfaces[("sw", "xe-1")].oper_up is False
    assert rig.engine.facts.caught_up_ns == T0
    assert (decoded(rig, "ingest"), decoded(rig, "engine")) == (1, 0)
    assert rig.engine.metrics.rejected._value.get() == 0
    notes = rig.engine.step(T0 + 2 * S)
    assert "LinkDown" in {n.labels["alertname"] for n in notes}


def test_while_the_preparer_gives_nothing_the_engine_decodes_the_data_itself(tmp_path: Path) -> None:
    rig, clock = fed_rig(tmp_path)
    poll = link_poll(1, False)
    rig.engine.offer([(DATA, wire.encode(poll))], T0, ids=[7])
    clock[0] += engine_module.STALLED - 0.1
    assert rig.engine.take() == ([], [])
    clock[0] += 0.1                         # the preparer has given nothing for STALLED seconds (old entries)
    _, data = rig.engine.take()
    assert [m[4] for m in data] == [7]
    rig.engine.ingest(data)
    assert rig.engine.facts.interfaces[("sw", "xe-1")].oper_up is False
    rig.engine.prepared([(7, poll, None)])   # the preparer comes back to it: judged already, passed over
    assert rig.engine.take_prepared() == []
    assert (decoded(rig, "ingest"), decoded(rig, "engine")) == (0, 1)
    # Once the preparer gives again, new data waits for it again.
    rig.engine.offer([(DATA, b"never read")], T0 + S, ids=[8])
    rig.engine.prepared([(8, link_poll(2, True), None)])
    assert rig.engine.take() == ([], []) and len(rig.engine.take_prepared()) == 1


def test_data_the_preparer_gives_late_keeps_its_place_before_a_last_will(tmp_path: Path) -> None:
    rig, _ = fed_rig(tmp_path)
    rig.engine.offer([(DATA, b"never read")], T0, ids=[7])
    rig.engine.offer([(STATUS, wire.STATUS_OFFLINE)], T0 + S, ids=[8])
    urgent, _ = rig.engine.take()
    rig.engine.ingest(urgent)
    rig.engine.prepared([(7, link_poll(1, True), None), (8, None, None)])   # the status is the engine's own
    rig.engine.observe_prepared(rig.engine.take_prepared())
    assert rig.engine.facts.probes["p1"].offline   # the data arrived before the will: it does not undo it


def test_a_message_the_preparer_rejects_or_refuses_part_of_is_counted_as_the_engine_would(tmp_path: Path) -> None:
    rig, _ = fed_rig(tmp_path)
    rig.engine.offer([(DATA, b"{not json"), (DATA, b"x")], T0, ids=[7, 8])
    refused = Refusals({"not_assigned": 1}, {"not_assigned": "device olt-9"})
    rig.engine.prepared([(7, None, None), (8, link_poll(1, True), refused)])
    rig.engine.observe_prepared(rig.engine.take_prepared())
    assert rig.engine.metrics.rejected._value.get() == 1
    assert rig.engine.facts.misbehaviour["p1"].counts == {"not_assigned": 1}


def test_data_the_preparer_gave_counts_no_more_against_the_backlog_limit(tmp_path: Path) -> None:
    rig, _ = fed_rig(tmp_path)
    rig.engine.max_backlog = 3
    rig.engine.offer([(DATA, b"x")] * 3, T0, ids=[1, 2, 3])
    rig.engine.prepared([(1, link_poll(1, True), None), (2, link_poll(2, True), None), (3, link_poll(3, True), None)])
    rig.engine.offer([(DATA, b"x")] * 3, T0, ids=[4, 5, 6])   # the first three are gone from the backlog
    assert rig.engine.metrics.dropped.labels("data")._value.get() == 0
    rig.engine.prepared([(n, link_poll(n, True), None) for n in (4, 5, 6)])
    assert len(rig.engine.take_prepared()) == 6


def test_evaluations_keep_to_a_share_of_the_time_however_long_they_take() -> None:
    short, long = 0.01, 0.5   # a small zone's evaluation, and a province's
    assert engine_module.after_eval(short, at_once=False) == engine_module.MIN_GAP
    assert engine_module.after_eval(long, at_once=False) == long / engine_module.EVAL_SHARE   # 2 s: a quarter
    assert engine_module.after_eval(long, at_once=True) == long   # a trap or a last will: as soon as it ended
    assert engine_module.after_eval(short, at_once=True) == short


def test_data_waits_for_a_preparer_that_gives_no_longer_than_max_wait(tmp_path: Path) -> None:
    """A slow store behind a flood holds the preparer up while it still gives: another probe's reading waits at most
    MAX_WAIT, then the engine decodes it itself (a page must not wait for storage)."""
    rig, clock = fed_rig(tmp_path)
    poll = link_poll(1, False)
    rig.engine.offer([(DATA, wire.encode(poll))], T0, ids=[7])
    clock[0] += engine_module.MAX_WAIT - 0.1
    rig.engine.offer([(DATA, b"never read")], T0, ids=[8])
    rig.engine.prepared([(8, link_poll(2, True), None)])   # the preparer gives, but not 7 yet
    rig.engine.store_behind()                               # ... and waits for storage
    assert len(rig.engine.take_prepared()) == 1 and rig.engine.take() == ([], [])
    clock[0] += 0.1
    _, data = rig.engine.take()
    assert [m[4] for m in data] == [7]


def test_a_preparer_busy_with_a_backlog_but_not_held_by_storage_is_waited_for(tmp_path: Path) -> None:
    """A backlog drains as fast as the process's CPU allows: the preparer gives, storage keeps up. Decoding the same
    data a second time in the engine would only slow the preparer down; the engine waits for it while it gives, and
    takes over only once storage has held it up within MAX_WAIT."""
    rig, clock = fed_rig(tmp_path)
    rig.engine.offer([(DATA, b"never read")], T0, ids=[7])
    rig.engine.store_behind()                               # storage was behind once, long ago
    for n in range(8, 8 + 5):                               # five seconds of backlog; the preparer gives meanwhile
        clock[0] += 1.0
        rig.engine.offer([(DATA, b"never read")], T0, ids=[n])
        rig.engine.prepared([(n, link_poll(n, True), None)])
        assert rig.engine.take() == ([], []), f"decoded again after {n - 7} s"
    assert rig.engine._stall_check() == clock[0] + engine_module.STALLED   # woken only for a silent preparer
    rig.engine.prepared([(7, link_poll(7, True), None)])
    assert len(rig.engine.take_prepared()) == 6
    assert (decoded(rig, "engine"), rig.engine.take()) == (0, ([], []))
    # Storage falls behind now: a message that waited MAX_WAIT is the engine's to decode.
    rig.engine.offer([(DATA, wire.encode(link_poll(20, False)))], T0, ids=[20])
    rig.engine.store_behind()
    assert rig.engine._stall_check() == clock[0] + engine_module.MAX_WAIT
    clock[0] += engine_module.MAX_WAIT
    _, data = rig.engine.take()
    assert [m[4] for m in data] == [20]
