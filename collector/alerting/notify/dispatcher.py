"""The notifiers' public entry: route, group, store durably, deliver per receiver, resend to Alertmanager.

::

    Dispatcher(cfg, inventory, mqtt, registry)   validates, builds the notifiers; no I/O
      start()                     opens each receiver's outbox (``<outbox_dir>/<receiver>.db``), starts its thread
      submit(notifications)       routes and groups them; returns once every receiver's share is on disk
      sync_alertmanager(firing, now_ns)   the alerts firing now, to be re-sent to Alertmanager
      stop()                      stops the threads; what is undelivered stays on disk for the next start

MQTT receivers publish through their own broker connection made from ``mqtt``, or, given ``mqtt_client``,
through that already connected client (the ingest's): needed when the broker names clients by username
(``use_username_as_clientid``, as the rendered listener does), where a second connection would take the
first one's session, back and forth.

Threads: ``submit`` and ``sync_alertmanager`` may be called from any thread (the alert engine's);
each receiver has its own delivery thread, so a slow or dead receiver never delays another.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from collector.alerting.config import AlertingConfig
from collector.alerting.model import Notification
from collector.alerting.notify.base import Clock, Notifier, SystemClock
from collector.alerting.notify.metrics import NotifyMetrics
from collector.alerting.notify.mqtt import MqttPublisher
from collector.alerting.notify.outbox import Outbox
from collector.alerting.notify.payload import group
from collector.alerting.notify.registry import Context, make_notifier
from collector.alerting.notify.routing import ALERTMANAGER, Router, key_path, problems
from collector.inventory import Inventory
from zonewatch.mqtt import MqttConfig

if TYPE_CHECKING:
    import paho.mqtt.client as paho

log = logging.getLogger(__name__)

QUEUE_SUFFIX = ".db"


class Dispatcher:
    """Every receiver's outbox; see the module docstring."""

    def __init__(self, cfg: AlertingConfig, inventory: Inventory, mqtt: MqttConfig | None,
                 registry: CollectorRegistry, *, mqtt_client: paho.Client | None = None, clock: Clock | None = None,
                 external_url: str | None = None, timeout: float = 10.0,
                 notifiers: Mapping[str, Notifier] | None = None, max_bytes: int | None = None,
                 max_age: float | None = None, outbox_dir: str | Path | None = None) -> None:
        folder = outbox_dir if outbox_dir is not None else cfg.outbox_dir
        if folder is None:
            raise ValueError("alerting.outbox_dir: no folder for the outboxes (give it, or outbox_dir=...)")
        self.folder = Path(folder)
        found = problems(cfg, inventory, has_mqtt=mqtt is not None or mqtt_client is not None)
        if found:
            raise ValueError("; ".join(f"{key_path(where)}: {message}" for where, message in found))
        self.cfg = cfg
        self.clock: Clock = clock or SystemClock()
        self.router = Router(cfg, inventory)
        self.metrics = NotifyMetrics(registry)
        # Per receiver; past either bound the oldest messages are dropped (and counted).
        self.max_bytes = cfg.outbox_max_bytes if max_bytes is None else max_bytes
        self.max_age_ns = int((cfg.outbox_max_age if max_age is None else max_age) * 1e9)
        given = dict(notifiers or {})
        needs_mqtt = any(s.type == "mqtt" and s.name not in given for s in self.router.receivers.values())
        self.publisher: MqttPublisher | None = None
        if needs_mqtt:
            self.publisher = MqttPublisher(client=mqtt_client) if mqtt_client is not None else MqttPublisher(mqtt)
        url = cfg.external_url if external_url is None else external_url
        ctx = Context(clock=self.clock, smtp=cfg.smtp, publisher=self.publisher, external_url=url,
                      timeout=timeout)
        self.notifiers: dict[str, Notifier] = {
            name: given.get(name) or make_notifier(spec, ctx) for name, spec in self.router.receivers.items()}
        self.outboxes: dict[str, Outbox] = {}
        self._lock = threading.Lock()
        self._unknown: set[str] = set()

    @property
    def receivers(self) -> list[str]:
        """Return every receiver's name."""
        return list(self.router.receivers)

    def start(self) -> None:
        """Open every outbox (undelivered messages from before are sent first) and start delivering."""
        self.open()
        if self.publisher is not None:
            self.publisher.start()
        for box in self.outboxes.values():
            box.start()
        log.info("notifications: %d receivers (%s)", len(self.outboxes), ", ".join(self.outboxes) or "none")

    def open(self) -> None:
        """Open every outbox without starting delivery (``start`` does both; tests drive ``Outbox.step``)."""
        folder = self.folder
        folder.mkdir(parents=True, exist_ok=True)
        for name, notifier in self.notifiers.items():
            box = Outbox(name, notifier, folder / f"{name}{QUEUE_SUFFIX}", self.cfg.retry, self.metrics, self.clock,
                         max_bytes=self.max_bytes, max_age_ns=self.max_age_ns)
            if box.queue.depth():
                log.info("receiver %s: %d messages from before the restart are still to be delivered", name,
                         box.queue.depth())
            self.outboxes[name] = box
        self._warn_orphans(folder)

    def _warn_orphans(self, folder: Path) -> None:
        """Log the outbox files of receivers that are no longer configured and still hold messages."""
        for path in sorted(folder.glob(f"*{QUEUE_SUFFIX}")):
            if path.name[: -len(QUEUE_SUFFIX)] in self.outboxes:
                continue
            try:
                db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    (count,) = db.execute("SELECT count(*) FROM entries").fetchone()
                finally:
                    db.close()
            except sqlite3.Error:
                continue
            if count:
                log.warning("outbox %s holds %d undelivered messages for a receiver that is no longer configured; "
                            "they will not be sent (delete the file once they do not matter)", path, count)

    def submit(self, notifications: Sequence[Notification]) -> None:
        """Route, group and store ``notifications``; return once every receiver's share is on disk."""
        if not notifications:
            return
        if not self.outboxes and self.notifiers:
            raise RuntimeError("Dispatcher.submit before start()")
        for n in notifications:
            if not self.router.known_carrier(n) and n.carrier not in self._unknown:
                self._unknown.add(str(n.carrier))
                log.warning("carrier %s is not in the inventory: its alerts go to the NOC only", n.carrier)
        now_ns = self.clock.time_ns()
        with self._lock:  # one submit at a time: every receiver sees submissions in the same order
            for name, share in self.router.split(notifications).items():
                messages = [share] if self.router.receivers[name].owner == ALERTMANAGER else group(share)
                self.outboxes[name].put(messages, now_ns)

    def sync_alertmanager(self, firing: Sequence[Notification], now_ns: int) -> None:
        """Re-send ``firing`` (every alert firing at ``now_ns``) to Alertmanager as soon as its queue is empty.

        A newer call replaces a list not yet sent. Without Alertmanager configured this does nothing; with a
        cluster, every peer gets the list.
        """
        for name, spec in self.router.receivers.items():
            box = self.outboxes.get(name)
            if box is not None and spec.owner == ALERTMANAGER:
                box.resend([n for n in firing if n.status == "firing"])

    def depth(self, receiver: str) -> int:
        """Return how many messages wait for ``receiver``."""
        return self.outboxes[receiver].depth()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop delivering (an attempt in progress ends within its timeout); undelivered messages stay on disk."""
        deadline = time.monotonic() + timeout
        for box in self.outboxes.values():
            box.signal_stop()
        for box in self.outboxes.values():
            box.join(max(0.1, deadline - time.monotonic()))
        if self.publisher is not None:
            self.publisher.close()
        self.outboxes = {}
