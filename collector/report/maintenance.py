"""Planned, overrun and unplanned downtime: the report's outages split by the maintenance windows. Pure.

Every outage the report found (a site or link down, a group's service out, a carrier without service in an
area) is cut into three parts by the windows that cover it (``collector.maintenance``):

- **planned**: inside a span of a covering window;
- **overrun**: after a covering window's span ended while the outage went on (from the first such end to the
  outage's end, outside any other span);
- **unplanned**: the rest (before a window opened, or with no window at all).

Availability is given both ways: with all downtime counted (``up / measured``, as the availability table) and
with planned downtime excluded (``up / (measured - planned)``); overrun always counts.

What covers what: a window on the site covers the site and the links of its devices; on a device, the site it
stands at and the links of it and of the devices below it; on a link, the link; on a group, its member links
and its service; on an area, the sites there (a carrier-restricted area window only where that carrier is the
sole owner) and the carrier's no-service; a carrier-wide window, what that carrier owns alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from collector.maintenance import Declared, WindowScope, describe_scope, occurrences
from collector.report.compute import Outage, Report
from collector.report.period import show_time

if TYPE_CHECKING:
    from collector.inventory import Inventory

__all__ = ["Split", "SplitRow", "split", "table", "windows_table", "NOTE"]

NOTE: Final = ("Downtime inside a maintenance window is planned; downtime after a window's end while the outage "
               "went on is overrun; the rest is unplanned. Availability is shown with all downtime counted, and "
               "with planned downtime excluded from the measured time (overrun and unplanned always count).")


@dataclass(frozen=True)
class SplitRow:
    """One site, link, group service or area service: its downtime split (ns); availability for sites and
    links (``measured_ns`` 0 for the others)."""

    kind: str
    name: str
    carriers: list[str]
    measured_ns: int
    up_ns: int
    planned_ns: int
    overrun_ns: int
    unplanned_ns: int
    windows: list[str]

    @property
    def down_ns(self) -> int:
        return self.planned_ns + self.overrun_ns + self.unplanned_ns

    @property
    def percent(self) -> float | None:
        """Return availability with all downtime counted."""
        return 100.0 * self.up_ns / self.measured_ns if self.measured_ns else None

    @property
    def percent_planned_excluded(self) -> float | None:
        """Return availability with the planned downtime left out of the measured time."""
        base = self.measured_ns - self.planned_ns
        return 100.0 * self.up_ns / base if self.measured_ns and base > 0 else None


@dataclass(frozen=True)
class Split:
    """The report's downtime split, and the windows that were considered."""

    rows: list[SplitRow]
    windows: list[Declared] = field(default_factory=list)


def _parts(start: int, end: int, spans: Sequence[tuple[int, int]]) -> tuple[int, int, int]:
    """Return (planned, overrun, unplanned) ns of the outage [start, end) given the covering windows' spans."""
    inside = sorted((max(s, start), min(e, end)) for s, e in spans if s < end and e > start)
    merged: list[tuple[int, int]] = []
    for s, e in inside:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    planned = sum(e - s for s, e in merged)
    ends = [e for _, e in spans if start < e < end]
    overrun = 0
    if ends:
        after = min(ends)
        overrun = (end - after) - sum(max(0, e - max(s, after)) for s, e in merged)
    return planned, overrun, end - start - planned - overrun


class _Assets:
    """What the split looks up in the inventory."""

    def __init__(self, inventory: Inventory) -> None:
        self.inv = inventory
        self.plmn = {key: c.plmn for key, c in inventory.carriers.items()}
        self.plmn.update({c.plmn: c.plmn for c in inventory.carriers.values()})

    def _sole(self, scope: WindowScope, carriers: Sequence[str], plmn: str | None) -> bool:
        want = self.plmn.get(plmn or "", plmn)
        return want is not None and list(carriers) == [want]

    def _ancestors(self, device: str) -> set[str]:
        seen: set[str] = set()
        node: str | None = device
        while node is not None and node not in seen:
            seen.add(node)
            dev = self.inv.devices.get(node)
            node = dev.parent if dev is not None else None
        return seen

    def _area_of_site(self, site: str | None) -> tuple[str | None, str | None]:
        found = self.inv.sites.get(site or "")
        return (found.zone, found.area) if found is not None else (None, None)

    def _area(self, scope: WindowScope, site: str | None, carriers: Sequence[str]) -> bool:
        zone, area = self._area_of_site(site)
        return (area == scope.area and (scope.zone is None or zone == scope.zone)
                and (scope.carrier is None or self._sole(scope, carriers, scope.carrier)))

    def covers(self, scope: WindowScope, kind: str, name: str, carriers: Sequence[str]) -> bool:
        """Return True when a window of ``scope`` covers the report's ``kind`` (site, link, service_outage,
        no_service) called ``name``."""
        what = scope.kind
        if what == "carrier":
            return self._sole(scope, carriers, scope.carrier)
        if kind == "site":
            if what == "site":
                return name == scope.site
            if what == "device":
                dev = self.inv.devices.get(scope.target)
                return dev is not None and dev.site == name
            return what == "area" and self._area(scope, name, carriers)
        if kind == "link":
            link = self.inv.links.get(name)
            dev = self.inv.devices.get(link.device) if link is not None else None
            site = dev.site if dev is not None else None
            if what == "link":
                return name == scope.link
            if what == "device":
                return link is not None and scope.target in self._ancestors(link.device)
            if what == "site":
                return site == scope.site
            if what == "group":
                group = self.inv.redundancy_groups.get(scope.target)
                return group is not None and any(m.link == name for m in group.members)
            return what == "area" and self._area(scope, site, carriers)
        if kind == "service_outage":
            group = self.inv.redundancy_groups.get(name)
            if what == "group":
                return name == scope.group
            if group is None:
                return False
            if what == "site":
                return group.site == scope.site
            if what == "area":
                area = group.area or self._area_of_site(group.site)[1]
                return (area == scope.area and (scope.zone is None or group.zone == scope.zone)
                        and (scope.carrier is None or self._sole(scope, carriers, scope.carrier)))
            return False
        if kind == "no_service":
            return what == "area" and name == scope.area and (
                scope.carrier is None or self._sole(scope, carriers, scope.carrier))
        return False


_ROW_KIND = {"site_down": "site", "link_down": "link", "service_outage": "service_outage",
             "no_service": "no_service"}


def split(report: Report, windows: Sequence[Declared], inventory: Inventory | None) -> Split:
    """Return the report's downtime split by ``windows`` (with no inventory, every outage is unplanned)."""
    assets = _Assets(inventory) if inventory is not None else None
    parts: dict[tuple[str, str, tuple[str, ...]], list[int]] = {}
    used: dict[tuple[str, str, tuple[str, ...]], set[str]] = {}

    def account(outage: Outage) -> None:
        kind = _ROW_KIND[outage.kind]
        key = (kind, outage.name, tuple(outage.carriers))
        covering = [d for d in windows if assets is not None
                    and assets.covers(d.window.scope, kind, outage.name, outage.carriers)]
        spans = [s for d in covering for s in occurrences(d, outage.start_ns, outage.end_ns)]
        planned, overrun, unplanned = _parts(outage.start_ns, outage.end_ns, spans)
        sums = parts.setdefault(key, [0, 0, 0])
        sums[0], sums[1], sums[2] = sums[0] + planned, sums[1] + overrun, sums[2] + unplanned
        if planned or overrun:
            used.setdefault(key, set()).update(
                d.id for d in covering if occurrences(d, outage.start_ns, outage.end_ns))

    for outage in report.outages:
        account(outage)
    rows: list[SplitRow] = []
    for row in report.availability:
        key = (row.kind, row.name, tuple(row.carriers))
        p, o, u = parts.pop(key, [0, 0, 0])
        rows.append(SplitRow(row.kind, row.name, list(row.carriers), row.measured_ns, row.up_ns, p, o, u,
                             sorted(used.get(key, ()))))
    for (kind, name, carriers), (p, o, u) in sorted(parts.items()):
        rows.append(SplitRow(kind, name, list(carriers), 0, 0, p, o, u, sorted(used.get((kind, name, carriers), ()))))
    return Split(rows, list(windows))


def _minutes(ns: int) -> str:
    return f"{ns / 60e9:.2f}"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def table(zone: str, result: Split | None) -> tuple[list[str], list[list[str]]]:
    """Return ``maintenance.csv`` as (header, rows)."""
    header = ["zone", "kind", "name", "carriers", "measured_min", "down_min", "planned_min", "overrun_min",
              "unplanned_min", "availability_pct", "availability_excl_planned_pct", "windows"]
    rows = [[zone, r.kind, r.name, " ".join(r.carriers), _minutes(r.measured_ns) if r.measured_ns else "",
             _minutes(r.down_ns), _minutes(r.planned_ns), _minutes(r.overrun_ns), _minutes(r.unplanned_ns),
             _pct(r.percent), _pct(r.percent_planned_excluded), " ".join(r.windows)]
            for r in (result.rows if result is not None else [])]
    return header, rows


def windows_table(result: Split | None, start_ns: int, end_ns: int, tz: str) -> tuple[list[str], list[list[str]]]:
    """Return the windows open at some time in the period: id, scope, when, ticket, by, spans in the period."""
    header = ["window", "scope", "when", "ticket", "declared_by", "spans_in_period"]
    rows = []
    for d in result.windows if result is not None else []:
        spans = occurrences(d, start_ns, end_ns)
        if not spans:
            continue
        shown = "; ".join(f"{show_time(s, tz)} to {show_time(e, tz)}" for s, e in spans[:5])
        shown += f" (and {len(spans) - 5} more)" if len(spans) > 5 else ""
        by = ", ".join(x for x in (d.window.by, d.window.as_carrier) if x)
        rows.append([d.id, describe_scope(d.window.scope), d.window.when(), d.window.ticket or "", by, shown])
    return header, rows
