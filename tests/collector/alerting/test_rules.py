"""The rules, one behaviour at a time: what fires, for whom, what is unknown, what is muted (pure, no clock).

The timelines that matter to an operator are in ``scenarios/*.yaml``; these tests pin the edges.
"""

from __future__ import annotations

import copy

import pytest

from collector.alerting.config import RuleSettings
from collector.alerting.facts import Facts
from collector.alerting.model import LABELS, SEVERITY, Evaluation, Finding
from collector.alerting.rules import evaluate
from collector.inventory import Inventory
from zonewatch import strict, wire

S = 1_000_000_000
T0 = 1_764_288_000 * S
SETTINGS = RuleSettings()

INVENTORY = """
zones:
  dv:
    name: Dinh Vu
    areas: [gate-a, port]
    thresholds:
      lte: {hole_dbm: -110, fair_dbm: -100, good_dbm: -90}
      nr5g-sa: {hole_dbm: -115, fair_dbm: -105, good_dbm: -95}
carriers:
  viettel: {plmn: 452-04, name: Viettel}
  vinaphone: {plmn: 452-02, name: VinaPhone}
sites:
  pop: {zone: dv, area: port, kind: fibre_pop, owners: [viettel]}
  bts-a: {zone: dv, area: gate-a, kind: bts, owners: [viettel, vinaphone]}
devices:
  router: {site: pop, kind: router, owners: [viettel], probe: p1}
  sw: {site: pop, kind: switch, owners: [viettel], parent: router, probe: p1}
  bts: {site: bts-a, kind: bts, owners: [viettel, vinaphone], parent: sw, probe: p1, address: 10.0.0.9}
  ups: {site: bts-a, kind: ups, owners: [vinaphone]}
  olt: {site: pop, kind: olt, probe: p2}
links:
  vt-1: {device: sw, ifname: xe-1, carriers: [viettel]}
  vt-2: {device: sw, ifname: xe-2, carriers: [viettel]}
  vt-3: {device: router, ifname: ge-3, carriers: [viettel]}
redundancy_groups:
  vt:
    zone: dv
    carriers: [viettel]
    min_up: {service: 1, redundancy: 2}
    members: [{link: vt-1}, {link: vt-2}, {link: vt-3}]
  vt-route:
    zone: dv
    carriers: [viettel]
    members: [{path: {probe: p2, target: core, name: primary}}, {device: olt}]
probes:
  p1: {zone: dv, area: gate-a, modems: [{name: viettel, carrier: viettel}]}
  p2: {zone: dv, area: gate-a, modems: [{name: vinaphone, carrier: 452-02}]}
  p3: {zone: dv, area: port}
"""


def inventory(text: str = INVENTORY) -> Inventory:
    return strict.load(Inventory, text, "inventory.yaml")


class Feed:
    """Feeds Facts the way the probes would, with times in seconds from T0."""

    def __init__(self, settings: RuleSettings = SETTINGS) -> None:
        self.facts = Facts(settings, started_ns=T0)
        self.seq = 0

    def send(self, probe: str, at: float, *samples: wire.Sample, events: tuple[wire.Event, ...] = (),
             arrival: float | None = None) -> Feed:
        self.seq += 1
        arrived = T0 + int((at if arrival is None else arrival) * S)
        self.facts.observe(wire.Batch("dv", probe, self.seq, arrived, samples, events), arrived)
        return self

    def polls(self, probe: str, dev: str, pattern: str, start: float = 0, every: float = 30) -> Feed:
        """One poll per character: ``1`` answered, ``0`` not."""
        for i, c in enumerate(pattern):
            at = start + i * every
            self.send(probe, at, wire.Sample("device", {"device": dev}, {"up": c == "1"}, T0 + int(at * S)))
        return self

    def alive(self, probe: str, until: float, every: float = 30) -> Feed:
        at = 0.0
        while at <= until:
            self.send(probe, at, wire.Sample("probe", {}, {"up": True, "spool_depth": 0}, T0 + int(at * S)))
            at += every
        return self

    def iface(self, dev: str, ifname: str, at: float, oper: bool, admin: bool = True, probe: str = "p1") -> Feed:
        sample = wire.Sample("interface", {"device": dev, "ifname": ifname}, {"oper_up": oper, "admin_up": admin},
                             T0 + int(at * S))
        return self.send(probe, at, sample)

    def trap(self, name: str, at: float, probe: str = "p1", **tags_fields: str | int | float | bool) -> Feed:
        tags = {k: v for k, v in tags_fields.items() if isinstance(v, str)}
        fields = {k: v for k, v in tags_fields.items() if not isinstance(v, str)}
        return self.send(probe, at, events=(wire.Event(name, tags, fields, T0 + int(at * S)),))

    def offline(self, probe: str, at: float) -> Feed:
        sample = wire.Sample("probe", {}, {"up": False}, T0 + int(at * S))
        self.facts.observe(wire.Batch("dv", probe, 0, T0 + int(at * S), (sample,)), T0 + int(at * S))
        return self

    def cell(self, probe: str, at: float, rsrp: float | None, registered: bool | None = True, carrier: str = "452-04",
             rat: str = "lte", modem: str = "viettel") -> Feed:
        tags = {"modem": modem, "rat": rat, **({"carrier": carrier} if carrier else {})}
        fields: dict[str, wire.FieldValue] = {}
        if rsrp is not None:
            fields["rsrp_dbm"] = rsrp
        if registered is not None:
            fields["registered"] = registered
        return self.send(probe, at, wire.Sample("cellular", tags, fields, T0 + int(at * S)))

    def evaluate(self, at: float, inv: Inventory | None = None, settings: RuleSettings = SETTINGS) -> Evaluation:
        return evaluate(self.facts, inv or inventory(), settings, T0 + int(at * S))


def found(ev: Evaluation, alertname: str | None = None, **labels: str) -> list[Finding]:
    return [f for f in ev.findings if (alertname is None or f.alertname == alertname)
            and all(f.labels.get(k) == v for k, v in labels.items())]


def keys(ev: Evaluation, alertname: str) -> set[tuple[str, ...]]:
    """Return (device or group or probe or area, carrier) of each finding of ``alertname``."""
    out = set()
    for f in found(ev, alertname):
        who = f.labels.get("device") or f.labels.get("group") or f.labels.get("probe") or f.labels.get("area", "")
        out.add((who, f.labels.get("carrier", "-")) + (("muted",) if f.muted_by else ()))
    return out


def unknown(ev: Evaluation, **labels: str) -> bool:
    """Return True if exactly this matcher is among the unknown."""
    return any(dict(m) == labels for m in ev.unknown)


# ---------------------------------------------------------------------------------------------- contract


def test_every_finding_carries_its_name_severity_and_known_labels_only_and_says_what_happened() -> None:
    feed = Feed().alive("p2", 600).alive("p3", 600)
    feed.polls("p1", "router", "1" * 4 + "0" * 16).polls("p1", "sw", "1" * 4 + "0" * 16)
    feed.polls("p1", "bts", "1" * 4 + "0" * 16)
    feed.trap("power_on_battery", 300, device="ups", cleared=False, battery_minutes=5)
    ev = feed.evaluate(570)
    assert {f.alertname for f in ev.findings} >= {"DeviceDown", "PowerOnBattery", "BatteryLow"}
    for f in ev.findings:
        assert f.labels["severity"] == SEVERITY[f.alertname]
        assert list(f.labels) == [k for k in LABELS if k in f.labels]
        assert all(f.labels.values())
        assert f.annotations["summary"] and f.annotations["description"]
    (router,) = found(ev, "DeviceDown", device="router")
    assert router.annotations["summary"] == "Router router at site pop is down"
    assert "p1" in router.annotations["description"] and "2025-11-28 00:02:00 UTC" in router.annotations["description"]


def test_evaluation_is_pure_the_same_facts_and_time_give_the_same_answer() -> None:
    feed = Feed().alive("p2", 600).polls("p1", "bts", "1100000").cell("p1", 100, -112)
    inv = inventory()
    before = copy.deepcopy(feed.facts.polls), copy.deepcopy(feed.facts.probes)
    later = evaluate(feed.facts, inv, SETTINGS, T0 + 400 * S)
    first = evaluate(feed.facts, inv, SETTINGS, T0 + 180 * S)
    assert first == evaluate(feed.facts, inv, SETTINGS, T0 + 180 * S)
    assert later == evaluate(feed.facts, inv, SETTINGS, T0 + 400 * S)
    assert (feed.facts.polls, feed.facts.probes) == before


# ---------------------------------------------------------------------------------------------- probes


def test_probe_down_after_the_timeout_not_at_it() -> None:
    feed = Feed().send("p1", 100)
    assert not found(feed.evaluate(190), "ProbeDown", probe="p1")
    (down,) = found(feed.evaluate(191), "ProbeDown", probe="p1")
    assert dict(down.labels) == {"alertname": "ProbeDown", "severity": "critical", "zone": "dv", "area": "gate-a",
                                 "probe": "p1"}
    assert "1m31s" in down.annotations["description"]


def test_a_probe_never_heard_of_is_unknown_for_the_timeout_after_the_start_then_down() -> None:
    feed = Feed()
    ev = feed.evaluate(60)
    assert not found(ev, "ProbeDown") and unknown(ev, alertname="ProbeDown", probe="p3")
    assert keys(feed.evaluate(91), "ProbeDown") == {("p1", "-"), ("p2", "-"), ("p3", "-")}
    assert not found(evaluate(Facts(), inventory(), SETTINGS, T0 + 10**6 * S), "ProbeDown")  # no start known


def test_a_probe_missing_from_the_inventory_is_not_paged_about() -> None:
    feed = Feed().send("p9", 0)
    assert not found(feed.evaluate(1000), "ProbeDown", probe="p9")


# ---------------------------------------------------------------------------------------------- devices


def test_a_device_reported_under_its_address_is_the_inventory_device() -> None:
    feed = Feed().alive("p2", 300).polls("p1", "router", "1" * 8).polls("p1", "sw", "1" * 8)
    feed.polls("p1", "10.0.0.9", "11000000")
    assert keys(feed.evaluate(210), "DeviceDown") == {("bts", "452-04"), ("bts", "452-02")}


def test_an_observer_whose_readings_are_stale_makes_the_device_unknown() -> None:
    feed = Feed().polls("p1", "bts", "1000").alive("p1", 900)
    ev = feed.evaluate(90 + 600)
    assert found(ev, "DeviceDown", device="bts")
    ev = feed.evaluate(90 + 601)
    assert not found(ev, "DeviceDown", device="bts") and unknown(ev, device="bts")


def test_a_device_whose_probe_is_down_is_unknown_even_without_readings() -> None:
    feed = Feed().alive("p1", 600).offline("p2", 10)
    ev = feed.evaluate(20)
    assert unknown(ev, device="olt") and not found(ev, device="olt")


def test_a_device_nobody_polls_still_alerts_from_its_traps() -> None:
    feed = Feed().alive("p1", 100).trap("power_on_battery", 30, device="ups", cleared=False)
    ev = feed.evaluate(60)
    assert keys(ev, "PowerOnBattery") == {("ups", "452-02")}
    assert unknown(ev, alertname="DeviceDown", device="ups") and not unknown(ev, device="ups")


def test_the_highest_down_ancestor_mutes_and_an_unknown_parent_mutes_nothing() -> None:
    feed = Feed().alive("p2", 600).polls("p2", "olt", "11111")  # the olt at the same site answers: no SiteDown
    for dev in ("router", "sw", "bts"):
        feed.polls("p1", dev, "11000")
    ev = feed.evaluate(120)
    mutes = {f.labels["device"]: f.muted_by for f in found(ev, "DeviceDown")}
    assert mutes == {"router": None, "sw": "DeviceDown router", "bts": "DeviceDown router"}
    # The router answers again, the switch does not: the BTS is muted by the switch.
    feed.polls("p1", "router", "1", start=150).polls("p1", "sw", "0", start=150).polls("p1", "bts", "0", start=150)
    mutes = {f.labels["device"]: f.muted_by for f in found(feed.evaluate(150), "DeviceDown")}
    assert mutes == {"sw": None, "bts": "DeviceDown sw"}


def test_a_co_owner_hears_once_of_the_parent_that_hides_its_devices_naming_them() -> None:
    # The BTS is Viettel's and VinaPhone's; the router and switch in front of it are Viettel's alone. VinaPhone
    # gets the router's DeviceDown (one notice, its BTS named), not one page per device behind it.
    feed = Feed().alive("p2", 600).polls("p2", "olt", "11111")
    for dev in ("router", "sw", "bts"):
        feed.polls("p1", dev, "11000")
    ev = feed.evaluate(120)
    (notice,) = found(ev, "DeviceDown", device="router", carrier="452-02")
    assert notice.muted_by is None
    assert "your bts behind it cannot be reached" in notice.annotations["summary"]
    assert "Your equipment behind it (bts)" in notice.annotations["description"]
    assert not found(ev, "DeviceDown", device="sw", carrier="452-02")
    assert all(f.muted_by == "DeviceDown router" for f in found(ev, "DeviceDown", device="bts"))


def test_redundancy_alerts_carry_the_site_and_area_their_members_share() -> None:
    def lost(text: str = INVENTORY) -> Finding:
        feed = up_devices(Feed()).iface("sw", "xe-1", 60, False).iface("sw", "xe-2", 60, False)
        feed.iface("router", "ge-3", 60, True).iface("bts", "ge-3", 60, True)
        (finding,) = found(feed.evaluate(90, inventory(text)), "RedundancyLost", group="vt")
        return finding

    assert (lost().labels["site"], lost().labels["area"]) == ("pop", "port")   # sw and router: both at pop
    elsewhere = INVENTORY.replace("vt-3: {device: router,", "vt-3: {device: bts,")
    assert "site" not in lost(elsewhere).labels and "area" not in lost(elsewhere).labels
    said = elsewhere.replace("    carriers: [viettel]\n    min_up:",
                             "    carriers: [viettel]\n    site: bts-a\n    min_up:")
    assert (lost(said).labels["site"], lost(said).labels["area"]) == ("bts-a", "gate-a")


def test_a_site_whose_devices_are_all_down_is_the_news_and_mutes_what_hangs_below_it() -> None:
    feed = Feed().alive("p2", 600).polls("p2", "olt", "11000")  # every device at site pop down from 60 s
    for dev in ("router", "sw", "bts"):
        feed.polls("p1", dev, "11000")
    ev = feed.evaluate(120)
    (site,) = found(ev, "SiteDown")
    assert site.labels == {"alertname": "SiteDown", "severity": "critical", "zone": "dv", "area": "port",
                           "carrier": "452-04", "site": "pop"}  # the site's and its devices' owners: viettel
    assert site.muted_by is None
    assert all(name in site.annotations["description"] for name in ("router", "sw", "olt"))
    mutes = {f.labels["device"]: f.muted_by for f in found(ev, "DeviceDown")}
    assert mutes == {"router": "SiteDown pop", "sw": "SiteDown pop", "olt": "SiteDown pop",
                     "bts": "SiteDown pop"}  # bts (site bts-a) hangs below the router: muted by the site too
    # One device at the site answers again: no SiteDown, the chain of parents mutes as before.
    feed.polls("p2", "olt", "1", start=150).polls("p1", "router", "0", start=150)
    feed.polls("p1", "sw", "0", start=150).polls("p1", "bts", "0", start=150)
    ev = feed.evaluate(150)
    assert not found(ev, "SiteDown")
    mutes = {f.labels["device"]: f.muted_by for f in found(ev, "DeviceDown")}
    assert mutes == {"router": None, "sw": "DeviceDown router", "bts": "DeviceDown router"}


def test_a_site_with_a_device_nobody_can_see_now_is_not_judged() -> None:
    feed = Feed().polls("p2", "olt", "110").polls("p1", "router", "11000").polls("p1", "sw", "11000")
    feed.offline("p2", 100)  # olt's only observer is gone: olt is unknown, so is the site
    ev = feed.evaluate(120)
    assert not found(ev, "SiteDown") and unknown(ev, alertname="SiteDown", site="pop")


def test_a_site_down_because_of_an_ancestor_elsewhere_is_muted_by_it() -> None:
    inv = inventory(INVENTORY.replace("  ups: {site: bts-a, kind: ups, owners: [vinaphone]}",
                                      "  ups: {site: bts-a, kind: ups, owners: [vinaphone], parent: sw, probe: p1}"))
    feed = Feed().alive("p2", 600).polls("p2", "olt", "11111")  # site pop stays up (olt answers)
    for dev in ("router", "sw", "bts", "ups"):
        feed.polls("p1", dev, "11000")
    ev = feed.evaluate(120, inv)
    sites = found(ev, "SiteDown")  # bts-a: bts and ups, both below the router at pop; one per owner
    assert sorted(f.labels["carrier"] for f in sites) == ["452-02", "452-04"]
    assert {f.labels["site"] for f in sites} == {"bts-a"}
    assert {f.muted_by for f in sites} == {"DeviceDown router"}  # the router is the news, not the site
    mutes = {f.labels["device"]: f.muted_by for f in found(ev, "DeviceDown")}
    assert mutes == {"router": None, "sw": "DeviceDown router", "bts": "DeviceDown router", "ups": "DeviceDown router"}


def test_a_parent_seen_only_by_a_dead_probe_does_not_mute_its_child() -> None:
    inv = inventory(INVENTORY.replace("  sw: {site: pop, kind: switch, owners: [viettel], parent: router, probe: p1}",
                                      "  sw: {site: pop, kind: switch, owners: [viettel], parent: router, probe: p2}"))
    feed = Feed().polls("p2", "sw", "1000").polls("p1", "bts", "11000").polls("p1", "router", "11111")
    feed.offline("p2", 100)
    ev = feed.evaluate(120, inv)
    assert unknown(ev, device="sw") and not found(ev, device="sw")
    (child, _) = found(ev, "DeviceDown", device="bts")
    assert child.muted_by is None


def test_one_observer_that_still_reaches_a_device_keeps_it_up() -> None:
    feed = Feed().polls("p1", "bts", "100000").polls("p2", "bts", "111111").alive("p3", 300).alive("p1", 300)
    ev = feed.evaluate(150)
    assert not found(ev, "DeviceDown", device="bts")
    feed.polls("p2", "bts", "000", start=180)
    (down, _) = found(feed.evaluate(240), "DeviceDown", device="bts")
    assert "p1, p2" in down.annotations["description"]
    feed.offline("p2", 250)   # p2 is gone: p1 alone decides, and p2 is named as blind
    (down, _) = found(feed.evaluate(260), "DeviceDown", device="bts")
    assert "p2 cannot see it" in down.annotations["description"]


def test_reboot_alert_lasts_reboot_hold_and_the_alerts_of_a_down_device_are_muted_by_it() -> None:
    feed = Feed().alive("p2", 3000).polls("p1", "router", "1" * 40).polls("p1", "sw", "1" * 40)
    feed.trap("device_restarted", 100, device="10.0.0.9", cold=True).polls("p1", "bts", "1" * 10)
    ev = feed.evaluate(300)
    assert keys(ev, "DeviceRebooted") == {("bts", "452-04"), ("bts", "452-02")}
    assert "coldStart trap" in found(ev, "DeviceRebooted")[0].annotations["description"]
    feed.polls("p1", "bts", "000", start=300)
    ev = feed.evaluate(360)
    assert {f.muted_by for f in found(ev, "DeviceRebooted")} == {"DeviceDown bts"}
    assert not found(feed.evaluate(1000), "DeviceRebooted")


# ---------------------------------------------------------------------------------------------- links


def up_devices(feed: Feed, until: float = 600, p2: bool = True) -> Feed:
    for dev in ("router", "sw", "bts"):
        feed.polls("p1", dev, "1" * int(until // 30 + 1))
    return feed.alive("p2", until) if p2 else feed


def test_a_link_shut_by_an_operator_is_not_an_alert_but_is_not_up_either() -> None:
    feed = up_devices(Feed()).iface("sw", "xe-1", 60, False, admin=False).iface("sw", "xe-2", 60, True)
    feed.iface("router", "ge-3", 60, True)
    ev = feed.evaluate(90)
    assert not found(ev, "LinkDown")
    assert ("redundancy", {"zone": "dv", "group": "vt", "carrier": "452-04"},
            {"members_up": 2, "members_needed": 2, "service_needed": 1, "members_total": 3, "state": 0}) in ev.samples


def test_an_interface_that_is_no_link_does_not_page() -> None:
    feed = up_devices(Feed()).iface("sw", "ge-0/0/47", 60, False)
    assert not found(feed.evaluate(90), "LinkDown")


def test_a_polled_link_state_goes_stale_a_trapped_one_does_not() -> None:
    feed = up_devices(Feed(), 1500).iface("sw", "xe-1", 0, False).trap("link_down", 0, device="sw", ifname="xe-2")
    ev = feed.evaluate(601)
    assert keys(ev, "LinkDown") == {("sw", "452-04")} and found(ev, "LinkDown", link="vt-2")
    assert unknown(ev, alertname="LinkDown", device="sw", link="vt-1")


def test_the_links_of_a_down_device_are_down_and_their_alerts_muted() -> None:
    feed = Feed().alive("p2", 600).polls("p1", "router", "1" * 10).polls("p1", "bts", "1" * 10)
    feed.iface("sw", "xe-1", 0, True).iface("sw", "xe-2", 0, False).iface("router", "ge-3", 0, True)
    feed.polls("p1", "sw", "1000")
    ev = feed.evaluate(90)
    assert [f.muted_by for f in found(ev, "LinkDown")] == ["DeviceDown sw"]
    assert found(ev, "RedundancyLost", group="vt")    # vt-1 and vt-2 are down with their switch: 1 of 2 needed


# ---------------------------------------------------------------------------------------------- redundancy


@pytest.mark.parametrize(("ge3", "lost", "undecided"), [
    (True, False, set()),                  # 2 of 3 up, 2 needed: ok
    (False, True, set()),                  # 1 of 3 up: redundancy lost
    (None, None, {"RedundancyLost"}),      # 1 up, 1 unknown: maybe 2, maybe 1; never an outage (one is up)
])
def test_a_group_member_whose_state_is_unknown_is_neither_up_nor_down(ge3: bool | None, lost: bool | None,
                                                                    undecided: set[str]) -> None:
    # Group vt: xe-1 up, xe-2 down, ge-3 as given (never reported: unknown); 2 of 3 needed.
    feed = up_devices(Feed()).iface("sw", "xe-1", 60, True).iface("sw", "xe-2", 60, False)
    if ge3 is not None:
        feed.iface("router", "ge-3", 60, ge3)
    ev = feed.evaluate(90)
    assert bool(found(ev, "RedundancyLost", group="vt")) is bool(lost)
    assert not found(ev, "ServiceOutage", group="vt") and not unknown(ev, alertname="ServiceOutage", group="vt")
    assert {m["alertname"] for m in ev.unknown if m.get("group") == "vt"} == undecided
    states = [f["state"] for m, t, f in ev.samples if m == "redundancy" and t["group"] == "vt"]
    assert states == ([] if lost is None else [int(lost)])


def test_no_member_up_but_one_unknown_leaves_both_group_alerts_unknown() -> None:
    # vt-route: path primary seen by p2, and device olt (polled by p2). p2 dies: both unknown.
    feed = up_devices(Feed(), p2=False).polls("p2", "olt", "000000")
    feed.send("p2", 150, wire.Sample("reach", {"target": "core", "path": "backup"}, {"loss_pct": 0}, T0 + 150 * S))
    ev = feed.evaluate(160)
    assert keys(ev, "ServiceOutage") == {("vt-route", "452-04")}
    assert [f.muted_by for f in found(ev, "RedundancyLost", group="vt-route")] == ["ServiceOutage vt-route"]
    feed.offline("p2", 170)
    ev = feed.evaluate(180)
    assert not found(ev, group="vt-route")
    assert unknown(ev, alertname="ServiceOutage", group="vt-route") and unknown(ev, alertname="RedundancyLost",
                                                                               group="vt-route")


def test_a_down_member_list_names_what_is_down_and_where_traffic_went() -> None:
    feed = up_devices(Feed()).polls("p2", "olt", "111111")
    feed.send("p2", 150, wire.Sample("reach", {"target": "core", "path": "unknown:0a1b2c3d"}, {"loss_pct": 0},
                                     T0 + 150 * S))
    (lost,) = found(feed.evaluate(160), "RedundancyLost", group="vt-route")
    assert "1 of 2 members up; the service needs 1, its redundancy 2" in lost.annotations["description"]
    assert "path primary to core (seen by p2): traffic takes unknown:0a1b2c3d" in lost.annotations["description"]


# ---------------------------------------------------------------------------------------------- power, optical


def test_battery_low_from_the_runtime_left_even_without_the_ups_flag() -> None:
    feed = Feed().alive("p1", 100)
    power = wire.Sample("power", {"device": "ups"}, {"on_battery": True, "battery_minutes": 9.5}, T0 + 30 * S)
    ev = feed.send("p1", 30, power).evaluate(60)
    (low,) = found(ev, "BatteryLow")
    assert "under 10 minutes" in low.annotations["description"] and "9.5 minutes" in low.annotations["description"]


def test_bypass_and_failed_rectifiers_page_as_their_own_alerts_and_clear() -> None:
    feed = Feed().alive("p1", 200)
    feed.send("p1", 30, wire.Sample("power", {"device": "ups"}, {"on_battery": False, "on_bypass": True},
                                    T0 + 30 * S),
              wire.Sample("power", {"device": "dc"}, {"on_battery": False, "rectifiers_failed": 2}, T0 + 30 * S))
    ev = feed.evaluate(60)
    assert [f.labels["device"] for f in found(ev, "PowerOnBypass")] == ["ups"]
    (failed,) = found(ev, "RectifierFailed")
    assert failed.labels["device"] == "dc" and "2 failed rectifier(s)" in failed.annotations["description"]
    assert not found(ev, "PowerOnBattery")                    # bypass is mains: not on battery
    feed.send("p1", 90, wire.Sample("power", {"device": "ups"}, {"on_bypass": False}, T0 + 90 * S),
              wire.Sample("power", {"device": "dc"}, {"rectifiers_failed": 0}, T0 + 90 * S))
    ev = feed.evaluate(120)
    assert not found(ev, "PowerOnBypass") and not found(ev, "RectifierFailed")


def test_an_inverter_in_inverter_mode_does_not_page_on_battery_from_its_traps() -> None:
    """upsOutputSource battery(5) with the input present: the poll says inverter mode; its onBattery traps
    (resent every minute while it thinks it is on battery) do not page; a real outage does, from the poll."""
    feed = Feed().alive("p1", 300)
    poll = {"on_battery": False, "inverter_mode": True, "on_bypass": False, "mains_present": True}
    feed.send("p1", 30, wire.Sample("power", {"device": "inv"}, poll, T0 + 30 * S))
    feed.trap("power_on_battery", 60, device="inv", cleared=False)
    assert not found(feed.evaluate(70), "PowerOnBattery")
    outage = {"on_battery": True, "inverter_mode": False, "on_bypass": False, "mains_present": False}
    feed.send("p1", 90, wire.Sample("power", {"device": "inv"}, outage, T0 + 90 * S))
    assert found(feed.evaluate(100), "PowerOnBattery", device="inv")


def test_optical_degraded_against_the_ports_own_baseline_and_the_absolute_minimum() -> None:
    settings = RuleSettings.model_validate({"optical_baseline": "24m"})
    feed = Feed(settings).alive("p2", 1200).polls("p2", "olt", "1" * 41)
    for minute in range(20):
        rx = -12.0 if minute < 16 else -14.5
        feed.send("p2", minute * 60, wire.Sample("optical", {"device": "olt", "port": "0/1/0"}, {"rx_dbm": rx},
                                                 T0 + minute * 60 * S),
                  wire.Sample("optical", {"device": "olt", "port": "0/2/0"}, {"rx_dbm": -26.0 + minute * 0.01},
                              T0 + minute * 60 * S))
    ev = feed.evaluate(19 * 60, settings=settings)
    (finding,) = found(ev, "OpticalDegraded")                 # 2.5 dB under: only the absolute minimum
    assert "port 0/2/0" in finding.annotations["description"] and "0/1/0" not in finding.annotations["description"]
    assert "carrier" not in finding.labels                    # the OLT has no owner: the NOC gets it
    feed.send("p2", 20 * 60, wire.Sample("optical", {"device": "olt", "port": "0/1/0"}, {"rx_dbm": -15.5},
                                         T0 + 20 * 60 * S))
    (finding,) = found(feed.evaluate(20 * 60, settings=settings), "OpticalDegraded")
    assert "port 0/1/0: Rx -15.5 dBm, 3.5 dB under its usual -12 dBm" in finding.annotations["description"]
    assert "port 0/2/0" in finding.annotations["description"]   # one finding per device: ports are no label


# ---------------------------------------------------------------------------------------------- coverage


def coverage(ev: Evaluation, area: str, carrier: str) -> dict[str, float] | None:
    return next((dict(f) for m, t, f in ev.samples if m == "coverage" and t["area"] == area
                 and t["carrier"] == carrier), None)


def test_coverage_thresholds_follow_the_technology_most_readings_are_on() -> None:
    feed = Feed().alive("p2", 300)
    for at in (0, 30, 60):
        feed.cell("p1", at, -112, rat="nr5g-sa")
    ev = feed.evaluate(60)
    assert keys(ev, "WeakSignal") == {("p1", "452-04")} and not found(ev, "CoverageHole")
    assert coverage(ev, "gate-a", "452-04") == {"level": 2, "probes": 1, "rsrp_dbm": -112}
    for at in (90, 120, 150, 180):
        feed.cell("p1", at, -112, rat="lte")
    assert keys(feed.evaluate(180), "CoverageHole") == {("p1", "452-04")}


def test_only_readings_within_the_window_from_probes_that_are_up_count() -> None:
    feed = Feed().cell("p1", 0, -130).alive("p1", 600).cell("p2", 290, -80, carrier="452-04", modem="x")
    feed.alive("p2", 300)
    # p1 at -130 is a hole: the area's level is its worst probe's, whatever the median of both
    assert coverage(feed.evaluate(299), "gate-a", "452-04") == {"level": 3, "probes": 2, "rsrp_dbm": -105}
    assert coverage(feed.evaluate(301), "gate-a", "452-04") == {"level": 0, "probes": 1, "rsrp_dbm": -80}
    feed.offline("p2", 302)
    ev = feed.evaluate(303)
    assert coverage(ev, "gate-a", "452-04") is None
    assert unknown(ev, alertname="CoverageHole", zone="dv", area="gate-a", carrier="452-04")


def test_no_service_when_no_probe_in_the_area_is_registered_and_it_mutes_the_signal_alerts() -> None:
    feed = Feed().alive("p2", 300).cell("p1", 30, -125, registered=False)
    ev = feed.evaluate(60)
    assert keys(ev, "NoService") == {("gate-a", "452-04")}
    assert [f.muted_by for f in found(ev, "CoverageHole")] == ["NoService gate-a"]
    assert coverage(ev, "gate-a", "452-04") == {"level": 4, "probes": 1, "rsrp_dbm": -125}
    feed.cell("p2", 40, -97, carrier="452-04", modem="vt2")     # one probe registered: service
    ev = feed.evaluate(60)
    assert not found(ev, "NoService") and coverage(ev, "gate-a", "452-04") == {"level": 3, "probes": 2,
                                                                               "rsrp_dbm": -111}


def test_a_modem_without_registration_state_or_carrier_tag_is_read_as_the_inventory_says() -> None:
    feed = Feed().alive("p1", 300).cell("p2", 30, -85, registered=None, carrier="", modem="vinaphone")
    ev = feed.evaluate(60)
    assert coverage(ev, "gate-a", "452-02") == {"level": 0, "probes": 1, "rsrp_dbm": -85}
    assert unknown(ev, alertname="NoService", zone="dv", area="gate-a", carrier="452-02")
    assert unknown(ev, alertname="CoverageHole", zone="dv", area="gate-a", carrier="452-04")  # p1's modem: nothing
    assert not any(m.get("area") == "port" for m in ev.unknown)                 # no modem there at all


def test_data_loss_names_how_many_batches_one_episode_lost() -> None:
    feed = Feed()
    feed.facts.observe_gaps("p1", 12, T0)                 # history before the collector counted: no news
    feed.facts.observe_gaps("p1", 162, T0 + 60 * S)       # 150 lost while the collector was away
    feed.send("p1", 61, wire.Sample("probe", {}, {"up": True, "spool_depth": 0}, T0 + 61 * S))
    (loss,) = found(feed.evaluate(62), "DataLoss", probe="p1")
    assert loss.labels["severity"] == "warning" and "carrier" not in loss.labels   # the NOC's
    assert loss.annotations["summary"] == "Probe p1 lost 150 batches of data"
    assert "162 in all" in loss.annotations["description"]
    feed.facts.observe_gaps("p1", 169, T0 + 120 * S)      # more within the same episode: counted together
    feed.send("p1", 121, wire.Sample("probe", {}, {"up": True, "spool_depth": 0}, T0 + 121 * S))
    (loss,) = found(feed.evaluate(122), "DataLoss", probe="p1")
    assert loss.annotations["summary"] == "Probe p1 lost 157 batches of data"


def test_a_reading_dated_ahead_of_its_arrival_cannot_outrank_the_next_one() -> None:
    feed = Feed().alive("p1", 200)
    feed.iface("sw", "xe-1", 100, oper=False)   # the link really goes down
    # a reading claiming to be from five minutes ahead, arriving now, says it is up ...
    feed.send("p1", 110, wire.Sample("interface", {"device": "sw", "ifname": "xe-1"}, {"oper_up": True},
                                     T0 + 410 * S))
    feed.iface("sw", "xe-1", 130, oper=False)   # ... the next real poll says down, and is believed
    assert found(feed.evaluate(131), "LinkDown", link="vt-1")


def test_a_probe_that_sent_what_it_may_not_pages_the_noc_for_an_hour() -> None:
    feed = Feed()
    feed.facts.observe_refused("dv", "p1", {"not_assigned": 3}, {"not_assigned": "device olt"}, T0 + 10 * S)
    feed.facts.observe_refused("dv", "p1", {"collector_only": 1, "not_assigned": 2},
                               {"collector_only": "coverage", "not_assigned": "device ups"}, T0 + 20 * S)
    (alert,) = found(feed.evaluate(30), "ProbeMisbehaving")
    assert alert.labels == {"alertname": "ProbeMisbehaving", "severity": "critical", "zone": "dv", "area": "gate-a",
                            "probe": "p1"}   # no carrier: the NOC's
    description = alert.annotations["description"]
    assert "1 samples of measurements only the collector writes (e.g. coverage)" in description
    assert "5 rows about devices or carriers not assigned to it (e.g. device olt)" in description
    assert found(feed.evaluate(20 + 3599), "ProbeMisbehaving")
    cleared = feed.evaluate(20 + 3600)
    assert not found(cleared, "ProbeMisbehaving")
    assert ({"alertname": "ProbeMisbehaving", "probe": "p1"}, T0 + 3620 * S) in cleared.clear


def test_a_thread_death_that_stopped_the_last_run_pages_the_noc_until_the_collector_has_run_a_while() -> None:
    feed = Feed()
    feed.facts.fault = ("zw-commit", "OverflowError: Python int too large", T0 - 5 * S)
    (alert,) = found(feed.evaluate(10), "CollectorFault")
    assert alert.labels == {"alertname": "CollectorFault", "severity": "critical"}
    assert "zw-commit" in alert.annotations["summary"] and "OverflowError" in alert.annotations["description"]
    assert not found(feed.evaluate(900), "CollectorFault")


def test_a_probes_silence_counts_only_as_far_as_the_collector_has_caught_up() -> None:
    feed = Feed().alive("p1", 30)                        # last heard at 30 s; the timeout is 90 s
    feed.facts.caught_up(T0 + 35 * S)                    # the collector's ticks: all in up to 35 s, then behind
    assert not found(feed.evaluate(200), "ProbeDown")    # silent for 170 s as far as it knows, proven for 5 s
    assert {"alertname": "ProbeDown", "probe": "p1"} in feed.evaluate(200).unknown
    feed.facts.caught_up(T0 + 121 * S)                   # caught up past the timeout: the silence is proven
    (down,) = found(feed.evaluate(200), "ProbeDown", probe="p1")
    assert "No message from it for 2m50s" in down.annotations["description"]
