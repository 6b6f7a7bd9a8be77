"""Who owns each series: the owner labels the collector adds at ingest, from the inventory.

Carriers are competitors: each may read only the series of assets it owns (``collector.provision.vmauth``
forces that filter below Grafana). The ingest labels every series of an owned asset with one label per owner
carrier, ``own_<mcc>_<mnc>="1"`` (``zonewatch.measurements.owner_label``), so a shared BTS's series match each of
its owners' filters and nobody else's. The zone authority reads unfiltered, and sees the same series.

What owns a series, first found in this order of its tags (the same reading as the alert rules', which page
the same carriers about the same assets)::

    carrier   the series is about that carrier alone (a modem, coverage, a redundancy group's state for one
              owner, an alert): that carrier, even on a shared device
    link      an inventory link (or the interface or optical port of a device an inventory link names): the
              link's carriers; a co-owner of the switch does not see a competitor's fibre
    group     a redundancy group: its carriers
    device    an inventory device (by id or address): its owners; a device without owners is the zone's, even
              at a carrier's site
    site      its owners
    reach     a probe's traced path (probe, target) that a redundancy group lists: that group's carriers

Anything else (a probe's own health, an unknown device, an asset without owners) gets no owner label: only the
zone authority sees it. A tag a probe sends under an owner label's name is dropped by the encoder
(``collector.storage.lineproto``) before these are added: a probe cannot show its data to a carrier.

``Ownership`` is built once per inventory (every lookup is a dict read) and asked once per new series: the
encoder keeps each series' encoded prefix, so the cost per sample is nil.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from collector.inventory import Inventory
from zonewatch.measurements import owner_label

__all__ = ["Ownership", "NOBODY"]

Labels = tuple[str, ...]
NOBODY: Labels = ()


class Ownership:
    """The owner labels of series, from an inventory (none: every series is the authority's alone)."""

    def __init__(self, inventory: Inventory | None = None) -> None:
        self.plmn: dict[str, str] = {}                      # carrier key or PLMN -> PLMN
        self._carrier: dict[str, Labels] = {}               # carrier key or PLMN -> its label
        self._device: dict[str, Labels] = {}                # device id or address -> owners' labels
        self._canonical: dict[str, str] = {}                # device id or address -> device id
        self._link: dict[str, Labels] = {}                  # link id -> carriers' labels
        self._link_at: dict[tuple[str, str], Labels] = {}   # (device id, ifname) -> the link's carriers' labels
        self._group: dict[str, Labels] = {}
        self._site: dict[str, Labels] = {}
        self._path: dict[tuple[str, str], Labels] = {}      # (probe, target) -> carriers of groups tracing it
        if inventory is None:
            return
        for key, carrier in inventory.carriers.items():
            self.plmn[key] = self.plmn[carrier.plmn] = carrier.plmn
        for name in self.plmn:
            self._carrier[name] = (owner_label(self.plmn[name]),)
        for name, dev in inventory.devices.items():
            self._canonical[name] = name
            self._device[name] = self._labels(dev.owners)
        for name, dev in inventory.devices.items():   # an address never hides a device id
            if dev.address:
                self._canonical.setdefault(dev.address, name)
                self._device.setdefault(dev.address, self._device[name])
        for name, link in inventory.links.items():
            self._link[name] = self._link_at[(link.device, link.ifname)] = self._labels(link.carriers)
        paths: dict[tuple[str, str], list[str]] = {}
        for name, group in inventory.redundancy_groups.items():
            self._group[name] = self._labels(group.carriers)
            for member in group.members:
                if member.path is not None:
                    paths.setdefault((member.path.probe, member.path.target), []).extend(group.carriers)
        self._path = {key: self._labels(carriers) for key, carriers in paths.items()}
        self._site = {name: self._labels(site.owners) for name, site in inventory.sites.items()}

    def _labels(self, carriers: Iterable[str]) -> Labels:
        """Return the sorted owner labels of carriers named by key or PLMN (unknown ones left out)."""
        return tuple(sorted({owner_label(self.plmn[c]) for c in carriers if c in self.plmn}))

    def labels(self, measurement: str, tags: Mapping[str, str], probe: str) -> Labels:
        """Return the owner labels of the series ``measurement`` + ``tags`` reported by ``probe`` (see the
        module docstring for the order in which tags decide); empty: the zone authority's alone."""
        carrier = tags.get("carrier")
        if carrier:
            return self._carrier.get(carrier, NOBODY)
        device = tags.get("device")
        link = tags.get("link")
        if link and link in self._link:
            return self._link[link]
        if device:
            port = tags.get("ifname") or tags.get("port")
            if port:
                found = self._link_at.get((self._canonical.get(device, device), port))
                if found is not None:
                    return found
        group = tags.get("group")
        if group:
            return self._group.get(group, NOBODY)
        if device:
            return self._device.get(device, NOBODY)
        site = tags.get("site")
        if site:
            return self._site.get(site, NOBODY)
        if measurement == "reach":
            target = tags.get("target")
            if target:
                return self._path.get((probe, target), NOBODY)
        return NOBODY
