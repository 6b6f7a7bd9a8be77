"""What each probe may report (collector.scope): the assignment the inventory gives, row by row."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from collector.inventory import Inventory
from collector.scope import Scope
from zonewatch import wire
from zonewatch.strict import load

INVENTORY = """\
zones:
  dv: {name: Dinh Vu, areas: [a, b]}
  other: {name: Other Park}
carriers:
  viettel: {plmn: 452-04, name: Viettel}
  vinaphone: {plmn: 452-02, name: VinaPhone}
sites:
  pop: {zone: dv, area: a}
  far: {zone: other}
devices:
  sw-1: {site: pop, probe: p1, address: 10.0.0.1}
  olt-2: {site: pop, probe: p2}
  bts-3: {site: pop, probes: [p1, p2]}
  ups-4: {site: pop}
  sw-9: {site: far}
probes:
  p1: {zone: dv, area: a, modems: [{name: vt, carrier: viettel}]}
  p2: {zone: dv, area: b, modems: [{name: vn, carrier: 452-02}]}
  p3: {zone: other}
"""


@pytest.fixture(scope="module")
def scope() -> Scope:
    return Scope(load(Inventory, INVENTORY, "inventory.yaml"))


def why(scope: Scope, probe: str, measurement: str | None, zone: str = "dv", **tags: str) -> str | None:
    found = scope.why(zone, probe, measurement, tags)
    return found[0] if found else None


def test_a_probe_reports_on_the_devices_it_watches_and_no_others(scope: Scope) -> None:
    assert why(scope, "p1", "device", device="sw-1") is None
    assert why(scope, "p1", "interface", device="olt-2", ifname="ge-0/0/1") == "not_assigned"   # p2's
    assert why(scope, "p2", "interface", device="olt-2", ifname="ge-0/0/1") is None
    assert why(scope, "p1", "device", device="bts-3") is None and why(scope, "p2", "device", device="bts-3") is None
    assert why(scope, "p1", "device", device="phantom-7") == "not_assigned"   # not in the inventory at all
    assert why(scope, "p1", "device", device="10.0.0.1") is None   # a trap sender known by its address
    assert why(scope, "p2", None, device="10.0.0.1") == "not_assigned"


def test_a_device_without_watchers_is_open_to_the_probes_of_its_zone_only(scope: Scope) -> None:
    assert why(scope, "p1", "power", device="ups-4") is None and why(scope, "p2", "power", device="ups-4") is None
    assert why(scope, "p1", "device", device="sw-9") == "not_assigned"   # another zone's device
    assert why(scope, "p3", "device", zone="other", device="sw-9") is None


def test_a_probe_speaks_only_for_the_carriers_it_has_a_modem_for(scope: Scope) -> None:
    assert why(scope, "p1", "cellular", carrier="452-04", modem="vt") is None   # the modem names the carrier key
    assert why(scope, "p1", "cellular", carrier="452-02", modem="vn") == "not_assigned"
    assert why(scope, "p2", "cellular", carrier="452-02", modem="vn") is None   # the modem names the PLMN
    assert why(scope, "p3", "cellular", zone="other", carrier="452-04") == "not_assigned"   # no modem at all


def test_an_unlisted_probe_or_one_in_the_wrong_zone_may_speak_only_of_itself(scope: Scope) -> None:
    assert why(scope, "p9", "device", device="sw-1") == "unknown_probe"
    assert why(scope, "p1", "device", zone="other", device="sw-1") == "unknown_probe"
    assert why(scope, "p9", "probe") is None and why(scope, "p9", "reach", target="8.8.8.8") is None


def test_measurements_only_the_collector_writes_are_refused_with_or_without_an_inventory(scope: Scope) -> None:
    for measurement in ("alert", "coverage", "redundancy", "event"):
        assert why(scope, "p1", measurement, area="a", carrier="452-04") == "collector_only"
        assert why(Scope(), "p1", measurement) == "collector_only"
    assert why(Scope(), "p1", "device", device="anything") is None   # without an inventory nothing is assigned


def test_check_keeps_the_rest_and_says_what_it_refused(scope: Scope) -> None:
    t = 10**18
    batch = wire.Batch("dv", "p1", 5, t, (
        wire.Sample("device", {"device": "sw-1"}, {"up": True}, t),
        wire.Sample("device", {"device": "olt-2"}, {"up": True}, t),
        wire.Sample("coverage", {"area": "a", "carrier": "452-04"}, {"level": 4}, t),
        wire.Sample("probe", {}, {"spool_depth": 0}, t),
    ), (wire.Event("power_on_battery", {"device": "sw-9"}, {}, t),
        wire.Event("link_down", {"device": "sw-1", "ifname": "ge-1"}, {}, t)), origin=7)
    kept, refused = scope.check(batch)
    assert [s.tags.get("device") for s in kept.samples] == ["sw-1", None]
    assert [e.tags["device"] for e in kept.events] == ["sw-1"]
    assert (kept.seq, kept.origin) == (5, 7)
    assert refused.counts == {"not_assigned": 2, "collector_only": 1}
    assert refused.describe() == "1 collector_only (e.g. coverage), 2 not_assigned (e.g. device olt-2)"
    untouched = wire.Batch("dv", "p1", 6, t, batch.samples[:1])
    assert scope.check(untouched) == (untouched, refused.__class__())


ROWS: list[tuple[str, dict[str, Any]]] = [
    ("device", {"device": "sw-1"}), ("device", {"device": "olt-2"}), ("cellular", {"carrier": "452-04"}),
    ("cellular", {"carrier": "452-02"}), ("probe", {}), ("alert", {}), ("reach", {"target": "x"}),
    ("power", {"device": "ups-4"}), ("device", {"device": "sw-9"}), ("device", {"device": "bts-3"}),
    ("device", {"device": "10.0.0.1"}), ("cellular", {"carrier": "viettel"}), ("cellular", {"carrier": "452-04"}),
    ("device", {"device": "sw-1", "carrier": "452-02"}), ("device", {"device": "olt-2", "carrier": "452-04"}),
]


@pytest.mark.parametrize(("probe", "zone"), [("p1", "dv"), ("p2", "dv"), ("p9", "dv"), ("p1", "other"),
                                             ("p3", "other")])
def test_the_fast_paths_check_agrees_with_the_full_one(scope: Scope, probe: str, zone: str) -> None:
    for m, tags in ROWS:
        rows = orjson.loads(orjson.dumps([{"m": m, "ts": 1, "tags": tags, "fields": {"x": 1}}]))
        full = scope.why(zone, probe, m, tags) is None
        assert scope.plain(zone, probe, rows) is full, (probe, m, tags)
        assert scope.plain(zone, probe, [rows[0], *rows]) is full   # one row refused: the message is not plain
    for odd in ({"device": ["sw-1"]}, {"device": None}, {"carrier": 452}):   # not a string: not plain
        assert scope.plain("dv", "p1", [{"m": "device", "ts": 1, "tags": odd, "fields": {}}]) is False


@pytest.mark.parametrize(("probe", "zone"), [("p1", "dv"), ("p2", "dv"), ("p9", "dv")])
def test_the_fast_paths_check_judges_every_row_of_a_message(scope: Scope, probe: str, zone: str) -> None:
    """A message is plain only if each of its rows is, whatever the row before it named (the check remembers the
    device it last found watched)."""
    odd: list[tuple[str, dict[str, Any]]] = [("device", {"device": None}), ("device", {"device": ["sw-1"]}),
                                             ("device", {"device": 1})]
    for first_m, first in [*ROWS, *odd]:
        for then_m, then in [*ROWS, *odd]:
            rows = orjson.loads(orjson.dumps([{"m": m, "ts": 1, "tags": tags, "fields": {"x": 1}}
                                              for m, tags in ((first_m, first), (then_m, then), (first_m, first))]))
            full = all(type(t.get("device", "")) is str and scope.why(zone, probe, m, t) is None
                       for m, t in ((first_m, first), (then_m, then)))
            assert scope.plain(zone, probe, rows) is full, (probe, first, then)
