"""The zone authority's monthly evidence: coverage, availability, redundancy and outages, per carrier.

Layout::

    collector/report/
      __init__.py   public surface: build_report, write_report, write_demo_report, the errors
      source.py     where points come from: SqliteSource, VictoriaMetricsSource (one PointSource protocol)
      period.py     the period: a calendar month in the zone's time zone, or an explicit span
      timeline.py   pure time accounting: points -> held intervals; combine, add up, find episodes
      compute.py    pure: the Report's figures (and their definitions) from a source, a zone and a period
      render.py     report.html (tables and plots, self-contained) and one CSV per table
      cli.py        ``zonewatch-collector report``

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
    from collector.inventory import Inventory

__all__ = ["Report", "ZoneFacts", "Period", "PointSource", "SqliteSource", "VictoriaMetricsSource", "ReportError",
           "StoreError", "build_report", "facts_from", "month_period", "span_period", "write_report",
           "write_demo_report"]


def write_report(source: PointSource, facts: ZoneFacts, period: Period, out_dir: Path, generated_ns: int,
                 max_gap_s: float = 300.0) -> Path:
    """Work out the report and write report.html and its CSV files into ``out_dir``; return the HTML's path."""
    from collector.report.render import write_files

    return write_files(build_report(source, facts, period, generated_ns, max_gap_s), out_dir)


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
