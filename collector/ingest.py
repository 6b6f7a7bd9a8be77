"""Ingest: MQTT in, durable intake queue, storage out. Nothing is acknowledged before it is on disk.

Threads::

    paho network thread   on_message: hand (mid, qos, topic, payload) to the intake thread. Never blocks on
                          disk or storage (a full hand-over queue blocks paho: back-pressure to the broker).
    intake thread         commits what arrived to the intake queue (zwqueue.DiskQueue, SQLite WAL, one
                          transaction for everything taken at once), then sends the QoS 1 acknowledgements
                          in the order the messages arrived.
    writer thread         takes entries from the intake queue in order, decodes and checks them with
                          agent.wire (a bad one is rejected and counted by reason, never fatal), drops
                          repeats (same probe, origin and seq), writes the rest to storage with retries and
                          backoff, and then, in one transaction, deletes the entries and saves the
                          sequence bookkeeping.

So a broker, storage or collector outage loses nothing: before the acknowledgement the broker keeps the
message (persistent session), after it the intake queue does. A crash between a storage write and the
transaction that follows replays those batches; the stores treat a rewritten point as the same point
(VictoriaMetrics with ``-dedup.minScrapeInterval``, InfluxDB and SQLite by key), so it is not counted twice.

Sequence bookkeeping (``SeqTracker``): per (probe, origin), a watermark below which every seq has been
seen or given up, and the seqs seen above it. A seq at or below the watermark, or already seen, is a
repeat. ``seq_gaps`` counts the seqs missing below the highest seen (late data still fill them in);
once more than ``window`` newer seqs have arrived, a missing one is given up and counted as lost.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent import wire
from collector.metrics import CollectorMetrics
from collector.storage import StorageError, Writer
from zwconf.mqtt import MqttConfig
from zwqueue import DiskQueue, Entry

log = logging.getLogger(__name__)

_loads: Callable[[Any], Any] = orjson.loads  # about twice as fast as the standard library's on our batches

_STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS seqstate(
    probe TEXT NOT NULL, origin INTEGER NOT NULL, watermark INTEGER NOT NULL, lost INTEGER NOT NULL,
    above TEXT NOT NULL, PRIMARY KEY (probe, origin));
"""


@dataclass
class ProbeSeq:
    """What the collector knows of one probe's sequence space."""

    watermark: int = 0
    lost: int = 0
    above: set[int] = field(default_factory=set)

    @property
    def gaps(self) -> int:
        """Return the seqs missing below the highest seen, plus those given up."""
        missing = (max(self.above) - self.watermark - len(self.above)) if self.above else 0
        return self.lost + missing


def _advance(st: ProbeSeq) -> None:
    """Move the watermark over every seq that now follows it without a hole."""
    while st.watermark + 1 in st.above:
        st.watermark += 1
        st.above.discard(st.watermark)


class SeqTracker:
    """Repeat detection and gap counting per (zone/probe, origin); persisted in the intake queue's file."""

    def __init__(self, db: Any, window: int = 65536) -> None:
        self.db, self.window = db, window
        db.executescript(_STATE_SCHEMA)
        self.state: dict[tuple[str, int], ProbeSeq] = {}
        for probe, origin, watermark, lost, above in db.execute("SELECT * FROM seqstate"):
            self.state[(probe, origin)] = ProbeSeq(watermark, lost, set(json.loads(above)))
        self._dirty: set[tuple[str, int]] = set()

    def first_time(self, probe: str, origin: int, seq: int) -> bool:
        """Record (probe, origin, seq); return False if it was seen before."""
        key = (probe, origin)
        st = self.state.setdefault(key, ProbeSeq())
        if seq <= st.watermark or seq in st.above:
            return False
        self._dirty.add(key)
        st.above.add(seq)
        _advance(st)  # the common case: contiguous, the set stays empty
        top = max(st.above) if st.above else st.watermark
        if top - st.watermark > self.window:  # give up on the oldest missing ones
            floor = top - self.window
            missing = floor - st.watermark - sum(1 for s in st.above if s <= floor)
            st.lost += missing
            st.above = {s for s in st.above if s > floor}
            st.watermark = floor
            _advance(st)
        return True

    def gaps(self, probe: str) -> int:
        """Return the gaps of every origin of one probe."""
        return sum(st.gaps for (p, _), st in self.state.items() if p == probe)

    def save(self) -> list[str]:
        """Write changed state (inside the caller's transaction); return the probes that changed."""
        probes = []
        for key in self._dirty:
            st = self.state[key]
            self.db.execute("INSERT OR REPLACE INTO seqstate VALUES (?, ?, ?, ?, ?)",
                            (key[0], key[1], st.watermark, st.lost, json.dumps(sorted(st.above))))
            probes.append(key[0])
        self._dirty.clear()
        return probes


DEFAULT_LIMITS = wire.Limits()


def parse_entry(entry: Entry, limits: wire.Limits = DEFAULT_LIMITS) -> wire.Batch:
    """Turn one queued message into a batch, or raise WireError naming what is wrong."""
    where = wire.parse_topic(entry.kind)
    if where.kind == "status":
        state = entry.payload.strip()
        if state not in (wire.STATUS_ONLINE, wire.STATUS_OFFLINE):
            raise wire.WireError("bad_status", f"{entry.kind}: status {entry.payload[:32]!r} is not online/offline")
        up = wire.Sample("probe", {}, {"up": state == wire.STATUS_ONLINE}, entry.created_ns)
        return wire.Batch(where.zone, where.probe, 0, entry.created_ns, (up,))
    if where.kind not in ("data", "events"):
        raise wire.WireError("bad_topic", f"{entry.kind}: the collector does not take {where.kind!r} messages")
    if len(entry.payload) > limits.max_bytes:  # before parsing it
        raise wire.WireError("too_large", f"{entry.kind}: {len(entry.payload)} bytes, at most {limits.max_bytes}")
    batch = wire.decode(entry.payload, _loads)
    if (batch.zone, batch.probe) != (where.zone, where.probe):
        raise wire.WireError("identity_mismatch", f"{entry.kind}: payload says {batch.zone}/{batch.probe}")
    wire.check_limits(batch, limits, entry.created_ns)
    if batch.events:  # stored too, as the "event" measurement: the NOC sees every trap and link change
        stored = tuple(wire.Sample("event", {**e.tags, "event": e.name}, {**e.fields, "occurred": True}, e.time_ns)
                       for e in batch.events)
        batch = dataclasses.replace(batch, samples=batch.samples + stored)
    return batch


@dataclass(slots=True)
class _Arrival:
    mid: int
    qos: int
    topic: str
    payload: bytes


class Ingest:
    """Subscribe to every probe's topics and move their batches through the intake queue into storage."""

    def __init__(self, cfg: MqttConfig, writer: Writer, metrics: CollectorMetrics, intake: DiskQueue,
                 zones: list[str] | None = None, clock: Callable[[], int] = time.time_ns,
                 max_batch: int = 500,
                 on_arrival: Callable[[list[tuple[str, bytes]], int], None] | None = None) -> None:
        self.cfg, self.writer, self.metrics, self.clock = cfg, writer, metrics, clock
        self.intake = intake
        self.zones = zones or ["+"]
        self.max_batch = max_batch
        self.on_arrival = on_arrival  # sees every message once it is in the intake queue (the alert engine)
        self.seqs = SeqTracker(intake.db)
        self._arrivals: queue.Queue[_Arrival] = queue.Queue(maxsize=20_000)
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the intake queue is shared by the intake and writer threads
        self._wake_writer = threading.Event()
        self._threads = [threading.Thread(target=self._intake_loop, name="zw-intake", daemon=True),
                         threading.Thread(target=self._write_loop, name="zw-writer", daemon=True)]
        self._complaints: dict[tuple[str, str], float] = {}
        v5 = cfg.protocol == "5"
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=cfg.client_id or "zonewatch-collector",
                                  protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                                  clean_session=None if v5 else False, manual_ack=True)
        if cfg.username:
            self.client.username_pw_set(cfg.username, cfg.password.get_secret_value() if cfg.password else None)
        if cfg.tls:
            self.client.tls_set(ca_certs=cfg.tls.ca_file, certfile=cfg.tls.cert_file, keyfile=cfg.tls.key_file)
        self.client.max_inflight_messages_set(1000)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.connected = threading.Event()
        self.subscribed = threading.Event()

    def start(self) -> None:
        """Start the intake and writer threads and connect (in the background)."""
        for t in self._threads:
            t.start()
        props = None
        kwargs: dict[str, Any] = {}
        if self.cfg.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 7 * 86400  # the broker keeps our queue for a week
            props.ReceiveMaximum = 1000  # unacknowledged deliveries the broker may have out to us
            kwargs["clean_start"] = False
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=int(self.cfg.keepalive),
                                  properties=props, **kwargs)
        self.client.loop_start()

    def stop(self, timeout: float = 10.0) -> None:
        """Commit and acknowledge what arrived, write what can be written in ``timeout``, disconnect."""
        deadline = time.monotonic() + timeout
        self.connected.clear()
        self.client.disconnect()
        self.client.loop_stop()
        while not self._arrivals.empty() and time.monotonic() < deadline:
            time.sleep(0.02)
        while self.intake.depth() and time.monotonic() < deadline:
            self._wake_writer.set()
            time.sleep(0.02)
        self._stop.set()
        self._wake_writer.set()
        for t in self._threads:
            t.join(timeout=max(0.5, deadline - time.monotonic()))

    # paho's network thread -----------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("broker %s:%s refused the collector: %s", self.cfg.host, self.cfg.port, reason)
            return
        filters = [(wire.subscription(kind, zone), 1) for zone in self.zones for kind in ("status", "data", "events")]
        client.subscribe(filters)
        log.info("collector connected to %s:%s (session present: %s)", self.cfg.host, self.cfg.port,
                 getattr(flags, "session_present", "?"))
        self.connected.set()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        refused = [r for r in reasons if getattr(r, "is_failure", False)]
        if refused:
            log.error("broker refused the collector's subscriptions: %s", refused)
            return
        if not self.subscribed.is_set():
            log.info("collector subscribed to %d topic filters", len(reasons))
        self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.subscribed.clear()
        if self.connected.is_set():
            log.warning("collector lost the broker %s:%s (%s); reconnecting", self.cfg.host, self.cfg.port, reason)
        self.connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.metrics.received_messages.inc()
        self._arrivals.put(_Arrival(msg.mid, msg.qos, msg.topic, bytes(msg.payload)))

    # intake thread --------------------------------------------------------------------------------------

    def _intake_loop(self) -> None:
        while not (self._stop.is_set() and self._arrivals.empty()):
            try:
                taken = [self._arrivals.get(timeout=0.2)]
            except queue.Empty:
                continue
            while len(taken) < 2000:
                try:
                    taken.append(self._arrivals.get_nowait())
                except queue.Empty:
                    break
            messages = [(a.topic, a.payload) for a in taken]
            now = self.clock()
            with self._lock:
                self.intake.put_many(messages, now)
            self._wake_writer.set()
            if self.on_arrival is not None:
                self.on_arrival(messages, now)
            for a in taken:  # only now is the message ours: acknowledge, in arrival order
                if a.qos > 0:
                    self.client.ack(a.mid, a.qos)
            self.metrics.queue_depth.set(self.intake.depth())

    def inject(self, batches: list[wire.Batch]) -> None:
        """Queue batches made by the collector itself (derived measurements) for storage, durably."""
        now = self.clock()
        items = [(wire.topic(b.zone, b.probe, "data"), wire.encode(b)) for b in batches]
        with self._lock:
            self.intake.put_many(items, now)
        self._wake_writer.set()

    # writer thread --------------------------------------------------------------------------------------

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                entries = self.intake.pending(self.max_batch)
            if not entries:
                self._wake_writer.wait(0.2)
                self._wake_writer.clear()
                continue
            batches: list[wire.Batch] = []
            for entry in entries:
                try:
                    batch = parse_entry(entry)
                except wire.WireError as exc:
                    self.metrics.rejected_messages.labels(exc.reason).inc()
                    self._complain(entry.kind, exc)
                    continue
                if batch.seq and not self.seqs.first_time(f"{batch.zone}/{batch.probe}", batch.origin, batch.seq):
                    self.metrics.duplicate_batches.inc()
                    continue
                batches.append(batch)
            batches += self._gap_samples(batches)
            if batches and not self._write_with_retry(batches):
                return  # stopping: the entries stay in the intake queue for the next start
            with self._lock:
                self.intake.begin()
                try:
                    for name in self.seqs.save():
                        self.metrics.seq_gaps.labels(name).set(self.seqs.gaps(name))
                    self.intake.ack_within([e.id for e in entries])  # with the bookkeeping, atomically
                    self.intake.commit()
                except BaseException:
                    self.intake.rollback()
                    raise
            self.metrics.queue_depth.set(self.intake.depth())

    def _gap_samples(self, batches: list[wire.Batch]) -> list[wire.Batch]:
        """Return one ``probe`` sample with ``seq_gaps`` for each probe with data in ``batches``."""
        now = self.clock()
        probes = {(b.zone, b.probe) for b in batches if b.seq}
        return [wire.Batch(zone, probe, 0, now, (wire.Sample("probe", {}, {"seq_gaps": self.seqs.gaps(
            f"{zone}/{probe}")}, now),)) for zone, probe in sorted(probes)]

    def _complain(self, topic: str, exc: wire.WireError) -> None:
        key = (topic, exc.reason)
        now = time.monotonic()
        if now - self._complaints.get(key, -1e9) > 60:
            log.warning("rejected a message on %s: %s", topic, exc)
            self._complaints[key] = now

    def _write_with_retry(self, batches: list[wire.Batch]) -> bool:
        delay = 0.5
        while True:
            try:
                self.writer.write(batches)
            except StorageError as exc:
                self.metrics.write_errors.inc()
                if not exc.retryable:
                    self._write_one_by_one(batches, exc)
                    return True
                log.warning("storage unavailable (%s); retrying in %.1fs", exc, delay)
                if self._stop.wait(delay):
                    return False
                delay = min(delay * 2, 30.0)
                continue
            self.metrics.written_samples.inc(sum(len(b.samples) for b in batches))
            self.metrics.written_batches.inc(len(batches))
            return True

    def _write_one_by_one(self, batches: list[wire.Batch], first: StorageError) -> None:
        """After a refusal, write batch by batch so that only the refused ones are dropped."""
        for batch in batches:
            try:
                self.writer.write([batch])
            except StorageError as exc:
                log.error("storage refused batch %s/%s seq %d, dropping it: %s", batch.zone, batch.probe,
                          batch.seq, exc if len(batches) > 1 else first)
                self.metrics.dropped_batches.inc()
                continue
            self.metrics.written_samples.inc(len(batch.samples))
            self.metrics.written_batches.inc()
