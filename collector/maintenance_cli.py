"""``zonewatch-collector maintenance add|list|end``: declare, show and end maintenance windows at run time.

The windows go to ``maintenance.db`` beside the alert tracker's state (``collector.maintenance_store``); the
running collector applies a change at its next evaluation, without a restart. ``--carrier X`` acts as carrier
X: it may declare windows on its own assets only, and end only its own windows. Exit codes: 0 done, 2 refused
(bad option, unknown asset, not the carrier's), 1 the store could not be written.
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import sys
import time
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from collector.maintenance import (
    Declared,
    Window,
    co_owners,
    describe_scope,
    occurrences,
    open_span,
    owners,
    refusal,
    scope_problem,
)
from collector.maintenance_store import MaintenanceStore, StoreError, merged, store_path

if TYPE_CHECKING:
    from collector.config import CollectorConfig
    from collector.inventory import Inventory

HELP = "declare, list and end maintenance windows (alerts in them are stored muted)"
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_OPTION = {"start": "--start", "end": "--end", "duration": "--duration", "every": "--every", "until": "--until",
           "time_zone": "--tz", "ticket": "--ticket", "by": "--by", "as_carrier": "--carrier", "scope": "the scope"}


def add_parser(sub: Any) -> None:
    """Add the ``maintenance`` subcommand to the collector's subparsers."""
    p = sub.add_parser("maintenance", help=HELP, description=f"{HELP}. Windows are kept in maintenance.db "
                       "beside the alert state; the running collector picks changes up at its next evaluation.")
    cmds = p.add_subparsers(dest="maintenance_command", required=True, metavar="add|list|end")
    add = cmds.add_parser("add", help="declare a window")
    scope = add.add_mutually_exclusive_group(required=True)
    scope.add_argument("--site", help="every alert at this site (its devices, their links)")
    scope.add_argument("--device", help="this device, the devices below it and their links")
    scope.add_argument("--link", help="this link (and its group's RedundancyLost)")
    scope.add_argument("--group", help="this redundancy group")
    scope.add_argument("--area", help="the alerts of this area (with --carrier: that carrier's only)")
    scope.add_argument("--carrier-wide", metavar="CARRIER", help="every alert of this carrier (key or PLMN)")
    add.add_argument("--zone", help="the zone of --area, when two zones have an area of that name")
    add.add_argument("--start", required=True, metavar="TIME",
                     help="wall-clock start in --tz, 'YYYY-MM-DD HH:MM' (the first one, for --every)")
    add.add_argument("--end", metavar="TIME", help="wall-clock end in --tz (one-off windows)")
    add.add_argument("--duration", help="how long it lasts, e.g. 4h (needed with --every)")
    add.add_argument("--every", choices=("daily", "weekly", "monthly"), help="recurring: daily, weekly (on "
                     "--start's weekday) or monthly (on --start's day; the last day in shorter months)")
    add.add_argument("--until", metavar="TIME", help="no recurrence starts at or after this wall-clock time")
    add.add_argument("--tz", default="UTC", help="IANA time zone of the times, e.g. Asia/Ho_Chi_Minh (default UTC)")
    add.add_argument("--ticket", help="the change ticket (shown in every notice about the window)")
    add.add_argument("--by", required=True, help="who declares it (a name the NOC knows)")
    add.add_argument("--carrier", help="act as this carrier: only its own assets")
    add.add_argument("--id", help="the window's id (default mw-N)")
    add.add_argument("--description", help="what the works are")
    ls = cmds.add_parser("list", help="show the windows: open now, coming, over")
    ls.add_argument("--carrier", help="only windows this carrier declared or has assets under")
    ls.add_argument("--all", action="store_true", help="also the windows that are over")
    end = cmds.add_parser("end", help="end a window now (a recurring one stops recurring)")
    end.add_argument("id", help="the window's id (see list)")
    end.add_argument("--by", required=True, help="who ends it")
    end.add_argument("--carrier", help="act as this carrier: only its own windows")


def run(args: argparse.Namespace, cfg: CollectorConfig, inventory: Inventory | None,
        now_ns: int | None = None) -> int:
    """Run ``maintenance`` as ``args`` asks; return the exit code."""
    now = now_ns if now_ns is not None else time.time_ns()
    if inventory is None:
        return _fail("the configuration names no inventory: windows cover its assets")
    data_dir = Path(cfg.queue.path).parent
    path = store_path(cfg.alerting.state_path or data_dir / "alerts.db")
    try:
        store = MaintenanceStore(path)
    except (sqlite3.Error, OSError) as exc:
        return _fail(f"cannot open {path}: {exc}", 1)
    try:
        if args.maintenance_command == "add":
            return _add(args, inventory, store, now)
        if args.maintenance_command == "end":
            return _end(args, inventory, store, now)
        return _list(args, inventory, store, now)
    except StoreError as exc:
        return _fail(str(exc))
    except sqlite3.Error as exc:
        return _fail(f"cannot write {path}: {exc}", 1)
    finally:
        store.close()


def _fail(message: str, code: int = 2) -> int:
    print(f"zonewatch-collector: maintenance: {message}", file=sys.stderr)
    return code


def _problem(exc: ValidationError) -> str:
    """Return a pydantic error as one line naming the option it is about."""
    error = exc.errors()[0]
    where = next((_OPTION[str(p)] for p in error["loc"] if str(p) in _OPTION), None)
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _add(args: argparse.Namespace, inventory: Inventory, store: MaintenanceStore, now: int) -> int:
    scope: dict[str, str] = {}
    for key in ("site", "device", "link", "group", "area"):
        if getattr(args, key):
            scope[key] = getattr(args, key)
    if args.carrier_wide:
        scope["carrier"] = args.carrier_wide
    if args.zone:
        if "area" not in scope:
            return _fail("--zone goes with --area")
        scope["zone"] = args.zone
    if "area" in scope and args.carrier:
        scope["carrier"] = args.carrier   # a carrier's area window covers its own alerts only
    if args.id is not None and not _ID.match(args.id):
        return _fail(f"--id {args.id!r} is not an id: use lowercase letters, digits, - _ . (at most 63)")
    if args.id is not None and args.id in inventory.maintenance:
        return _fail(f"--id {args.id!r} is a window of the inventory already: choose another")
    fields: dict[str, Any] = {"scope": scope, "start": args.start, "end": args.end, "duration": args.duration,
                              "every": args.every, "until": args.until, "time_zone": args.tz, "ticket": args.ticket,
                              "by": args.by, "as_carrier": args.carrier, "description": args.description}
    try:
        window = Window.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        return _fail(_problem(exc))
    problem = scope_problem(window.scope, inventory)
    if problem is not None:
        return _fail(problem)
    problem = refusal(window, inventory)
    if problem is not None:
        return _fail(f"refused: {problem}")
    declared = Declared("new", window, "store")
    if not occurrences(declared, now, 2**62):
        return _fail(f"the window is over already ({window.when()}): check --start, --end and --tz")
    window_id = store.add(args.id, window, now)
    print(f"declared {window_id}: {describe_scope(window.scope)}, {window.when()}"
          + (f", ticket {window.ticket}" if window.ticket else "") + f", by {window.by}")
    told = co_owners(window, inventory)
    if told:
        names = ", ".join(_carrier(inventory, p) for p in told)
        print(f"told when it opens (MaintenanceActive to their receivers): {names}")
    print("the running collector applies it at its next evaluation")
    return 0


def _carrier(inventory: Inventory, plmn: str) -> str:
    carrier = inventory.carrier_of(plmn)
    return f"{carrier.name} ({plmn})" if carrier is not None else plmn


def _end(args: argparse.Namespace, inventory: Inventory, store: MaintenanceStore, now: int) -> int:
    windows = {d.id: d for d in merged(inventory.maintenance, store)}
    declared = windows.get(args.id)
    if declared is None:
        known = ", ".join(sorted(windows)) or "none"
        return _fail(f"no window {args.id!r} (known: {known})")
    if args.carrier is not None:
        me = inventory.carrier_of(args.carrier)
        if me is None:
            return _fail(f"unknown carrier {args.carrier!r} (known: {', '.join(sorted(inventory.carriers))})")
        mine = declared.window.as_carrier is not None and inventory.carrier_of(declared.window.as_carrier) is me
        if not mine:
            return _fail(f"refused: carrier {me.name} ({me.plmn}) may end only the windows it declared; "
                         f"{args.id} was declared by {declared.window.as_carrier or 'the NOC'}")
    store.end(args.id, now, args.by, inventory_window=declared.origin == "inventory")
    span = open_span(declared, now)
    state = "it was open: its alerts are notified from the next evaluation if they still fire" if span else \
        "it was not open"
    print(f"ended {args.id} ({describe_scope(declared.window.scope)}); {state}")
    return 0


def _list(args: argparse.Namespace, inventory: Inventory, store: MaintenanceStore, now: int) -> int:
    me = inventory.carrier_of(args.carrier) if args.carrier else None
    if args.carrier and me is None:
        return _fail(f"unknown carrier {args.carrier!r} (known: {', '.join(sorted(inventory.carriers))})")
    shown = 0
    for declared in merged(inventory.maintenance, store):
        window = declared.window
        if me is not None:
            declarer = inventory.carrier_of(window.as_carrier) if window.as_carrier else None
            if declarer is not me and me.plmn not in owners(window.scope, inventory)[1]:
                continue
        span = open_span(declared, now)
        coming = occurrences(declared, now, 2**62)
        tz = window.tz
        if span is not None:
            state = f"OPEN until {_at(span[1], tz)}"
        elif coming:
            state = f"next {_at(coming[0][0], tz)} to {_at(coming[0][1], tz)}"
        else:
            if not args.all:
                continue
            state = "over" if declared.ended_ns is None else \
                f"ended {_at(declared.ended_ns, tz)} by {declared.ended_by or 'someone'}"
        extra = "".join(f", {k} {v}" for k, v in (("ticket", window.ticket), ("by", window.by),
                                                  ("carrier", window.as_carrier)) if v)
        print(f"{declared.id}  [{declared.origin}]  {describe_scope(window.scope)}  {window.when()}{extra}  "
              f"-- {state}")
        shown += 1
    if not shown:
        print("no windows" + ("" if args.all else " open or coming (--all shows those that are over)"))
    return 0


def _at(ns: int, tz: tzinfo) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz).strftime("%Y-%m-%d %H:%M %Z")
