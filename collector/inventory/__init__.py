"""The zone inventory (YAML): what exists, where, and which carrier owns it.

Loading checks every cross-reference and names the offending key (``devices.bts-01.parent: unknown device
'olt-9'``). The alert rules, the notification routing and the reports read the same model::

    zones               areas (and their outlines, the park's plan image), coverage thresholds per technology
    carriers            PLMN, name, and how to reach them (``notify``: webhook, email, MQTT receivers)
    sites               BTS, fibre PoP, shelter; shared or not (``owners``)
    devices             kind, owner carriers, parent device, polling probe, address (for ICMP)
    links               which device interface carries which carriers' route
    redundancy_groups   members (links, devices or traced paths); how many the service and its redundancy need
    probes              zone, area, position, modems and their carriers
    maintenance         planned works: a scope, when (one-off or recurring, in a time zone), ticket, who

An asset with several owners (a shared BTS, leased fibre) alerts every owner.

The inventory is less trusted than the collector configuration (carriers edit their own parts of it): a
carrier's webhook token is a literal string or ``{secret: NAME}``, a secret the collector configuration declares
with the URLs it may be sent to (``collector/secrets.py``); ``{file: ...}`` and ``{env: ...}`` are refused here.
Load it with ``load_inventory`` to hand it those secrets.

``Inventory`` and ``load_inventory`` are here, with the models of each part in a module of its own, and every model
is imported from here (``from collector.inventory import Zone``)::

    zones.py        Zone, Thresholds, CoverageRule, TECHNOLOGIES
    carriers.py     Carrier, EscalationStep, the receivers (webhook, email, MQTT) and a carrier webhook's token
    equipment.py    Site, Device, Link, Probe, Modem
    redundancy.py   RedundancyGroup, Member, PathRef, MinUp
    refs.py         the cross-checks (``Inventory.check_refs``)
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from typing import Any

from pydantic import field_validator

from collector.inventory import refs
from collector.inventory.carriers import (
    AnyCarrierReceiver,
    Carrier,
    CarrierWebhookReceiver,
    EmailReceiver,
    EscalationStep,
    MqttReceiver,
    Receiver,
    WebhookReceiver,
)
from collector.inventory.equipment import Device, Link, Modem, Probe, Site
from collector.inventory.redundancy import Member, MinUp, PathRef, RedundancyGroup
from collector.inventory.zones import TECHNOLOGIES, CoverageRule, Thresholds, Zone
from collector.maintenance import Window
from collector.secrets import SecretSource, context
from zonewatch.strict import RefPath, Strict, load_file

__all__ = [
    "Inventory",
    "load_inventory",
    "Zone",
    "Thresholds",
    "CoverageRule",
    "TECHNOLOGIES",
    "Carrier",
    "EscalationStep",
    "Receiver",
    "WebhookReceiver",
    "EmailReceiver",
    "MqttReceiver",
    "CarrierWebhookReceiver",
    "AnyCarrierReceiver",
    "Site",
    "Device",
    "Link",
    "Probe",
    "Modem",
    "RedundancyGroup",
    "Member",
    "PathRef",
    "MinUp",
]

_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def _check_ids(section: str, keys: Collection[str]) -> None:
    for key in keys:
        if not _ID.match(key):
            raise ValueError(f"{section} key {key!r} is not an id: use lowercase letters, digits, - _ . "
                             "(at most 63 characters, starting with a letter or digit)")


class Inventory(Strict):
    """The whole inventory file."""

    zones: dict[str, Zone]
    carriers: dict[str, Carrier] = {}
    sites: dict[str, Site] = {}
    devices: dict[str, Device] = {}
    links: dict[str, Link] = {}
    redundancy_groups: dict[str, RedundancyGroup] = {}
    probes: dict[str, Probe] = {}
    probe_defaults: dict[str, Any] | None = None   # agent configuration every probe with a ``config`` starts from
    # Named receivers that carriers' escalation steps refer to (the zone authority, the park's NOC on call).
    contacts: dict[str, list[AnyCarrierReceiver]] = {}
    # Maintenance windows (collector.maintenance): alerts in their scope are stored muted while they are open.
    maintenance: dict[str, Window] = {}

    @field_validator("zones", "carriers", "sites", "devices", "links", "redundancy_groups", "probes", "contacts",
                     "maintenance")
    @classmethod
    def _keys(cls, value: dict[str, object], info: object) -> dict[str, object]:
        _check_ids(getattr(info, "field_name", "inventory"), value)
        return value

    def carrier_of(self, name: str) -> Carrier | None:
        """Return the carrier named by key (``viettel``) or PLMN (``452-04``)."""
        if name in self.carriers:
            return self.carriers[name]
        return next((c for c in self.carriers.values() if c.plmn == name), None)

    def plmns(self, carriers: Collection[str]) -> list[str]:
        """Return the PLMNs of the carriers named (keys or PLMNs), in order, without repeats."""
        out: list[str] = []
        for name in carriers:
            carrier = self.carrier_of(name)
            if carrier is not None and carrier.plmn not in out:
                out.append(carrier.plmn)
        return out

    def check_refs(self) -> list[tuple[RefPath, str]]:
        """Return every reference to something the inventory does not define (see ``collector.inventory.refs``)."""
        return refs.check(self)


def load_inventory(path: str | os.PathLike[str], secrets: SecretSource) -> Inventory:
    """Read the inventory at ``path``; its receivers' ``{secret: NAME}`` come from ``secrets`` (the collector
    configuration's ``secrets`` section, or ``collector.secrets.NAMES_ONLY`` for a reader that sends nothing)."""
    return load_file(Inventory, path, context=context(secrets))
