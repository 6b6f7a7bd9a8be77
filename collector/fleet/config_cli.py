"""``zonewatch-collector fleet``: each probe's desired configuration, from the operator's side.

The running collector is the one that publishes (a command cannot log in as it: the broker ties a session to
its username and would drop the running collector's). These commands read the files it writes in its fleet
folder (``config_state``) and leave it requests::

    fleet status [--probe P] [--json]     per probe: state (in sync, pending, rejected, rolled_back), drift, the
                                          desired version and hash, what it runs, its last report and error
    fleet render PROBE                    the desired configuration the inventory gives the probe now: the text
                                          the probe's error lines refer to, for review before a change
    fleet push [--by NAME] [--again P..]  check the inventory, say what would change, and ask the running
                                          collector to publish it now, in NAME's name (default: this user);
                                          ``--again`` issues a probe's configuration again under a new version
                                          (a probe tries each version once: after a roll back, to try again)
    fleet update --version V [--first N | --probes P..] [--batch M] [--soak 10m] [--deadline 30m] [--by NAME]
                                          roll a software release out in waves (``software_cli``); ``--abort``
    fleet audit [--probe P] [--last N]    the audit: who changed what, when, and what each probe answered
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collector.fleet import audit, software, software_cli
from collector.fleet.config_state import (
    AUDIT_FILE,
    REQUESTS_DIR,
    STATE_FILE,
    FleetConfigState,
    ProbeConfig,
    file_hash,
    fleet_dir,
    replace_file,
)
from collector.fleet.desired import Rendered, render_all

if TYPE_CHECKING:
    from collector.config import CollectorConfig
    from collector.inventory import Inventory

__all__ = ["add_parser", "run"]

def add_parser(sub: Any) -> None:
    """Add the ``fleet`` command and its subcommands."""
    fleet = sub.add_parser("fleet", help="each probe's desired configuration: status, render, push, audit")
    what = fleet.add_subparsers(dest="fleet_command", required=True, metavar="subcommand")
    status = what.add_parser("status", help="desired and applied configuration of each probe, and drift")
    status.add_argument("--probe", help="only this probe")
    status.add_argument("--json", action="store_true", help="print JSON instead of lines")
    render = what.add_parser("render", help="print a probe's desired configuration as the inventory gives it now")
    render.add_argument("probe", metavar="PROBE")
    push = what.add_parser("push", help="check the inventory and have the running collector publish the changes")
    push.add_argument("--by", help="who asks (default: the user running the command); written into the audit")
    push.add_argument("--again", nargs="+", default=[], metavar="PROBE",
                      help="issue these probes' configuration again under a new version (to retry one rolled back)")
    software_cli.add_arguments(what.add_parser("update", help="roll a software release out to the probes, in waves"))
    log = what.add_parser("audit", help="print the audit of configuration changes")
    log.add_argument("--probe", help="only this probe")
    log.add_argument("--last", type=int, default=0, help="only the last N entries")


def run(args: argparse.Namespace, cfg: CollectorConfig, inventory: Inventory | None,
        inventory_path: Path | None) -> int:
    """Run one ``fleet`` subcommand; return the exit code."""
    folder = fleet_dir(cfg.queue.path)
    if args.fleet_command == "audit":
        return _audit(folder, args.probe, args.last)
    try:
        state = FleetConfigState.load(folder / STATE_FILE)
    except ValueError as exc:
        return _fail(str(exc), 1)
    if inventory is None or inventory_path is None:
        return _fail(f"{args.config} names no inventory: no probe is managed from the centre")
    if args.fleet_command == "update":
        return software_cli.run(args, folder, [n for n, p in inventory.probes.items() if p.config is not None])
    try:
        releases = software.load(folder)
    except ValueError as exc:
        return _fail(str(exc), 1)
    rendered = releases.apply(render_all(inventory)[0])   # with the release each probe should run (fleet update)
    if args.fleet_command == "status":
        return _status(state, rendered, args.probe, args.json, releases)
    if args.fleet_command == "render":
        if args.probe not in inventory.probes:
            return _fail(f"probe {args.probe!r} is not in the inventory (known: {', '.join(sorted(inventory.probes))})")
        if args.probe not in rendered:
            return _fail(f"probe {args.probe!r} is not managed from the centre: its inventory entry has no config")
        sys.stdout.write(rendered[args.probe].yaml)
        return 0
    return _push(folder, state, rendered, inventory_path, args.by or getpass.getuser(), args.again)


def _fail(message: str, code: int = 2) -> int:
    print(f"zonewatch-collector: fleet: {message}", file=sys.stderr)
    return code


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(hash_: str) -> str:
    return hash_[:15] if hash_.startswith("sha256:") else hash_


def _line(name: str, entry: ProbeConfig, now: Rendered | None) -> str:
    status = "new" if entry.desired is None and now is not None else entry.status
    parts = [f"{name} ({entry.zone}): {status}" + (", drift" if entry.drift else "")]
    if entry.desired is not None:
        parts.append(f"desired v{entry.desired.version} {_short(entry.desired.hash)} (published "
                     f"{_when(entry.desired.issued_ns)})")
    report = entry.report
    if report is not None:
        runs = "its local file" if report.running_version == 0 else \
            f"v{report.running_version} {_short(report.running)}"
        parts.append(f"runs {runs}")
        said = f"last report: {report.result.replace('_', ' ')} v{report.version} {_short(report.hash)} at " \
               f"{_when(report.at_ns)}"
        if report.result == "applied" and report.seconds:
            said += f" (switched in {report.seconds:.3f} s)"
        parts.append(said + (f": {report.error}" if report.error else ""))
    elif entry.desired is not None:
        parts.append("no report yet")
    if now is not None and (entry.desired is None or now.hash != entry.desired.hash):
        parts.append(f"the inventory now gives {_short(now.hash)}: not published yet (fleet push)")
    elif now is None and entry.desired is not None:
        parts.append("the inventory no longer gives it one: it is cleared at the next publication")
    return "; ".join(parts)


def _status(state: FleetConfigState, rendered: dict[str, Rendered], only: str | None, as_json: bool,
            releases: software.SoftwareState) -> int:
    names = sorted(set(state.probes) | set(rendered))
    if only is not None:
        names = [n for n in names if n == only]
        if not names:
            return _fail(f"probe {only!r} has no configuration from the centre, desired or reported")
    if not as_json:
        for line in software_cli.status_lines(releases):
            print(line)
    rows: list[dict[str, Any]] = []
    for name in names:
        now = rendered.get(name)
        entry = state.probes.get(name) or ProbeConfig(now.zone if now is not None else "")
        if as_json:
            row = {"probe": name, "zone": entry.zone, "status": entry.status, "drift": entry.drift,
                   "desired": _fields(entry.desired), "report": _fields(entry.report),
                   "inventory_hash": now.hash if now is not None else None,
                   "software": software_cli.probe_json(releases, name)}
            rows.append(row)
        else:
            release = software_cli.probe_part(releases, name)
            print(_line(name, entry, now) + (f"; {release}" if release else ""))
    if as_json:
        print(json.dumps(rows, indent=1))
    elif not names:
        print("no probe is managed from the centre (give one a config: in the inventory's probes)")
    return 0


def _fields(obj: Any) -> dict[str, Any] | None:
    return None if obj is None else {k: getattr(obj, k) for k in obj.__slots__}


def _push(folder: Path, state: FleetConfigState, rendered: dict[str, Rendered], inventory_path: Path, by: str,
          again: list[str]) -> int:
    unknown = [p for p in again if p not in rendered]
    if unknown:
        return _fail(f"--again {', '.join(unknown)}: not managed from the centre (no config in the inventory)")
    for name in sorted(set(rendered) | {n for n, e in state.probes.items() if e.desired is not None}):
        entry, now = state.probes.get(name), rendered.get(name)
        desired = entry.desired if entry is not None else None
        issued = entry.issued if entry is not None else 0
        if now is None:
            print(f"{name}: cleared (no longer managed from the centre)")
        elif desired is not None and desired.hash == now.hash and name not in again:
            print(f"{name}: unchanged (v{desired.version} {_short(desired.hash)})")
        else:
            was = f"v{desired.version} {_short(desired.hash)}" if desired is not None else "none"
            print(f"{name}: {was} -> v{issued + 1} {_short(now.hash)}")
    with open(inventory_path, "rb") as file:
        digest = file_hash(file.read())
    request = {"by": by, "again": again, "inventory": digest, "at_ns": time.time_ns()}
    path = folder / REQUESTS_DIR / f"{time.time_ns()}-{os.getpid()}.json"
    replace_file(path, json.dumps(request).encode("utf-8"), 0o640)
    print(f"asked the running collector to publish for {by} (inventory {_short(digest)}); `zonewatch-collector "
          "fleet status` shows what the probes answer")
    return 0


def _audit(folder: Path, probe: str | None, last: int) -> int:
    entries = list(audit.read(folder / AUDIT_FILE, probe))
    for entry in entries[-last:] if last > 0 else entries:
        extra = "".join(f" {k}={entry[k]}" for k in ("software", "wave", "probes", "running", "inventory")
                        if k in entry)
        error = f": {entry['error']}" if "error" in entry else ""
        version = f" v{entry['version']}" if "version" in entry else ""
        print(f"{entry.get('at')} {entry.get('by')}: {entry.get('action')} {entry.get('probe', '-')}{version} "
              f"{_short(str(entry.get('hash', '')))}{extra}{error}")
    return 0
