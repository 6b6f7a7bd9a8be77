"""A carrier's private report: its own assets, coverage and figures; competitors only pooled, if allowed.

``zonewatch-collector report --carrier X`` works the zone's report out as the authority's is, then keeps only
what concerns carrier X: its coverage rows and RSRP, the sites and links it owns (a shared one with X as its
only carrier shown), its redundancy groups, its outages, its alert response and its maintenance split. Every
other carrier's name and PLMN is gone, from the rows and from the names the report can show. With the
authority's ``carrier_access.competitors: aggregate`` it adds, per area, one coverage row of every other
carrier pooled (``others``), and only where at least two of them were measured (one alone would be named by
its figures).

Fail closed: a Report field this module does not know how to filter (one added later) stops the report with
a ReportError rather than pass through; and the written files are searched for every other carrier's PLMN,
key and name: a hit removes them and raises.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from collector.report.compute import CoverageRow, Report, ZoneFacts
from collector.report.source import ReportError

if TYPE_CHECKING:
    from collector.inventory import Inventory

__all__ = ["OTHERS", "Competitors", "CarrierView", "resolve", "for_carrier", "write_carrier_report", "leaks"]

OTHERS: Final = "others"   # the pooled competitors' row
Competitors = Literal["none", "aggregate"]
CarrierView = tuple[str, list[str], Competitors]   # (PLMN, the other carriers' words, competitors): write_report
_FILTERED: Final = frozenset({"facts", "period", "source", "generated_ns", "max_gap_s", "coverage_from", "coverage",
                              "availability", "redundancy", "outages", "rsrp", "degraded", "response",
                              "maintenance", "kpi", "maps"})
_FACTS: Final = frozenset({"zone", "name", "areas", "thresholds", "carrier_names", "probe_area", "device_site",
                           "site_owners", "link_carriers", "link_device", "group_carriers"})


def resolve(inventory: Inventory | None, carrier: str) -> tuple[str, list[str]]:
    """Return the PLMN of ``carrier`` (a key or a PLMN of the inventory) and every other carrier's words (PLMN,
    key, name) that the carrier's report must not contain."""
    if inventory is None:
        raise ReportError("--carrier needs the inventory (who owns what): give --inventory or a configuration "
                          "that names one")
    found = inventory.carrier_of(carrier)
    if found is None:
        known = ", ".join(f"{k} ({c.plmn})" for k, c in sorted(inventory.carriers.items())) or "none"
        raise ReportError(f"--carrier {carrier!r} is not a carrier of the inventory (known: {known})")
    others = [word for key, c in inventory.carriers.items() if c.plmn != found.plmn
              for word in (c.plmn, key, c.name)]
    return found.plmn, others


def _only(carriers: Iterable[str], plmn: str) -> list[str] | None:
    """Return ``[plmn]`` if ``plmn`` is among ``carriers``, else None (the row is not the carrier's)."""
    return [plmn] if plmn in carriers else None


def _pooled(rows: list[CoverageRow], plmn: str) -> list[CoverageRow]:
    """Return one row per area of every other carrier's coverage pooled, where two or more were measured."""
    by_area: dict[str, list[CoverageRow]] = {}
    for r in rows:
        if r.carrier != plmn and r.measured_ns:
            by_area.setdefault(r.area, []).append(r)
    out = []
    for area, found in sorted(by_area.items()):
        if len({r.carrier for r in found}) < 2:
            continue
        levels: dict[int, int] = {}
        for r in found:
            for level, ns in r.level_ns.items():
                levels[level] = levels.get(level, 0) + ns
        out.append(CoverageRow(OTHERS, area, levels, None))
    return out


def _facts(facts: ZoneFacts, plmn: str, pooled: bool) -> ZoneFacts:
    unknown = {f.name for f in dataclasses.fields(facts)} - _FACTS
    if unknown:
        raise ReportError(f"the report's facts have {', '.join(sorted(unknown))}, which the carrier report does not "
                          "know how to filter (collector/report/carrier.py must say)")
    sites = {s: [plmn] for s, owners in facts.site_owners.items() if plmn in owners}
    links = {k: [plmn] for k, owners in facts.link_carriers.items() if plmn in owners}
    names = {plmn: facts.carrier_names.get(plmn, plmn)}
    if pooled:
        names[OTHERS] = "other carriers, pooled"
    return dataclasses.replace(
        facts, name=f"{facts.name or facts.zone}, for {names[plmn]} ({plmn})", carrier_names=names,
        device_site={d: s for d, s in facts.device_site.items() if s in sites}, site_owners=sites,
        link_carriers=links, link_device={k: d for k, d in facts.link_device.items() if k in links},
        group_carriers={g: [plmn] for g, owners in facts.group_carriers.items() if plmn in owners})


def _maintenance(split: Any, plmn: str, others: list[str]) -> Any:
    """Return the downtime split with only the carrier's rows, and only the windows they used that name no
    other carrier."""
    if split is None:
        return None
    mention = _pattern(others)
    rows = [dataclasses.replace(r, carriers=[plmn]) for r in split.rows if plmn in r.carriers]
    used = {w for r in rows for w in r.windows}
    windows = [d for d in split.windows if d.id in used and not mention.search(repr(d))]
    kept = {d.id for d in windows}
    rows = [dataclasses.replace(r, windows=[w for w in r.windows if w in kept]) for r in rows]
    return dataclasses.replace(split, rows=rows, windows=windows)


def for_carrier(report: Report, plmn: str, competitors: Competitors = "none",
                others: list[str] | None = None) -> Report:
    """Return ``report`` as carrier ``plmn`` may see it (see the module docstring)."""
    unknown = {f.name for f in dataclasses.fields(report)} - _FILTERED
    if unknown:
        raise ReportError(f"the report has {', '.join(sorted(unknown))}, which the carrier report does not know how "
                          "to filter (collector/report/carrier.py must say)")
    if plmn not in report.facts.carrier_names:
        raise ReportError(f"carrier {plmn} is not in the zone's inventory")
    coverage = [r for r in report.coverage if r.carrier == plmn]
    pooled = _pooled(report.coverage, plmn) if competitors == "aggregate" else []
    availability = [dataclasses.replace(r, carriers=c) for r in report.availability
                    if (c := _only(r.carriers, plmn)) is not None]
    outages = [dataclasses.replace(o, carriers=c) for o in report.outages if (c := _only(o.carriers, plmn)) is not None]
    groups = {r.group for r in report.redundancy if r.carrier == plmn}
    return dataclasses.replace(
        report, facts=_facts(report.facts, plmn, bool(pooled)), coverage=coverage + pooled,
        availability=availability, outages=outages,
        redundancy=[r for r in report.redundancy if r.carrier == plmn],
        rsrp={k: v for k, v in report.rsrp.items() if k[0] == plmn},
        degraded=[(name, a, b) for name, a, b in report.degraded
                  if name.rpartition(" ")[2] == plmn and name.rpartition(" ")[0] in groups],
        response=[r for r in report.response if r.carrier == plmn],
        maintenance=_maintenance(report.maintenance, plmn, others or []),
        kpi=[r for r in report.kpi if r.carrier == plmn], maps=[m for m in report.maps if m[0] == plmn])


def _pattern(words: Iterable[str]) -> re.Pattern[str]:
    alternatives = sorted({w for w in words if w}, key=len, reverse=True)
    if not alternatives:
        return re.compile(r"(?!)")
    return re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(w) for w in alternatives) + r")(?![\w-])", re.I)


def leaks(folder: Path, names: Iterable[str], others: list[str]) -> list[str]:
    """Return ``file: word`` for each of ``others`` (PLMNs, keys, names: whole words, any case) found in the
    files ``names`` of ``folder``."""
    mention = _pattern(others)
    found = []
    for name in names:
        path = folder / name
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            found += [f"{name}: {m}" for m in sorted({m.group(0) for m in mention.finditer(text)})]
    return found


def write_carrier_report(report: Report, plmn: str, others: list[str], out_dir: Path,
                         competitors: Competitors = "none") -> Path:
    """Write carrier ``plmn``'s report into ``out_dir``; return report.html. Raise ReportError, leaving no file
    behind, if the files would name another carrier."""
    from collector.report.render import FILES, write_files

    page = write_files(for_carrier(report, plmn, competitors, others), out_dir)
    found = leaks(out_dir, FILES, others)
    if found:
        for name in FILES:
            (out_dir / name).unlink(missing_ok=True)
        raise ReportError(f"the report for {plmn} would name another carrier ({'; '.join(found[:5])}): nothing "
                          "written; an asset's name may carry a competitor's name")
    return page
