"""The zone inventory (YAML): what exists, where, and which carrier owns it.

Loading checks every cross-reference and names the offending key (``devices[3].parent: unknown device
'olt-9'``). Later work (alert routing, redundancy groups) reads the same model.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Literal

from pydantic import field_validator

from zwconf import RefPath, Strict

_PLMN = re.compile(r"^\d{3}-\d{2,3}$")


class Carrier(Strict):
    """A mobile operator, keyed by its PLMN (MCC-MNC)."""

    plmn: str
    name: str
    contact: str | None = None

    @field_validator("plmn")
    @classmethod
    def _plmn(cls, value: str) -> str:
        if not _PLMN.match(value):
            raise ValueError(f"expected a PLMN like '452-04' (MCC-MNC), got {value!r}")
        return value


class Zone(Strict):
    """An industrial park or economic zone, divided into areas."""

    name: str
    areas: list[str] = []


class Site(Strict):
    """A place with equipment: a BTS, a fibre PoP, a shelter."""

    zone: str
    area: str | None = None
    kind: Literal["bts", "fibre_pop", "shelter", "other"] = "other"
    owners: list[str] = []


class Device(Strict):
    """A piece of equipment polled or trapped by a probe."""

    site: str
    kind: Literal["bts", "switch", "router", "olt", "ups", "other"] = "other"
    owners: list[str] = []
    parent: str | None = None
    probe: str | None = None


class Modem(Strict):
    """One modem in a probe, on one carrier."""

    name: str
    carrier: str


class Probe(Strict):
    """A probe (agent) installed in a zone area."""

    zone: str
    area: str | None = None
    modems: list[Modem] = []


class Inventory(Strict):
    """The whole inventory file."""

    zones: dict[str, Zone]
    carriers: dict[str, Carrier] = {}
    sites: dict[str, Site] = {}
    devices: dict[str, Device] = {}
    probes: dict[str, Probe] = {}

    def check_refs(self) -> list[tuple[RefPath, str]]:
        """Return every reference to something the inventory does not define."""
        problems: list[tuple[RefPath, str]] = []

        def need(path: RefPath, kind: str, name: str | None, known: Collection[str]) -> None:
            if name is not None and name not in known:
                listed = ", ".join(sorted(known)) or "none defined"
                problems.append((path, f"unknown {kind} {name!r} (known: {listed})"))

        plmns = {c.plmn: key for key, c in self.carriers.items()}
        for key, site in self.sites.items():
            need(("sites", key, "zone"), "zone", site.zone, self.zones)
            if site.zone in self.zones:
                need(("sites", key, "area"), "area", site.area, self.zones[site.zone].areas)
            for i, owner in enumerate(site.owners):
                need(("sites", key, "owners", i), "carrier", owner, self.carriers)
        for key, dev in self.devices.items():
            need(("devices", key, "site"), "site", dev.site, self.sites)
            need(("devices", key, "parent"), "device", dev.parent, self.devices)
            need(("devices", key, "probe"), "probe", dev.probe, self.probes)
            for i, owner in enumerate(dev.owners):
                need(("devices", key, "owners", i), "carrier", owner, self.carriers)
            if dev.parent == key:
                problems.append((("devices", key, "parent"), f"device {key!r} cannot be its own parent"))
        for key, probe in self.probes.items():
            need(("probes", key, "zone"), "zone", probe.zone, self.zones)
            if probe.zone in self.zones:
                need(("probes", key, "area"), "area", probe.area, self.zones[probe.zone].areas)
            for i, modem in enumerate(probe.modems):
                if modem.carrier not in self.carriers and modem.carrier not in plmns:
                    need(("probes", key, "modems", i, "carrier"), "carrier", modem.carrier, self.carriers)
        return problems
