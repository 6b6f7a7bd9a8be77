"""A collector that falls behind does not page healthy probes: silence is judged from the collector's ticks.

Real mosquitto, a real collector process (SQLite store, alerting, the NOC's webhook) and a probe that sends a
batch every half second, as a healthy agent does. The collector is frozen (SIGSTOP: a stalled disk, a long
pause, a host under load) for much longer than the probe timeout, while the broker queues what the probe
sends. When it thaws, its alert engine wakes before its intake has taken the backlog: judged by the time
since the probe's last message alone, the probe looks silent and pages ProbeDown. Judged by the collector's
ticks (published every second on its own topic and read back through its data session, behind the backlog),
the probe's silence is not proven, and nothing pages; its messages arrive with the backlog. A probe that
really falls silent still pages, once its silence is proven.
"""

from __future__ import annotations

import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests import services
from tests.services import WebhookServer
from zonewatch import wire

pytestmark = pytest.mark.integration

ZONE = "lag"
TIMEOUT_S = 3      # the probe timeout
FROZEN_S = 8       # how long the collector stands still


class Centre:
    """Broker, collector, NOC webhook and one healthy probe; ``close()`` stops them all."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.metrics_port = services.free_port()
        self.started: list[object] = []
        self.sending = threading.Event()
        self.seq = 0
        try:
            self.hooks = WebhookServer().start()
            self.started.append(self.hooks)
            self.broker = services.start_mosquitto(tmp / "mosquitto")
            self.started.append(self.broker)
            (tmp / "inventory.yaml").write_text(f"zones: {{{ZONE}: {{name: Lag, areas: [a]}}}}\n"
                                                f"probes: {{p1: {{zone: {ZONE}, area: a}}}}\n")
            (tmp / "collector.yaml").write_text(
                f"mqtt: {{host: 127.0.0.1, port: {self.broker.port}, client_id: zw-lag}}\n"
                f"storage: {{type: sqlite, path: '{tmp / 'store.db'}'}}\n"
                f"queue: {{path: '{tmp / 'intake.db'}'}}\nhttp: {{listen: '127.0.0.1:{self.metrics_port}'}}\n"
                "inventory: inventory.yaml\n"
                f"alerting:\n  interval: 500ms\n  restart_grace: 0s\n  settings: {{probe_timeout: {TIMEOUT_S}s}}\n"
                f"  delivery: direct\n  noc: [{{type: webhook, url: '{self.hooks.url}/noc'}}]\n")
            self.collector = services.start_collector(tmp / "collector.yaml", tmp / "collector")
            self.started.append(self.collector)
            self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="p1", protocol=mqtt.MQTTv5)
            self.client.connect("127.0.0.1", self.broker.port)
            self.client.loop_start()
            self.sending.set()
            self.thread = threading.Thread(target=self._send, daemon=True)
            self.thread.start()
        except BaseException:
            self.close()
            raise

    def _send(self) -> None:
        while self.sending.is_set():
            self.seq += 1
            t = time.time_ns()
            batch = wire.Batch(ZONE, "p1", self.seq, t, (wire.Sample("probe", {}, {"up": True, "spool_depth": 0}, t),))
            self.client.publish(wire.topic(ZONE, "p1", "data"), wire.encode(batch), qos=1)
            time.sleep(0.5)

    def close(self) -> None:
        self.sending.clear()
        client = getattr(self, "client", None)
        if client is not None:
            client.disconnect()
            client.loop_stop()
        collector = getattr(self, "collector", None)
        if collector is not None and collector.alive():
            collector.proc.send_signal(signal.SIGCONT)   # a frozen process takes no SIGTERM
        for part in reversed(self.started):
            part.stop()  # type: ignore[attr-defined]

    def lag(self) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        return float(next(line.split()[1] for line in text.splitlines()
                          if line.startswith("zonewatch_ingest_lag_seconds ")))

    def pages(self) -> list[str]:
        return [name for status, name in self.hooks.alerts("/noc") if status == "firing"]


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[Centre]:
    c = Centre(tmp_path)
    yield c
    c.close()


def test_a_frozen_collector_does_not_page_a_probe_that_kept_sending(centre: Centre) -> None:
    services.wait_for(lambda: centre.lag() < 1.0, 20, "the collector's ticks to come back")
    time.sleep(TIMEOUT_S + 1)   # the probe has been heard from for longer than its timeout: it is up
    assert centre.pages() == []
    centre.collector.proc.send_signal(signal.SIGSTOP)
    time.sleep(FROZEN_S)
    centre.collector.proc.send_signal(signal.SIGCONT)
    services.wait_for(lambda: centre.lag() < 1.0, 20, "the collector to catch up")
    time.sleep(2)   # several evaluations after catching up
    assert centre.pages() == [], "a probe that kept sending was paged while the collector was behind"
    # the control: the probe really falls silent (its connection stays up: no last will), and pages
    centre.sending.clear()
    services.wait_for(lambda: "ProbeDown" in centre.pages(), TIMEOUT_S + 10, "ProbeDown for the silent probe")
