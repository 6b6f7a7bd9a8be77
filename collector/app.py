"""Wiring only: broker (embedded when none is configured), storage, ingest and /metrics."""

from __future__ import annotations

import logging
import threading
from typing import Any

from collector.broker import EmbeddedBroker
from collector.config import CollectorConfig
from collector.ingest import Ingest
from collector.metrics import CollectorMetrics
from collector.storage import make_writer
from zwconf.mqtt import MqttConfig
from zwqueue import DiskQueue

log = logging.getLogger(__name__)


class Collector:
    """A running collector; ``start()`` then ``stop()``, from one thread."""

    def __init__(self, cfg: CollectorConfig) -> None:
        self.cfg = cfg
        self.metrics = CollectorMetrics()
        self.broker: EmbeddedBroker | None = None
        self.ingest: Ingest | None = None
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
        self.ingest = Ingest(mqtt_cfg, writer, self.metrics, intake, zones=cfg.zones)
        self.ingest.start()
        if cfg.http.enabled:
            from prometheus_client import start_http_server

            host, _, port = cfg.http.listen.rpartition(":")
            self._http, _thread = start_http_server(int(port), addr=host, registry=self.metrics.registry)
        log.info("collector running: storage %s, broker %s:%s", cfg.storage.type, mqtt_cfg.host, mqtt_cfg.port)

    def stop(self) -> None:
        """Finish writing what was received, then stop every part."""
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
