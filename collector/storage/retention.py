"""Retention of the embedded SQLite store: points older than ``storage.retention`` are pruned, a little at a time.

A pass walks every (series, field) of the store in key order and deletes its points older than the cut-off
(``now - retention``, ``now`` read once per pass). Each step is one short transaction (``SqliteWriter.prune``:
at most 2,000 points or 100 series fields), and the thread yields between steps, so a write
of the ingest never waits behind more than one step. A pass runs at start (after ``first_delay``) and then every
``prune_every``. VictoriaMetrics and InfluxDB keep their own retention (``-retentionPeriod``, bucket retention).

``Pruner.run_pass(now_ns)`` is the whole logic and takes the time as an argument; only the thread reads a clock.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from collector.storage.sqlite import SqliteWriter
from collector.threads import named

__all__ = ["Pruner", "PassResult"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PassResult:
    """What one pass did."""

    deleted: int
    steps: int
    cutoff_ns: int


class Pruner:
    """Prunes one SqliteWriter's old points on a thread of its own."""

    def __init__(self, writer: SqliteWriter, retention_s: float, every_s: float,
                 registry: CollectorRegistry | None = None, step_rows: int = 2000, step_pairs: int = 100,
                 pause_s: float = 0.005, first_delay_s: float = 60.0) -> None:
        self.writer = writer
        self.retention_ns = int(retention_s * 1e9)
        self.every_s = every_s
        self.step_rows, self.step_pairs = step_rows, step_pairs
        self.pause_s, self.first_delay_s = pause_s, first_delay_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._deleted = Counter("zonewatch_collector_sqlite_pruned_points", "Points deleted from the SQLite store "
                                "because they were older than storage.retention", registry=registry)
        self._last = Gauge("zonewatch_collector_sqlite_prune_last_pass_seconds", "When the last pruning pass of the "
                           "SQLite store ended (Unix time)", registry=registry)

    def run_pass(self, now_ns: int, pause: threading.Event | None = None) -> PassResult:
        """Delete every point older than ``now_ns - retention``; between steps, wait on ``pause`` (if given) for
        ``pause_s``, and give up early once it is set."""
        cutoff = now_ns - self.retention_ns
        deleted = steps = 0
        start: tuple[int, str] | None = None
        while True:
            n, start = self.writer.prune(cutoff, start, self.step_rows, self.step_pairs)
            deleted += n
            steps += 1
            if n:
                self._deleted.inc(n)
            if start is None or (pause is not None and pause.wait(self.pause_s)):
                break
        return PassResult(deleted, steps, cutoff)

    def start(self) -> None:
        """Start the pruning thread."""
        self._thread = named(self._loop, "sqlite-prune")
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current step."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        wait = self.first_delay_s
        while not self._stop.wait(wait):
            wait = self.every_s
            began = time.monotonic()
            try:
                result = self.run_pass(time.time_ns(), pause=self._stop)
            except Exception as exc:  # a full disk or a locked file: try again at the next pass
                log.error("pruning the SQLite store failed, retrying in %.0f s: %s", self.every_s, exc)
                continue
            self._last.set(time.time())
            if result.deleted:
                log.info("pruned %d points older than the retention from the SQLite store in %.1f s (%d steps)",
                         result.deleted, time.monotonic() - began, result.steps)
