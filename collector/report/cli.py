"""``zonewatch-collector report``: the monthly report of a zone, from the collector's store.

The store and the inventory come from the collector's configuration (``-c``); ``--sqlite`` or
``--victoriametrics`` read another store, ``--inventory`` another inventory. Exit codes: 0 written,
2 bad input (zone, month, options, configuration), 1 the store could not be read, or matplotlib (the plots,
the ``report`` extra) is not installed: ``run`` raises ``zonewatch.extras.MissingExtra`` before it reads anything.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zonewatch.extras import require
from zonewatch.strict import ConfigError, load_file, parse_duration

if TYPE_CHECKING:
    from collector.report import SqliteSource, VictoriaMetricsSource

HELP = "write a zone's monthly report (HTML with plots, and CSV)"


def add_parser(sub: Any) -> None:
    """Add the ``report`` subcommand to the collector's subparsers."""
    p = sub.add_parser("report", help=HELP, description=f"{HELP}. Reads the collector's store (or "
                       "--sqlite / --victoriametrics) and its inventory; writes report.html, coverage.csv, "
                       "availability.csv, redundancy.csv, outages.csv, kpi.csv (QCVN 81:2019 indicators) and, when "
                       "the zone has positions, coverage-map-<PLMN>.html per carrier into --out.")
    p.add_argument("--zone", required=True, help="the zone (its key in the inventory)")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--month", help="calendar month YYYY-MM, in --tz")
    when.add_argument("--from", dest="start", metavar="TIME", help="start of a span (ISO 8601; needs --to)")
    p.add_argument("--to", dest="end", metavar="TIME", help="end of the span (excluded)")
    p.add_argument("--tz", default="UTC", help="time zone of the month and of the times shown (default UTC; "
                   "e.g. Asia/Ho_Chi_Minh)")
    p.add_argument("--out", help="folder to write into (default ./zonewatch-report-<zone>-<month>)")
    store = p.add_mutually_exclusive_group()
    store.add_argument("--sqlite", metavar="PATH", help="read this SQLite store instead of the configured one")
    store.add_argument("--victoriametrics", metavar="URL", help="read this VictoriaMetrics instead")
    p.add_argument("--inventory", metavar="FILE", help="the zone inventory (default: the configuration's)")
    p.add_argument("--acks", metavar="PATH", help="the collector's acknowledgement store, for time to acknowledge "
                   "and to resolve per carrier (default: the configuration's, when there is one)")
    p.add_argument("--maintenance", metavar="PATH", help="the run-time maintenance windows (maintenance.db; "
                   "default: the configuration's, when there is one); the inventory's are read too")
    p.add_argument("--carrier", metavar="CARRIER", help="write this carrier's own report (its key or PLMN): its "
                   "assets, coverage and figures only; other carriers pooled only if the configuration's "
                   "carrier_access.competitors is aggregate")
    p.add_argument("--max-gap", default="5m", help="longest time a reading holds without the next one "
                   "(default 5m); longer gaps are counted as no data")


def open_store(args: argparse.Namespace, cfg: Any, what: str) -> SqliteSource | VictoriaMetricsSource:
    """Return the store ``--sqlite`` or ``--victoriametrics`` names, else the configuration's; raise ReportError
    when that is InfluxDB or missing (``what`` reads SQLite or VictoriaMetrics only)."""
    from collector.report import ReportError, SqliteSource, VictoriaMetricsSource

    if args.sqlite:
        return SqliteSource(args.sqlite)
    if args.victoriametrics:
        return VictoriaMetricsSource(args.victoriametrics)
    storage = cfg.storage if cfg is not None else None
    if storage is None or storage.type == "influxdb":
        raise ReportError(f"{what} reads SQLite or VictoriaMetrics; the configuration's storage is "
                          f"{getattr(storage, 'type', 'missing')}: give --sqlite PATH or --victoriametrics URL")
    if storage.type == "sqlite":
        return SqliteSource(storage.path)
    return VictoriaMetricsSource(storage.url, timeout=max(60.0, storage.timeout))


def run(args: argparse.Namespace, now_ns: int | None = None) -> int:
    """Write the report ``args`` asks for; return the exit code. Raise MissingExtra without matplotlib."""
    require("matplotlib", "zonewatch-collector report")   # first: not after a long read of the store
    from collector.report import (
        ReportError,
        SqliteSource,
        StoreError,
        facts_from,
        month_period,
        span_period,
        write_report,
    )

    def fail(message: str, code: int = 2) -> int:
        print(f"zonewatch-collector: report: {message}", file=sys.stderr)
        return code

    try:
        max_gap = parse_duration(args.max_gap)
    except ValueError as exc:
        return fail(f"--max-gap {args.max_gap!r}: {exc}")
    source: SqliteSource | VictoriaMetricsSource | None = None
    try:
        if args.month:
            if args.end:
                return fail("--to goes with --from, not with --month")
            period = month_period(args.month, args.tz)
        else:
            if not args.end:
                return fail("--from needs --to")
            period = span_period(args.start, args.end, args.tz)
        cfg, inventory = _configuration(args)
        source = open_store(args, cfg, "the report")
        facts = facts_from(inventory, args.zone)
        label = args.month or period.label.replace(" ", "_").replace(":", "")
        out = Path(args.out or f"zonewatch-report-{args.zone}-{label}")
        page = write_report(source, facts, period, out, now_ns if now_ns is not None else time.time_ns(), max_gap,
                            acks=_acks(args, cfg), windows=_windows(args, cfg, inventory), inventory=inventory,
                            carrier=_carrier(args, cfg, inventory),
                            qos=cfg.alerting.settings.qos if cfg is not None else None,
                            inventory_file=inventory_file(args))
    except ConfigError as exc:
        return fail(str(exc))
    except StoreError as exc:
        return fail(str(exc), code=1)
    except ReportError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot write the report: {exc}", code=1)
    finally:
        if isinstance(source, SqliteSource):
            source.close()
    maps = sorted(p.name for p in page.parent.glob("coverage-map-*.html"))
    print(f"wrote {page} (and coverage.csv, availability.csv, redundancy.csv, outages.csv, response.csv, "
          f"maintenance.csv, kpi.csv{''.join(', ' + m for m in maps)} beside it)")
    return 0


def _windows(args: argparse.Namespace, cfg: Any, inventory: Any) -> list[Any]:
    """Return the maintenance windows: the inventory's, and those of --maintenance or the configuration's
    maintenance.db (when it exists)."""
    from collector.maintenance_store import MaintenanceStore, merged, store_path
    from collector.report import ReportError

    if inventory is None:
        return []
    path = Path(args.maintenance) if args.maintenance else None
    if path is None and cfg is not None:
        path = store_path(cfg.alerting.state_path or Path(cfg.queue.path).parent / "alerts.db")
    if path is None or not path.is_file():
        if args.maintenance:
            raise ReportError(f"--maintenance {args.maintenance}: no such file")
        return merged(inventory.maintenance, None)
    store = MaintenanceStore(path)
    try:
        return merged(inventory.maintenance, store)
    finally:
        store.close()


def _carrier(args: argparse.Namespace, cfg: Any, inventory: Any) -> Any:
    """Return what ``write_report`` needs for ``--carrier`` (None: the authority's report)."""
    if not args.carrier:
        return None
    from collector.report.carrier import resolve

    plmn, others = resolve(inventory, args.carrier)
    return plmn, others, cfg.carrier_access.competitors if cfg is not None else "none"


def _acks(args: argparse.Namespace, cfg: Any) -> str | None:
    """Return the acknowledgement store to read: --acks, else the configuration's (None: no response table)."""
    if args.acks:
        return str(args.acks)
    if cfg is None:
        return None
    from collector.alerting.ack_cli import store_path

    return store_path(cfg)


def inventory_file(args: argparse.Namespace) -> Path | None:
    """Return the inventory file's path: --inventory, else the one the configuration names (None: neither)."""
    if args.inventory:
        return Path(args.inventory)
    if not Path(args.config).is_file():
        return None
    from collector.config import CollectorConfig

    cfg = load_file(CollectorConfig, args.config)
    return Path(args.config).parent / cfg.inventory if cfg.inventory else None


def _configuration(args: argparse.Namespace) -> tuple[Any, Any]:
    """Return the collector configuration (None when a store is given and no configuration file exists) and
    the inventory (from --inventory, else the configuration's)."""
    from collector.config import CollectorConfig
    from collector.inventory import load_inventory
    from collector.secrets import NAMES_ONLY

    store_given = bool(args.sqlite or args.victoriametrics)
    cfg = None
    if not store_given or (not args.inventory and Path(args.config).is_file()):
        cfg = load_file(CollectorConfig, args.config)
    secrets = cfg.secrets if cfg is not None else NAMES_ONLY  # the report sends nothing: names are enough
    if args.inventory:
        return cfg, load_inventory(args.inventory, secrets)
    if cfg is not None and cfg.inventory:
        return cfg, load_inventory(Path(args.config).parent / cfg.inventory, secrets)
    return cfg, None
