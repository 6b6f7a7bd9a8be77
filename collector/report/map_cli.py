"""``zonewatch-collector coverage-map``: one carrier's coverage map of a zone, one HTML file that opens offline.

Reads the same stores and inventory as ``report`` (``collector.report.cli``). Exit codes: 0 written, 2 bad input
(zone, carrier, month, options, configuration, a plan image that is missing), 1 the store could not be read.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from zonewatch.strict import ConfigError, parse_duration

HELP = "write one carrier's coverage map of a zone: one HTML file over the park's plan that opens offline"


def add_parser(sub: Any) -> None:
    """Add the ``coverage-map`` subcommand to the collector's subparsers."""
    p = sub.add_parser("coverage-map", help=HELP, description=f"{HELP}. Probes and survey readings are coloured by "
                       "coverage level; areas with no measurement are grey and hatched (unmeasured).")
    p.add_argument("--zone", required=True, help="the zone (its key in the inventory)")
    p.add_argument("--carrier", required=True, help="the carrier (its key or PLMN in the inventory)")
    p.add_argument("--out", required=True, metavar="FILE.html", help="the HTML file to write")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--month", help="calendar month YYYY-MM, in --tz (default: the current month)")
    when.add_argument("--from", dest="start", metavar="TIME", help="start of a span (ISO 8601; needs --to)")
    p.add_argument("--to", dest="end", metavar="TIME", help="end of the span (excluded)")
    p.add_argument("--tz", default="UTC", help="time zone of the month and of the times shown (default UTC)")
    p.add_argument("--survey", metavar="ID", help="show only this walk survey's readings (default: every survey "
                   "of the period)")
    store = p.add_mutually_exclusive_group()
    store.add_argument("--sqlite", metavar="PATH", help="read this SQLite store instead of the configured one")
    store.add_argument("--victoriametrics", metavar="URL", help="read this VictoriaMetrics instead")
    p.add_argument("--inventory", metavar="FILE", help="the zone inventory (default: the configuration's)")
    p.add_argument("--max-gap", default="5m", help="longest time a reading holds without the next one (default 5m)")


def run(args: argparse.Namespace, now_ns: int | None = None) -> int:
    """Write the map ``args`` asks for; return the exit code."""
    from collector.positions import PositionError
    from collector.report import (
        ReportError,
        SqliteSource,
        StoreError,
        VictoriaMetricsSource,
        covmap,
        month_period,
        span_period,
    )
    from collector.report.cli import _configuration, inventory_file, open_store

    def fail(message: str, code: int = 2) -> int:
        print(f"zonewatch-collector: coverage-map: {message}", file=sys.stderr)
        return code

    now = now_ns if now_ns is not None else time.time_ns()
    try:
        max_gap = parse_duration(args.max_gap)
    except ValueError as exc:
        return fail(f"--max-gap {args.max_gap!r}: {exc}")
    source: SqliteSource | VictoriaMetricsSource | None = None
    try:
        if args.start or args.end:
            if not (args.start and args.end):
                return fail("--from and --to go together")
            period = span_period(args.start, args.end, args.tz)
        else:
            period = month_period(args.month or _this_month(now, args.tz), args.tz)
        cfg, inventory = _configuration(args)
        path = inventory_file(args)
        if inventory is None or path is None:
            return fail("the map needs the inventory (positions, outlines, the plan): give --inventory or a "
                        "configuration that names one")
        source = open_store(args, cfg, "the map")
        m = covmap.build(source, inventory, path, args.zone, args.carrier, period, now, max_gap, args.survey)
        out = covmap.write(m, Path(args.out))
    except (ConfigError, PositionError) as exc:
        return fail(str(exc))
    except StoreError as exc:
        return fail(str(exc), code=1)
    except ReportError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot write the map: {exc}", code=1)
    finally:
        if isinstance(source, SqliteSource):
            source.close()
    measured = sum(1 for p in m.points if p.level is not None)
    print(f"wrote {out}: {m.carrier_label} in {m.title}, {period.label}: {len(m.points)} points ({measured} "
          f"measured), {len(m.areas)} areas ({sum(1 for a in m.areas if a.level is None)} unmeasured)")
    return 0


def _this_month(now_ns: int, tz: str) -> str:
    from datetime import datetime

    from collector.report.period import time_zone

    return datetime.fromtimestamp(now_ns / 1e9, time_zone(tz)).strftime("%Y-%m")
