"""Zone sharding: the inventory cut to a collector's zones, and what refuses to be cut (``collector.shard``)."""

from __future__ import annotations

import pytest

from collector.config import CollectorConfig
from collector.inventory import Inventory
from collector.shard import problems, restrict
from zonewatch.strict import ConfigError, load

INVENTORY = """\
zones:
  north: {name: North}
  south: {name: South}
carriers:
  viettel: {plmn: 452-04, name: Viettel}
  vinaphone: {plmn: 452-02, name: VinaPhone}
sites:
  pop-n: {zone: north, owners: [viettel]}
  pop-s: {zone: south, owners: [vinaphone]}
devices:
  sw-n: {site: pop-n, owners: [viettel], probe: p-n}
  sw-s: {site: pop-s, owners: [vinaphone], probes: [p-s]}
links:
  n-1: {device: sw-n, ifname: xe-1, carriers: [viettel]}
  n-2: {device: sw-n, ifname: xe-2, carriers: [viettel]}
  s-1: {device: sw-s, ifname: xe-1, carriers: [vinaphone]}
  s-2: {device: sw-s, ifname: xe-2, carriers: [vinaphone]}
redundancy_groups:
  routes-n: {zone: north, carriers: [viettel], members: [{link: n-1}, {link: n-2}]}
  routes-s: {zone: south, carriers: [vinaphone], members: [{link: s-1}, {link: s-2}]}
probes:
  p-n: {zone: north}
  p-s: {zone: south}
"""


def inventory(text: str = INVENTORY) -> Inventory:
    return load(Inventory, text, "inventory.yaml")


def test_a_shard_keeps_its_zones_and_every_carrier() -> None:
    north = restrict(inventory(), ["north"])
    assert list(north.zones) == ["north"]
    assert list(north.sites) == ["pop-n"] and list(north.devices) == ["sw-n"]
    assert list(north.links) == ["n-1", "n-2"] and list(north.redundancy_groups) == ["routes-n"]
    assert list(north.probes) == ["p-n"]
    assert list(north.carriers) == ["viettel", "vinaphone"]   # routing is the same in every shard
    assert restrict(inventory(), []) == inventory()           # no zones: every zone


def test_an_unknown_zone_is_named() -> None:
    assert problems(inventory(), ["north", "west"]) == [
        (("zones", 1), "unknown zone 'west' in the inventory (known: north, south)")]


@pytest.mark.parametrize(("old", "new", "where", "what"), [
    ("probe: p-n}", "probe: p-n, parent: sw-s}",
     ("devices", "sw-n", "parent"), "device 'sw-n' in zone 'north' refers to device 'sw-s' in zone 'south'"),
    ("probe: p-n}", "probe: p-s}",
     ("devices", "sw-n", "probe"), "device 'sw-n' in zone 'north' refers to probe 'p-s' in zone 'south'"),
    ("{link: n-1}, {link: n-2}", "{link: n-1}, {link: s-2}", ("redundancy_groups", "routes-n", "members", 1, "link"),
     "group 'routes-n' in zone 'north' refers to link 's-2' in zone 'south'"),
])
def test_a_reference_across_zones_cannot_be_split(old: str, new: str, where: tuple[str | int, ...], what: str) -> None:
    inv = inventory(INVENTORY.replace(old, new))
    found = problems(inv, ["north"])
    assert len(found) == 1 and found[0][0] == where and found[0][1].startswith(what), found
    assert problems(inv, ["north", "south"]) == []   # both zones in one shard: nothing is cut
    with pytest.raises(ValueError, match="cannot be split between collectors"):
        restrict(inv, ["north"])


def test_a_secondary_of_an_ha_pair_may_not_enrol() -> None:
    with pytest.raises(ConfigError, match="enrol: enrolment belongs to the primary of an HA pair"):
        load(CollectorConfig, "mqtt: {host: 127.0.0.1}\ninventory: inventory.yaml\nha: {role: secondary}\n"
                              "enrol: {zones: [north], broker_dir: /etc/mosquitto/zw}\n")
