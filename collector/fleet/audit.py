"""The audit of probe configurations: every change, appended to a JSON-lines file that is never rewritten.

One line per change, written (and synced) by the running collector as the change happens::

    {"at": "2025-11-28T07:02:10.123Z", "at_ns": ..., "by": "alice", "action": "publish", "zone": "dinh-vu",
     "probe": "p1", "version": 3, "hash": "sha256:...", "inventory": "sha256:..."}

``action``: ``publish`` (a desired configuration issued), ``clear`` (the probe is no longer managed from the
centre), or the probe's own report, ``applied``, ``rejected`` or ``rolled_back`` (with ``error``, and
``running``: what runs after it). ``by``: who asked (``fleet push --by``, else the user who ran it), ``inventory
change`` when the running collector noticed an edited inventory by itself (``inventory`` is the hash of the
file it read), or ``probe <id>`` for a report. ``zonewatch-collector fleet audit`` prints it; it is plain
JSON lines for any other tool too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["append", "read", "INVENTORY_CHANGE"]

INVENTORY_CHANGE = "inventory change"


def append(path: Path, at_ns: int, by: str, action: str, **details: Any) -> None:
    """Append one entry (synced before returning), creating the file (mode 0640) if needed."""
    when = datetime.fromtimestamp(at_ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    line = json.dumps({"at": when, "at_ns": at_ns, "by": by, "action": action, **details},
                      separators=(",", ":"), ensure_ascii=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: Path, probe: str | None = None) -> Iterator[dict[str, Any]]:
    """Yield the entries, oldest first (only those about ``probe`` if given); a damaged line is skipped."""
    try:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and (probe is None or entry.get("probe") == probe):
                    yield entry
    except FileNotFoundError:
        return
