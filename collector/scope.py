"""What each probe may report: a probe speaks only about what the inventory says it watches.

Probes stand where anyone can reach them, so the collector treats a probe's word as evidence about the
things assigned to it and nothing else. A row (sample or event) is refused, counted and reported
(``ProbeMisbehaving``) when:

    collector_only   it is a sample of a measurement only the collector writes (``wire.COLLECTOR_MEASUREMENTS``:
                     ``alert``, ``coverage``, ``redundancy``, ``event``): a probe cannot forge the derived
                     series that dashboards and reports show. Checked with or without an inventory.
    unknown_probe    it names a device or a carrier, and the probe is not in the inventory's ``probes`` (or is
                     listed in another zone).
    not_assigned     it names a ``device`` the probe does not watch: the device is not in the inventory (by id
                     or address), or it lists its watchers (``probe``/``probes``) and this probe is not one of
                     them, or it lists none and stands in another zone; or it names a ``carrier`` for which
                     the probe has no modem (``probes.<p>.modems``).
    retired          the probe was retired (``zonewatch-collector probes retire``): every row, whatever it is.
                     ``retired`` is replaced whole by the collector's enrolment (``collector.fleet.enrol``) as
                     the registry changes; one assignment, so the threads reading it see the old set or the new.

A row that names neither a device nor a carrier (the probe's own health, its reach and QoS tests, keyed by
the probe itself) speaks only for the probe and is kept. Without an inventory only ``collector_only``
applies. Batches the collector makes itself (the alert engine's derived measurements) are not checked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from collector.inventory import Inventory
from zonewatch import wire

__all__ = ["Refusals", "Scope"]

_NOTHING: Final = object()   # equal to nothing but itself


@dataclass(slots=True)
class Refusals:
    """What was refused of one batch: a count and one example per reason."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, reason: str, example: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.examples.setdefault(reason, example)

    def __bool__(self) -> bool:
        return bool(self.counts)

    def describe(self) -> str:
        """Return one line: ``2 not_assigned (e.g. device olt-9), 1 collector_only (e.g. coverage)``."""
        return ", ".join(f"{n} {reason} (e.g. {self.examples[reason]})" for reason, n in sorted(self.counts.items()))


class Scope:
    """The assignment of devices and carriers to probes, from an inventory (or none: only collector_only)."""

    def __init__(self, inventory: Inventory | None = None) -> None:
        self.inventory = inventory
        self.probes: dict[str, str] = {}                  # probe -> its zone
        self.carriers: dict[str, frozenset[str]] = {}     # probe -> carrier keys and PLMNs of its modems
        self.devices: dict[str, tuple[str, frozenset[str]]] = {}   # device id or address -> zone, watchers
        self.retired: frozenset[str] = frozenset()        # zone/probe of every retired probe
        if inventory is None:
            return
        plmn_of = {key: c.plmn for key, c in inventory.carriers.items()}
        plmn_of.update({c.plmn: c.plmn for c in inventory.carriers.values()})
        key_of = {c.plmn: key for key, c in inventory.carriers.items()}
        for name, probe in inventory.probes.items():
            self.probes[name] = probe.zone
            names: set[str] = set()
            for modem in probe.modems:
                plmn = plmn_of.get(modem.carrier, modem.carrier)
                names.update({modem.carrier, plmn, key_of.get(plmn, plmn)})
            self.carriers[name] = frozenset(names)
        for name, dev in inventory.devices.items():
            site = inventory.sites.get(dev.site)
            entry = (site.zone if site else "", frozenset(dev.watchers))
            self.devices[name] = entry
            if dev.address:
                self.devices.setdefault(dev.address, entry)

    def why(self, zone: str, probe: str, measurement: str | None, tags: dict[str, str]) -> tuple[str, str] | None:
        """Return (reason, example) if probe ``zone/probe`` may not report this row, else None. ``measurement``
        is None for an event."""
        if self.retired and f"{zone}/{probe}" in self.retired:
            return "retired", f"probe {zone}/{probe}"
        if measurement is not None and measurement in wire.COLLECTOR_MEASUREMENTS:
            return "collector_only", measurement
        device, carrier = tags.get("device"), tags.get("carrier")
        if self.inventory is None or (device is None and carrier is None):
            return None
        if self.probes.get(probe) != zone:
            return "unknown_probe", f"device {device}" if device is not None else f"carrier {carrier}"
        if device is not None and not self.watches(zone, probe, device):
            return "not_assigned", f"device {device}"
        if carrier is not None and carrier not in self.carriers.get(probe, ()):
            return "not_assigned", f"carrier {carrier}"
        return None

    def watches(self, zone: str, probe: str, device: str) -> bool:
        """Return True if probe ``zone/probe`` watches ``device`` (an inventory id or address): it is one of the
        device's watchers, or the device names none and is in the probe's zone."""
        known = self.devices.get(device)
        return known is not None and (probe in known[1] if known[1] else known[0] == zone)

    def plain(self, zone: str, probe: str, rows: Iterable[object]) -> bool:
        """Return True if every row of a parsed payload (JSON objects, as the ingest fast path holds them) may
        be kept; False if one may not, or cannot be told here (the full path then decides and counts)."""
        if self.retired and f"{zone}/{probe}" in self.retired:
            return False
        collector_only = wire.COLLECTOR_MEASUREMENTS
        if self.inventory is None:
            for row in rows:
                if type(row) is not dict:
                    return False
                m = row.get("m")
                if type(m) is not str or m in collector_only:
                    return False
            return True
        # ``why`` written out for the rows of one probe (on the hot paths of both the ingest and the engine)
        listed = self.probes.get(probe) == zone
        # A message's rows mostly name one device, one after another: the last one found watched is checked by
        # one comparison (cheaper than a dict of the devices seen, which hashes each row's new string).
        watched: object = _NOTHING
        carriers = self.carriers.get(probe, frozenset())
        for row in rows:
            if type(row) is not dict:
                return False
            m = row.get("m")
            if type(m) is not str or m in collector_only:
                return False
            tags = row.get("tags")
            if type(tags) is not dict:
                continue
            if "device" in tags:
                device = tags["device"]
                if device != watched:   # only a str equals a str (a tag value is JSON: str, number, null, ...)
                    if type(device) is not str or not listed or not self.watches(zone, probe, device):
                        return False
                    watched = device
            if "carrier" in tags:
                carrier = tags["carrier"]
                if type(carrier) is not str or not listed or carrier not in carriers:
                    return False
        return True

    def check(self, batch: wire.Batch) -> tuple[wire.Batch, Refusals]:
        """Return ``batch`` without the rows its probe may not report, and what was refused."""
        refused = Refusals()
        samples: list[wire.Sample] = []
        for s in batch.samples:
            why = self.why(batch.zone, batch.probe, s.measurement, s.tags)
            if why is None:
                samples.append(s)
            else:
                refused.add(*why)
        events: list[wire.Event] = []
        for e in batch.events:
            why = self.why(batch.zone, batch.probe, None, e.tags)
            if why is None:
                events.append(e)
            else:
                refused.add(*why)
        if not refused:
            return batch, refused
        return wire.Batch(batch.zone, batch.probe, batch.seq, batch.sent_ns, tuple(samples), tuple(events),
                          version=batch.version, origin=batch.origin), refused
