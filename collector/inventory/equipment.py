"""What is installed in the zones: sites, the devices at them, the links they carry, and the probes with their modems.

``sites.<id>`` is a ``Site``, ``devices.<id>`` a ``Device``, ``links.<id>`` a ``Link``, ``probes.<id>`` a
``Probe`` (with its ``Modem`` list). What they name (zones, areas, carriers, parents, probes) is checked by
``collector.inventory.refs``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import model_validator

from collector.positions import Point
from zonewatch.strict import Strict


class Site(Strict):
    """A place with equipment: a BTS, a fibre PoP, a shelter."""

    zone: str
    area: str | None = None
    kind: Literal["bts", "fibre_pop", "shelter", "other"] = "other"
    owners: list[str] = []


class Device(Strict):
    """A piece of equipment polled or trapped by a probe.

    ``probe`` (or ``probes``, for a device two probes watch) names the probes that may report on it; a device
    that names none may be reported by any probe of its site's zone (see ``collector.scope``)."""

    site: str
    kind: Literal["bts", "switch", "router", "olt", "ups", "other"] = "other"
    owners: list[str] = []
    parent: str | None = None
    probe: str | None = None
    probes: list[str] = []
    address: str | None = None

    @model_validator(mode="after")
    def _one_way(self) -> Device:
        if self.probe is not None and self.probes:
            raise ValueError("give probe (one watcher) or probes (several), not both")
        return self

    @property
    def watchers(self) -> list[str]:
        """Return the probes that watch this device (empty: not said)."""
        return list(self.probes) if self.probes else [self.probe] if self.probe is not None else []


class Link(Strict):
    """A device interface that carries carriers' traffic into the zone (a fibre route, a microwave hop)."""

    device: str
    ifname: str
    carriers: list[str] = []

class Modem(Strict):
    """One modem in a probe, on one carrier."""

    name: str
    carrier: str


class Probe(Strict):
    """A probe (agent) installed in a zone area."""

    zone: str
    area: str | None = None
    position: Point | None = None   # x/y metres on the zone's plan, or lat/lon (collector.positions)
    modems: list[Modem] = []
    # The probe's agent configuration as the centre wants it (collector.fleet.desired): given (``{}`` too), the
    # collector renders it over ``probe_defaults`` and publishes it on the probe's config topic.
    config: dict[str, Any] | None = None
