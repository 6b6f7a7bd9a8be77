"""The zone authority's monthly evidence: coverage, availability, redundancy and outages, per carrier.

Layout::

    collector/report/
      __init__.py   public surface: build_report, write_report, write_demo_report, the errors
      source.py     where points come from: SqliteSource, VictoriaMetricsSource (one PointSource protocol)
      period.py     the period: a calendar month in the zone's time zone, or an explicit span
      timeline.py   pure time accounting: points -> held intervals; combine, add up, find episodes
      compute.py    pure: the Report's figures (and their definitions) from a source, a zone and a period
      response.py   pure: time to acknowledge and to resolve per carrier, from the acknowledgement store
      maintenance.py  pure: downtime split into planned, overrun and unplanned by the maintenance windows
      kpi.py        pure: QCVN 81:2019's technical indicators per carrier, against their limits
      covmap.py     one carrier's coverage map: one offline HTML file over the park's plan (Leaflet inline)
      render.py     report.html (tables and plots, self-contained) and one CSV per table
      cli.py        ``zonewatch-collector report``; map_cli.py ``zonewatch-collector coverage-map``

Exceptions::

    ReportError     the report cannot be made from what it was given (unknown zone, bad month, no data)
      StoreError    the store could not be read (unreachable, refused, unreadable)

Only ``render`` imports matplotlib, and only when it draws.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from collector.report.compute import Report, ZoneFacts, build_report, facts_from
from collector.report.period import Period, month_period, span_period
from collector.report.source import PointSource, ReportError, SqliteSource, StoreError, VictoriaMetricsSource

if TYPE_CHECKING:
    from collections.abc import Sequence

    from collector.alerting.qos import QosSettings
    from collector.inventory import Inventory
    from collector.maintenance import Declared
    from collector.report.carrier import CarrierView

__all__ = ["Report", "ZoneFacts", "Period", "PointSource", "SqliteSource", "VictoriaMetricsSource", "ReportError",
           "StoreError", "build_report", "facts_from", "month_period", "span_period", "write_report",
           "write_demo_report"]


def write_report(source: PointSource, facts: ZoneFacts, period: Period, out_dir: Path, generated_ns: int,
                 max_gap_s: float = 300.0, acks: str | Path | None = None,
                 windows: Sequence[Declared] = (), inventory: Inventory | None = None,
                 carrier: CarrierView | None = None, qos: QosSettings | None = None,
                 inventory_file: Path | None = None) -> Path:
    """Work out the report and write report.html and its CSV files into ``out_dir``; return the HTML's path.
    ``qos``: the limits of the QCVN 81:2019 indicators (``collector.report.kpi``; default: the regulation's);
    ``inventory_file`` (with ``inventory``): where the plan image is looked for, for a coverage map per carrier
    beside the report when the zone has positions (``collector.report.covmap``).
    ``carrier``: (PLMN, the other carriers' words, competitors) for that carrier's own report
    (``collector.report.carrier``).
    ``acks``: the collector's acknowledgement store, for the response table (``collector.report.response``);
    ``windows`` (with the ``inventory`` that says what they cover): maintenance windows, for the split of
    downtime into planned, overrun and unplanned (``collector.report.maintenance``)."""
    from collector.alerting.qos import QosSettings
    from collector.positions import PositionError
    from collector.report import covmap, kpi, maintenance, response
    from collector.report.render import write_files

    report = build_report(source, facts, period, generated_ns, max_gap_s)
    if acks is not None:
        report.response = response.rows(response.read(acks, facts.zone, period.start_ns, period.end_ns), generated_ns)
    report.maintenance = maintenance.split(report, windows, inventory)
    report.kpi = kpi.compute(source, facts.zone, period, qos or QosSettings(), inventory,
                             [carrier[0]] if carrier is not None else facts.carrier_names)
    if carrier is not None:
        report.kpi = [r for r in report.kpi if r.carrier == carrier[0]]
    if inventory is not None and inventory_file is not None:
        plmns = [carrier[0]] if carrier is not None else sorted({r.carrier for r in report.kpi}
                                                                | {r.carrier for r in report.coverage})
        try:
            report.maps = covmap.write_all(source, inventory, inventory_file, facts.zone, plmns, period,
                                           generated_ns, out_dir, max_gap_s)
        except PositionError as exc:
            raise ReportError(str(exc)) from None
    if carrier is not None:
        from collector.report.carrier import write_carrier_report

        return write_carrier_report(report, carrier[0], carrier[1], out_dir, carrier[2])
    return write_files(report, out_dir)


def write_demo_report(store_path: str | Path, out_dir: str | Path, zone: str, start_ns: int, end_ns: int,
                      inventory: Inventory | None = None, tz: str = "UTC") -> Path:
    """Write the report of the demo's zone for [start_ns, end_ns) from its SQLite store; return report.html.

    The demo calls it once, after its collector has stopped (the store is read, not written). ``end_ns``
    doubles as the report's generation time. Raises ReportError (with the reason) when nothing was stored
    for ``zone`` in that span.
    """
    from datetime import datetime, timezone

    start = datetime.fromtimestamp(start_ns / 1e9, timezone.utc).isoformat()
    end = datetime.fromtimestamp(end_ns / 1e9, timezone.utc).isoformat()
    period = span_period(start, end, tz)
    period = Period(start_ns, end_ns, f"demo run {period.label}", tz)
    source = SqliteSource(str(store_path))
    try:
        return write_report(source, facts_from(inventory, zone), period, Path(out_dir), end_ns, max_gap_s=60.0)
    finally:
        source.close()
