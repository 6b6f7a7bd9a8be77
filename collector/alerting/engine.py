"""The alert engine: the one thread that feeds the facts, evaluates the rules and hands notifications on.

Threads::

    intake thread (ingest)  ``offer(messages, now, ids)`` after the messages are committed to the intake queue:
                            appends status and events to one list, data to a queue per probe
                            (``collector.alerting.backlog``: taken in turns, so one probe's flood never
                            delays another's readings), numbering them in arrival order, and wakes the
                            engine. Never blocks. Past ``max_backlog`` data messages or ``max_backlog_bytes``
                            of them (what the preparer has decoded of them is forgotten first) it drops the
                            oldest of the longest queue (counted, logged once a minute); status and events are never
                            dropped below ``max_backlog`` x 4 (a flood past that is dropped oldest first,
                            counted and logged as well).
    fleet thread            ``configs(views)``: each managed probe's desired configuration and last report
                            (``collector.fleet``), for ProbeConfigRejected and ProbeUpdateFailed; judged at once.
                            Never blocks.
    preparer thread         ``prepared(decoded)``: the batch the ingest's preparer decoded of each intake entry
                            (``feed_from_ingest``, below). ``gaps(counts, arrived)``: the probes' seq gaps as the
                            ingest counts them, as of an arrival time (for DataLoss); kept as the latest per probe.
                            ``jumped(probe, seq, arrived)``: a seq absurdly far from its probe's stream
                            (ProbeMisbehaving). ``store_behind()``: the preparer waits for storage (its sender's
                            queue is full). Never block.
    engine thread           decodes what was offered without the rows the probe may not report (``collector.scope``:
                            they go to ``Facts.observe_refused``), or takes data as the preparer decoded it (below),
                            feeds ``Facts``, and evaluates the rules at once when an event
                            or a status change arrived (traps and last wills page within a second), within ``MIN_GAP``
                            when data arrived (a polled fault pages within a poll; later if evaluations are long:
                            ``after_eval``), and every ``interval`` regardless
                            (timeouts, hold times). A park bridge's state (``collector.alerting.parks``) is
                            taken as status is. Status and events go first: they are decoded and judged before any
                            data taken with them, and data is decoded ``SLICE`` messages at a time, so an event that
                            arrives while a data backlog is being worked through waits for one slice at most. ``Facts``
                            keeps the arrival order all the same (the numbers ``offer`` gave). Notifications go to the
                            dispatcher (durable outbox) before the tracker's state is saved: a crash in between sends a
                            notification twice, never loses one. Derived measurements (``alert``, ``redundancy``,
                            ``coverage``) go to storage through ``store`` (``collector.alerting.stored``
                            decides which, and when). The common data message
                            (samples only, none refused) is decoded in one pass: ``collector.ingest.plain_batch``;
                            a message of a probe whose clock is off (``collector.clockskew``, ``skew``) is decoded
                            in full, at the corrected times its samples are stored at.

Decoded once (``feed_from_ingest``: the collector's ``run``). The preparer decodes every data message for storage
anyway; rather than decode it a second time, the engine takes the batch the preparer made (``prepared``), in the place
``offer`` gave the message (its arrival number), and drops its own copy. Data offered waits for the preparer (ticks
behind it), but only while the preparer gives: if it has given nothing for ``STALLED`` seconds while data waits
(it is working through entries from before a start), or the oldest has waited ``MAX_WAIT`` while storage holds the
preparer up (``store_behind`` said so within ``MAX_WAIT``: storage is down, or slow behind one probe's flood), the
engine decodes what waits itself, as it would without a preparer, and what the preparer gives of those later is passed
over. So a TSDB outage does not stop alerting, and no message is judged twice or lost between the two. A preparer
that is only busy (a backlog drains as fast as this process's CPU allows) is waited for: decoding a second time then
would take the CPU from the preparer and slow both (``bench_ingest.py`` counts who decoded what).
``zonewatch_alert_decoded_messages_total{by}`` counts who decoded what the engine judged. Status and events, few and
urgent, are always decoded here at once.

One of an HA pair (``hold_until_caught_up``) judges nothing after a start until it has taken in what the broker
kept for it while it was down (the first of its ticks published after the start is back: ``Facts.caught_up``),
or for ``restart_grace`` at most: its peer was judging meanwhile, and a fault that came and went while it was
down, seen half-way through that backlog, would page again, or resending the alerts it had firing would make
Alertmanager fire again one its peer has resolved since.

Only ``_loop`` reads the clock; ``step(now_ns)`` does one evaluation and is what tests drive.

Beside it: ``stored`` (what each evaluation stores, and what was written last) and ``engine_metrics`` (the engine's
own health in ``/metrics``). What stays here is the engine's hand-over between the threads above and its loop:
the backlogs, the preparer's answers and the waits share one lock and decide together what the loop takes next,
which is easier to check in one place than across objects.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from collector.alerting.backlog import FairBacklog, Offered
from collector.alerting.config import AlertingConfig
from collector.alerting.engine_metrics import EngineMetrics
from collector.alerting.facts import ConfigView, Facts
from collector.alerting.maintenance import Maintenance
from collector.alerting.model import Notification
from collector.alerting.rules import Rules
from collector.alerting.stored import StoredPoints
from collector.alerting.tracker import AlertTracker
from collector.clockskew import ClockSkew
from collector.ingest import plain_batch, read_entry, tick_time
from collector.inventory import Inventory
from collector.maintenance_store import LiveWindows, store_path
from collector.mosquitto import BRIDGE_STATE_ROOT, TICK_ROOT
from collector.scope import Refusals, Scope
from collector.threads import named
from zonewatch import wire
from zonewatch.queue import Entry

log = logging.getLogger(__name__)

MIN_GAP = 0.2                # seconds: data triggers an evaluation at most this often
EVAL_SHARE = 0.25            # ... and at most this share of the time, however long an evaluation takes
SLICE = 2000                 # data messages decoded between two looks for status and events
URGENT_FACTOR = 4            # status and events kept: max_backlog times this
MAX_WAIT = 1.0               # seconds a data message waits for the preparer at most: then the engine decodes it
STALLED = 2.0                # seconds without a data message from the preparer while some wait: decode them here

# What the ingest's preparer made of one intake entry (``prepared``): its id, the batch (None: rejected) and the rows
# it refused of it (``collector.scope``).
Prepared = tuple[int, wire.Batch | None, Refusals | None]


def after_eval(cost: float, at_once: bool) -> float:
    """Return how long after the start of the last evaluation, which took ``cost`` seconds, new evidence may be judged:
    status, events and the fleet's reports (``at_once``) as soon as it ended, data after ``MIN_GAP``; but data never
    sooner than keeps evaluations to ``EVAL_SHARE`` of the time. An evaluation grows with the inventory (about a tenth
    of a second for 10,000 devices): judged every ``MIN_GAP`` while data flows, a province's inventory kept half a
    core busy evaluating (``bench_fleet.py``), and a polled fault still pages within a poll at a quarter."""
    return cost if at_once else max(MIN_GAP, cost / EVAL_SHARE)


class Dispatcher(Protocol):
    """Where notifications go (``collector.alerting.notify``)."""

    def submit(self, notifications: Sequence[Notification]) -> None:
        """Hand notifications over; return once they are durable."""

    def sync_alertmanager(self, firing: Sequence[Notification], now_ns: int) -> None:
        """Re-send the alerts that are firing to Alertmanager (it forgets alerts not re-sent)."""


class AlertEngine:
    """Facts, rules, tracker and dispatcher in one thread; see the module docstring."""

    def __init__(self, cfg: AlertingConfig, inventory: Inventory, dispatcher: Dispatcher,
                 store: Callable[[list[wire.Batch]], None], registry: CollectorRegistry,
                 clock: Callable[[], int] = time.time_ns, max_backlog: int = 50_000,
                 max_backlog_bytes: int = 256 * 2**20,
                 decode: Callable[[str, bytes, int], wire.Batch] | None = None,
                 known_gaps: Mapping[str, int] | None = None, fault: tuple[str, str, int] | None = None,
                 hold_until_caught_up: bool = False) -> None:
        self.cfg, self.inventory, self.dispatcher, self.store, self.clock = cfg, inventory, dispatcher, store, clock
        self.metrics = EngineMetrics(registry)
        self.facts = Facts(cfg.settings, started_ns=clock())
        self.holding = hold_until_caught_up   # see the module docstring (an HA pair)
        self._started_ns = clock()
        self.facts.fault = fault   # a thread death that stopped the previous run: CollectorFault
        # The seq gaps the ingest had counted (and stored) before this start, by zone/probe: the baseline of
        # DataLoss, so that what was lost while the collector was down is news, not history.
        for name, gaps in (known_gaps or {}).items():
            self.facts.observe_gaps(name.partition("/")[2], gaps, clock())
        self.tracker = AlertTracker(cfg, cfg.state_path, started_ns=clock())
        # Maintenance windows: the inventory's, and those `maintenance add` keeps beside the tracker's state.
        self.windows = LiveWindows(inventory.maintenance, store_path(cfg.state_path) if cfg.state_path else None)
        self.max_backlog = max_backlog
        self.scope = Scope(inventory)
        # The rules and the windows over this inventory: each looks what it needs up in it once, here.
        self.rules, self.maintenance = Rules(inventory), Maintenance(inventory)
        self._decode = decode
        # The probes' clock offsets the ingest measures (collector.clockskew): a probe's messages are judged at the
        # corrected times its samples are stored at; and ProbeClockSkew. None: every clock is taken as right.
        self.skew: ClockSkew | None = None
        self._data = FairBacklog(max_backlog, limit_bytes=max_backlog_bytes)   # data (and ticks), a queue per probe
        # Fed by the ingest's preparer (``feed_from_ingest``): the data offered that it has yet to decode, by
        # intake id; what it decoded of them, in the order it did; and when it last gave one (monotonic).
        self.fed = False
        self._waiting: dict[int, tuple[Offered, float]] = {}   # and when it was offered (monotonic)
        self._prepared: deque[tuple[Offered, wire.Batch | None, Refusals | None]] = deque()
        self._fed_at = 0.0
        self._behind_at = -math.inf   # when the preparer last said it waits for storage (monotonic)
        self.monotonic: Callable[[], float] = time.monotonic   # the clock of STALLED (tests set it)
        self._urgent_backlog: list[Offered] = []   # status and events, oldest first
        self._arrived = 0                          # arrival numbers given so far
        self._dropped_logged = 0.0                 # when a drop was last logged (monotonic)
        self._gaps: dict[str, tuple[int, int]] = {}   # zone/probe -> (gaps, when counted)
        self._jumps: list[tuple[str, int, int]] = []  # (zone/probe, seq, arrival) of absurd seq jumps
        self._configs: dict[str, ConfigView] | None = None   # the fleet's newest view, not yet taken
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = named(self._loop, "zw-alerts")
        self.stored = StoredPoints(store)   # what each evaluation stores (collector.alerting.stored)
        self._synced_ns = 0
        self.evaluated = threading.Event()       # set after every evaluation (tests and the demo wait on it)
        # Called after the tracker's update at every evaluation, with its time and the alerts firing and notified.
        self.on_tick: Callable[[int, list[Notification]], object] | None = None

    # intake thread ------------------------------------------------------------------------------------

    def offer(self, messages: Sequence[tuple[str, bytes]], now_ns: int,
              ids: Sequence[int | None] | None = None) -> None:
        """Take messages committed to the intake queue (topic, payload), and their ids there (None: not stored, as
        ticks; no ids: none stored); never blocks."""
        with self._lock:
            self._data.limit = self.max_backlog
            dropped = 0
            waiting = self._waiting if self.fed else None
            if waiting is not None and (self._data.size + len(messages) > self.max_backlog or self._data.bytes + sum(
                    len(payload) for _, payload in messages) > self._data.limit_bytes):
                self._data.forget(lambda m: m[4] not in waiting)   # what the preparer gave counts no more
            for n, (topic, payload) in enumerate(messages):
                self._arrived += 1
                entry_id = (ids[n] or 0) if ids is not None else 0
                message = (topic, payload, now_ns, self._arrived, entry_id)
                tick = topic.startswith(TICK_ROOT)   # ticks keep their meaning among the data
                if tick or topic.endswith("/data"):
                    if waiting is not None and entry_id:
                        if not waiting:
                            self._fed_at = self.monotonic()   # the preparer's time to answer starts now
                        waiting[entry_id] = (message, self.monotonic())
                    gone = self._data.add(message, tick)
                    for old in gone:
                        if waiting is not None:
                            waiting.pop(old[4], None)
                    dropped += len(gone)
                else:
                    self._urgent_backlog.append(message)
            if dropped:
                self.metrics.dropped.labels("data").inc(dropped)
            dropped += self._bound(self._urgent_backlog, self.max_backlog * URGENT_FACTOR, "status_events")
        if dropped:
            now = time.monotonic()
            if now - self._dropped_logged >= 60:
                self._dropped_logged = now
                log.warning("alert engine behind: skipped %d of the oldest messages (stored all the same; the "
                            "rules judge the newest); zonewatch_alert_dropped_messages counts them by kind", dropped)
        self._wake.set()

    def _bound(self, backlog: list[Offered], limit: int, kind: str) -> int:
        """Drop the oldest of ``backlog`` past ``limit`` (with the lock held); return how many."""
        over = len(backlog) - limit
        if over <= 0:
            return 0
        del backlog[:over]
        self.metrics.dropped.labels(kind).inc(over)
        return over

    def feed_from_ingest(self) -> None:
        """Take data as the ingest's preparer decodes it (``prepared``) instead of decoding it again; see the module
        docstring. Called before the engine starts, once the ingest reports to ``prepared``."""
        self.fed = True

    def prepared(self, decoded: Sequence[Prepared]) -> None:
        """Take what the ingest's preparer decoded of intake entries (preparer thread); never blocks. Entries not
        offered here (from before a start, the collector's own, dropped or decoded here meanwhile) are passed over."""
        with self._lock:
            waiting, out = self._waiting, self._prepared
            given = len(out)
            for entry_id, batch, refused in decoded:
                held = waiting.pop(entry_id, None)
                if held is not None:
                    out.append((held[0], batch, refused))
            if len(out) > given:
                self._fed_at = self.monotonic()
        self._wake.set()

    def store_behind(self) -> None:
        """Take word that the preparer waits for storage (its sender's queue is full; preparer thread); never
        blocks. Data that waited ``MAX_WAIT`` for it is then decoded here."""
        with self._lock:
            self._behind_at = self.monotonic()
            waiting = bool(self._waiting)
        if waiting:
            self._wake.set()

    def take(self) -> tuple[list[Offered], list[Offered]]:
        """Return what to decode next (engine thread): every status and event offered, and the next slice
        of data, ``SLICE`` messages at most (the probes in turns), but none while status or events wait.

        Fed by the preparer (``feed_from_ingest``), data comes decoded (``take_prepared``) and the slice holds
        only the ticks that no data still to come precedes; unless the preparer is stalled (``_stalled``): then the
        data waiting as well, which the engine decodes itself."""
        with self._lock:
            urgent, self._urgent_backlog = self._urgent_backlog, []
            if urgent:
                return urgent, []
            if not self.fed:
                return [], self._data.take(SLICE)
            if self._prepared:   # ticks wait until what the preparer gave before them is taken
                return [], []
            waiting = self._waiting
            self._data.forget(lambda m: m[4] not in waiting)   # decoded by the preparer, and taken
            data = []
            for message in self._data.take(SLICE if self._stalled() else 0):
                # Decoded here from now on (what the preparer gives of it later is passed over); one the preparer
                # gave already, behind one still waiting, is not taken twice.
                if message[4] and waiting.pop(message[4], None) is None:
                    continue
                data.append(message)
            return [], data

    def _stalled(self) -> bool:
        """Return True if data waits for the preparer and it has given none for ``STALLED`` seconds, or the oldest has
        waited ``MAX_WAIT`` while storage holds the preparer up (``store_behind``): then the engine decodes what waits
        itself (lock held)."""
        if not self._waiting:
            return False
        now = self.monotonic()
        return now - self._fed_at >= STALLED or (now - self._behind_at <= MAX_WAIT
                                                 and now - next(iter(self._waiting.values()))[1] >= MAX_WAIT)

    def take_prepared(self) -> list[tuple[Offered, wire.Batch | None, Refusals | None]]:
        """Return the next ``SLICE`` of what the preparer decoded, oldest first (engine thread)."""
        with self._lock:
            out = self._prepared
            return [out.popleft() for _ in range(min(SLICE, len(out)))]

    def _idle(self) -> bool:
        """Return True if nothing is ready to take (engine thread): the loop may wait."""
        with self._lock:
            if self._urgent_backlog:
                return False
            if not self.fed:
                return not len(self._data)
            return not self._prepared and not self._stalled()

    def gaps(self, counts: Mapping[str, int], now_ns: int) -> None:
        """Take the ingest's seq gap counts by ``zone/probe``, as of the arrival time ``now_ns``; never blocks."""
        with self._lock:
            self._gaps.update((name, (gaps, now_ns)) for name, gaps in counts.items())

    def jumped(self, name: str, seq: int, now_ns: int) -> None:
        """Take a seq jump the ingest met (``zone/probe``, the seq, its arrival time); never blocks."""
        with self._lock:
            if len(self._jumps) < 10_000:   # a flood of them says no more than the first few
                self._jumps.append((name, seq, now_ns))

    def configs(self, views: Mapping[str, ConfigView]) -> None:
        """Take the fleet's view of every managed probe's configuration (``collector.fleet``); never blocks."""
        with self._lock:
            self._configs = dict(views)
        self._wake.set()

    # engine thread ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the engine thread."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the engine thread and close the tracker's store."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self.tracker.close()
        self.windows.close()

    def _loop(self) -> None:
        interval = self.cfg.interval
        next_eval = time.monotonic()
        last_eval = 0.0
        cost = 0.0   # seconds the last evaluation took
        while not self._stop.is_set():
            if self._idle():   # else something to take: no waiting
                self._wake.wait(max(0.0, min(next_eval, self._stall_check()) - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                break
            urgent, data = self.take()
            prepared = [] if urgent else self.take_prepared()
            with self._lock:
                counted, self._gaps = self._gaps, {}
                jumps, self._jumps = self._jumps, []
                configs, self._configs = self._configs, None
            try:
                if configs is not None:
                    self.facts.observe_configs(configs)
                self.ingest(urgent or data)
                self.observe_prepared(prepared)
                for name, (gaps, at_ns) in counted.items():
                    self.facts.observe_gaps(name.partition("/")[2], gaps, at_ns)
                for name, seq, at_ns in jumps:
                    zone, _, probe = name.partition("/")
                    self.facts.observe_refused(zone, probe, {"seq_jump": 1}, {"seq_jump": f"seq {seq}"}, at_ns)
                if urgent or data or prepared or configs is not None:  # new evidence: judge it now, at most MIN_GAP
                    at_once = bool(urgent) or configs is not None   # (events and the fleet's reports at once)
                    next_eval = min(next_eval, last_eval + after_eval(cost, at_once))
                if time.monotonic() >= next_eval:
                    if self.holding and self._held(self.clock()):
                        next_eval = time.monotonic() + MIN_GAP
                        continue
                    last_eval = time.monotonic()
                    self.step(self.clock())
                    cost = time.monotonic() - last_eval
                    next_eval = last_eval + interval
            except Exception:  # one bad evaluation must not end alerting; it is logged with its cause
                log.exception("alert evaluation failed; carrying on")
                next_eval = time.monotonic() + interval

    def _stall_check(self) -> float:
        """Return when the preparer will be stalled (``_stalled``) if nothing changes meanwhile (monotonic; infinity
        if no data waits): the loop looks then. ``store_behind`` wakes the loop as well."""
        with self._lock:
            if not (self.fed and self._waiting):
                return math.inf
            silent = self._fed_at + STALLED
            if self.monotonic() - self._behind_at > MAX_WAIT:   # storage keeps up: waited for as long as it gives
                return silent
            return min(silent, next(iter(self._waiting.values()))[1] + MAX_WAIT)

    def observe_prepared(self, prepared: Sequence[tuple[Offered, wire.Batch | None, Refusals | None]]) -> None:
        """Feed the facts what the preparer decoded (``prepared``), as ``ingest`` feeds what it decodes."""
        if prepared:
            self.metrics.decoded.labels("ingest").inc(len(prepared))
        for message, batch, refused in prepared:
            if batch is None:
                self.metrics.rejected.inc()
                continue
            if refused:
                self.facts.observe_refused(batch.zone, batch.probe, refused.counts, refused.examples, message[2])
            self.facts.observe(batch, message[2], message[3])

    def _held(self, now_ns: int) -> bool:
        """Return True while an HA collector has not caught up since its start (see the module docstring)."""
        caught = self.facts.caught_up_ns
        if caught is not None and caught >= self._started_ns:
            log.info("caught up with what the broker kept for this collector: judging from now on")
        elif now_ns - self._started_ns >= int(self.cfg.restart_grace * 1e9):
            log.warning("no tick of this collector came back within restart_grace: judging without having caught "
                        "up (a fault that came and went while it was down may page again)")
        else:
            return True
        self.holding = False
        return False

    def ingest(self, messages: Sequence[Offered] | Sequence[tuple[str, bytes, int]]) -> None:
        """Decode messages (topic, payload, arrival time and, from ``take``, arrival number) and feed the facts
        (bad ones are counted; the writer reports their reason)."""
        refused: Refusals | None
        data = 0
        for message in messages:
            topic, payload, arrived_ns = message[0], message[1], message[2]
            data += topic.endswith("/data")
            if topic.startswith(TICK_ROOT):   # everything the data session got before it has been taken
                sent = tick_time(payload)
                if sent is not None:
                    self.facts.caught_up(sent)
                continue
            if topic.startswith(BRIDGE_STATE_ROOT):   # a park's uplink (collector.alerting.parks)
                self.facts.observe_bridge(topic, payload, arrived_ns)
                continue
            try:
                if self._decode is None:
                    entry = Entry(0, topic, arrived_ns, payload)
                    offset = self.skew.offset_at(topic, arrived_ns) if self.skew is not None else 0
                    batch, refused = plain_batch(entry, self.scope) if not offset else None, None   # in one pass
                    if batch is None:
                        batch, refused = read_entry(entry, self.scope, offset_ns=offset)
                else:
                    batch, refused = self._decode(topic, payload, arrived_ns), None
            except wire.WireError:
                self.metrics.rejected.inc()
                continue
            if refused:
                self.facts.observe_refused(batch.zone, batch.probe, refused.counts, refused.examples, arrived_ns)
            self.facts.observe(batch, arrived_ns, message[3] if len(message) > 3 else None)
        if data:
            self.metrics.decoded.labels("engine").inc(data)

    def step(self, now_ns: int) -> list[Notification]:
        """Evaluate at ``now_ns``; send, store and return the notifications."""
        started = time.perf_counter()
        if self.skew is not None:
            self.facts.health.clocks = self.skew.views()
        evaluation = self.rules.evaluate(self.facts, self.cfg.settings, now_ns)
        evaluation = self.maintenance.apply(evaluation, self.windows.current(), self.tracker.alerts(), now_ns)
        notes = self.tracker.update(evaluation, now_ns, deliver=self.dispatcher.submit)
        if self.on_tick is not None:   # acknowledgements and escalation (collector.alerting.responder)
            self.on_tick(now_ns, [a.notification("firing") for a in self.tracker.firing() if a.notified])
        self.metrics.evaluations.inc()
        self.metrics.evaluation_seconds.observe(time.perf_counter() - started)
        for n in notes:
            self.metrics.notifications.labels(n.status, n.labels.get("alertname", "")).inc()
            log.info("alert %s: %s %s", n.status, n.labels.get("alertname"), _describe(n.labels))
        self.stored.write(evaluation, self.tracker, notes, now_ns)
        self.metrics.alerts.update(self.tracker.alerts())
        if self.cfg.alertmanager is not None and now_ns - self._synced_ns >= int(
                self.cfg.alertmanager.resend_interval * 1e9):
            self._synced_ns = now_ns
            self.dispatcher.sync_alertmanager(
                [a.notification("firing") for a in self.tracker.firing() if a.notified], now_ns)
        self.evaluated.set()
        return notes


def _describe(labels: Any) -> str:
    return " ".join(f"{k}={v}" for k, v in labels.items() if k not in ("alertname", "severity"))

