"""Wiring only: broker (embedded when none is configured), storage, ingest, alerting and /metrics.

A collector with ``zones`` is a shard: it works with the inventory cut to those zones (``collector.shard``).
One of an HA pair (``ha``) holds its judgement after a start until it has caught up, and, as the secondary,
leaves what must happen once (the probes' configurations, enrolment) to the primary. With
``alerting.mqtt_delivery: alertmanager`` the MQTT relay is served beside /metrics (``notify.relay``)."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collector.broker import EmbeddedBroker
from collector.config import CollectorConfig
from collector.ingest import Ingest
from collector.inventory import Inventory
from collector.metrics import CollectorMetrics
from collector.ownership import Ownership
from collector.scope import Scope
from collector.storage import make_writer
from collector.storage.influx import InfluxWriter
from collector.threads import named, on_death
from zonewatch import wire
from zonewatch.httpd import BoundedHttpServer, HttpLimits
from zonewatch.mqtt import MqttConfig
from zonewatch.process import ServiceNotifier, raise_open_files_limit
from zonewatch.queue import LARGE_PAGES, DiskQueue

log = logging.getLogger(__name__)


class Collector:
    """A running collector; ``start()`` then ``stop()``, from one thread."""

    def __init__(self, cfg: CollectorConfig, inventory: Inventory | None = None,
                 inventory_path: Path | None = None) -> None:
        self.cfg = cfg
        if inventory is not None and cfg.zones:
            from collector.shard import restrict

            inventory = restrict(inventory, cfg.zones)   # ValueError names a reference across its zones
        self.inventory = inventory
        self.inventory_path = inventory_path   # followed by the fleet thread for desired configurations
        self.fleet: Any = None                 # collector.fleet.config_publisher.ConfigPublisher, with an inventory
        self.metrics = CollectorMetrics()
        self.broker: EmbeddedBroker | None = None
        self.ingest: Ingest | None = None
        self.engine: Any = None
        self.dispatcher: Any = None
        self.enrolment: Any = None            # collector.fleet.enrol_service.EnrolService, with an enrol section
        self.relay: Any = None                # collector.alerting.notify.relay.MqttRelay, with mqtt_delivery
        self.responder: Any = None            # collector.alerting.responder.Responder (acks, escalation), alerting on
        self.diagnostics: Any = None          # collector.fleet.diagnostics.Diagnostics, alerting on, not HA secondary
        self.pruner: Any = None               # collector.storage.retention.Pruner, with a SQLite store
        self._http: BoundedHttpServer | None = None
        self.fault_path = Path(cfg.queue.path).parent / "fault.json"   # what killed the last run, if a thread died
        self.died: str | None = None          # the thread that died in this run, and of what
        self._dead = threading.Event()
        self._unhook = on_death(self._died)

    def _died(self, thread: str, exc: BaseException) -> None:
        """A collector thread died (``collector.threads``): note it for the next start, and stop."""
        self.died = f"{thread}: {type(exc).__name__}: {exc}"
        try:
            self.fault_path.parent.mkdir(parents=True, exist_ok=True)
            self.fault_path.write_text(json.dumps({"thread": thread, "error": f"{type(exc).__name__}: {exc}"[:500],
                                                   "at_ns": time.time_ns()}))
        except OSError as err:
            log.error("cannot note the fault in %s: %s", self.fault_path, err)
        self._dead.set()

    def _last_fault(self) -> tuple[str, str, int] | None:
        """Return (thread, error, when) of a thread death that stopped the previous run, and forget it."""
        try:
            doc = json.loads(self.fault_path.read_text())
            self.fault_path.unlink()
            return str(doc["thread"]), str(doc["error"]), int(doc["at_ns"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.error("cannot read %s (%s); the last run stopped on a fault", self.fault_path, err)
            return "unknown", f"unreadable fault note: {err}", time.time_ns()

    def start(self) -> None:
        """Start every part; raise with a clear message if one cannot start."""
        cfg = self.cfg
        mqtt_cfg = cfg.mqtt
        if mqtt_cfg is None:
            host, _, port = cfg.embedded_broker.listen.rpartition(":")
            self.broker = EmbeddedBroker(host, int(port))
            self.broker.start()
            mqtt_cfg = MqttConfig(host=host, port=int(port), protocol="3.1.1")
        writer = make_writer(cfg.storage)
        if self.inventory is not None and isinstance(writer, InfluxWriter):   # owner labels (collector.ownership)
            writer.set_owners(Ownership(self.inventory).labels)
        self._start_retention(writer)
        intake = DiskQueue(cfg.queue.path, cfg.queue.max_bytes, int(cfg.queue.max_age * 1e9), page_size=LARGE_PAGES)
        if intake.depth():
            log.info("intake queue holds %d messages from before; writing them first", intake.depth())
        self.ingest = Ingest(mqtt_cfg, writer, self.metrics, intake, zones=cfg.zones, series=cfg.limits.series_limit(),
                             scope=Scope(self.inventory))
        self._resume_after_restore()
        self._start_alerting(mqtt_cfg)
        self._start_diagnostics(mqtt_cfg)
        self._start_enrolment()
        self._start_fleet()
        self.ingest.start()
        raise_open_files_limit()
        if cfg.http.enabled:  # bounded: no caller can hold the descriptors that storage and notifiers need
            from prometheus_client import make_wsgi_app

            app = make_wsgi_app(self.metrics.registry)
            limits = HttpLimits()
            if self.relay is not None:
                from collector.alerting.notify.relay import MAX_BODY, with_relay

                app, limits = with_relay(self.relay, app), HttpLimits(max_body=MAX_BODY)
            if self.responder is not None:   # the acknowledgement API (collector.alerting.ackapi)
                from collector.alerting.ackapi import MAX_BODY as ACK_BODY
                from collector.alerting.ackapi import AckApi, with_acks

                api = AckApi(self.responder.store, cfg.alerting.acks.tokens, self.metrics.registry)
                app, limits = with_acks(api, app), HttpLimits(max_body=max(limits.max_body, ACK_BODY))
            self._http = BoundedHttpServer(cfg.http.listen, app, limits, on_drop=self.metrics.count_http_drop)
            self._http.start(spawn=named)
        elif self.relay is not None:
            log.error("alerting.mqtt_delivery is alertmanager but http.enabled is false: no relay for Alertmanager "
                      "to send MQTT notifications through")
        log.info("collector running: storage %s, broker %s:%s", cfg.storage.type, mqtt_cfg.host, mqtt_cfg.port)

    def _start_retention(self, writer: object) -> None:
        """Prune the embedded SQLite store's old points (``collector.storage.retention``), if it has a retention."""
        from collector.storage import SqliteStorage
        from collector.storage.retention import Pruner
        from collector.storage.sqlite import SqliteWriter

        storage = self.cfg.storage
        if isinstance(storage, SqliteStorage) and storage.retention > 0 and isinstance(writer, SqliteWriter):
            self.pruner = Pruner(writer, storage.retention, storage.prune_every, self.metrics.registry)
            self.pruner.start()

    def _resume_after_restore(self) -> None:
        """After ``zonewatch-collector restore`` (its note beside the intake queue): the seqs the old collector took
        after the backup are not the probes' losses (``collector.backup``, ``SeqTracker.resume``)."""
        from collector.backup import RESTORED

        note = Path(self.cfg.queue.path).parent / RESTORED
        if self.ingest is None or not note.exists():
            return
        self.ingest.seqs.resume()
        log.info("started from a restored backup (%s): the first gap in each probe's stream is the old collector's, "
                 "not counted as lost", note.read_text().strip())
        note.unlink()

    def _start_alerting(self, mqtt_cfg: MqttConfig) -> None:
        """Start the dispatcher (outbox) and the alert engine, when there is an inventory to judge by."""
        if self.inventory is None or not self.cfg.alerting.enabled:
            log.info("alerting off: %s", "no inventory" if self.inventory is None else "alerting.enabled is false")
            return
        from collector.alerting.engine import AlertEngine
        from collector.alerting.notify import Dispatcher

        data_dir = Path(self.cfg.queue.path).parent
        state_path = self.cfg.alerting.state_path or str(data_dir / "alerts.db")
        outbox_dir = self.cfg.alerting.outbox_dir or str(data_dir / "outbox")
        Path(state_path).parent.mkdir(parents=True, exist_ok=True)
        Path(outbox_dir).mkdir(parents=True, exist_ok=True)
        alerting = self.cfg.alerting.model_copy(update={"state_path": state_path, "outbox_dir": outbox_dir})
        # One broker session per user: the collector's listener ties the client id to the username, so a
        # second connection would knock the ingest off. The dispatcher publishes through the ingest's.
        assert self.ingest is not None
        client = self.ingest.client if self.broker is None else None
        self.dispatcher = Dispatcher(alerting, self.inventory, mqtt_cfg, self.metrics.registry, mqtt_client=client)
        self.dispatcher.start()
        from collector.alerting.ackconfig import default_path
        from collector.alerting.acks import AckStore
        from collector.alerting.responder import Responder

        acks = AckStore(default_path(state_path, alerting.acks))
        acks.prune(time.time_ns(), alerting.acks.keep)
        self.responder = Responder(self.dispatcher, acks, self.inventory, alerting, self.metrics.registry,
                                   publisher=self.dispatcher.publisher, notify_metrics=self.dispatcher.metrics)
        self.responder.start()

        def store(batches: list[wire.Batch]) -> None:
            if self.ingest is not None:
                self.ingest.inject(batches)

        self.engine = AlertEngine(alerting, self.inventory, self.responder, store, self.metrics.registry,
                                  known_gaps=self.ingest.seqs.all_gaps(),   # the ingest has not started yet
                                  fault=self._last_fault(), hold_until_caught_up=self.cfg.ha is not None)
        self.ingest.on_arrival = self.engine.offer
        # The preparer decodes each data message once, for storage and for the engine (AlertEngine.prepared).
        self.ingest.on_prepared = self.engine.prepared
        self.ingest.on_store_behind = self.engine.store_behind
        self.engine.feed_from_ingest()
        self.engine.skew = self.ingest.skew   # probes' clocks: judged at the times their samples are stored at
        self.ingest.on_gaps = self.engine.gaps
        self.ingest.on_jump = self.engine.jumped
        self.engine.on_tick = self.responder.tick
        self.engine.start()
        if alerting.mqtt_via_alertmanager and client is not None:
            from collector.alerting.notify.mqtt import MqttPublisher
            from collector.alerting.notify.relay import MqttRelay, mqtt_receivers

            token = alerting.relay_token.get_secret_value() if alerting.relay_token is not None else None
            self.relay = MqttRelay(mqtt_receivers(alerting, self.inventory), MqttPublisher(client=client),
                                   self.metrics.registry, token=token)

    def _start_diagnostics(self, mqtt_cfg: MqttConfig) -> None:
        """Ask probes for a diagnostic round when a coverage or service alert fires (``collector.fleet.diagnostics``),
        after each evaluation; through the ingest's data session. An HA secondary leaves it to the primary."""
        if self.engine is None or self.inventory is None or not self.cfg.diagnostics.enabled:
            return
        if self.cfg.ha is not None and self.cfg.ha.role == "secondary":
            return
        from collector.fleet.config_state import fleet_dir
        from collector.fleet.diagnostics import Diagnostics, mqtt_send

        assert self.ingest is not None
        diagnostics = self.diagnostics = Diagnostics(
            self.inventory, self.cfg.diagnostics, mqtt_send(self.ingest.client, mqtt_cfg.protocol == "5"),
            fleet_dir(self.cfg.queue.path), self.metrics.registry)
        first = self.engine.on_tick

        def tick(now_ns: int, firing: list[Any]) -> None:
            if first is not None:
                first(now_ns, firing)
            try:
                diagnostics.tick(now_ns, firing)
            except Exception:  # noqa: BLE001 - the engine's evaluation must not stop for it
                log.exception("asking for diagnostic rounds failed; carrying on")

        self.engine.on_tick = tick

    def _start_enrolment(self) -> None:
        """Take new probes' requests and publish the replies, with an ``enrol`` section (``collector.fleet``)."""
        if self.cfg.enrol is None or self.cfg.mqtt is None:
            return
        from collector.fleet.enrol import registry_path
        from collector.fleet.enrol_service import EnrolMetrics, EnrolService
        from collector.fleet.registry import Registry

        assert self.ingest is not None
        scopes = [self.ingest.scope, *([self.engine.scope] if self.engine is not None else [])]  # retired probes
        path = registry_path(self.cfg)
        try:
            registry = Registry(path)
        except (OSError, sqlite3.Error) as exc:
            raise RuntimeError(f"cannot open the enrolment registry {path}: {exc}") from None
        self.enrolment = EnrolService(self.cfg.enrol, registry, EnrolMetrics(self.metrics.registry), scopes)
        self.enrolment.start(self.cfg.mqtt)

    def _start_fleet(self) -> None:
        """Publish each probe's desired configuration and take its reports (``collector.fleet``), with an
        inventory; it publishes through the ingest's data session (one broker session per user)."""
        if self.inventory is None:
            return
        if self.cfg.ha is not None and self.cfg.ha.role == "secondary":
            log.info("HA secondary: the probes' configurations are published by the primary")
            return
        from collector.fleet.config_publisher import ConfigPublisher, mqtt_publish
        from collector.fleet.config_state import fleet_dir

        assert self.ingest is not None
        self.fleet = ConfigPublisher(self.inventory, self.inventory_path, self.cfg.secrets,
                                     fleet_dir(self.cfg.queue.path), mqtt_publish(self.ingest.client),
                                     self.ingest.connected, self.engine.configs if self.engine is not None else None,
                                     scope=self.ingest.scope, zones=self.cfg.zones)
        first = self.ingest.on_arrival

        def arrived(messages: list[tuple[str, bytes]], now_ns: int, ids: list[int | None]) -> None:
            if first is not None:
                first(messages, now_ns, ids)
            self.fleet.offer(messages, now_ns)

        self.ingest.on_arrival = arrived
        self.fleet.start()

    def stop(self) -> None:
        """Finish writing what was received, then stop every part."""
        if self.fleet is not None:
            self.fleet.stop()
        if self.enrolment is not None:
            self.enrolment.stop()
        if self.engine is not None:
            self.engine.stop()
        if self.responder is not None:
            self.responder.stop()
        if self.dispatcher is not None:
            self.dispatcher.stop()
        if self.pruner is not None:
            self.pruner.stop()
        if self.ingest is not None:
            self.ingest.stop()
            self.ingest.writer.close()
            self.ingest.intake.close()
        if self._http is not None:
            self._http.stop()
        if self.broker is not None:
            self.broker.stop()

    def run_until(self, stop: threading.Event, started: Callable[[], object] = lambda: None) -> None:
        """Start, call ``started()``, wait for ``stop`` (or a thread's death: then raise RuntimeError saying which),
        then stop. ``started`` is the caller's hook for what belongs to the process, not to the collector
        (``collector.cli`` tunes the interpreter for ingest there).

        Under systemd (``Type=notify``) it says READY once started and feeds the watchdog from this loop: a
        collector whose main thread hangs is restarted; a thread that dies stops it (``collector.threads``)."""
        notifier = ServiceNotifier.from_environment()
        self.start()
        started()
        notifier.ready(f"storage {self.cfg.storage.type}, alerting {'on' if self.engine is not None else 'off'}")
        try:
            while not stop.wait(0.5) and not self._dead.is_set():
                notifier.watchdog(time.monotonic())
        finally:
            notifier.stopping()
            self.stop()
            self._unhook()
        if self.died is not None:
            raise RuntimeError(f"stopped: collector thread {self.died} (see the log); the next start raises "
                               "CollectorFault")
