"""The report's figures, from stored points: pure apart from reading the source it is given.

Definitions (the report's header repeats them for its readers):

- Every figure is time, not a count of samples: each point holds until the next one of its series, at
  most ``max_gap`` (see ``timeline``). Time with no point is "no data", reported apart, never counted as
  up or as covered.
- Coverage per carrier and area comes from the collector's ``coverage`` judgements (level 0 good, 1 fair,
  2 weak, 3 hole, 4 no service). Shares are of the measured time: good = level 0 (RSRP >= the good
  threshold), fair or better = level <= 1, above the hole threshold = level <= 2. When the store holds no
  ``coverage`` at all (no alert engine ran), the same levels are worked out from the raw ``cellular``
  readings: the median RSRP of the area's probes (areas from the inventory; a probe the inventory gives no
  area is an area of its own, shown as "(probe)") against the zone's default thresholds, and no service
  while every probe of the area that reports is unregistered.
- A site is up while every device at it that reports answers its poll (``device.up``); a link is up while
  its interface is operationally up and its device answers (a device that does not answer takes its links
  down with it).
- Redundancy comes from the collector's ``redundancy`` judgements: degraded (state 1, RedundancyLost) and
  outage (state 2, ServiceOutage), per group and owner carrier.
- Outages: every span a site or link was down, a redundancy group had no member up, or a carrier had no
  service in an area.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from collector.report.period import Period
from collector.report.source import PointSource, ReportError, Series
from collector.report.timeline import Interval, combine, durations, episodes, hold, total

if TYPE_CHECKING:
    from collector.inventory import Inventory
    from collector.report.kpi import KpiRow
    from collector.report.maintenance import Split
    from collector.report.response import ResponseRow

__all__ = ["ZoneFacts", "CoverageRow", "AvailabilityRow", "RedundancyRow", "Outage", "Report", "facts_from",
           "build_report", "LEVELS", "OUTAGE_KINDS"]

LEVELS: Final = ("good", "fair", "weak", "hole", "no service")
OUTAGE_KINDS: Final = ("site_down", "link_down", "service_outage", "no_service")
DEFAULT_THRESHOLDS: Final = (-90.0, -100.0, -110.0)  # good, fair, hole (dBm)


@dataclass(frozen=True)
class ZoneFacts:
    """What the inventory says about one zone, as the report needs it; all empty without an inventory."""

    zone: str
    name: str = ""
    areas: tuple[str, ...] = ()
    thresholds: tuple[float, float, float] = DEFAULT_THRESHOLDS
    carrier_names: dict[str, str] = field(default_factory=dict)  # PLMN -> name
    probe_area: dict[str, str] = field(default_factory=dict)
    device_site: dict[str, str] = field(default_factory=dict)
    site_owners: dict[str, list[str]] = field(default_factory=dict)  # site -> PLMNs
    link_carriers: dict[str, list[str]] = field(default_factory=dict)  # link -> PLMNs
    link_device: dict[str, str] = field(default_factory=dict)
    group_carriers: dict[str, list[str]] = field(default_factory=dict)  # group -> PLMNs



# The collector writes ``coverage`` and ``redundancy`` when they change and at least every 30 s otherwise
# (collector/alerting/engine.py): such a point holds for up to this long even when changes came quicker.
DERIVED_HOLD_NS = 35 * 10**9

def facts_from(inventory: Inventory | None, zone: str) -> ZoneFacts:
    """Return the facts about ``zone`` in ``inventory``; raise ReportError if it does not know the zone."""
    if inventory is None:
        return ZoneFacts(zone)
    if zone not in inventory.zones:
        known = ", ".join(sorted(inventory.zones)) or "none"
        raise ReportError(f"zone {zone!r} is not in the inventory (known: {known})")
    z = inventory.zones[zone]
    t = z.threshold(None)
    sites = {k: s for k, s in inventory.sites.items() if s.zone == zone}
    devices = {k: d for k, d in inventory.devices.items() if d.site in sites}
    return ZoneFacts(
        zone=zone, name=z.name, areas=tuple(z.areas), thresholds=(t.good_dbm, t.fair_dbm, t.hole_dbm),
        carrier_names={c.plmn: c.name for c in inventory.carriers.values()},
        probe_area={k: p.area for k, p in inventory.probes.items() if p.zone == zone and p.area},
        device_site={k: d.site for k, d in devices.items()},
        site_owners={k: inventory.plmns(s.owners) for k, s in sites.items()},
        link_carriers={k: inventory.plmns(ln.carriers) for k, ln in inventory.links.items() if ln.device in devices},
        link_device={k: ln.device for k, ln in inventory.links.items() if ln.device in devices},
        group_carriers={k: inventory.plmns(g.carriers) for k, g in inventory.redundancy_groups.items()
                        if g.zone == zone})


@dataclass(frozen=True)
class CoverageRow:
    """One carrier in one area: time at each coverage level (ns), and the median RSRP over the period."""

    carrier: str
    area: str
    level_ns: dict[int, int]
    median_rsrp_dbm: float | None

    @property
    def measured_ns(self) -> int:
        return sum(self.level_ns.values())

    def share(self, at_most: int) -> float | None:
        """Return the % of the measured time at level ``at_most`` or better, None when nothing was measured."""
        measured = self.measured_ns
        if not measured:
            return None
        return 100.0 * sum(ns for level, ns in self.level_ns.items() if level <= at_most) / measured


@dataclass(frozen=True)
class AvailabilityRow:
    """One site or link: time measured and time up (ns)."""

    kind: str  # "site" or "link"
    name: str
    carriers: list[str]
    measured_ns: int
    up_ns: int

    @property
    def percent(self) -> float | None:
        return 100.0 * self.up_ns / self.measured_ns if self.measured_ns else None


@dataclass(frozen=True)
class RedundancyRow:
    """One redundancy group for one owner carrier: time measured, degraded and in outage (ns)."""

    group: str
    carrier: str
    measured_ns: int
    degraded_ns: int
    outage_ns: int


@dataclass(frozen=True)
class Outage:
    """A span something was down: ``kind`` is one of OUTAGE_KINDS; ``ongoing`` if it lasted to the end."""

    kind: str
    name: str
    carriers: list[str]
    start_ns: int
    end_ns: int
    ongoing: bool


@dataclass
class Report:
    """Everything the report shows for one zone and period."""

    facts: ZoneFacts
    period: Period
    source: str
    generated_ns: int
    max_gap_s: float
    coverage_from: str
    coverage: list[CoverageRow]
    availability: list[AvailabilityRow]
    redundancy: list[RedundancyRow]
    outages: list[Outage]
    rsrp: dict[tuple[str, ...], list[Interval]]  # (carrier, area) -> median RSRP held over time
    degraded: list[tuple[str, int, int]]  # (group/carrier, start, end): redundancy lost, for the timeline
    response: list[ResponseRow] = field(default_factory=list)  # per carrier: time to acknowledge, to resolve
    maintenance: Split | None = None   # downtime planned / overrun / unplanned (collector.report.maintenance)
    kpi: list[KpiRow] = field(default_factory=list)   # QCVN 81:2019 indicators per carrier (collector.report.kpi)
    maps: list[tuple[str, str]] = field(default_factory=list)   # (PLMN, coverage map file beside the report)

    def carrier_label(self, plmn: str) -> str:
        name = self.facts.carrier_names.get(plmn)
        return f"{name} ({plmn})" if name else plmn


def _level(rsrp: float, thresholds: tuple[float, float, float]) -> int:
    good, fair, hole = thresholds
    return 0 if rsrp >= good else 1 if rsrp >= fair else 2 if rsrp >= hole else 3


def _weighted_median(timeline: Sequence[Interval]) -> float | None:
    """Return the time-weighted median value (the mean of the two middle values at an exact tie)."""
    pieces = sorted((iv.value, iv.end_ns - iv.start_ns) for iv in timeline)
    half = sum(d for _, d in pieces) / 2
    if not pieces:
        return None
    seen = 0
    for i, (value, duration) in enumerate(pieces):
        seen += duration
        if seen > half:
            return value
        if seen == half:
            return (value + pieces[i + 1][0]) / 2 if i + 1 < len(pieces) else value
    return pieces[-1][0]


class _Reader:
    """Read series from the source once each, grouped by the tags that matter, as held timelines."""

    def __init__(self, source: PointSource, zone: str, period: Period, max_gap_ns: int) -> None:
        self.source, self.zone, self.period, self.max_gap_ns = source, zone, period, max_gap_ns
        self.points = 0

    def series(self, measurement: str, field_name: str) -> list[Series]:
        found = self.source.series(measurement, field_name, self.zone, self.period.start_ns - self.max_gap_ns,
                                   self.period.end_ns)
        self.points += sum(len(s.points) for s in found)
        return found

    def timelines(self, found: list[Series], key: Callable[[Series], tuple[str, ...] | None],
                  min_hold_ns: int = 0) -> dict[tuple[str, ...], list[Interval]]:
        """Return the held timeline of each group of ``found`` (series with the same key merge)."""
        grouped: dict[tuple[str, ...], list[tuple[int, float]]] = {}
        for s in found:
            k = key(s)
            if k is not None:
                grouped.setdefault(k, []).extend(s.points)
        return {k: hold(pts, self.period.start_ns, self.period.end_ns, self.max_gap_ns, min_hold_ns)
                for k, pts in grouped.items()}


def _by(*names: str) -> Callable[[Series], tuple[str, ...] | None]:
    """Key a series by the values of tags ``names``; a series without one of them is left out."""

    def key(s: Series) -> tuple[str, ...] | None:
        values = tuple(s.tags.get(n, "") for n in names)
        return values if all(values) else None

    return key


Timelines = dict[tuple[str, ...], list[Interval]]


def _coverage(reader: _Reader, facts: ZoneFacts) -> tuple[str, Timelines, Timelines]:
    """Return where coverage came from, level timelines and RSRP timelines, by (carrier, area)."""
    levels = reader.timelines(reader.series("coverage", "level"), _by("carrier", "area"), DERIVED_HOLD_NS)
    if levels:
        rsrp = reader.timelines(reader.series("coverage", "rsrp_dbm"), _by("carrier", "area"), DERIVED_HOLD_NS)
        return "the collector's coverage judgements", levels, rsrp
    registered = reader.timelines(reader.series("cellular", "registered"), _by("probe", "carrier"))
    signal = reader.timelines(reader.series("cellular", "rsrp_dbm"), _by("probe", "carrier"))
    areas: dict[tuple[str, str], list[str]] = {}
    for probe, carrier in sorted(set(registered) | set(signal)):
        areas.setdefault((carrier, facts.probe_area.get(probe, f"({probe})")), []).append(probe)
    level_tls: Timelines = {}
    rsrp_tls: Timelines = {}
    for (carrier, area), probes in areas.items():
        sig = [signal.get((p, carrier), []) for p in probes]
        reg = [registered.get((p, carrier), []) for p in probes]
        n = len(probes)

        def median(values: list[float | None], n: int = n) -> float | None:
            present = [v for v in values[:n] if v is not None]
            return statistics.median(present) if present else None

        def level(values: list[float | None], n: int = n) -> float | None:
            rsrp = median(values, n)
            if rsrp is not None:
                return float(_level(rsrp, facts.thresholds))
            regs = [v for v in values[n:] if v is not None]
            return 4.0 if regs and not any(regs) else None

        level_tls[(carrier, area)] = combine([*sig, *reg], level)
        rsrp_tls[(carrier, area)] = combine(sig, median)
    return "raw cellular readings (no coverage judgements in the store)", level_tls, rsrp_tls


def build_report(source: PointSource, facts: ZoneFacts, period: Period, generated_ns: int,
                 max_gap_s: float = 300.0) -> Report:
    """Read the zone's points for ``period`` from ``source`` and work out every figure of the report."""
    if max_gap_s <= 0:
        raise ReportError(f"max gap must be positive, got {max_gap_s:g} s")
    reader = _Reader(source, facts.zone, period, int(max_gap_s * 1e9))
    end = period.end_ns
    outages: list[Outage] = []

    def outage(kind: str, name: str, carriers: list[str], spans: list[tuple[int, int]]) -> None:
        outages.extend(Outage(kind, name, carriers, a, b, b == end) for a, b in spans)

    # Coverage --------------------------------------------------------------------------------------------
    coverage_from, level_tls, rsrp_tls = _coverage(reader, facts)
    carriers = sorted({c for c, _ in level_tls})
    keys = set(level_tls) | {(c, a) for c in carriers for a in facts.areas}
    coverage = []
    for carrier, area in sorted(keys):
        tl = level_tls.get((carrier, area), [])
        level_ns: dict[int, int] = {}
        for value, ns in durations(tl).items():
            level_ns[int(value)] = level_ns.get(int(value), 0) + ns
        coverage.append(CoverageRow(carrier, area, level_ns, _weighted_median(rsrp_tls.get((carrier, area), []))))
        outage("no_service", area, [carrier], episodes(tl, lambda v: v >= 4))

    # Sites and links -------------------------------------------------------------------------------------
    device_site: dict[str, str] = dict(facts.device_site)
    device_up = reader.series("device", "up")
    for s in device_up:
        if s.tags.get("device") and s.tags.get("site"):
            device_site[s.tags["device"]] = s.tags["site"]
    devices = reader.timelines(device_up, _by("device"))

    def all_up(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return (1.0 if all(v >= 1 for v in present) else 0.0) if present else None

    availability = []
    for site in sorted(set(device_site.values()) | set(facts.site_owners)):
        tls = [tl for (dev,), tl in devices.items() if device_site.get(dev) == site]
        tl = combine(tls, all_up)
        owners = facts.site_owners.get(site, [])
        availability.append(AvailabilityRow("site", site, owners, total(tl), total(tl, lambda v: v >= 1)))
        outage("site_down", site, owners, episodes(tl, lambda v: v < 1))

    link_device = dict(facts.link_device)
    oper_up = reader.series("interface", "oper_up")
    for s in oper_up:
        if s.tags.get("link") and s.tags.get("device"):
            link_device[s.tags["link"]] = s.tags["device"]
    interfaces = reader.timelines(oper_up, _by("link"))

    def link_up(values: list[float | None]) -> float | None:
        oper, device = values
        if device is not None and device < 1:
            return 0.0
        return None if oper is None else (1.0 if oper >= 1 else 0.0)

    for link in sorted(set(link_device) | set(facts.link_carriers)):
        tl = combine([interfaces.get((link,), []), devices.get((link_device.get(link, ""),), [])], link_up)
        owners = facts.link_carriers.get(link, [])
        availability.append(AvailabilityRow("link", link, owners, total(tl), total(tl, lambda v: v >= 1)))
        outage("link_down", link, owners, episodes(tl, lambda v: v < 1))

    # Redundancy ------------------------------------------------------------------------------------------
    states = reader.timelines(reader.series("redundancy", "state"), _by("group", "carrier"), DERIVED_HOLD_NS)
    for group, plmns in facts.group_carriers.items():
        for plmn in plmns:
            states.setdefault((group, plmn), [])
    redundancy, degraded = [], []
    for (group, carrier), tl in sorted(states.items()):
        redundancy.append(RedundancyRow(group, carrier, total(tl), total(tl, lambda v: v == 1),
                                        total(tl, lambda v: v >= 2)))
        outage("service_outage", group, [carrier], episodes(tl, lambda v: v >= 2))
        degraded += [(f"{group} {carrier}", a, b) for a, b in episodes(tl, lambda v: v >= 1)]

    if not reader.points:
        raise ReportError(f"{source.describe()} has no points of zone {facts.zone!r} in {period.label}: check the "
                          "zone's name and the period")
    order = {kind: i for i, kind in enumerate(OUTAGE_KINDS)}
    outages.sort(key=lambda o: (o.start_ns, order[o.kind], o.name, o.carriers))
    return Report(facts, period, source.describe(), generated_ns, max_gap_s, coverage_from, coverage,
                  availability, redundancy, outages, rsrp_tls, degraded)
