"""Facts: what the rules may rely on, fed batch by batch, in order or replayed late (no clock, no sleep)."""

from __future__ import annotations

import random

from collector.alerting.config import RuleSettings
from collector.alerting.facts import Facts
from collector.alerting.facts.cellular import MAX_READINGS
from collector.alerting.facts.power import OPTICAL_BUCKETS
from collector.ingest import parse_entry
from zonewatch import wire
from zonewatch.queue import Entry

S = 1_000_000_000
T0 = 1_764_288_000 * S


def data(probe: str, *samples: wire.Sample, events: tuple[wire.Event, ...] = (), zone: str = "dv") -> wire.Batch:
    return wire.Batch(zone, probe, 1, T0, samples, events)


def status(probe: str, online: bool, at: int) -> wire.Batch:
    """A status message as collector.ingest.parse_entry turns it into a batch."""
    payload = wire.STATUS_ONLINE if online else wire.STATUS_OFFLINE
    return parse_entry(Entry(0, wire.topic("dv", probe, "status"), T0 + at * S, payload))


def device(name: str, at: int, up: bool = True, **fields: wire.FieldValue) -> wire.Sample:
    return wire.Sample("device", {"device": name}, {"up": up, **fields}, T0 + at * S)


def iface(dev: str, ifname: str, at: int, oper: bool, admin: bool = True, link: str | None = None) -> wire.Sample:
    tags = {"device": dev, "ifname": ifname, **({"link": link} if link else {})}
    return wire.Sample("interface", tags, {"oper_up": oper, "admin_up": admin}, T0 + at * S)


def event(name: str, at: int, tags: dict[str, str], **fields: wire.FieldValue) -> wire.Event:
    return wire.Event(name, tags, dict(fields), T0 + at * S)


# ---------------------------------------------------------------------------------------------- probes


def test_the_last_will_marks_a_probe_offline_until_anything_arrives_from_it() -> None:
    facts = Facts()
    facts.observe(data("p1", device("sw", 0)), T0)
    facts.observe(status("p1", False, 10), T0 + 10 * S)
    assert facts.probes["p1"].offline
    assert facts.probes["p1"].alive_ns == T0            # the last will is no sign of life
    facts.observe(data("p1", device("sw", 20)), T0 + 20 * S)
    assert not facts.probes["p1"].offline and facts.probes["p1"].alive_ns == T0 + 20 * S


def test_online_status_is_a_sign_of_life_and_a_replayed_old_last_will_is_not_applied() -> None:
    facts = Facts()
    facts.observe(status("p1", True, 30), T0 + 30 * S)
    assert facts.probes["p1"].alive_ns == T0 + 30 * S
    stale = wire.Batch("dv", "p1", 0, T0, (wire.Sample("probe", {}, {"up": False}, T0 + 5 * S),))
    facts.observe(stale, T0 + 31 * S)
    assert not facts.probes["p1"].offline


def test_the_first_batch_sets_the_start_when_none_was_given() -> None:
    facts = Facts()
    assert facts.started_ns is None
    facts.observe(data("p1"), T0 + 7 * S)
    assert facts.started_ns == T0 + 7 * S
    assert Facts(started_ns=T0).started_ns == T0


# ---------------------------------------------------------------------------------------------- polls


def test_unanswered_polls_are_counted_in_a_row_and_an_answer_resets_them() -> None:
    facts = Facts()
    for at, up in [(0, True), (30, False), (60, False), (90, False)]:
        facts.observe(data("p1", device("bts", at, up)), T0 + at * S)
    poll = facts.polls[("p1", "bts")]
    assert (poll.misses, poll.miss_since_ns) == (3, T0 + 30 * S)
    facts.observe(data("p1", device("bts", 120, True)), T0 + 120 * S)
    assert poll.misses == 0 and poll.answered
    assert facts.pollers["bts"] == {"p1"}


def test_a_backlog_older_than_what_is_known_changes_nothing() -> None:
    facts = Facts()
    facts.observe(data("p1", device("bts", 300, True)), T0 + 300 * S)
    facts.observe(data("p1", *(device("bts", at, False) for at in (100, 130, 160, 190))), T0 + 310 * S)
    poll = facts.polls[("p1", "bts")]
    assert (poll.misses, poll.time_ns) == (0, T0 + 300 * S)


def test_reach_counts_total_loss_as_unanswered_and_keeps_the_newest_path() -> None:
    facts = Facts()
    for at, loss, path in [(0, 0, "primary"), (60, 100, "none"), (120, 100, "none")]:
        sample = wire.Sample("reach", {"target": "core", "path": path}, {"loss_pct": loss}, T0 + at * S)
        facts.observe(data("p1", sample), T0 + at * S)
    late = wire.Sample("reach", {"target": "core", "path": "primary"}, {"loss_pct": 0}, T0 + 30 * S)
    facts.observe(data("p1", late), T0 + 130 * S)
    reach = facts.reach[("p1", "core")]
    assert (reach.misses, reach.path, reach.loss_pct) == (2, "none", 100)
    partial = wire.Sample("reach", {"target": "core", "path": "backup"}, {"loss_pct": 50}, T0 + 180 * S)
    facts.observe(data("p1", partial), T0 + 180 * S)
    assert (reach.misses, reach.path) == (0, "backup")  # half the probes answered: the target answers


# ---------------------------------------------------------------------------------------------- reboots


def test_uptime_going_back_is_a_reboot_dated_from_the_uptime_even_without_the_agents_flag() -> None:
    facts = Facts()
    facts.observe(data("p1", device("bts", 0, uptime_s=5000.0)), T0)
    facts.observe(data("p1", device("bts", 60, uptime_s=5060.0)), T0 + 60 * S)
    assert facts.devices["bts"].reboot_ns is None
    facts.observe(data("p1", device("bts", 120, uptime_s=20.0)), T0 + 120 * S)
    assert facts.devices["bts"].reboot_ns == T0 + 100 * S


def test_a_sysuptime_wrap_after_497_days_is_not_a_reboot() -> None:
    facts = Facts()
    facts.observe(data("p1", device("bts", 0, uptime_s=2**32 / 100 - 30)), T0)
    facts.observe(data("p1", device("bts", 60, uptime_s=30.0)), T0 + 60 * S)
    assert facts.devices["bts"].reboot_ns is None


def test_a_restart_trap_is_a_reboot_and_an_older_one_does_not_replace_a_newer() -> None:
    facts = Facts()
    facts.observe(data("p1", events=(event("device_restarted", 50, {"device": "sw"}, cold=True),)), T0 + 50 * S)
    facts.observe(data("p1", events=(event("device_restarted", 10, {"device": "sw"}, cold=False),)), T0 + 60 * S)
    assert (facts.devices["sw"].reboot_ns, facts.devices["sw"].reboot_how) == (T0 + 50 * S, "coldStart trap")


# ---------------------------------------------------------------------------------------------- interfaces


def test_a_link_trap_newer_than_the_last_poll_wins_and_the_next_poll_overrides_it() -> None:
    facts = Facts()
    facts.observe(data("p1", iface("sw", "xe-1", 0, True, link="primary")), T0)
    facts.observe(data("p1", events=(event("link_down", 10, {"device": "sw", "ifname": "xe-1"}),)), T0 + 10 * S)
    state = facts.interfaces[("sw", "xe-1")]
    assert (state.oper_up, state.admin_up, state.from_trap, state.link) == (False, True, True, "primary")
    facts.observe(data("p1", iface("sw", "xe-1", 5, True)), T0 + 11 * S)   # a poll older than the trap
    assert state.oper_up is False
    facts.observe(data("p1", iface("sw", "xe-1", 60, True)), T0 + 60 * S)
    assert (state.oper_up, state.from_trap) == (True, False)
    facts.observe(data("p1", events=(event("link_down", 30, {"device": "sw", "ifname": "xe-1"}),)), T0 + 61 * S)
    assert state.oper_up is True   # a trap older than the last poll is history, not the present


def test_a_trap_naming_only_the_ifindex_lands_on_the_interface_an_earlier_trap_named() -> None:
    facts = Facts()
    down = event("link_down", 10, {"device": "10.0.0.1", "ifname": "eth1"}, if_index=3, admin_up=True, oper_up=False)
    facts.observe(data("p1", events=(down,)), T0 + 10 * S)
    facts.observe(data("p1", events=(event("link_up", 20, {"device": "10.0.0.1"}, if_index=3),)), T0 + 20 * S)
    assert facts.interfaces[("10.0.0.1", "eth1")].oper_up is True
    # Never named: the name the poll gives an interface without ifName/ifDescr.
    facts.observe(data("p1", events=(event("link_down", 30, {"device": "10.0.0.1"}, if_index=7),)), T0 + 30 * S)
    assert facts.interfaces[("10.0.0.1", "ifIndex.7")].oper_up is False
    # Neither name nor index: nothing to apply it to.
    facts.observe(data("p1", events=(event("link_down", 40, {"device": "10.0.0.1"}),)), T0 + 40 * S)
    assert set(facts.interfaces) == {("10.0.0.1", "eth1"), ("10.0.0.1", "ifIndex.7")}


def test_a_link_trap_without_admin_status_keeps_the_polled_one() -> None:
    facts = Facts()
    facts.observe(data("p1", iface("sw", "xe-2", 0, False, admin=False)), T0)
    facts.observe(data("p1", events=(event("link_down", 10, {"device": "sw", "ifname": "xe-2"}),)), T0 + 10 * S)
    assert facts.interfaces[("sw", "xe-2")].admin_up is False


def test_events_that_arrive_both_as_events_and_as_stored_event_samples_count_once() -> None:
    facts = Facts()
    # From the store (no events, only ``event`` samples): applied.
    stored = wire.Sample("event", {"device": "ups", "event": "power_on_battery"},
                         {"cleared": False, "battery_minutes": 30, "occurred": True}, T0 + 10 * S)
    facts.observe(data("p1", stored), T0 + 10 * S)
    assert facts.power["ups"].on_battery is True and facts.power["ups"].battery_minutes == 30
    # From ingest (both): the event sample is skipped, the event applied.
    topic = wire.topic("dv", "p1", "events")
    trap = event("link_down", 20, {"device": "sw", "ifname": "xe-1"}, if_index=1)
    batch = parse_entry(Entry(0, topic, T0 + 20 * S, wire.encode(wire.Batch("dv", "p1", 2, T0, events=(trap,)))))
    assert [s.measurement for s in batch.samples] == ["event"] and batch.events
    facts.observe(batch, T0 + 20 * S)
    assert facts.interfaces[("sw", "xe-1")].oper_up is False


def test_a_poll_of_several_devices_sets_each_interface_in_order_and_a_clock_ahead_counts_as_the_arrival() -> None:
    facts = Facts()
    nameless = wire.Sample("interface", {"device": "sw1"}, {"oper_up": False}, T0)
    facts.observe(data("p1", iface("sw1", "ge-0", 0, True, link="uplink"), iface("sw2", "ge-0", 0, False), nameless,
                       iface("sw1", "ge-1", 100, True), iface("sw1", "ge-0", 5, False)), T0 + 10 * S)
    assert set(facts.interfaces) == {("sw1", "ge-0"), ("sw2", "ge-0"), ("sw1", "ge-1")}
    first, other, ahead = (facts.interfaces[k] for k in [("sw1", "ge-0"), ("sw2", "ge-0"), ("sw1", "ge-1")])
    assert (first.oper_up, first.up_since_ns, first.time_ns, first.link) == (False, -1, T0 + 5 * S, "uplink")
    assert facts.links == {("sw1", "ge-0"): first}
    assert (other.oper_up, other.admin_up) == (False, True)
    assert (ahead.time_ns, ahead.up_since_ns) == (T0 + 10 * S, T0 + 10 * S)   # 100 s ahead: taken as the arrival
    facts.observe(data("p1", iface("sw1", "ge-1", 20, True)), T0 + 20 * S)
    assert (ahead.time_ns, ahead.up_since_ns) == (T0 + 20 * S, T0 + 10 * S)   # still up since the first
    facts.observe(data("p1", iface("sw1", "ge-1", 30, False, admin=False)), T0 + 30 * S)
    assert (ahead.oper_up, ahead.admin_up, ahead.up_since_ns) == (False, False, -1)


def test_replayed_polls_and_traps_in_one_batch_apply_in_its_order_to_one_record_per_interface() -> None:
    facts = Facts()
    def stored_trap(ifname: str) -> wire.Sample:   # as the store gives it back: an ``event`` sample
        tags = {"device": "sw", "ifname": ifname, "event": "link_down"}
        return wire.Sample("event", tags, {"occurred": True}, T0 + 10 * S)

    trap, new = stored_trap("xe-1"), stored_trap("xe-3")
    facts.observe(data("p1", iface("sw", "xe-1", 0, True), trap, new, iface("sw", "xe-1", 5, True)), T0 + 30 * S)
    state = facts.interfaces[("sw", "xe-1")]
    assert (state.oper_up, state.from_trap, state.time_ns) == (False, True, T0 + 10 * S)  # the poll at 5 is older
    made_by_trap = facts.interfaces[("sw", "xe-3")]
    facts.observe(data("p1", iface("sw", "xe-1", 20, True), iface("sw", "xe-3", 20, True)), T0 + 40 * S)
    assert facts.interfaces[("sw", "xe-3")] is made_by_trap and len(facts.interfaces) == 2
    assert (made_by_trap.oper_up, made_by_trap.from_trap, made_by_trap.up_since_ns) == (True, False, T0 + 20 * S)
    assert (state.oper_up, state.up_since_ns) == (True, T0 + 20 * S)


def test_interfaces_are_the_same_whether_a_batch_comes_whole_or_one_sample_at_a_time() -> None:
    def sample(r: random.Random, at: int) -> wire.Sample:
        dev, ifname = r.choice(["sw1", "sw2"]), r.choice(["ge-0", "ge-1", "ifIndex.7"])
        if r.random() < 0.2:
            tags = {"device": dev, "event": r.choice(["link_down", "link_up"]),
                    **({"ifname": ifname} if r.random() < 0.7 else {})}
            return wire.Sample("event", tags, {"occurred": True, "if_index": 7}, T0 + at * S)
        if r.random() < 0.1:
            return wire.Sample("device", {"device": dev}, {"up": r.random() < 0.5}, T0 + at * S)
        fields = {k: r.choice([True, False, 1, 0]) for k in ("oper_up", "admin_up") if r.random() < 0.8}
        tags = {"device": dev, "ifname": ifname, **({"link": r.choice(["a", "b"])} if r.random() < 0.2 else {})}
        return wire.Sample("interface", tags, fields, T0 + at * S)

    for seed in range(200):
        r = random.Random(seed)
        whole, alone = Facts(), Facts()
        for at in range(0, 600, 60):
            samples = [sample(r, at + r.randint(-90, 30)) for _ in range(r.randint(0, 12))]
            whole.observe(data("p1", *samples), T0 + at * S)
            for one in samples:
                alone.observe(data("p1", one), T0 + at * S)
        assert (whole.interfaces, whole.links, whole.if_names) == (alone.interfaces, alone.links, alone.if_names), seed


# ---------------------------------------------------------------------------------------------- power


def test_each_ups_value_keeps_its_own_time() -> None:
    facts = Facts()
    facts.observe(data("p1", events=(event("battery_low", 100, {"device": "ups"}, cleared=False),)), T0 + 100 * S)
    poll = wire.Sample("power", {"device": "ups", "site": "bts-a"}, {"on_battery": True, "battery_minutes": 25},
                       T0 + 120 * S)
    facts.observe(data("p1", poll), T0 + 120 * S)
    power = facts.power["ups"]
    assert (power.on_battery, power.battery_low, power.battery_minutes, power.site) == (True, True, 25, "bts-a")
    older = wire.Sample("power", {"device": "ups"}, {"on_battery": False, "battery_low": False}, T0 + 50 * S)
    facts.observe(data("p1", older), T0 + 130 * S)
    assert (power.on_battery, power.battery_low) == (True, True)
    facts.observe(data("p1", events=(event("battery_low", 140, {"device": "ups"}, cleared=True),
                                     event("power_on_battery", 140, {"device": "ups"}, cleared=True))), T0 + 140 * S)
    assert (power.on_battery, power.battery_low, power.time_ns) == (False, False, T0 + 140 * S)


# ---------------------------------------------------------------------------------------------- optical


def optical(rx: float, at: int) -> wire.Sample:
    return wire.Sample("optical", {"device": "olt", "port": "0/1/0"}, {"rx_dbm": rx, "tx_dbm": 2.0}, T0 + at * S)


def test_the_optical_baseline_is_the_median_of_the_earlier_buckets() -> None:
    facts = Facts(RuleSettings.model_validate({"optical_baseline": "24m"}))   # one bucket per minute
    bucket = facts.optical_bucket_ns
    assert bucket == 60 * S
    for minute, rx in enumerate([-10.0, -11.0, -30.0, -12.0]):
        facts.observe(data("p1", optical(rx, minute * 60), optical(rx, minute * 60 + 30)), T0 + minute * 60 * S)
    port = facts.optical[("olt", "0/1/0")]
    start = (T0 // bucket) * bucket
    assert port.baseline(start + 60 * S, bucket) == -10.0                   # only minute 0 is before minute 1
    assert port.baseline(start + 3 * 60 * S, bucket) == -11.0   # minutes 0..2: one bad minute moves nothing
    assert port.baseline(start + 4 * 60 * S, bucket) == -11.5
    assert port.baseline(start, bucket) is None
    assert port.rx_dbm == -12.0


def test_optical_memory_is_bounded_and_ignores_what_is_older_than_the_window() -> None:
    facts = Facts(RuleSettings.model_validate({"optical_baseline": "24m"}))
    for minute in range(200):
        facts.observe(data("p1", optical(-10.0, minute * 60)), T0 + minute * 60 * S)
    port = facts.optical[("olt", "0/1/0")]
    assert len(port.buckets) <= OPTICAL_BUCKETS + 1
    facts.observe(data("p1", optical(-40.0, 0)), T0 + 200 * 60 * S)        # a day-old replay
    assert len(port.buckets) <= OPTICAL_BUCKETS + 1 and port.rx_dbm == -10.0


# ---------------------------------------------------------------------------------------------- cellular


def cell(at: int, rsrp: int | None, registered: bool | None = True, carrier: str = "452-04") -> wire.Sample:
    fields: dict[str, wire.FieldValue] = {}
    if rsrp is not None:
        fields["rsrp_dbm"] = rsrp
    if registered is not None:
        fields["registered"] = registered
    return wire.Sample("cellular", {"carrier": carrier, "modem": "viettel", "rat": "lte"}, fields, T0 + at * S)


def test_cellular_readings_stay_within_the_window_in_time_order() -> None:
    facts = Facts(RuleSettings.model_validate({"coverage_window": "2m"}))
    for at in (0, 30, 60, 90, 120, 150):
        facts.observe(data("p1", cell(at, -90 - at // 30)), T0 + at * S)
    facts.observe(data("p1", cell(45, -70)), T0 + 160 * S)        # late, but within the window: kept in order
    facts.observe(data("p1", cell(10, -60)), T0 + 161 * S)        # older than the window: dropped
    readings = facts.cellular[("p1", "452-04", "viettel")].readings
    assert [r.time_ns - T0 for r in readings] == [s * S for s in (30, 45, 60, 90, 120, 150)]
    assert readings[1].rsrp_dbm == -70 and readings[-1].registered is True and readings[-1].rat == "lte"


def test_cellular_readings_are_bounded_when_a_modem_reports_fast() -> None:
    facts = Facts(RuleSettings.model_validate({"coverage_window": "1h"}))
    for at in range(500):
        facts.observe(data("p1", cell(at, -95)), T0 + at * S)
    readings = facts.cellular[("p1", "452-04", "viettel")].readings
    assert len(readings) == MAX_READINGS and readings[-1].time_ns == T0 + 499 * S


def test_a_day_of_polling_keeps_memory_flat() -> None:
    facts = Facts()
    for at in range(0, 86400, 60):
        facts.observe(data("p1", device("bts", at, at % 600 != 0, uptime_s=float(at)), iface("bts", "eth1", at, True),
                           cell(at, -95), optical(-10.0, at)), T0 + at * S)
    sizes = (len(facts.polls), len(facts.devices), len(facts.interfaces), len(facts.optical), len(facts.cellular))
    assert sizes == (1, 1, 1, 1, 1)
    assert len(facts.cellular[("p1", "452-04", "viettel")].readings) <= MAX_READINGS
    assert len(facts.optical[("olt", "0/1/0")].buckets) <= OPTICAL_BUCKETS + 1
