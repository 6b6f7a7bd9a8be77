"""Wiring only: broker (embedded when none is configured), storage, ingest, alerting and /metrics."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from agent import wire
from collector.broker import EmbeddedBroker
from collector.config import CollectorConfig
from collector.ingest import Ingest
from collector.inventory import Inventory
from collector.metrics import CollectorMetrics
from collector.storage import make_writer
from zwconf.mqtt import MqttConfig
from zwqueue import DiskQueue

log = logging.getLogger(__name__)


class Collector:
    """A running collector; ``start()`` then ``stop()``, from one thread."""

    def __init__(self, cfg: CollectorConfig, inventory: Inventory | None = None) -> None:
        self.cfg = cfg
        self.inventory = inventory
        self.metrics = CollectorMetrics()
        self.broker: EmbeddedBroker | None = None
        self.ingest: Ingest | None = None
        self.engine: Any = None
        self.dispatcher: Any = None
        self._http: Any = None

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
        intake = DiskQueue(cfg.queue.path, cfg.queue.max_bytes, int(cfg.queue.max_age * 1e9))
        if intake.depth():
            log.info("intake queue holds %d messages from before; writing them first", intake.depth())
        self.ingest = Ingest(mqtt_cfg, writer, self.metrics, intake, zones=cfg.zones, series=cfg.limits.series_limit())
        self._start_alerting(mqtt_cfg)
        self.ingest.start()
        if cfg.http.enabled:
            from prometheus_client import start_http_server

            host, _, port = cfg.http.listen.rpartition(":")
            self._http, _thread = start_http_server(int(port), addr=host, registry=self.metrics.registry)
        log.info("collector running: storage %s, broker %s:%s", cfg.storage.type, mqtt_cfg.host, mqtt_cfg.port)

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

        def store(batches: list[wire.Batch]) -> None:
            if self.ingest is not None:
                self.ingest.inject(batches)

        self.engine = AlertEngine(alerting, self.inventory, self.dispatcher, store, self.metrics.registry,
                                  known_gaps=self.ingest.seqs.all_gaps())   # the ingest has not started yet
        self.ingest.on_arrival = self.engine.offer
        self.ingest.on_gaps = self.engine.gaps
        self.engine.start()

    def stop(self) -> None:
        """Finish writing what was received, then stop every part."""
        if self.engine is not None:
            self.engine.stop()
        if self.dispatcher is not None:
            self.dispatcher.stop()
        if self.ingest is not None:
            self.ingest.stop()
            self.ingest.writer.close()
            self.ingest.intake.close()
        if self._http is not None:
            self._http.shutdown()
        if self.broker is not None:
            self.broker.stop()

    def run_until(self, stop: threading.Event) -> None:
        """Start, wait for ``stop``, then stop."""
        self.start()
        try:
            stop.wait()
        finally:
            self.stop()
