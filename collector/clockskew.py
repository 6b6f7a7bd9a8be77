"""Probe clocks: how far each probe's clock is off, measured without trusting it, and its messages' times corrected.

How it is measured. Over MQTT v5 the agent stamps every PUBLISH with its own clock at the moment it sends it
(user property ``wire.SENT_PROPERTY``). For a data message arriving at the collector's ``now``, ``stamp - now``
is the probe's offset minus the message's transit, and transit is never negative: each stamp is a floor under
the offset. The highest floor of the last ``WINDOW_NS`` (the message that travelled fastest, as NTP keeps its best
sample) is the estimate. Only the publish stamp is compared, never a sample's own time: a backlog replayed from
the spool keeps the time it was measured.

A floor proves a clock ahead, and that a clock is not behind by more than the floor says. It cannot prove a clock
behind: a message that waited in the broker while the collector was behind looks just like one from a late clock.
So a clock behind is believed only when the transit is bounded: a data message that arrives after one of the
collector's ticks came back (``collector.ingest``: the broker delivers a session's messages in order) reached the
broker after that tick was published, so its transit is at most ``now - tick`` plus ``SLACK_NS`` for the probe's
own leg. Without ticks (a broker that does not grant the tick topic) only clocks ahead are found.

What is done with it (``collector.ingest`` measures and corrects). An estimate beyond ``TOLERANCE_NS`` (above the
transit jitter of a healthy link, below what a rule or a graph can tell) is the probe's offset in force; within
it, the offset is 0. The offsets in force are a timeline per probe of (arrival time from, offset), written to
the intake queue's file (table ``clockskew``) before the messages they apply to are committed, so a message is
corrected by the offset in force when it arrived: behind a backlog, after a restart, and after the clock was fixed.
The preparer and the alert engine shift every sample and event of such a message by it before the time checks
(``collector.ingest.decode.read_entry``): a probe ten minutes ahead has its readings stored at the right time, not
refused as ``time_future``, and none judged in the future. A probe that never had an offset costs one dictionary
lookup a message; one that had, a bisection.

Limits: the offset in force when a message arrives applies to all of it, so a backlog measured before the clock
went wrong and sent after is shifted too (ProbeClockSkew says since when). MQTT 3.1.1 has no user properties:
such a probe's clock is neither measured nor corrected.

Threads: ``observe`` and ``store`` from the intake thread (``store`` holding the intake queue's lock), and
``offset_at`` and ``views`` from the preparer and the alert engine; a lock guards the timelines and estimates.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily

from zonewatch import wire

log = logging.getLogger(__name__)

__all__ = ["ClockView", "Estimate", "ClockSkew", "sent_stamp", "shifted", "TOLERANCE_NS", "SLACK_NS", "WINDOW_NS"]

S: Final = 10**9
TOLERANCE_NS: Final = 2 * S     # an estimate within this is no offset
SLACK_NS: Final = 2 * S         # the probe-to-broker leg, which a tick does not bound
WINDOW_NS: Final = 120 * S      # the estimate is the best floor of the last 60 to 120 s
STEP_NS: Final = 1 * S          # the offset in force moves only when the estimate moves further than this
MIN_BEHIND: Final = 3           # stamps in the window before a clock behind is believed
MAX_POINTS: Final = 64          # timeline points kept per probe (the oldest go first)
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS clockskew(
    probe TEXT NOT NULL, since_ns INTEGER NOT NULL, offset_ns INTEGER NOT NULL, PRIMARY KEY (probe, since_ns));
"""


def sent_stamp(properties: Any) -> int | None:
    """Return the probe's send time carried in a PUBLISH's properties (``wire.SENT_PROPERTY``), or None."""
    for key, value in getattr(properties, "UserProperty", ()) or ():
        if key == wire.SENT_PROPERTY:
            return int(value) if value.isdigit() and len(value) < 20 else None
    return None


def shifted(batch: wire.Batch, by_ns: int) -> wire.Batch:
    """Return ``batch`` with every sample's and event's time moved by ``by_ns``."""
    return dataclasses.replace(
        batch,
        samples=tuple(wire.Sample(s.measurement, s.tags, s.fields, s.time_ns + by_ns) for s in batch.samples),
        events=tuple(wire.Event(e.name, e.tags, e.fields, e.time_ns + by_ns) for e in batch.events))


@dataclass(slots=True)
class _Half:
    """The best floor of one half of the window."""

    start_ns: int
    floor_ns: int
    bound_ns: int | None    # that floor's transit bound (None: not bounded)
    count: int = 1


class Estimate:
    """One probe's clock offset from its publish stamps (see the module docstring). Pure: time comes in."""

    def __init__(self) -> None:
        self._halves: list[_Half] = []     # at most two, oldest first
        self.measured_ns = 0               # arrival of the newest stamp

    def add(self, floor_ns: int, bound_ns: int | None, now_ns: int) -> None:
        """Take one stamp: ``floor_ns`` = stamp - arrival, ``bound_ns`` its transit bound, arriving at ``now_ns``."""
        halves = self._halves
        while halves and now_ns - halves[0].start_ns >= WINDOW_NS:
            del halves[0]
        if not halves or now_ns - halves[-1].start_ns >= WINDOW_NS // 2:
            halves.append(_Half(now_ns, floor_ns, bound_ns))
            del halves[:-2]
        else:
            half = halves[-1]
            half.count += 1
            if floor_ns > half.floor_ns or (floor_ns == half.floor_ns and bound_ns is not None):
                half.floor_ns, half.bound_ns = floor_ns, bound_ns
        if now_ns > self.measured_ns:
            self.measured_ns = now_ns

    def best(self) -> tuple[int, int | None]:
        """Return the best floor of the window and its transit bound; (0, None) with no stamp."""
        if not self._halves:
            return 0, None
        best = max(self._halves, key=lambda h: h.floor_ns)
        return best.floor_ns, best.bound_ns

    def offset(self) -> int:
        """Return the offset to correct by: the best floor when it proves a clock ahead, or behind (bounded, from
        ``MIN_BEHIND`` stamps), by more than ``TOLERANCE_NS``; else 0."""
        floor, bound = self.best()
        if floor > TOLERANCE_NS:
            return floor
        if bound is not None and floor + bound < -TOLERANCE_NS and sum(h.count for h in self._halves) >= MIN_BEHIND:
            return floor
        return 0


@dataclass(frozen=True, slots=True)
class ClockView:
    """What the collector knows of one probe's clock (for ProbeClockSkew)."""

    offset_ns: int          # the offset in force: its samples are stored this much earlier (0: none)
    since_ns: int           # when that offset came into force (arrival time)
    floor_ns: int           # the best floor of the window: the clock is at least this far ahead
    upper_ns: int | None    # and at most this far (None: not bounded, no ticks)
    measured_ns: int        # arrival of the newest stamp
    corrected: int          # messages corrected so far (this run)


class ClockSkew:
    """Every probe's clock estimate and offset timeline; see the module docstring for the threads."""

    def __init__(self, db: sqlite3.Connection | None = None, registry: CollectorRegistry | None = None) -> None:
        self._lock = threading.Lock()
        self._estimates: dict[str, Estimate] = {}                    # zone/probe -> estimate
        self._timeline: dict[str, list[tuple[int, int]]] = {}        # zone/probe -> [(since, offset)], oldest first
        self._corrected: dict[str, int] = {}
        self._db = db
        if db is not None:
            db.executescript(_SCHEMA)
            for probe, since, offset in db.execute("SELECT probe, since_ns, offset_ns FROM clockskew ORDER BY 1, 2"):
                self._timeline.setdefault(str(probe), []).append((int(since), int(offset)))
        self.corrections = Counter(
            "zonewatch_probe_corrected_messages", "Messages whose sample times were moved by the probe's measured "
            "clock offset (collector.clockskew)", ["probe"], registry=registry) if registry is not None else None
        if registry is not None:
            registry.register(_OffsetGauge(self))

    # intake thread -----------------------------------------------------------------------------------------

    def observe(self, stamped: Sequence[tuple[str, int]], now_ns: int, caught_up_ns: int) -> list[tuple[str, int, int]]:
        """Take the (topic, stamp) of data messages arriving at ``now_ns`` (``caught_up_ns``: the publish time of
        the collector's newest tick back, 0 for none); return the new timeline points (probe, since, offset),
        which the caller stores (``store``) before it commits the messages."""
        bound = now_ns - caught_up_ns + SLACK_NS if caught_up_ns else None
        new: list[tuple[str, int, int]] = []
        with self._lock:
            for topic, stamp in stamped:
                probe = _probe_of(topic)
                if probe is None:
                    continue
                estimate = self._estimates.get(probe)
                if estimate is None:
                    estimate = self._estimates[probe] = Estimate()
                estimate.add(stamp - now_ns, bound, now_ns)
                offset = estimate.offset()
                points = self._timeline.get(probe)
                current = points[-1][1] if points else 0
                if (offset == 0) != (current == 0) or abs(offset - current) > STEP_NS:
                    self._timeline.setdefault(probe, []).append((now_ns, offset))
                    del self._timeline[probe][:-MAX_POINTS]
                    new.append((probe, now_ns, offset))
        return new

    def store(self, points: Sequence[tuple[str, int, int]], now_ns: int, keep_ns: int) -> None:
        """Write new timeline points to the intake queue's file (intake thread, holding the queue's lock), and
        forget the points that ended more than ``keep_ns`` ago (no message that old is still queued: the intake
        queue's ``max_age``). A file that cannot be written is logged: the points hold for this run."""
        if not points:
            return
        oldest: dict[str, int] = {}
        with self._lock:
            for probe in {p for p, _, _ in points}:
                kept = self._timeline[probe]
                while len(kept) > 1 and kept[1][0] < now_ns - keep_ns:
                    del kept[0]
                oldest[probe] = kept[0][0]
        if self._db is None:
            return
        try:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO clockskew VALUES (?, ?, ?)", points)
                self._db.executemany("DELETE FROM clockskew WHERE probe = ? AND since_ns < ?", oldest.items())
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            log.error("cannot keep the probes' clock offsets in the intake queue's file (%s); they hold until the "
                      "collector stops", exc)

    # preparer and engine threads ---------------------------------------------------------------------------

    def offset_at(self, topic: str, arrived_ns: int) -> int:
        """Return the offset in force for a message on ``topic`` that arrived at ``arrived_ns`` (0: none)."""
        if not self._timeline:
            return 0
        probe = _probe_of(topic)
        if probe is None or probe not in self._timeline:
            return 0
        with self._lock:
            points = self._timeline[probe]
            at = bisect.bisect_right(points, (arrived_ns, 1 << 63)) - 1
            return points[at][1] if at >= 0 else 0

    def corrected(self, topic: str) -> None:
        """Count one message of ``topic`` whose times were moved (the preparer)."""
        probe = _probe_of(topic) or topic
        with self._lock:
            self._corrected[probe] = self._corrected.get(probe, 0) + 1
        if self.corrections is not None:
            self.corrections.labels(probe).inc()

    def views(self) -> dict[str, ClockView]:
        """Return what is known of every probe's clock, by ``zone/probe``."""
        out: dict[str, ClockView] = {}
        with self._lock:
            for probe, estimate in self._estimates.items():
                floor, bound = estimate.best()
                points = self._timeline.get(probe) or [(0, 0)]
                since, offset = points[-1]
                out[probe] = ClockView(offset, since, floor, None if bound is None else floor + bound,
                                       estimate.measured_ns, self._corrected.get(probe, 0))
        return out


class _OffsetGauge:
    """``zonewatch_probe_clock_offset_seconds{probe}``: each probe's offset in force, at scrape time."""

    NAME, HELP = "zonewatch_probe_clock_offset_seconds", ("How far the probe's clock is ahead (negative: behind) as "
                                                          "the collector measures it; its samples are stored this "
                                                          "much earlier (0 within the tolerance)")

    def __init__(self, skew: ClockSkew) -> None:
        self.skew = skew

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(self.NAME, self.HELP, labels=["probe"])]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["probe"])
        for probe, view in sorted(self.skew.views().items()):
            family.add_metric([probe], view.offset_ns / S)
        yield family


_ROOT: Final = wire.TOPIC_ROOT + "/"


def _probe_of(topic: str) -> str | None:
    """Return ``zone/probe`` of a probe's data or events topic, None for any other (the collector's own)."""
    if not topic.startswith(_ROOT) or not topic.endswith(("/data", "/events")):
        return None
    name = topic[len(_ROOT):topic.rindex("/")]
    return name if name.count("/") == 1 else None
