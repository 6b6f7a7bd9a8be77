"""What the probe says of its own storage in its ``probe`` self-report: how full the spool is, how much disk is left.

A probe runs for years from an SD card: a spool that fills (a long uplink outage) and a disk that fills (logs,
a failing card) lose data before anything else shows it. The collector pages SpoolFilling and ProbeDiskLow from
these fields (``collector.alerting.health``)::

    spool_fill_pct   the spool's payload bytes against ``spool.max_bytes`` (over 100 only while batches in flight,
                     which the bounds never drop, hold it over its bound)
    disk_free_pct    space the agent may still use on the spool's file system, against its size
    disk_free_mb     the same in MiB

The disk fields are left out when the file system cannot be read (the report says what it knows).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from zonewatch.wire import FieldValue

__all__ = ["storage_fields"]

log = logging.getLogger(__name__)


def storage_fields(spool_path: Path, spool_bytes: int, max_bytes: int) -> dict[str, FieldValue]:
    """Return the self-report's storage fields for a spool at ``spool_path`` holding ``spool_bytes``."""
    fields: dict[str, FieldValue] = {"spool_fill_pct": round(100.0 * spool_bytes / max_bytes, 1) if max_bytes else 0.0}
    try:
        fs = os.statvfs(spool_path.parent)
    except OSError as exc:
        log.debug("cannot read the file system of %s: %s", spool_path, exc)
        return fields
    if fs.f_blocks > 0:
        # f_bavail: what an unprivileged user (the agent's) may still write; root's reserve is not ours
        fields["disk_free_pct"] = round(100.0 * fs.f_bavail / fs.f_blocks, 1)
        fields["disk_free_mb"] = round(fs.f_bavail * fs.f_frsize / 2**20, 1)
    return fields
