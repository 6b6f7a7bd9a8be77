"""Ingest: MQTT in, validated batches out to storage, and only then the acknowledgement to the broker.

Threads::

    paho network thread   on_message: parse the topic, decode with agent.wire, check that the payload's
                          zone/probe equal the topic's; put an Item (batch or rejection) on the queue.
                          Never blocks on storage.
    writer thread         takes Items in arrival order, drops duplicates (same probe, same seq), writes
                          the batches, then acknowledges every Item's message in the order received.

A message is acknowledged (QoS 1 PUBACK) only after its samples are in storage, and the session is
persistent, so a collector or storage outage leaves unacknowledged messages with the broker, which
delivers them again. A rejected payload is counted by reason and acknowledged (it will never become
valid); the stream goes on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent import wire
from collector.metrics import CollectorMetrics
from collector.storage import StorageError, Writer
from zwconf.mqtt import MqttConfig

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Item:
    """One received message: a batch to write (or None if rejected) and how to acknowledge it."""

    mid: int
    qos: int
    batch: wire.Batch | None
    dedupe: bool = True


class SeqWindow:
    """Remember the last ``size`` sequence numbers seen per probe, to drop resent batches."""

    def __init__(self, size: int = 65536) -> None:
        self.size = size
        self._seen: dict[str, OrderedDict[int, None]] = {}

    def first_time(self, probe: str, seq: int) -> bool:
        """Return True the first time (probe, seq) is seen, False for a repeat."""
        seen = self._seen.setdefault(probe, OrderedDict())
        if seq in seen:
            return False
        seen[seq] = None
        if len(seen) > self.size:
            seen.popitem(last=False)
        return True


def parse_message(topic: str, payload: bytes | bytearray, clock: Callable[[], int]) -> wire.Batch:
    """Turn one MQTT message into a batch, or raise WireError naming what is wrong."""
    where = wire.parse_topic(topic)
    if where.kind == "status":
        state = payload.strip()
        if state not in (wire.STATUS_ONLINE, wire.STATUS_OFFLINE):
            raise wire.WireError("bad_status", f"{topic}: status {payload[:32]!r} is not online/offline")
        now = clock()
        up = wire.Sample("probe", {}, {"up": state == wire.STATUS_ONLINE}, now)
        return wire.Batch(where.zone, where.probe, 0, now, (up,))
    if where.kind not in ("data", "events"):
        raise wire.WireError("bad_topic", f"{topic}: the collector does not take {where.kind!r} messages")
    batch = wire.decode(payload)
    if (batch.zone, batch.probe) != (where.zone, where.probe):
        raise wire.WireError("identity_mismatch", f"{topic}: payload says {batch.zone}/{batch.probe}")
    return batch


class Ingest:
    """Subscribe to every probe's topics and move their batches into storage."""

    def __init__(self, cfg: MqttConfig, writer: Writer, metrics: CollectorMetrics, zones: list[str] | None = None,
                 clock: Callable[[], int] = time.time_ns, max_batch: int = 500) -> None:
        self.cfg, self.writer, self.metrics, self.clock = cfg, writer, metrics, clock
        self.zones = zones or ["+"]
        self.max_batch = max_batch
        self.queue: queue.Queue[Item] = queue.Queue(maxsize=10_000)
        self.window = SeqWindow()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write_loop, name="zw-writer", daemon=True)
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
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.connected = threading.Event()

    def start(self) -> None:
        """Start the writer thread and connect (in the background)."""
        self._thread.start()
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
        """Write what was received, acknowledge it, and disconnect."""
        deadline = time.monotonic() + timeout
        while not self.queue.empty() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stop.set()
        self._thread.join(timeout=max(0.1, deadline - time.monotonic()))
        self.connected.clear()
        self.client.disconnect()
        self.client.loop_stop()

    # paho's network thread -----------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("broker %s:%s refused the collector: %s", self.cfg.host, self.cfg.port, reason)
            return
        for zone in self.zones:
            for kind in ("status", "data", "events"):
                client.subscribe(wire.subscription(kind, zone), qos=1)
        log.info("collector connected to %s:%s (session present: %s)", self.cfg.host, self.cfg.port,
                 getattr(flags, "session_present", "?"))
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self.connected.is_set():
            log.warning("collector lost the broker %s:%s (%s); reconnecting", self.cfg.host, self.cfg.port, reason)
        self.connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.metrics.received_messages.inc()
        try:
            batch = parse_message(msg.topic, msg.payload, self.clock)
        except wire.WireError as exc:
            self.metrics.rejected_messages.labels(exc.reason).inc()
            self._complain(msg.topic, exc)
            item = Item(msg.mid, msg.qos, None)
        else:
            item = Item(msg.mid, msg.qos, batch, dedupe=not msg.topic.endswith("/status"))
        self.queue.put(item)  # blocks paho (and so the broker) when the writer is far behind: back-pressure

    def _complain(self, topic: str, exc: wire.WireError) -> None:
        key = (topic, exc.reason)
        now = time.monotonic()
        if now - self._complaints.get(key, -1e9) > 60:
            log.warning("rejected a message on %s: %s", topic, exc)
            self._complaints[key] = now

    # writer thread --------------------------------------------------------------------------------------

    def _take(self) -> list[Item]:
        try:
            items = [self.queue.get(timeout=0.2)]
        except queue.Empty:
            return []
        while len(items) < self.max_batch:
            try:
                items.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            items = self._take()
            if not items:
                continue
            batches = []
            for it in items:
                if it.batch is None:
                    continue
                if it.dedupe and not self.window.first_time(it.batch.probe, it.batch.seq):
                    self.metrics.duplicate_batches.inc()
                    continue
                batches.append(it.batch)
            if batches and not self._write_with_retry(batches):
                return  # stopping with unwritten batches: leave them unacknowledged for the broker to resend
            for it in items:
                if it.qos > 0:
                    self.client.ack(it.mid, it.qos)
            self.metrics.queue_depth.set(self.queue.qsize())

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
