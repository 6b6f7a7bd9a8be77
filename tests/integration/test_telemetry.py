"""TelemetrySource against a real mosquitto: site sensors publish with paho; the samples emitted are compared
exactly; garbage is counted and the stream goes on; a broker restart and a broker that starts late are both
survived (the source subscribes again on every connect)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.sources.telemetry import TelemetryConfig, TelemetrySource
from tests import services
from zonewatch import strict
from zonewatch.wire import Event, Sample

pytestmark = pytest.mark.integration

NOW = 1_764_290_000_000_000_000  # the injected receive time
TS_MS = 1_764_289_990_123  # the power sensor's own time, in milliseconds
SITE = "bts-dv-01"


def config(port: int, protocol: str = "5", extra: str = "") -> TelemetryConfig:
    return strict.load(TelemetryConfig, f"""\
type: telemetry
name: site-sensors
broker: {{host: 127.0.0.1, port: {port}, protocol: "{protocol}", keepalive: 5s}}
connect_timeout: 10s
subscriptions:
  - topic: site/+/power
    measurement: power
    qos: 1
    tags: {{owner: viettel}}
    topic_tags: {{site: 1}}
    fields: {{on_battery: mains, battery_pct: battery.charge, battery_minutes: battery.runtime}}
    booleans: {{on_battery: [lost, ok]}}
    time: ts
  - topic: site/+/door
    measurement: site_sensor
    qos: 1
    topic_tags: {{site: 1}}
    fields: {{door_open: state}}
    booleans: {{door_open: [open, closed]}}
{extra}""", "agent.yaml")


class Collected:
    """An ``emit`` that keeps every sample and checks it runs on the event loop's thread."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.kinds: set[str] = set()
        self.threads: set[int] = set()

    def __call__(self, kind: str, samples: Sequence[Sample], events: Sequence[Event]) -> None:
        assert not events
        self.kinds.add(kind)
        self.threads.add(threading.get_ident())
        self.samples.extend(samples)


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` on the event loop (so emits keep arriving) until true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)


class Sensor:
    """A site sensor: a paho client that publishes with QoS 1 and waits for the broker's acknowledgement."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"sensor-{port}")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def power(site: str = SITE, mains: str = "lost", charge: float = 87, runtime: float = 41.5, ts: int = TS_MS) -> str:
    return f'{{"mains": "{mains}", "battery": {{"charge": {charge}, "runtime": {runtime}}}, "ts": {ts}}}'


def power_sample(site: str = SITE, on_battery: bool = True, charge: float = 87.0, runtime: float = 41.5,
                 ts_ms: int = TS_MS) -> Sample:
    return Sample("power", {"owner": "viettel", "site": site},
                  {"on_battery": on_battery, "battery_pct": charge, "battery_minutes": runtime}, ts_ms * 10**6)


def door_sample(open_: bool, site: str = SITE) -> Sample:
    return Sample("site_sensor", {"site": site}, {"door_open": open_}, NOW)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_power_and_door_readings_arrive_exactly(mosquitto: services.Service, protocol: str) -> None:
    source = TelemetrySource(config(mosquitto.port, protocol), clock=lambda: NOW)
    got = Collected()

    async def run() -> None:
        await source.start(got)
        assert source.connected  # start returned because it subscribed, not because it timed out
        sensor = Sensor(mosquitto.port)
        try:
            sensor.publish(f"site/{SITE}/power", power())
            sensor.publish(f"site/{SITE}/door", '{"state": "open", "rssi": -70}')
            sensor.publish("site/bts-dv-02/door", '{"state": "closed"}')
            sensor.publish(f"site/{SITE}/power", power(mains="ok", charge=100, runtime=240, ts=TS_MS + 1000))
            await until(lambda: len(got.samples) >= 4, "four samples")
        finally:
            sensor.close()
            await source.stop()

    asyncio.run(run())
    assert got.samples == [power_sample(), door_sample(True), door_sample(False, site="bts-dv-02"),
                           power_sample(on_battery=False, charge=100.0, runtime=240.0, ts_ms=TS_MS + 1000)]
    assert got.kinds == {"data"}
    assert len(got.threads) == 1 and threading.main_thread().ident in got.threads
    assert (source.received, source.emitted, source.stats) == (4, 4, {})


def test_garbage_is_counted_and_the_next_good_message_still_arrives(mosquitto: services.Service) -> None:
    source = TelemetrySource(config(mosquitto.port, extra="max_payload_bytes: 1024\n"), clock=lambda: NOW)
    got = Collected()

    async def run() -> None:
        await source.start(got)
        sensor = Sensor(mosquitto.port)
        try:
            sensor.publish(f"site/{SITE}/door", b"\x00\xffgarbage")
            sensor.publish(f"site/{SITE}/door", '{"state": "ajar"}')
            sensor.publish(f"site/{SITE}/door", '{"state": 1}')
            sensor.publish(f"site/{SITE}/power", '{"battery": {"charge": 50}, "pad": "' + "x" * 1024 + '"}')
            sensor.publish(f"site/{SITE}/power", '{"battery": {"charge": 50}, "ts": "yesterday"}')
            sensor.publish(f"site/{SITE}/door", '{"state": "closed"}')
            await until(lambda: len(got.samples) >= 2, "the good messages after the garbage")
        finally:
            sensor.close()
            await source.stop()

    asyncio.run(run())
    # the power message with a bad time keeps its one good field, stamped with the receive time
    assert got.samples == [Sample("power", {"owner": "viettel", "site": SITE}, {"battery_pct": 50.0}, NOW),
                           door_sample(False)]
    assert source.received == 6
    assert source.stats == {"bad_json": 1, "unknown_string": 1, "wrong_type": 1, "oversize": 1,
                            "missing_field": 2, "bad_time": 1}


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_overlapping_filters_give_one_sample_per_subscription(mosquitto: services.Service, protocol: str) -> None:
    # An MQTT 5 broker delivers a message once per matching filter; the source must still count it once.
    extra = "  - topic: site/#\n    measurement: site_seen\n    qos: 1\n    fields: {battery_pct: battery.charge}\n"
    source = TelemetrySource(config(mosquitto.port, protocol, extra=extra), clock=lambda: NOW)
    got = Collected()

    async def run() -> None:
        await source.start(got)
        sensor = Sensor(mosquitto.port)
        try:
            sensor.publish(f"site/{SITE}/power", power())
            sensor.publish(f"site/{SITE}/door", '{"state": "open"}')  # no battery: site/# gives nothing
            await until(lambda: source.received >= (3 if protocol == "5" else 2), "every copy of both messages")
            sensor.publish(f"site/{SITE}/door", '{"state": "closed"}')
            await until(lambda: len(got.samples) >= 4, "the last door sample")
        finally:
            sensor.close()
            await source.stop()

    asyncio.run(run())
    assert got.samples == [power_sample(), Sample("site_seen", {}, {"battery_pct": 87.0}, NOW),
                           door_sample(True), door_sample(False)]


def test_messages_after_a_broker_restart_still_arrive(mosquitto: services.Service) -> None:
    source = TelemetrySource(config(mosquitto.port), clock=lambda: NOW)
    got = Collected()
    restarted: list[services.Service] = []

    async def run() -> None:
        await source.start(got)
        sensor = Sensor(mosquitto.port)
        sensor.publish(f"site/{SITE}/door", '{"state": "open"}')
        await until(lambda: len(got.samples) == 1, "the sample before the restart")
        sensor.close()
        mosquitto.stop()
        await until(lambda: not source.connected, "the source to notice the broker is gone")
        restarted.append(services.start_mosquitto(mosquitto.workdir, port=mosquitto.port))
        sensor = Sensor(mosquitto.port)
        try:
            # Retained, so it reaches the source whenever it subscribes again (paho retries with backoff).
            sensor.publish(f"site/{SITE}/door", '{"state": "closed"}', retain=True)
            await until(lambda: len(got.samples) == 2, "the retained sample after the restart", timeout=20)
            assert source.connected
            sensor.publish(f"site/{SITE}/power", power())
            await until(lambda: len(got.samples) == 3, "a live sample after the restart")
        finally:
            sensor.close()
            await source.stop()

    try:
        asyncio.run(run())
    finally:
        for svc in restarted:
            svc.stop()
    assert got.samples == [door_sample(True), door_sample(False), power_sample()]
    assert source.stats == {}


def test_a_broker_that_starts_late_is_picked_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = services.free_port()
    cfg = config(port).model_copy(update={"connect_timeout": 0.3})
    source = TelemetrySource(cfg, clock=lambda: NOW)
    got = Collected()
    started: list[services.Service] = []

    async def run() -> None:
        began = time.monotonic()
        await source.start(got)  # nobody listens on the port: start gives up waiting, does not fail
        assert 0.25 <= time.monotonic() - began < 5 and not source.connected
        started.append(services.start_mosquitto(tmp_path / "late", port=port))
        sensor = Sensor(port)
        try:
            sensor.publish(f"site/{SITE}/door", '{"state": "open"}', retain=True)
            await until(lambda: len(got.samples) == 1, "the sample once the broker is up", timeout=20)
        finally:
            sensor.close()
            await source.stop()

    try:
        asyncio.run(run())
    finally:
        for svc in started:
            svc.stop()
    assert got.samples == [door_sample(True)]
    messages = [r.getMessage() for r in caplog.records if r.name == "agent.sources.telemetry"]
    assert f"telemetry site-sensors: the site broker 127.0.0.1:{port} cannot be reached; retrying in the " \
           "background" in messages
    assert any("did not answer within 0.3s" in m for m in messages)


def test_stop_disconnects_and_ends_the_network_thread(mosquitto: services.Service) -> None:
    source = TelemetrySource(config(mosquitto.port), clock=lambda: NOW)

    async def run() -> None:
        before = set(threading.enumerate())
        await source.start(Collected())
        assert source.connected
        (paho_thread,) = set(threading.enumerate()) - before
        await source.stop()
        assert not paho_thread.is_alive() and not source.connected

    asyncio.run(run())
    services.wait_for(lambda: "disconnected" in mosquitto.log.read_text(), 5, "mosquitto to log the disconnect")


def test_a_refused_connection_is_logged_and_start_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broker = services.start_mosquitto(tmp_path / "auth", listener_options="allow_anonymous false")
    try:
        cfg = config(broker.port).model_copy(update={"connect_timeout": 0.5})
        source = TelemetrySource(cfg, clock=lambda: NOW)

        async def run() -> None:
            await source.start(Collected())
            try:
                assert not source.connected
            finally:
                await source.stop()

        asyncio.run(run())
    finally:
        broker.stop()
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"telemetry site-sensors: the site broker 127.0.0.1:{broker.port} refused the connection: "
                      "Not authorized; retrying in the background"]
