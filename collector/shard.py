"""Zone sharding: a collector given ``zones`` owns those zones only (README: Sharding).

Zones are the shard key because no rule crosses a zone: a device's parent, its watchers, a redundancy
group's members all stand in the zone they serve. A collector with ``zones: [a, b]`` therefore subscribes to
those zones' topics only (``collector.ingest``), and everything else it does is done with the inventory
``restrict`` returns: the rules judge only its zones' sites, devices, links, groups and probes (a probe of
another zone is not silent, it is not this collector's), the scope check takes readings only from its
probes, the fleet thread publishes only its probes' configurations, and the derived series it writes are
its zones'. Carriers are kept whole: a carrier present in several zones is routed the same way by every
shard.

``problems`` names each reference from an owned zone into one the collector does not own (a parent device, a
watcher, a group member): such an inventory cannot be split there, and the collector refuses to start on it, naming
the key, rather than judge half a dependency. Pure functions of the inventory; no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from collector.inventory import Inventory
from zonewatch.strict import RefPath

__all__ = ["problems", "restrict"]


def _key(path: RefPath) -> str:
    """Return a key path as ``devices.bts-01.probes[1]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _device_zones(inventory: Inventory) -> dict[str, str]:
    sites = inventory.sites
    return {key: sites[dev.site].zone for key, dev in inventory.devices.items() if dev.site in sites}


def problems(inventory: Inventory, zones: Sequence[str]) -> list[tuple[RefPath, str]]:
    """Return what keeps ``inventory`` from being split at ``zones``: an unknown zone, or a reference from one
    of them into another zone (see the module docstring). Empty ``zones`` (every zone) has none."""
    if not zones:
        return []
    out: list[tuple[RefPath, str]] = []
    for i, zone in enumerate(zones):
        if zone not in inventory.zones:
            known = ", ".join(sorted(inventory.zones)) or "none defined"
            out.append((("zones", i), f"unknown zone {zone!r} in the inventory (known: {known})"))
    owned = set(zones)
    device_zone = _device_zones(inventory)
    probe_zone = {key: p.zone for key, p in inventory.probes.items()}
    link_zone = {key: device_zone.get(link.device, "") for key, link in inventory.links.items()}

    def across(path: RefPath, what: str, here: str, kind: str, name: str, there: str) -> None:
        if there and there != here and there not in owned:
            out.append((path, f"{what} in zone {here!r} refers to {kind} {name!r} in zone {there!r}: the zones cannot "
                              f"be split between collectors there (give both zones to the same collector)"))

    for key, dev in inventory.devices.items():
        here = device_zone.get(key, "")
        if here not in owned:
            continue
        if dev.parent is not None:
            across(("devices", key, "parent"), f"device {key!r}", here, "device", dev.parent,
                   device_zone.get(dev.parent, ""))
        if dev.probe is not None:
            across(("devices", key, "probe"), f"device {key!r}", here, "probe", dev.probe,
                   probe_zone.get(dev.probe, ""))
        for j, watcher in enumerate(dev.probes):
            across(("devices", key, "probes", j), f"device {key!r}", here, "probe", watcher,
                   probe_zone.get(watcher, ""))
    for key, group in inventory.redundancy_groups.items():
        if group.zone not in owned:
            continue
        for j, member in enumerate(group.members):
            where = ("redundancy_groups", key, "members", j)
            if member.link is not None:
                across((*where, "link"), f"group {key!r}", group.zone, "link", member.link,
                       link_zone.get(member.link, ""))
            if member.device is not None:
                across((*where, "device"), f"group {key!r}", group.zone, "device", member.device,
                       device_zone.get(member.device, ""))
            if member.path is not None:
                across((*where, "path", "probe"), f"group {key!r}", group.zone, "probe", member.path.probe,
                       probe_zone.get(member.path.probe, ""))
    return out


def restrict(inventory: Inventory, zones: Collection[str]) -> Inventory:
    """Return ``inventory`` with only what stands in ``zones`` (and every carrier); empty ``zones``: all of it.

    Raise ValueError naming the first of ``problems`` if the zones cannot be split off."""
    if not zones:
        return inventory
    found = problems(inventory, list(zones))
    if found:
        path, message = found[0]
        raise ValueError(f"{_key(path)}: {message}")
    owned = set(zones)
    sites = {k: s for k, s in inventory.sites.items() if s.zone in owned}
    devices = {k: d for k, d in inventory.devices.items() if d.site in sites}
    return inventory.model_copy(update={
        "zones": {k: z for k, z in inventory.zones.items() if k in owned},
        "sites": sites,
        "devices": devices,
        "links": {k: link for k, link in inventory.links.items() if link.device in devices},
        "redundancy_groups": {k: g for k, g in inventory.redundancy_groups.items() if g.zone in owned},
        "probes": {k: p for k, p in inventory.probes.items() if p.zone in owned},
    })
