"""A small client of gpsd's JSON protocol, for the walk survey (``agent.survey``): where the probe is now.

gpsd (Debian's ``gpsd``) owns the GPS receiver and serves its reports on TCP 2947. The client connects, asks
for JSON reports with ``?WATCH={"enable":true,"json":true}`` and reads one JSON object per line; of those it
keeps the TPV (time-position-velocity) reports that carry a fix: ``mode`` 2 (2D) or 3 (3D) with ``lat`` and
``lon``. The error estimate is ``eph`` (gpsd 3.20 and later), else the larger of ``epx`` and ``epy``. A fix is
stamped with the local clock when it arrives, not with the GPS time it carries: the survey pairs it with modem
readings stamped by the same clock (a replayed NMEA log has an old GPS time; a probe's clock may be set wrong
by minutes: either would pair nothing).

Why not a library: the client libraries on PyPI are unmaintained or synchronous, and Debian's ``python3-gps``
is not installable into a virtualenv; the part of the protocol used here is these two lines.

``parse_report`` is pure (tested without gpsd); ``GpsdClient`` does the I/O, keeps the last ``keep`` fixes,
reconnects (after ``retry_s``) when gpsd goes away, and logs a problem once, not at every try.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["Fix", "parse_report", "GpsdClient", "WATCH", "MAX_LINE"]

log = logging.getLogger(__name__)

WATCH: Final = b'?WATCH={"enable":true,"json":true}\n'
MAX_LINE: Final = 256 * 1024   # a SKY report with many satellites is a few KiB; anything longer is not gpsd


@dataclass(frozen=True)
class Fix:
    """A position and when it was known (local clock, ns): lat/lon from gpsd, or lat/lon or x/y of a waypoint.

    ``mode``: 0 a waypoint the engineer confirmed, 2 a 2D GPS fix, 3 a 3D one. ``error_m``: gpsd's estimate of
    the horizontal error (None: not given). ``name``: the waypoint's name."""

    time_ns: int
    mode: int
    lat: float | None = None
    lon: float | None = None
    x: float | None = None
    y: float | None = None
    error_m: float | None = None
    name: str | None = None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def parse_report(line: bytes | str, received_ns: int) -> Fix | None:
    """Return the fix in one line of gpsd's JSON (None: not a TPV report with a 2D or 3D fix, or not JSON)."""
    try:
        report = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(report, dict) or report.get("class") != "TPV":
        return None
    mode, lat, lon = report.get("mode"), _number(report.get("lat")), _number(report.get("lon"))
    if mode not in (2, 3) or lat is None or lon is None or not -90 <= lat <= 90 or not -180 <= lon <= 180:
        return None
    error = _number(report.get("eph"))
    if error is None:
        parts = [v for v in (_number(report.get("epx")), _number(report.get("epy"))) if v is not None]
        error = max(parts) if parts else None
    return Fix(received_ns, int(mode), lat=lat, lon=lon, error_m=error if error is None or error >= 0 else None)


class GpsdClient:
    """Watch gpsd at ``host:port`` and keep its recent fixes; ``start`` once, ``close`` once."""

    def __init__(self, host: str = "127.0.0.1", port: int = 2947, keep: int = 256, retry_s: float = 2.0,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.host, self.port, self.retry_s, self.clock = host, port, retry_s, clock
        self.fixes: deque[Fix] = deque(maxlen=keep)
        self.reports = 0      # JSON lines read
        self.problem: str | None = None   # what went wrong last, until it works again
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    def start(self) -> None:
        """Start watching in the background (on the running event loop); returns at once."""
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def close(self) -> None:
        """Stop watching and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._drop()

    def latest(self) -> Fix | None:
        return self.fixes[-1] if self.fixes else None

    async def _watch(self) -> None:
        while True:
            try:
                reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=MAX_LINE)
                self._writer.write(WATCH)
                await self._writer.drain()
                while line := await reader.readline():
                    self.reports += 1
                    fix = parse_report(line, self.clock())
                    if fix is not None:
                        self.fixes.append(fix)
                        if self.problem is not None:
                            log.info("gpsd at %s:%d gives fixes again", self.host, self.port)
                            self.problem = None
                self._note("closed the connection")
            except (OSError, ValueError, asyncio.LimitOverrunError) as exc:
                self._note(f"cannot be read ({exc})")
            self._drop()
            await asyncio.sleep(self.retry_s)

    def _note(self, problem: str) -> None:
        if self.problem != problem:
            log.warning("gpsd at %s:%d %s: check that gpsd runs and sees the receiver (gpspipe -w); retrying every "
                        "%gs", self.host, self.port, problem, self.retry_s)
            self.problem = problem

    def _drop(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
