"""``zonewatch-collector alerts`` and ``zonewatch-collector ack``: the NOC's view of what paged, and taking it.

Both read and write the acknowledgement store of the configuration (``alerting.acks.path``, default ``acks.db``
beside the tracker's state), which the running collector keeps and re-reads at every evaluation: an ack made
here stops the alert's escalation at the collector's next tick. Exit codes: 0 done; 1 the alert is not there to
acknowledge (unknown, resolved, already acknowledged: the message says which); 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collector.alerting.ackconfig import default_path
from collector.alerting.acks import AckError, AckStore, Incident
from collector.alerting.notify.payload import rfc3339

if TYPE_CHECKING:
    from collector.config import CollectorConfig
    from collector.inventory import Inventory

COMMANDS = ("alerts", "ack")
OBJECT_LABELS = ("link", "device", "group", "site", "modem", "probe", "area")


def add_parser(sub: Any) -> None:
    """Add ``alerts`` and ``ack`` to the collector's subparsers."""
    p = sub.add_parser("alerts", help="list the alerts that paged and are firing, with their REF and ack state")
    p.add_argument("--carrier", metavar="PLMN", help="only this carrier's alerts (e.g. 452-04)")
    p.add_argument("--json", action="store_true", help="print JSON (as the HTTP API answers)")
    a = sub.add_parser("ack", help="acknowledge a firing alert: it stops escalating, and its notifications say who")
    a.add_argument("ref", metavar="REF", help="the alert's REF from `alerts` (or at least 4 hex digits of the "
                   "fingerprint its notification carries)")
    a.add_argument("--by", required=True, metavar="NAME", help="who takes it (shown to every receiver)")
    a.add_argument("--comment", default="", help="a note for the receivers (a ticket, what is being done)")


def store_path(cfg: CollectorConfig) -> str:
    """Return the acknowledgement store of ``cfg``, where the running collector keeps it."""
    state = cfg.alerting.state_path or str(Path(cfg.queue.path).parent / "alerts.db")
    return default_path(state, cfg.alerting.acks)


def describe(incident: Incident, tz_now_ns: int) -> list[str]:
    """Return the columns ``alerts`` prints for one incident."""
    labels = incident.labels
    obj = next((f"{k}={labels[k]}" for k in OBJECT_LABELS if k in labels), "")
    if incident.acked_ns is not None:
        state = f"acked by {incident.acked_by} ({incident.acked_via}) {_ago(tz_now_ns - incident.acked_ns)} ago"
        if incident.comment:
            state += f": {incident.comment}"
    else:
        state = "UNACKNOWLEDGED" + (f", escalated {incident.steps}x" if incident.steps else "")
    return [incident.ref, labels.get("alertname", "?"), labels.get("severity", ""), labels.get("zone", ""),
            labels.get("carrier", "noc"), obj, f"{_ago(tz_now_ns - incident.paged_ns)} ago", state]


def _ago(ns: int) -> str:
    s = max(0, ns) // 1_000_000_000
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s < 86400 else f"{s // 86400}d{s % 86400 // 3600:02d}h"


def run(args: argparse.Namespace, cfg: CollectorConfig, inventory: Inventory | None, now_ns: int | None = None) -> int:
    """Run ``alerts`` or ``ack``; return the exit code."""
    now = now_ns if now_ns is not None else time.time_ns()
    path = store_path(cfg)
    if not Path(path).exists():
        print(f"zonewatch-collector: {args.command}: no acknowledgement store at {path} yet (the collector makes it "
              "when its alerting starts)", file=sys.stderr)
        return 1 if args.command == "ack" else 0
    store = AckStore(path)
    try:
        if args.command == "ack":
            try:
                incident = store.acknowledge(args.ref, args.by, "cli", now, args.comment)
            except AckError as exc:
                print(f"zonewatch-collector: ack: {exc}", file=sys.stderr)
                return 2 if exc.reason in ("invalid", "ambiguous") else 1
            print(f"acknowledged {incident.ref} {incident.labels.get('alertname')} ({incident.carrier or 'noc'}) as "
                  f"{incident.acked_by} at {rfc3339(now)}: no further escalation; its resolve will say so")
            return 0
        incidents = [i for i in store.open_incidents() if args.carrier is None or i.carrier == args.carrier]
    finally:
        store.close()
    if args.json:
        print(json.dumps({"alerts": [i.to_json() for i in incidents]}, indent=2, sort_keys=True))
        return 0
    rows = [["REF", "ALERT", "SEVERITY", "ZONE", "CARRIER", "OBJECT", "PAGED", "STATE"]]
    rows += [describe(i, now) for i in incidents]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    if not incidents:
        print("(no firing alert has paged)")
    return 0
