"""``zonewatch-collector probes list|approve|reject|retire``: the operator's side of enrolment, run from a
shell against the registry (the flow and the choices: ``collector.fleet.enrol``)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shlex
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collector import mosquitto
from collector.fleet.registry import Entry, Registry, RegistryError
from collector.mosquitto.bundle import write_access
from collector.mosquitto.passwd import hash_password, new_password
from zonewatch import wire

if TYPE_CHECKING:
    from collector.config import CollectorConfig
    from collector.inventory import Inventory

from collector.fleet.enrol import access, registry_path, sealed_reply

__all__ = ["add_parser", "run_command", "approve", "retire", "reload_broker", "describe"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- the commands


def add_parser(sub: Any) -> None:
    """Add ``probes`` and its commands to the collector's command line."""
    probes = sub.add_parser("probes", help="enrolment: list, approve, reject or retire probes")
    cmd = probes.add_subparsers(dest="probes_command", required=True, metavar="probes-command")
    ls = cmd.add_parser("list", help="every request and what became of it, with key fingerprints")
    ls.add_argument("--json", action="store_true", help="print JSON instead of text")
    ls.add_argument("--state", choices=["pending", "approved", "rejected", "retired"], help="only these")
    ok = cmd.add_parser("approve", help="admit a pending request: it gets its own MQTT credentials")
    ok.add_argument("request", help="the request id (at least 6 of its hex digits) or its fingerprint")
    ok.add_argument("--id", dest="probe_id", help="the probe's id (default: the one it asked for)")
    ok.add_argument("--area", help="the zone area it stands in")
    no = cmd.add_parser("reject", help="refuse a pending request (the probe is told)")
    no.add_argument("request", help="the request id (at least 6 of its hex digits) or its fingerprint")
    no.add_argument("--reason", help="why, for the probe's log")
    retire = cmd.add_parser("retire", help="take an enrolled probe's credentials away; its data is refused")
    retire.add_argument("probe", help="the probe id")


def run_command(args: argparse.Namespace, cfg: CollectorConfig, inventory: Inventory | None,
                now_ns: int | None = None) -> int:
    """Run ``zonewatch-collector probes ...``; return the exit code (2: bad input, 1: the broker did not reload)."""
    if cfg.enrol is None or inventory is None:
        print(f"zonewatch-collector: {args.config} has no enrol section (and an inventory): enrolment is off",
              file=sys.stderr)
        return 2
    now_ns = time.time_ns() if now_ns is None else now_ns
    try:
        registry = Registry(registry_path(cfg), create=False)
    except (RegistryError, OSError, sqlite3.Error) as exc:
        return _fail(f"{registry_path(cfg)}: {exc}" if not isinstance(exc, RegistryError) else str(exc))
    try:
        command = args.probes_command
        if command == "list":
            return _list(registry, inventory, args.json, args.state, now_ns)
        if command == "reject":
            entry = registry.find(args.request)
            answer = wire.EnrolAnswer(entry.request, "rejected", reason=args.reason)
            entry = registry.reject(args.request, args.reason, sealed_reply(entry.key, answer), now_ns)
            print(f"rejected request {entry.request[:12]} (zone {entry.zone}); the probe is told at the collector's "
                  "next look at the registry")
            return 0
        if command == "approve":
            entry = approve(cfg, inventory, registry, args.request, args.probe_id, args.area, now_ns)
            where = "" if entry.probe in inventory.probes else (
                "; the inventory does not list it yet: it may publish about itself, and watches nothing until "
                "the inventory lists it")
            print(f"approved request {entry.request[:12]} as probe {entry.zone}/{entry.probe}{where}")
        else:
            entry = retire(cfg, inventory, registry, args.probe, now_ns)
            listed = (f"; the inventory still lists {entry.probe}: take it out (until then it pages ProbeDown)"
                      if entry.probe in inventory.probes else "")
            print(f"retired probe {entry.zone}/{entry.probe}: its credentials are gone and whatever it sends is "
                  f"refused{listed}")
    except (RegistryError, ValueError, OSError, sqlite3.Error) as exc:
        return _fail(str(exc))
    finally:
        registry.close()
    try:
        reload_broker(cfg.enrol.reload_command)
    except RuntimeError as exc:
        return _fail(f"{exc}; the registry and the broker's files are updated: run "
                     f"`{shlex.join(cfg.enrol.reload_command)}` by hand", code=1)
    print(f"broker reloaded ({shlex.join(cfg.enrol.reload_command)})")
    return 0


def _fail(message: str, code: int = 2) -> int:
    print(f"zonewatch-collector: probes: {message}", file=sys.stderr)
    return code


def _write_access(cfg: CollectorConfig, inventory: Inventory) -> Callable[[Registry], object]:
    """Return what rewrites the broker's password file and ACL from the registry (inside its transaction)."""
    assert cfg.enrol is not None
    enrol = cfg.enrol
    collector = cfg.mqtt.username if cfg.mqtt is not None and cfg.mqtt.username else mosquitto.DEFAULT_COLLECTOR

    def write(registry: Registry) -> object:
        return write_access(Path(enrol.broker_dir), inventory, access(enrol.zones, registry), collector,
                                      cfg.alerting.noc)

    return write


def approve(cfg: CollectorConfig, inventory: Inventory, registry: Registry, selector: str, probe_id: str | None,
            area: str | None, now_ns: int) -> Entry:
    """Approve a pending request (see the module docstring); return the entry as approved."""
    entry = registry.find(selector)
    probe = probe_id or entry.asked_id
    if probe is None:
        raise ValueError(f"request {entry.request[:12]} asks for no id: give one with --id")
    if not wire.valid_name(probe):
        raise ValueError(f"--id {probe!r} is not a probe id: lowercase letters, digits, - _ . (at most 63)")
    listed = inventory.probes.get(probe)
    if listed is not None and listed.zone != entry.zone:
        raise ValueError(f"the inventory puts probe {probe!r} in zone {listed.zone!r}, the request is for zone "
                         f"{entry.zone!r} (the bootstrap credential's): choose another --id")
    areas = inventory.zones[entry.zone].areas if entry.zone in inventory.zones else []
    if area is not None and area not in areas:
        raise ValueError(f"--area {area!r} is not an area of zone {entry.zone!r} (areas: {', '.join(areas) or 'none'})")
    password = new_password()
    answer = wire.EnrolAnswer(entry.request, "approved", entry.zone, probe, probe, password)
    reply = sealed_reply(entry.key, answer)
    return registry.approve(entry.request, probe, area, hash_password(password), reply, now_ns,
                            then=_write_access(cfg, inventory))


def retire(cfg: CollectorConfig, inventory: Inventory, registry: Registry, probe: str, now_ns: int) -> Entry:
    """Retire an enrolled probe: out of the broker's files, its data refused by the running collector."""
    return registry.retire(probe, now_ns, then=_write_access(cfg, inventory))


def reload_broker(command: Sequence[str], timeout: float = 30.0) -> None:
    """Run the broker's reload command; raise RuntimeError saying how it failed."""
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"the broker did not reload: {shlex.join(command)}: {exc}") from None
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"the broker did not reload: {shlex.join(command)} exited with {done.returncode}: "
                           f"{said[0][:200]}")


def _when(ns: int | None) -> str:
    if not ns:
        return "-"
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _ago(ns: int, now_ns: int) -> str:
    s = max(0, (now_ns - ns) // 10**9)
    return f"{s}s ago" if s < 120 else f"{s // 60}m ago" if s < 7200 else f"{s // 3600}h ago"


def describe(entry: Entry, inventory: Inventory, now_ns: int) -> dict[str, Any]:
    """Return what ``probes list --json`` says of one entry."""
    listed = entry.probe is not None and entry.probe in inventory.probes
    reply: str | None = None
    if entry.state == "approved":
        on_broker = entry.reply_published_ns is not None and entry.reply_cleared_ns is None
        reply = "picked up" if entry.delivered_ns else "published" if on_broker else "waiting"
    return {
        "request": entry.request, "fingerprint": entry.fingerprint, "zone": entry.zone, "state": entry.state,
        "asked_id": entry.asked_id, "probe": entry.probe, "area": entry.area, "reason": entry.reason,
        "machine_id": entry.machine_id,
        "modems": [{"name": m.name, "imei": m.imei, "iccid": m.iccid} for m in entry.modems],
        "requests": entry.requests, "first_seen": _when(entry.first_seen_ns), "last_seen": _when(entry.last_seen_ns),
        "probe_clock": _when(entry.probe_clock_ns), "decided": _when(entry.decided_ns),
        "logged_in": _when(entry.delivered_ns) if entry.delivered_ns else None, "reply": reply,
        "in_inventory": listed if entry.probe is not None else None,
    }


def _list(registry: Registry, inventory: Inventory, as_json: bool, state: Any, now_ns: int) -> int:
    entries = registry.entries(state)
    refused = registry.refusals()
    if as_json:
        print(json.dumps({"requests": [describe(e, inventory, now_ns) for e in entries],
                          "refused": {k: {"count": c, "last": _when(at), "what": what}
                                      for k, (c, at, what) in refused.items()}}, indent=1))
        return 0
    if not entries:
        print("no enrolment requests" + (f" {state}" if state else ""))
    for e in entries:
        head = f"{e.request[:12]}  {e.state:<8}  zone {e.zone}"
        if e.state == "pending":
            head += f"  asks for id {e.asked_id or '-'}"
        elif e.state == "rejected":
            head += f"  asked for id {e.asked_id or '-'}"
        elif e.probe is not None:
            head += f"  probe {e.probe}" + (f" (area {e.area})" if e.area else "")
        print(head)
        print(f"    fingerprint  {e.fingerprint}")
        hardware = [f"machine {e.machine_id or 'unknown'}"] + [
            f"modem {m.name} IMEI {m.imei or '?'} ICCID {m.iccid or '?'}" for m in e.modems]
        print(f"    hardware     {'; '.join(hardware)}")
        print(f"    seen         {e.requests} request(s), first {_when(e.first_seen_ns)}, last "
              f"{_ago(e.last_seen_ns, now_ns)} (probe's clock {_when(e.probe_clock_ns)})")
        if e.state == "approved":
            said = describe(e, inventory, now_ns)
            inv = ("in the inventory" if said["in_inventory"] else
                   "not in the inventory: it may publish about itself, and watches nothing until the inventory "
                   "lists it")
            login = f"logged in {_when(e.delivered_ns)}" if e.delivered_ns else f"reply {said['reply']}, not logged in"
            print(f"    approved     {_when(e.decided_ns)}; {login}; {inv}")
        elif e.state in ("rejected", "retired"):
            print(f"    {e.state:<12} {_when(e.decided_ns)}" + (f": {e.reason}" if e.reason else ""))
    if refused:
        print("refused requests: " + ", ".join(f"{c} {k} (last {_when(at)}: {what})"
                                               for k, (c, at, what) in refused.items()))
    return 0
