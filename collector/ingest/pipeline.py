"""Ingest: MQTT in, durable intake queue, storage out. Nothing is acknowledged before it is on disk.

Two broker sessions: data comes through the collector's main session (``mqtt.client_id``, ``mqtt.username``);
status and events through a second one, ``<client_id>-urgent`` logged in as ``<username>-urgent`` (same
password; ``render-mosquitto`` writes that user), so that at the broker they never queue behind a data
backlog: a last will or a trap published while the collector works through an hour of data reaches it at
once. The second session also reads the park bridges' states (``zonewatch/bridge/<zone>/state``), which go to
the alert engine only (``collector.alerting.parks``), never to storage. The broker keeps both sessions' queues
while the collector is down. Each session is a ``Subscriber`` (``collector.ingest.sessions``): paho's client
(``paho_session``) in production; a test gives ``Ingest`` a factory of fakes (``sessions``), which call back as
paho does, to drive the intake thread's round (``_take_arrivals``) without a broker.

Threads::

    paho network threads  on_message: hand (client, mid, qos, topic, payload) to the intake thread. Never
                          blocks on disk or storage (a full data hand-over queue blocks paho: back-pressure
                          to the broker; status and events have a hand-over queue of their own).
    intake thread         commits what arrived to the intake queue (zonewatch.queue.DiskQueue, SQLite WAL, one
                          transaction for everything taken at once; status and events taken first, in a
                          transaction of their own), then calls ``on_arrival`` (the alert engine: the messages
                          and their intake ids) and sends the QoS 1 acknowledgements in the order the messages
                          arrived.
    preparer thread       takes entries from the intake queue through its own read-only connection (so it
                          never waits for the intake's commits): in order while it keeps up, by topic in
                          turn behind a backlog, so that one probe's flood waits behind itself
                          (``taking``); decodes and checks them
                          with zonewatch.wire (a bad one is rejected and counted by reason, never fatal); leaves
                          out the rows its probe may not report (``collector.scope``: counted per probe, the
                          rest kept); drops repeats (same probe, origin and seq); and has the writer encode the rest
                          (``storage.prepare_write``), in parts of about PART_SAMPLES samples. Each part
                          carries a snapshot of the sequence bookkeeping as it stands after its entries. It
                          works at most a few parts ahead of the sender. For a line-protocol store (a
                          ``LineWriter``) the common message takes a fast path: its rows are checked,
                          admitted and encoded in one pass from the parsed JSON (``Encoder.encode_rows``),
                          with no ``wire.Sample`` made; anything that path is not sure of (a repeat, events,
                          a row it does not pass) goes the full way, which stores the same lines. What it
                          decoded of each probe's entry goes to ``on_prepared`` (the alert engine, which so
                          decodes no data message a second time: ``collector.alerting.engine``), the whole
                          batch as received, before the part it is in goes to the sender.
    sender thread         writes the parts to storage, one after another, in order: while storage is
                          unavailable it retries with backoff, holding the part and everything behind it;
                          when storage refuses a write for good, it writes that part batch by batch and
                          drops only the batches refused, counted.
    committer thread      once parts are written, in one transaction, in the order written: deletes their
                          entries and stores their bookkeeping snapshots (retried if the disk refuses).

So a broker, storage or collector outage loses nothing: before the acknowledgement the broker keeps the
message (persistent session), after it the intake queue does, until its part is written. Bookkeeping is
stored only with the deletion of the entries it describes, so after a crash it never counts as seen a seq
whose entry is still queued: those entries are written again, not dropped as repeats. A crash between a
storage write and the transaction that follows replays those batches; the stores treat a rewritten point
as the same point (VictoriaMetrics with ``-dedup.minScrapeInterval``, InfluxDB and SQLite by key), so it is
not counted twice. Batches made by the collector itself (``inject``, the alert engine's derived samples)
go through the intake queue and the same threads.

Throughput (``tests/benchmarks/bench_ingest.py``): decoding and encoding, in the preparer, are most of the
CPU, and overlap with the store's work on the previous part. The fast path halves the preparer's work per
sample: a JSON row checked and encoded at once, against decoded into a Sample, checked, admitted and
encoded in three passes. The collector's ``run`` (``collector.cli``) tunes the process for this once
everything has started (``gc.freeze``, a shorter GIL switch interval; ``Ingest`` itself changes neither), and
the intake queue overwrites deleted payloads only where that costs no extra I/O (``secure_delete=FAST``:
freed overflow pages are not zeroed; what they held is in the store anyway).

Modules: ``pipeline`` (``Ingest``: the threads above and the sessions' callbacks), ``sessions`` (the
``Subscriber`` seam, paho's client for it, and what a session hands the intake thread), ``parts`` (what the
preparer hands the sender and the committer), ``decode`` (one queued message to a batch), ``seq`` (the sequence
bookkeeping: per (probe, origin), a watermark and the ranges seen above it), ``taking`` (what the preparer takes
next). Beside them, ``collector.clockskew``: each probe's clock offset, measured by the intake thread from the
send times the agents stamp on their messages; the preparer moves the times of a probe whose clock is off before
it checks them (such a message takes the full path). ``Ingest`` stays one class of about 600 lines (this module,
about 720), in sections by thread: its four threads and the sessions' callbacks share the intake queue's
connection and its lock, the sequence bookkeeping, the hand-over queues and the connection state, and what one
thread may do depends on what the others do with them (the ordering rules above), which is easier to check in
one place than across objects.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.cardinality import Refused, SeriesLimit
from collector.clockskew import ClockSkew, sent_stamp
from collector.config import IngestLimits
from collector.ingest.decode import (
    DEFAULT_LIMITS,
    DERIVED,
    OPEN,
    TICK_EVERY,
    checked_batch,
    plain_message,
    read_entry,
    tick_time,
    tick_topic,
)
from collector.ingest.parts import Item, Part, as_batches, sample_count
from collector.ingest.seq import SeqTracker
from collector.ingest.sessions import Arrival, S, Session, SessionFactory, Subscriber, drain, paho_session
from collector.ingest.taking import FairTake
from collector.metrics import CollectorMetrics
from collector.mosquitto import BRIDGE_STATE_ROOT, URGENT_SUFFIX  # park bridges' states; the second session
from collector.scope import Refusals, Scope
from collector.storage import LineWriter, StorageError, Writer, prepare_write, takes_lines
from collector.storage.lineproto import Encoded
from collector.threads import named
from zonewatch import wire
from zonewatch.backoff import Backoff
from zonewatch.mqtt import MqttConfig
from zonewatch.queue import DiskQueue, Entry, QueueReader

log = logging.getLogger(__name__)

PART_SAMPLES = 10_000  # samples the preparer hands to the sender at a time (a line writer sends 5,000 a request)
STORE_RETRY = Backoff(0.5, 30.0)  # the waits while storage or the intake queue's disk is unavailable


class Ingest(Generic[S]):
    """Subscribe to every probe's topics and move their batches through the intake queue into storage."""

    def __init__(self, cfg: MqttConfig, writer: Writer, metrics: CollectorMetrics, intake: DiskQueue,
                 zones: list[str] | None = None, clock: Callable[[], int] = time.time_ns,
                 max_batch: int = 500,
                 on_arrival: Callable[[list[tuple[str, bytes]], int, list[int | None]], None] | None = None,
                 series: SeriesLimit | None = None, scope: Scope | None = None,
                 sessions: SessionFactory[S] = paho_session) -> None:  # type: ignore[assignment]  # S: its default
        """Set up the pipeline and its two sessions' clients, made by ``sessions`` (paho's by default, or a test's
        fakes); no I/O until ``start``."""
        self.cfg, self.writer, self.metrics, self.clock = cfg, writer, metrics, clock
        self.scope = scope or OPEN  # what each probe may report (collector.scope)
        self.intake = intake
        self.zones = zones or ["+"]
        self.max_batch = max_batch
        # Sees every message once it is in the intake queue (the alert engine), with its id there (None: not
        # stored, as ticks).
        self.on_arrival = on_arrival
        # Gets what the preparer decoded of each entry taken from the intake queue, but the collector's own: (id,
        # batch or None if rejected, the rows refused of it or None), in the order decoded; every batch whole, as
        # received, whatever storage keeps of it. The alert engine then need not decode data again
        # (``AlertEngine.prepared``). Preparer thread; must not block.
        self.on_prepared: Callable[[list[tuple[int, wire.Batch | None, Refusals | None]]], None] | None = None
        # Called when the preparer finds the sender's queue full (storage is slow or down: the preparer waits for
        # it), and again every 0.2 s while it waits (the alert engine then decodes data that waited for the preparer
        # too long). Preparer thread; must not block.
        self.on_store_behind: Callable[[], None] | None = None
        # Gets the seq gaps of each probe with data in a part, by zone/probe, as counted, with the arrival time
        # of the part's newest message (the alert engine's DataLoss). Called by the preparer thread; must not
        # block.
        self.on_gaps: Callable[[dict[str, int], int], None] | None = None
        # Gets (zone/probe, seq, arrival time) of every message whose seq jumped absurdly (SeqTracker); preparer
        # thread, must not block.
        self.on_jump: Callable[[str, int, int], None] | None = None
        # The data session's lag: every TICK_EVERY the intake thread publishes the time on the tick topic, which
        # only the data session subscribes to; the broker queues it behind whatever that session has waiting,
        # so when it comes back, everything published before it has arrived. ``on_arrival`` gets ticks in
        # their place among the data (the engine: how long a probe's silence is proven, not only seen).
        self.tick_topic = tick_topic(cfg)
        self.caught_up_ns = 0        # the publish time of the newest tick back: everything before it arrived
        self._next_tick = 0.0        # monotonic time of the next tick
        self._tick_warned = False
        self._connected_at = 0.0     # monotonic time the data session last connected
        metrics.lag.set(float("nan"))   # not known until the first tick is back
        self.seqs = SeqTracker(intake.db)
        # Each probe's clock offset, from the send times its agent stamps on its messages: measured by the intake
        # thread, applied by the preparer (and the alert engine) to the messages of a probe whose clock is off.
        self.skew = ClockSkew(intake.db, metrics.registry)
        self._gap_times: dict[str, int] = {}  # probe -> time of its last seq_gaps sample (preparer thread)
        self.series = series or IngestLimits().series_limit()  # distinct series per probe
        self._lines: LineWriter | None = writer if takes_lines(writer) else None  # the fast path's writer
        intake.db.execute("PRAGMA secure_delete=FAST")  # see the module docstring
        self._arrivals: queue.Queue[Arrival] = queue.Queue(maxsize=20_000)          # data
        self._urgent_arrivals: queue.Queue[Arrival] = queue.Queue(maxsize=20_000)   # status and events
        self._arrived = threading.Event()
        self._to_send: queue.Queue[Part] = queue.Queue(maxsize=4)  # the preparer works this far ahead at most
        self._to_commit: queue.Queue[Part] = queue.Queue()
        self._in_flight = 0  # parts made by the preparer and not yet committed
        self._flight_lock = threading.Lock()
        self._reader: QueueReader | None = None  # the preparer's own connection to the intake queue
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the intake queue's connection: intake thread, committer, inject
        self._wake_writer = threading.Event()
        self._threads = [named(self._intake_loop, "zw-intake"), named(self._prepare_loop, "zw-prepare"),
                         named(self._send_loop, "zw-send"), named(self._commit_loop, "zw-commit")]
        self._complaints: dict[tuple[str, str], float] = {}
        client_id = cfg.client_id or "zonewatch-collector"
        self.client = self._client(sessions, client_id, cfg.username, ("data",), self._arrivals)
        self.urgent_client = self._client(sessions, f"{client_id}{URGENT_SUFFIX}",
                                          f"{cfg.username}{URGENT_SUFFIX}" if cfg.username else None,
                                          ("status", "events"), self._urgent_arrivals)
        self.connected = threading.Event()    # both sessions are connected
        self.subscribed = threading.Event()   # both sessions are subscribed

    def _client(self, sessions: SessionFactory[S], client_id: str, username: str | None, kinds: tuple[wire.Kind, ...],
                arrivals: queue.Queue[Arrival]) -> S:
        """Return the client of one of the two sessions, taking ``kinds`` of every zone into ``arrivals``."""
        client = sessions(self.cfg, client_id, username or "")
        client.user_data_set(Session(client_id, kinds, arrivals))
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    def start(self) -> None:
        """Start the intake and writer threads and connect (in the background)."""
        self._reader = self.intake.reader()
        for t in self._threads:
            t.start()
        props = None
        kwargs: dict[str, Any] = {}
        if self.cfg.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 7 * 86400  # the broker keeps our queue for a week
            props.ReceiveMaximum = 1000  # unacknowledged deliveries the broker may have out to us
            kwargs["clean_start"] = False
        for client in (self.urgent_client, self.client):
            client.connect_async(self.cfg.host, self.cfg.port, keepalive=int(self.cfg.keepalive),
                                 properties=props, **kwargs)
            client.loop_start()

    def stop(self, timeout: float = 10.0) -> None:
        """Commit and acknowledge what arrived, write what can be written in ``timeout``, disconnect."""
        deadline = time.monotonic() + timeout
        self.connected.clear()
        for session in self._all_sessions():
            session.connected = False   # a disconnect on purpose: nothing to warn about
        for client in (self.client, self.urgent_client):
            client.disconnect()
            client.loop_stop()
        while not (self._arrivals.empty() and self._urgent_arrivals.empty()) and time.monotonic() < deadline:
            time.sleep(0.02)
        while self.intake.depth() and time.monotonic() < deadline:
            self._wake_writer.set()
            time.sleep(0.02)
        self._stop.set()
        self._wake_writer.set()
        for t in self._threads:
            t.join(timeout=max(0.5, deadline - time.monotonic()))
        if self._reader is not None and not self._threads[1].is_alive():
            self._reader.close()

    # paho's network thread -----------------------------------------------------------------------------

    def _on_connect(self, client: Subscriber, session: Session, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("broker %s:%s refused the collector (session %s): %s", self.cfg.host, self.cfg.port,
                      session.client_id, reason)
            return
        mine = [(wire.subscription(kind, zone), 1) for zone in self.zones for kind in session.kinds]
        if "data" in session.kinds:
            mine.append((self.tick_topic, 1))
        client.subscribe(mine)
        if "status" in session.kinds:   # the park bridges' states (ParkUplinkDown), apart: a refusal is no failure
            _, mid = client.subscribe([(f"{BRIDGE_STATE_ROOT}{zone}/state", 1) for zone in self.zones])
            session.bridge_mid = -1 if mid is None else mid
        # A session kept from before (one session for everything, or the other kinds) may still hold
        # subscriptions to the other session's topics: drop them, so nothing comes twice.
        others = [wire.subscription(kind, zone) for zone in self.zones for kind in ("status", "data", "events")
                  if kind not in session.kinds]
        client.unsubscribe(others)
        log.info("collector connected to %s:%s (session %s present: %s)", self.cfg.host, self.cfg.port,
                 session.client_id, getattr(flags, "session_present", "?"))
        session.connected = True
        if "data" in session.kinds:
            self._connected_at = time.monotonic()
        if all(s.connected for s in self._all_sessions()):
            self.connected.set()
        if getattr(flags, "session_present", False):
            # The broker kept this session, and with it its subscriptions: what it holds for us flows from now on.
            # Its SUBACK for the subscriptions just sent again may come only after that backlog (seen minutes
            # late behind a fleet's): waiting for it would say "not subscribed" all that time.
            self._subscribed(session)

    def _subscribed(self, session: Session) -> None:
        session.subscribed = True
        if all(s.subscribed for s in self._all_sessions()) and not self.subscribed.is_set():
            log.info("collector subscribed to %d topic filters",
                     sum(len(s.kinds) for s in self._all_sessions()) * len(self.zones))
            self.subscribed.set()

    def _on_subscribe(self, client: Subscriber, session: Session, mid: int, reasons: Any, props: Any) -> None:
        refused = [r for r in reasons if getattr(r, "is_failure", False)]
        if mid == session.bridge_mid:
            if refused:
                log.warning("broker refused the park bridges' state topics (%s...): ParkUplinkDown cannot be seen, "
                            "and a park's cut uplink pages its probes ProbeDown (render-mosquitto --bridge grants "
                            "them)", BRIDGE_STATE_ROOT)
            return
        if refused:
            log.error("broker refused the collector's subscriptions (session %s): %s", session.client_id, refused)
            return
        self._subscribed(session)

    def _on_disconnect(self, client: Subscriber, session: Session, flags: Any, reason: Any, props: Any) -> None:
        session.subscribed = False
        self.subscribed.clear()
        if session.connected:   # stop() marks its sessions disconnected first: nothing to warn about then
            log.warning("collector lost the broker %s:%s (session %s: %s); reconnecting", self.cfg.host,
                        self.cfg.port, session.client_id, reason)
        session.connected = False
        self.connected.clear()

    def _all_sessions(self) -> list[Session]:
        return [self.client.user_data_get(), self.urgent_client.user_data_get()]

    def _on_message(self, client: Subscriber, session: Session, msg: mqtt.MQTTMessage) -> None:
        # bytes() of the bytes paho hands over is the same object, not a copy. Counted by the intake thread.
        session.arrivals.put(Arrival(client, msg.mid, msg.qos, msg.topic, bytes(msg.payload),
                                      sent_stamp(msg.properties)))
        self._arrived.set()

    # intake thread --------------------------------------------------------------------------------------

    def _intake_loop(self) -> None:
        while not (self._stop.is_set() and self._arrivals.empty() and self._urgent_arrivals.empty()):
            self._arrived.clear()
            self._tick(time.monotonic())
            if not self._take_arrivals():
                self._arrived.wait(0.2)

    def _take_arrivals(self) -> bool:
        """Commit what waits in a hand-over queue (status and events first), hand it to ``on_arrival`` and
        acknowledge it; return False if nothing waited (one round of the intake thread)."""
        taken = drain(self._urgent_arrivals, 2000) or drain(self._arrivals, 2000)  # status and events first
        if not taken:
            return False
        messages = [(a.topic, a.payload) for a in taken]
        now = self.clock()
        # Ticks and the park bridges' states are for the engine only.
        kept = [m[0] != self.tick_topic and not m[0].startswith(BRIDGE_STATE_ROOT) for m in messages]
        stored = [m for m, keep in zip(messages, kept, strict=True) if keep]
        self.metrics.received_messages.inc(len(stored))
        stamped = [(a.topic, a.sent_ns) for a in taken if a.sent_ns is not None]
        if stamped:
            self._clocks(stamped, now)
        ids: list[int | None] = [None] * len(messages)   # each message's id in the intake queue
        if stored:
            with self._lock:
                new = iter(self.intake.put_many(stored, now))
                self.metrics.queue_depth.set(self.intake.depth())
            self._wake_writer.set()
            ids = [next(new) if keep else None for keep in kept]
        if len(stored) < len(messages):
            self._ticked(messages, now)
        if self.on_arrival is not None:
            self.on_arrival(messages, now, ids)
        for a in taken:  # only now is the message ours: acknowledge, in arrival order
            if a.qos > 0:
                a.client.ack(a.mid, a.qos)
        return True

    def _clocks(self, stamped: list[tuple[str, int]], now: int) -> None:
        """Measure the stamping probes' clocks; store a change of an offset in force before the messages it
        applies to are committed (intake thread)."""
        points = self.skew.observe(stamped, now, self.caught_up_ns)
        if points:
            with self._lock:
                self.skew.store(points, now, self.intake.max_age_ns)
            for probe, _, offset in points:
                if offset:
                    log.warning("probe %s: its clock is %.1f s %s the collector's (by the send times it stamps); its "
                                "samples are stored at corrected times from now on", probe, abs(offset) / 1e9,
                                "ahead of" if offset > 0 else "behind")
                else:
                    log.warning("probe %s: its clock agrees with the collector's again; its samples are stored at "
                                "the times it gives", probe)

    def _tick(self, at: float) -> None:
        """Publish a tick if one is due at ``at`` (monotonic seconds; intake thread, whose loop reads the clock)."""
        if at < self._next_tick or not self.connected.is_set():
            return
        self._next_tick = at + TICK_EVERY
        self.client.publish(self.tick_topic, str(self.clock()).encode(), qos=1)
        if not self.caught_up_ns and not self._tick_warned and at - self._connected_at > 30:
            self._tick_warned = True
            log.warning("none of the collector's ticks came back on %s in 30 s: the broker must let its user "
                        "read and write that topic (render-mosquitto's ACL does). Until they come, ProbeDown by "
                        "silence cannot tell a silent probe from a collector that is behind", self.tick_topic)

    def _ticked(self, messages: list[tuple[str, bytes]], now: int) -> None:
        """Take the ticks among ``messages``: the data session's lag, and how far its arrivals are complete."""
        for topic, payload in messages:
            sent = tick_time(payload) if topic == self.tick_topic else None
            if sent is not None and sent > self.caught_up_ns:
                self.caught_up_ns = sent
                self.metrics.lag.set(max(0.0, (now - sent) / 1e9))

    def inject(self, batches: list[wire.Batch]) -> None:
        """Queue batches made by the collector itself (derived measurements) for storage, durably."""
        now = self.clock()
        items = [(DERIVED + wire.topic(b.zone, b.probe, "data"), wire.encode(b)) for b in batches]
        with self._lock:
            self.intake.put_many(items, now)
        self._wake_writer.set()

    # preparer thread ------------------------------------------------------------------------------------

    def _prepare_loop(self) -> None:
        assert self._reader is not None
        taking = FairTake(self._reader, self.max_batch)  # in order, or by topic behind a backlog
        while not self._stop.is_set():
            self._wake_writer.clear()  # before looking: a wake-up from now on is not lost
            with self._flight_lock:
                if not self._in_flight:
                    # Everything taken is committed (only this thread makes parts), so every entry left is
                    # new: look from the start, which also finds any entry given an id below the last taken.
                    taking.reset()
            entries = taking.take()
            if not entries:
                self._wake_writer.wait(0.2)
                continue
            for part in self._prepare(entries):
                with self._flight_lock:
                    self._in_flight += 1
                while True:
                    if self.on_store_behind is not None and self._to_send.full():
                        self.on_store_behind()
                    try:
                        self._to_send.put(part, timeout=0.2)  # waits while the sender is behind: back-pressure
                        break
                    except queue.Full:
                        if self._stop.is_set():
                            return

    def _prepare(self, entries: list[Entry]) -> Iterator[Part]:
        """Decode and check entries, drop repeats, and encode the rest (or have the writer encode them), in
        parts of about PART_SAMPLES samples (so that the first request goes out while the next part is made).
        """
        ids: list[int] = []
        batches: list[Item] = []
        samples = 0
        arrived = 0
        report: list[tuple[int, wire.Batch | None, Refusals | None]] | None = (
            [] if self.on_prepared is not None else None)   # what the alert engine is given
        for entry in entries:
            ids.append(entry.id)
            arrived = entry.created_ns
            item: Item
            refused: Refused | None
            offset = self.skew.offset_at(entry.kind, entry.created_ns)   # 0 unless the probe's clock is off
            tell = report if report is not None and not entry.kind.startswith(DERIVED) else None
            fast = self._encode_plain(entry, tell) if self._lines is not None and not offset else None
            if fast is not None:
                item, refused = fast
            else:
                try:
                    batch, outside = read_entry(entry, self.scope, offset_ns=offset)
                except wire.WireError as exc:
                    self.metrics.rejected_messages.labels(exc.reason).inc()
                    self._complain(entry.kind, exc)
                    if tell is not None:
                        tell.append((entry.id, None, None))
                    continue
                if tell is not None:
                    tell.append((entry.id, batch, outside or None))
                name = f"{batch.zone}/{batch.probe}"
                if outside:
                    self._outside(entry.kind, batch, outside)
                if batch.seq and not self.seqs.first_time(name, batch.origin, batch.seq):
                    self.metrics.duplicate_batches.inc()
                    continue
                if self.seqs.jumps:
                    self._jumped(entry)
                kept, refused = self.series.admit(name, batch.samples, entry.created_ns)
                item = batch if refused is None else dataclasses.replace(batch, samples=tuple(kept))
                if offset:
                    self.skew.corrected(entry.kind)
            if refused is not None:
                self._refused(entry.kind, item, refused)
            batches.append(item)
            samples += sample_count(item)
            if samples >= PART_SAMPLES:
                if report:
                    self._report(report)
                yield self._part(ids, batches, arrived)
                ids, batches, samples = [], [], 0
        if report:
            self._report(report)
        if ids:
            yield self._part(ids, batches, arrived)

    def _report(self, report: list[tuple[int, wire.Batch | None, Refusals | None]]) -> None:
        """Hand what was decoded to ``on_prepared`` and empty ``report``."""
        assert self.on_prepared is not None
        self.on_prepared(report[:])
        report.clear()

    def _encode_plain(self, entry: Entry, tell: list[tuple[int, wire.Batch | None, Refusals | None]] | None = None,
                      ) -> tuple[Encoded, Refused | None] | None:
        """The fast path for the common message: samples only, every row plain (see ``Encoder.encode_rows``),
        not a repeat. Return it encoded, with what the series limit refused; or None, having changed nothing,
        for ``parse_entry`` and the full path to deal with (and name what is wrong, if anything is). If it is
        taken, its whole batch goes to ``tell`` (for the alert engine), made of the rows just checked."""
        assert self._lines is not None
        plain = plain_message(entry)
        if plain is None:
            return None
        head, rows = plain
        name = f"{head.zone}/{head.probe}"
        if head.seq and self.seqs.is_repeat(name, head.origin, head.seq):
            return None  # counted as a repeat by the full path
        if not entry.kind.startswith(DERIVED) and not self.scope.plain(head.zone, head.probe, rows):
            return None  # the full path refuses what the probe may not report, and counts it
        series, room = self.series.table(name, entry.created_ns)
        done = self._lines.encoder.encode_rows(head.zone, head.probe, rows, entry.created_ns, DEFAULT_LIMITS,
                                               series, room)
        if done is None:
            return None
        encoded, refused, example = done
        if tell is not None:
            tell.append((entry.id, checked_batch(head, rows), None))
        encoded.seq = head.seq
        if head.seq:
            self.seqs.first_time(name, head.origin, head.seq)
            if self.seqs.jumps:
                self._jumped(entry)
        return encoded, (Refused(refused, example) if refused else None)

    def _outside(self, topic: str, batch: wire.Batch, refused: Refusals) -> None:
        """Count and log rows a probe may not report (``collector.scope``); the engine alerts on them."""
        name = f"{batch.zone}/{batch.probe}"
        for reason, n in refused.counts.items():
            self.metrics.refused_samples.labels(name, reason).inc(n)
        self._complain(topic, wire.WireError("outside", f"probe {name} seq {batch.seq}: refused rows it may not "
                                             f"report: {refused.describe()}; the rest is kept"), "rows")

    def _jumped(self, entry: Entry) -> None:
        """Count, log and report the seq jumps ``SeqTracker`` met (stored, not believed)."""
        for name, origin, seq in self.seqs.jumps:
            self.metrics.seq_jumps.labels(name).inc()
            self._complain(entry.kind, wire.WireError(
                "seq_jump", f"probe {name} origin {origin}: seq {seq} is absurdly far from its stream; its data is "
                f"kept, its seq is not believed until {self.seqs.resync} in a row follow on"), "a seq")
            if self.on_jump is not None:
                self.on_jump(name, seq, entry.created_ns)
        self.seqs.jumps.clear()

    def _refused(self, topic: str, item: Item, refused: Refused) -> None:
        name = f"{item.zone}/{item.probe}"
        self.metrics.rejected_samples.labels("too_many_series").inc(refused.samples)
        self._complain(topic, wire.WireError(
            "too_many_series", f"probe {name} seq {item.seq}: {refused.samples} samples of new series "
            f"refused (e.g. {refused.example}): it has {self.series.count(name)} series, at most "
            f"{self.series.max_series} (limits.max_series_per_probe); its other samples are kept"), "samples")

    def _part(self, ids: list[int], batches: list[Item], arrived_ns: int) -> Part:
        batches += self._gap_samples(batches, arrived_ns)
        seq_rows, gaps = self.seqs.snapshot()
        send = self._stage(batches) if batches else None
        return Part(ids, batches, send, seq_rows, gaps)

    def _stage(self, batches: list[Item]) -> Callable[[], None] | None:
        """Return the writer's send for ``batches``; if it cannot take them all, drop only those it refuses."""
        try:
            return self._prepare_write(batches)
        except StorageError as exc:
            if exc.retryable:  # not for prepare_write to say, but then the sender's retries apply
                return functools.partial(self._write, batches)
            self.metrics.write_errors.inc()
            first = exc
        kept = []
        for batch in batches:
            try:
                self._prepare_write([batch])
            except StorageError as exc:
                self._drop(batch, exc if len(batches) > 1 else first)
                continue
            kept.append(batch)
        batches[:] = kept
        return self._prepare_write(kept) if kept else None

    def _prepare_write(self, batches: list[Item]) -> Callable[[], None]:
        if self._lines is not None:
            return self._lines.prepare(batches)
        return prepare_write(self.writer, as_batches(batches))

    def _write(self, batches: list[Item]) -> None:
        if self._lines is not None:
            self._lines.write(batches)
        else:
            self.writer.write(as_batches(batches))

    def _gap_samples(self, batches: list[Item], arrived_ns: int) -> list[wire.Batch]:
        """Return one ``probe`` sample with ``seq_gaps`` for each probe with data in ``batches``.

        Each probe's samples get times at least a millisecond apart, later than the last: two parts prepared
        within one millisecond would otherwise give two values at one time, and VictoriaMetrics, which keeps
        milliseconds, keeps the bigger (older) one of such a pair, so a backlog's last count could be lost."""
        now = self.clock()
        out = []
        counted: dict[str, int] = {}
        for zone, probe in sorted({(b.zone, b.probe) for b in batches if b.seq}):
            name = f"{zone}/{probe}"
            ts = max(now, self._gap_times.get(name, 0) + 1_000_000)
            self._gap_times[name] = ts
            counted[name] = self.seqs.gaps(name)
            out.append(wire.Batch(zone, probe, 0, ts, (wire.Sample("probe", {}, {"seq_gaps": counted[name]}, ts),)))
        if self.on_gaps is not None and counted:
            self.on_gaps(counted, arrived_ns)   # as of the arrival of the part's newest message
        return out

    def _complain(self, topic: str, exc: wire.WireError, what: str = "a message") -> None:
        key = (topic, exc.reason)
        now = time.monotonic()
        if now - self._complaints.get(key, -1e9) > 60:
            log.warning("rejected %s on %s: %s", what, topic, exc)
            self._complaints[key] = now

    # sender thread ------------------------------------------------------------------------------------

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            try:
                part = self._to_send.get(timeout=0.2)
            except queue.Empty:
                continue
            if part.send is not None and not self._write_with_retry(part):
                return  # stopping: the entries stay in the intake queue for the next start
            part.batches, part.send = [], None  # written: only the ids and the bookkeeping are needed now
            self._to_commit.put(part)

    # committer thread ---------------------------------------------------------------------------------

    def _commit_loop(self) -> None:
        sender = self._threads[2]
        while True:
            try:
                done = [self._to_commit.get(timeout=0.2)]
            except queue.Empty:
                if self._stop.is_set() and not sender.is_alive():
                    return
                continue
            while True:  # whatever else is written: one transaction for all
                try:
                    done.append(self._to_commit.get_nowait())
                except queue.Empty:
                    break
            waits = STORE_RETRY.waits()
            while not self._commit(done):
                if self._stop.wait(next(waits)):
                    return  # the entries stay in the intake queue: written again at the next start
            with self._flight_lock:
                self._in_flight -= len(done)
            for part in done:
                for name, gaps in part.gaps.items():
                    self.metrics.seq_gaps.labels(name).set(gaps)
            self._wake_writer.set()

    def _commit(self, done: list[Part]) -> bool:
        """Delete the entries of written parts and store their bookkeeping, in one transaction."""
        with self._lock:
            try:
                self.intake.begin()
                try:
                    for part in done:  # in the order written, so the newest bookkeeping is stored last
                        self.seqs.store(part.seq_rows)
                        self.intake.ack_within(part.ids)
                    self.intake.commit()
                except BaseException:
                    self.intake.rollback()
                    raise
            except sqlite3.Error as exc:  # disk full, I/O error: the parts wait, nothing is lost
                log.error("cannot update the intake queue %s (%s); trying again", self.intake.path, exc)
                return False
            depth = self.intake.depth()
            self.metrics.queue_depth.set(depth)
            if depth == 0:   # a backlog has drained: give its space back, a few MiB at a time
                try:
                    self.intake.reclaim()
                except sqlite3.Error as exc:
                    log.warning("cannot give the intake queue's free space back (%s); trying later", exc)
        return True

    def _write_with_retry(self, part: Part) -> bool:
        """Write a part, retrying while the store is unavailable; return False if stopped first."""
        assert part.send is not None
        waits = STORE_RETRY.waits()
        while True:
            try:
                part.send()
            except StorageError as exc:
                self.metrics.write_errors.inc()
                if not exc.retryable:
                    return self._write_one_by_one(part.batches, exc)
                delay = next(waits)
                log.warning("storage unavailable (%s); retrying in %.1fs", exc, delay)
                if self._stop.wait(delay):
                    return False
                continue
            self.metrics.written_samples.inc(sum(sample_count(b) for b in part.batches))
            self.metrics.written_batches.inc(len(part.batches))
            return True

    def _write_one_by_one(self, batches: list[Item], first: StorageError) -> bool:
        """After a refusal, write batch by batch so that only the refused ones are dropped.

        A batch that meets an unavailable store is retried, not dropped; return False if stopped first.
        """
        for batch in batches:
            waits = STORE_RETRY.waits()
            while True:
                try:
                    self._write([batch])
                except StorageError as exc:
                    if exc.retryable:
                        self.metrics.write_errors.inc()
                        delay = next(waits)
                        log.warning("storage unavailable (%s); retrying in %.1fs", exc, delay)
                        if self._stop.wait(delay):
                            return False
                        continue
                    self._drop(batch, exc if len(batches) > 1 else first)
                    break
                self.metrics.written_samples.inc(sample_count(batch))
                self.metrics.written_batches.inc()
                break
        return True

    def _drop(self, batch: Item, exc: StorageError) -> None:
        log.error("storage refused batch %s/%s seq %d, dropping it: %s", batch.zone, batch.probe, batch.seq, exc)
        self.metrics.dropped_batches.inc()
