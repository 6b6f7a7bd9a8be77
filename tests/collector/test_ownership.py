"""Owner labels: who owns each series (collector.ownership), and the encoder writing them on every line, the
same on the ingest's fast and full paths."""

from __future__ import annotations

import pytest

from collector.cardinality import SeriesLimit
from collector.inventory import Inventory
from collector.ownership import Ownership
from collector.storage.lineproto import Encoder
from zonewatch import wire
from zonewatch.measurements import owner_label
from zonewatch.strict import load

VT, VN, MB = "452-04", "452-02", "452-01"
OWN_VT, OWN_VN = owner_label(VT), owner_label(VN)

INVENTORY = load(Inventory, f"""
zones:
  z1: {{name: Park, areas: [gate]}}
carriers:
  viettel: {{plmn: '{VT}', name: Viettel}}
  vinaphone: {{plmn: '{VN}', name: VinaPhone}}
  mobi: {{plmn: '{MB}', name: Mobi}}
sites:
  shared: {{zone: z1, kind: bts, owners: [viettel, vinaphone]}}
  vt-site: {{zone: z1, owners: [viettel]}}
devices:
  bts-s: {{site: shared, kind: bts, owners: [viettel, vinaphone], address: 10.0.0.5}}
  bts-vn: {{site: shared, kind: bts, owners: [vinaphone]}}
  ups-s: {{site: shared, kind: ups}}
  sw: {{site: vt-site, kind: switch, owners: [viettel, vinaphone]}}
links:
  vt-fibre: {{device: sw, ifname: ge-0/0/1, carriers: [viettel]}}
  vn-fibre: {{device: bts-s, ifname: eth1, carriers: [vinaphone]}}
redundancy_groups:
  core:
    zone: z1
    carriers: [viettel, vinaphone]
    members: [{{path: {{probe: p1, target: 10.9.9.9, name: a}}}}, {{path: {{probe: p1, target: 10.9.9.9, name: b}}}}]
probes:
  p1: {{zone: z1, area: gate, modems: [{{name: vt, carrier: viettel}}]}}
""", "inventory.yaml")

OWNERS = Ownership(INVENTORY)


@pytest.mark.parametrize(("measurement", "tags", "probe", "owners"), [
    # a shared BTS: both owners; a carrier's own BTS at the shared site: that carrier alone
    ("device", {"device": "bts-s", "site": "shared"}, "p1", (OWN_VN, OWN_VT)),
    ("device", {"device": "10.0.0.5", "site": "shared"}, "p1", (OWN_VN, OWN_VT)),   # reported by address
    ("device", {"device": "bts-vn", "site": "shared"}, "p1", (OWN_VN,)),
    # a device without owners is the zone's, even at a carrier's site; an unknown device is nobody's
    ("power", {"device": "ups-s", "site": "shared"}, "p1", ()),
    ("device", {"device": "olt-9", "site": "shared"}, "p1", ()),
    # a link's interface and optics belong to the link's carriers, not to every co-owner of the switch
    ("interface", {"device": "sw", "ifname": "ge-0/0/1", "link": "vt-fibre"}, "p1", (OWN_VT,)),
    ("interface", {"device": "sw", "ifname": "ge-0/0/1"}, "p1", (OWN_VT,)),
    ("optical", {"device": "sw", "port": "ge-0/0/1"}, "p1", (OWN_VT,)),
    ("interface", {"device": "10.0.0.5", "ifname": "eth1"}, "p1", (OWN_VN,)),
    ("interface", {"device": "sw", "ifname": "ge-0/0/9"}, "p1", (OWN_VN, OWN_VT)),
    # a carrier tag: that carrier alone (its alert about a shared device is not the co-owner's business)
    ("alert", {"alertname": "LinkDown", "carrier": VN, "device": "bts-s", "link": "vn-fibre"}, "collector",
     (OWN_VN,)),
    ("cellular", {"carrier": VT, "modem": "vt"}, "p1", (OWN_VT,)),
    ("coverage", {"area": "gate", "carrier": "viettel"}, "collector", (OWN_VT,)),   # by key too
    ("cellular", {"carrier": "999-99"}, "p1", ()),                                  # not an inventory carrier
    ("alert", {"alertname": "ProbeDown", "area": "gate"}, "p1", ()),
    ("redundancy", {"group": "core"}, "collector", (OWN_VN, OWN_VT)),
    ("site_only", {"site": "vt-site"}, "p1", (OWN_VT,)),
    # a traced path a group lists: the group's carriers; another probe's trace of the same target: nobody's
    ("reach", {"target": "10.9.9.9", "path": "a"}, "p1", (OWN_VN, OWN_VT)),
    ("reach", {"target": "10.9.9.9", "path": "a"}, "p2", ()),
    ("probe", {}, "p1", ()),
])
def test_each_series_belongs_to_its_asset_s_owners(measurement: str, tags: dict[str, str], probe: str,
                                                     owners: tuple[str, ...]) -> None:
    assert OWNERS.labels(measurement, tags, probe) == owners


def test_a_carrier_whose_plmn_starts_like_another_s_gets_a_label_of_its_own() -> None:
    # 452-04 and 452-040 are different networks: labels are names, matched whole, never by prefix
    assert owner_label("452-04") != owner_label("452-040")
    assert owner_label("452-040") == "own_452_040"


def test_without_an_inventory_nothing_is_owned() -> None:
    assert Ownership().labels("device", {"device": "bts-s", "carrier": VT}, "p1") == ()


def _line(encoder: Encoder, measurement: str, tags: dict[str, str]) -> str:
    sample = wire.Sample(measurement, tags, {"up": True}, 1_000)
    return encoder.encode([wire.Batch("z1", "p1", 1, 0, (sample,))])[0]


def test_the_encoder_writes_the_owner_labels_and_drops_a_probe_s_own() -> None:
    encoder = Encoder()
    encoder.set_owners(OWNERS.labels)
    line = _line(encoder, "device", {"device": "bts-s", "site": "shared", "own_452_01": "1", "own_x": "y"})
    assert line == f"device,device=bts-s,{OWN_VN}=1,{OWN_VT}=1,probe=p1,site=shared,zone=z1 up=1i 1000"
    assert "own_452_01" not in _line(Encoder(), "device", {"device": "bts-s", "own_452_01": "1"})


def test_new_owners_take_effect_for_series_already_seen() -> None:
    encoder = Encoder()
    assert OWN_VT not in _line(encoder, "device", {"device": "bts-s"})
    encoder.set_owners(OWNERS.labels)
    assert f"{OWN_VT}=1" in _line(encoder, "device", {"device": "bts-s"})


def test_the_fast_path_writes_the_same_owner_labels_as_the_full_path() -> None:
    rows = [{"m": "device", "ts": 10**18, "tags": {"device": "bts-s", "site": "shared"}, "fields": {"up": True}},
            {"m": "interface", "ts": 10**18, "tags": {"device": "sw", "ifname": "ge-0/0/1"},
             "fields": {"oper_up": False}},
            {"m": "cellular", "ts": 10**18, "tags": {"carrier": VT, "modem": "vt"}, "fields": {"rsrp_dbm": -95.5}}]
    wire.CHECKED_NAMES.update({"device", "site", "interface", "ifname", "cellular", "carrier", "modem", "up",
                               "oper_up", "rsrp_dbm"})
    fast, full = Encoder(), Encoder()
    fast.set_owners(OWNERS.labels)
    full.set_owners(OWNERS.labels)
    table, room = SeriesLimit(100, 10**12).table("z1/p1", 10**18)
    done = fast.encode_rows("z1", "p1", rows, 10**18, wire.Limits(), table, room)
    assert done is not None
    samples = tuple(wire.Sample(r["m"], r["tags"], r["fields"], r["ts"]) for r in rows)  # type: ignore[arg-type]
    assert done[0].lines == full.encode([wire.Batch("z1", "p1", 1, 0, samples)])
    assert [OWN_VT in line for line in done[0].lines] == [True, True, True]
    assert [OWN_VN in line for line in done[0].lines] == [True, False, False]
