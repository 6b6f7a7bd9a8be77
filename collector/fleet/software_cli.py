"""``zonewatch-collector fleet update``: a software release rolled out to the probes in waves, from the operator's side.

::

    fleet update --version V [--first N | --probes P [P ...]] [--batch M] [--soak 10m] [--deadline 30m] [--by NAME]
    fleet update --abort [--by NAME]

As with ``fleet push``, the running collector is the one that publishes: the command checks what it can (the
version, the probes, that no rollout is under way), prints the waves, and leaves a request in the fleet folder
(``update-requests/``) that the collector takes within a second (``collector.fleet.software``). ``fleet status``
then shows the rollout and each probe's desired and running release (``status_lines``, ``probe_part``), and
``fleet audit`` every step.
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
from typing import Any

from collector.fleet import waves
from collector.fleet.config_state import replace_file
from collector.fleet.software import REQUESTS_DIR, SoftwareState, load
from zonewatch import wire
from zonewatch.strict import format_duration, parse_duration

__all__ = ["add_arguments", "run", "status_lines", "probe_part", "probe_json"]


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _version(text: str) -> str:
    if not wire.valid_version(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a release version (e.g. 0.2.0 or 0.2.0+zone1)")
    return text


def add_arguments(update: argparse.ArgumentParser) -> None:
    """Add the options of ``fleet update``."""
    what = update.add_mutually_exclusive_group(required=True)
    what.add_argument("--version", type=_version, help="the release to roll out (as the zone's package index has it)")
    what.add_argument("--abort", action="store_true", help="end the rollout: no further wave; the probes it failed at "
                                                          "are asked for their release before again")
    first = update.add_mutually_exclusive_group()
    first.add_argument("--first", type=int, default=1, metavar="N", help="the first wave: the first N probes by name "
                                                                        "(default 1)")
    first.add_argument("--probes", nargs="+", default=[], metavar="PROBE", help="the first wave: these probes")
    update.add_argument("--batch", type=int, default=0, metavar="M",
                        help="after the first wave, M probes a wave (default 0: all the rest at once)")
    update.add_argument("--soak", type=_duration, default=600.0, metavar="DURATION",
                        help="a wave is healthy once each of its probes ran the release, online, its configuration "
                             "in sync, this long (default 10m)")
    update.add_argument("--deadline", type=_duration, default=1800.0, metavar="DURATION",
                        help="a probe not healthy this long after its wave began fails the rollout (default 30m)")
    update.add_argument("--by", help="who asks (default: the user running the command); written into the audit")


def run(args: argparse.Namespace, folder: Path, managed: list[str]) -> int:
    """Run ``fleet update``; return the exit code."""
    try:
        state = load(folder)
    except ValueError as exc:
        return _fail(str(exc), 1)
    by = args.by or getpass.getuser()
    old = state.rollout
    if args.abort:
        if old is None or old.state == "aborted":
            return _fail("no rollout to abort")
        _request(folder, {"action": "abort", "by": by})
        print(f"asked the running collector to abort the rollout of {old.version} ({old.state}) for {by}")
        return 0
    if old is not None and old.state == "running":
        return _fail(f"the rollout of {old.version} is under way (wave {old.wave + 1} of {len(old.waves)}): wait for "
                     "it, or `fleet update --abort` it first")
    pins = waves.finished_pins(old, state.pins) if old is not None else state.pins
    try:
        planned = waves.plan(args.version, by, time.time_ns(), managed, pins, args.first, args.probes, args.batch,
                             args.soak, args.deadline)
    except waves.PlanError as exc:
        return _fail(str(exc))
    _request(folder, {"action": "start", "by": by, "version": args.version, "first": args.first,
                      "probes": args.probes, "batch": args.batch, "soak_s": args.soak, "deadline_s": args.deadline})
    for i, wave in enumerate(planned.waves):
        when = "now" if i == 0 else f"once wave {i} is healthy for {format_duration(args.soak)}"
        print(f"wave {i + 1}: {', '.join(wave)} ({when})")
    print(f"asked the running collector to roll out {args.version} for {by}; `zonewatch-collector fleet status` shows "
          "how far it got")
    return 0


def _fail(message: str, code: int = 2) -> int:
    print(f"zonewatch-collector: fleet update: {message}", file=sys.stderr)
    return code


def _request(folder: Path, doc: dict[str, Any]) -> None:
    path = folder / REQUESTS_DIR / f"{time.time_ns()}-{os.getpid()}.json"
    replace_file(path, json.dumps(doc).encode("utf-8"), 0o640)


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def status_lines(state: SoftwareState) -> list[str]:
    """Return the lines ``fleet status`` opens with: the last rollout, how far it got."""
    r = state.rollout
    if r is None:
        return []
    head = f"rollout of {r.version} by {r.by}, begun {_when(r.started_ns)}: "
    if r.state == "running":
        head += (f"wave {r.wave + 1} of {len(r.waves)} ({', '.join(r.waves[r.wave])}) since {_when(r.wave_started_ns)}"
                 f"; each must run it healthy for {format_duration(r.soak_s)}, within "
                 f"{format_duration(r.deadline_s)} of the wave")
    elif r.state == "done":
        head += f"done at {_when(r.ended_ns)}"
    elif r.state == "failed":
        head += (f"FAILED at wave {r.wave + 1} of {len(r.waves)}, {_when(r.ended_ns)}; no further wave begins "
                 "(fleet update --abort, or --version again once fixed)")
    else:
        head += f"aborted at wave {r.wave + 1} of {len(r.waves)}"
    lines = [head]
    lines += [f"  {probe}: {why}" for probe, why in sorted(r.failed.items())]
    return lines


def probe_part(state: SoftwareState, probe: str) -> str:
    """Return what ``fleet status`` says of one probe's release ("" nothing known)."""
    desired, seen = state.desired().get(probe), state.seen.get(probe)
    if desired is None and (seen is None or not seen.running):
        return ""
    runs = f"runs {seen.running} (since {_when(seen.running_since_ns)})" if seen is not None and seen.running \
        else "runs a release not reported yet"
    part = f"release: desired {desired or 'none said'}, {runs}"
    if seen is not None and seen.update_result:
        part += f", last update report: {seen.update_wanted} {seen.update_result.replace('_', ' ')}"
        part += f": {seen.update_error}" if seen.update_error else ""
    return part


def probe_json(state: SoftwareState, probe: str) -> dict[str, Any]:
    """Return what ``fleet status --json`` says of one probe's release."""
    seen = state.seen.get(probe)
    return {"desired": state.desired().get(probe), "running": seen.running if seen is not None else None,
            "running_since_ns": seen.running_since_ns if seen is not None else None,
            "status": seen.status if seen is not None else None,
            "update": None if seen is None or not seen.update_result else
            {"result": seen.update_result, "wanted": seen.update_wanted, "error": seen.update_error,
             "at_ns": seen.update_at_ns}}
