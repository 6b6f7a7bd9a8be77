"""The broker's queue for the collector, at its limit: what it drops is counted and paged, never silent.

Real mosquitto (persistence on), a real collector process (SQLite store, alerting with a NOC webhook) and
a probe publishing agent-shaped batches over MQTT (QoS 1, one batch per source poll, consecutive seqs,
then its self-report with its spool depth), as the agent does. The collector is stopped while the probe
publishes, so everything waits in the collector's persistent session at the broker:

- with a queue smaller than the outage needs, the broker keeps the first messages and drops the rest (the
  probe already had its acknowledgement: its spool forgot them). The collector counts every dropped batch as
  a seq gap and, once the probe says its spool is empty, pages DataLoss to the NOC with the count;
- with the queue ``render-mosquitto`` sizes for the fleet and the outage, the same outage loses nothing;
- a last will published behind a data backlog reaches the collector through its second session (status and
  events) at once: ProbeDown pages while the backlog is still being stored.

The per-client limits ``render-mosquitto`` writes, against real mosquitto: the largest message the collector
accepts, on the longest topic the ACL can hold, is delivered; a packet one byte over the limit never reaches
a subscriber and its sender is disconnected; a 100 MiB message is refused from its header, the broker never
reading (or holding) its payload.
"""

from __future__ import annotations

import socket
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector.mosquitto.limits import QueueSizing, max_packet_size
from tests import services
from tests.services import WebhookServer
from zonewatch import wire

pytestmark = pytest.mark.integration

WAIT = 30.0
ZONE, PROBE = "lim", "p1"
T0 = 1_796_000_000 * 10**9
OUTAGE = 1500         # batches the probe publishes while the collector is down: more than mosquitto's default
SMALL_QUEUE = 50      # what the undersized broker keeps of them (its queue holds 1,000 by default)


def batch(seq: int, spool_depth: int | None = None) -> bytes:
    """One batch as the agent sends it: an SNMP poll of one device and 20 interfaces, or its self-report."""
    t = T0 + seq * 10**9
    if spool_depth is not None:
        samples = (wire.Sample("probe", {}, {"up": True, "spool_depth": spool_depth, "rss_mb": 41.0}, t),)
    else:
        samples = (wire.Sample("device", {"device": "sw-01", "site": "pop"}, {"up": True, "uptime_s": 1e5 + seq}, t),
                   *(wire.Sample("interface", {"device": "sw-01", "ifname": f"ge-0/0/{i}"},
                                 {"oper_up": True, "admin_up": True, "in_octets": 10**9 + seq, "out_octets": 10**8,
                                  "in_errors": 0, "out_errors": 0, "speed_mbps": 1000}, t) for i in range(20)))
    return wire.encode(wire.Batch(ZONE, PROBE, seq, t, samples))


class Probe:
    """A paho client publishing like the agent (QoS 1, waiting for each acknowledgement)."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="probe-p1", protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.topic = wire.topic(ZONE, PROBE, "data")

    def publish(self, payload: bytes, kind: wire.Kind = "data") -> None:
        topic = self.topic if kind == "data" else wire.topic(ZONE, PROBE, kind)
        self.client.publish(topic, payload, qos=1, retain=kind == "status").wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Centre:
    """Broker, collector and the NOC's webhook; ``close()`` stops them all."""

    def __init__(self, tmp: Path, queue_extra: str) -> None:
        self.tmp = tmp
        self.metrics_port = services.free_port()
        self.started: list[object] = []
        try:
            self.hooks = WebhookServer().start()
            self.started.append(self.hooks)
            self.broker = services.start_mosquitto(tmp / "mosquitto", conf_extra=queue_extra,
                                                   limits=QueueSizing(probes=1))
            self.started.append(self.broker)
            (tmp / "inventory.yaml").write_text(f"zones: {{{ZONE}: {{name: Limits, areas: [a]}}}}\n"
                                                f"sites: {{pop: {{zone: {ZONE}, area: a}}}}\n"
                                                f"devices: {{sw-01: {{site: pop, probe: {PROBE}}}}}\n"
                                                f"probes: {{{PROBE}: {{zone: {ZONE}, area: a}}}}\n")
            (tmp / "collector.yaml").write_text(
                f"mqtt: {{host: 127.0.0.1, port: {self.broker.port}, client_id: zw-limits}}\n"
                f"storage: {{type: sqlite, path: '{tmp / 'store.db'}'}}\n"
                f"queue: {{path: '{tmp / 'intake.db'}'}}\nhttp: {{listen: '127.0.0.1:{self.metrics_port}'}}\n"
                "inventory: inventory.yaml\n"
                f"alerting:\n  interval: 500ms\n  restart_grace: 0s\n  settings: {{probe_timeout: 1h}}\n"
                f"  delivery: direct\n  noc: [{{type: webhook, url: '{self.hooks.url}/noc'}}]\n")
            self.collector = self.start_collector()
            self.probe = Probe(self.broker.port)
        except BaseException:
            self.close()
            raise

    def start_collector(self) -> services.Service:
        service = services.start_collector(self.tmp / "collector.yaml", self.tmp / "collector")
        self.started.append(service)
        return service

    def stored(self, sql: str) -> int:
        try:
            with sqlite3.connect(f"file:{self.tmp / 'store.db'}?mode=ro", uri=True) as db:
                return int(db.execute(sql).fetchone()[0] or 0)
        except sqlite3.Error:
            return -1

    def received(self) -> float:
        """MQTT messages the running collector has received (its /metrics)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        return float(next(line.split()[1] for line in text.splitlines()
                          if line.startswith("zonewatch_ingest_messages_total ")))

    def interfaces(self) -> int:
        """Interface points stored (20 per data batch)."""
        return self.stored("SELECT count(*) FROM points JOIN series ON series.id = series_id "
                           "WHERE measurement = 'interface' AND field = 'oper_up'")

    def gaps(self) -> int:
        """The newest seq_gaps the collector stored for the probe."""
        return self.stored("SELECT value FROM points JOIN series ON series.id = series_id WHERE "
                           "measurement = 'probe' AND field = 'seq_gaps' ORDER BY time_ns DESC LIMIT 1")

    def outage(self) -> None:
        """Run the probe through a collector outage: 5 batches, OUTAGE while it is down, then its report."""
        for seq in range(1, 6):
            self.probe.publish(batch(seq))
        services.wait_for(lambda: self.interfaces() == 5 * 20, WAIT, "the first batches stored")
        self.collector.stop()
        for seq in range(6, 6 + OUTAGE):
            self.probe.publish(batch(seq))
        self.collector = self.start_collector()
        self.probe.publish(batch(6 + OUTAGE, spool_depth=0))   # nothing left in its spool: all was sent

    def close(self) -> None:
        if hasattr(self, "probe"):
            self.probe.close()
        for part in reversed(self.started):
            part.stop()  # type: ignore[attr-defined]


@pytest.fixture
def undersized(tmp_path: Path) -> Iterator[Centre]:
    centre = Centre(tmp_path, f"max_queued_messages {SMALL_QUEUE}\n")   # after the rendered limits: it wins
    try:
        yield centre
    finally:
        centre.close()


@pytest.fixture
def sized(tmp_path: Path) -> Iterator[Centre]:
    centre = Centre(tmp_path, "")
    try:
        yield centre
    finally:
        centre.close()


def test_what_the_broker_drops_at_its_limit_is_counted_and_pages_data_loss(undersized: Centre) -> None:
    undersized.outage()
    kept = 5 + SMALL_QUEUE
    services.wait_for(lambda: undersized.gaps() == OUTAGE - SMALL_QUEUE, WAIT,
                      f"{OUTAGE - SMALL_QUEUE} seq gaps counted (stored {undersized.gaps()})")
    assert undersized.interfaces() == kept * 20    # the broker kept the first SMALL_QUEUE of the outage
    services.wait_for(lambda: ("firing", "DataLoss") in undersized.hooks.alerts("/noc"), WAIT, "DataLoss to the NOC")
    (loss,) = [a for h in undersized.hooks.at("/noc") for a in h.body["alerts"]
               if a["labels"]["alertname"] == "DataLoss"]
    assert loss["status"] == "firing" and loss["labels"]["probe"] == PROBE
    assert loss["annotations"]["summary"] == f"Probe {PROBE} lost {OUTAGE - SMALL_QUEUE} batches of data"


def test_the_queue_render_mosquitto_sizes_bridges_the_same_outage(sized: Centre) -> None:
    sized.outage()
    services.wait_for(lambda: sized.interfaces() == (5 + OUTAGE) * 20, WAIT,
                      f"every batch of the outage stored (stored {sized.interfaces() // 20})")
    assert sized.gaps() == 0
    assert [a for h in sized.hooks.at("/noc") for a in h.body["alerts"]] == []


def test_a_last_will_behind_a_data_backlog_pages_before_the_backlog_is_stored(sized: Centre) -> None:
    backlog = 3000   # within what the sized queue holds (3,600 messages for one probe)
    sized.probe.publish(batch(1))
    services.wait_for(lambda: sized.interfaces() == 20, WAIT, "the first batch stored")
    sized.collector.stop()
    for seq in range(2, 2 + backlog):    # a backlog of data for the collector's main session...
        sized.probe.publish(batch(seq))
    sized.probe.publish(wire.STATUS_OFFLINE, kind="status")   # ...and then the probe's last will
    started = time.monotonic()
    sized.collector = sized.start_collector()
    services.wait_for(lambda: ("firing", "ProbeDown") in sized.hooks.alerts("/noc"), WAIT, "ProbeDown to the NOC")
    paged = time.monotonic() - started
    received = sized.received()
    # Through one session the will would come after all 3,000 batches; through its own it comes first, and
    # pages while most of the backlog is still on its way from the broker.
    assert received < backlog // 2, f"{received:.0f} of {backlog} messages received before the page ({paged:.1f} s)"
    services.wait_for(lambda: sized.interfaces() == (1 + backlog) * 20, 120, "the backlog stored")


# ---------------------------------------------------------------------------------------------- per-client limits

LONGEST = wire.topic("z" * 63, "p" * 63, "events")   # the longest topic the ACL can hold (63-character ids)


def _peak_memory_kib(pid: int) -> int:
    """Return a process's peak resident set (VmHWM), KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


class Client:
    """A paho MQTT v5 client that records what it receives, its CONNACK properties and its disconnections."""

    def __init__(self, port: int, client_id: str) -> None:
        self.received: list[tuple[str, int]] = []
        self.disconnects: list[str] = []
        self.subscribed: list[int] = []
        self.connack: dict[str, object] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, len(m.payload)))
        self.client.on_connect = lambda c, u, f, rc, props: self.connack.update(props.json() if props else {})
        self.client.on_disconnect = lambda c, u, f, rc, props: self.disconnects.append(str(rc))
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.subscribed.append(mid)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        services.wait_for(lambda: bool(self.connack), 10, f"{client_id} connected")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[services.Service]:
    service = services.start_mosquitto(tmp_path / "mosquitto")   # with the limits render-mosquitto writes
    try:
        yield service
    finally:
        service.stop()


def test_a_packet_over_the_collectors_wire_limit_is_refused_and_one_just_under_is_delivered(
        broker: services.Service) -> None:
    limit = max_packet_size()
    subscriber = Client(broker.port, "collector")
    probe = Client(broker.port, "probe")
    try:
        subscriber.client.subscribe("zw/v1/#", qos=1)
        services.wait_for(lambda: bool(subscriber.subscribed), WAIT, "the subscription acknowledged")
        assert probe.connack["MaximumPacketSize"] == limit     # MQTT v5 clients are told
        # The largest message the collector accepts, on the longest topic, is delivered...
        largest = wire.Limits().max_bytes
        probe.client.publish(LONGEST, b"x" * largest, qos=1).wait_for_publish(10)
        # ...and so is the largest packet mosquitto takes. It counts a packet as its remaining length + 1 (the
        # length field's own bytes not included); MQTT v5, QoS 1, no properties: topic, packet id, properties.
        at_limit = limit - 1 - (2 + len(LONGEST) + 2 + 1)
        probe.client.publish(LONGEST, b"y" * at_limit, qos=1).wait_for_publish(10)
        services.wait_for(lambda: len(subscriber.received) == 2, WAIT, "both delivered")
        assert subscriber.received == [(LONGEST, largest), (LONGEST, at_limit)] and largest < at_limit
        # One byte more, and the sender is disconnected.
        probe.client.publish(LONGEST, b"z" * (at_limit + 1), qos=1)
        services.wait_for(lambda: bool(probe.disconnects), WAIT, "the sender disconnected")
        probe.close()   # (the broker's DISCONNECT says "Packet too large", when it arrives before the socket closes)
        services.wait_for(lambda: "disconnected due to oversize packet" in broker.log_tail(50), WAIT,
                          "the broker's log line")
        # The subscriber never got it: a message published after it arrives next.
        probe = Client(broker.port, "probe-again")
        probe.client.publish(LONGEST, b"after", qos=1).wait_for_publish(10)
        services.wait_for(lambda: len(subscriber.received) == 3, WAIT, "the next message delivered")
        assert subscriber.received[2] == (LONGEST, 5)
    finally:
        probe.close()
        subscriber.close()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (128 if n else 0))
        if not n:
            return bytes(out)


def test_a_100_mib_message_is_refused_from_its_header_without_the_broker_reading_it(broker: services.Service) -> None:
    # An MQTT 3.1.1 client (not told the limit), by hand: CONNECT, then a PUBLISH that announces 100 MiB.
    before = _peak_memory_kib(broker.pid)
    size = 100 * 2**20
    topic = wire.topic(ZONE, PROBE, "data").encode()
    sent = 0
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        variable = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(b"big").to_bytes(2, "big") + b"big"
        sock.sendall(b"\x10" + _varint(len(variable)) + variable)
        assert sock.recv(4) == b"\x20\x02\x00\x00"   # CONNACK: accepted
        body = len(topic).to_bytes(2, "big") + topic
        sock.sendall(b"\x30" + _varint(len(body) + size) + body)
        chunk = b"z" * 2**16
        started = time.monotonic()
        with pytest.raises(OSError):   # reset or broken pipe: the broker closed the connection
            while sent < size:
                sock.sendall(chunk)
                sent += len(chunk)
        refused_after = time.monotonic() - started
    grew = _peak_memory_kib(broker.pid) - before
    assert sent < size // 10, f"the broker took {sent} bytes of the payload before closing"
    assert grew < 16 * 1024, f"the broker's peak memory grew by {grew} KiB"
    print(f"\n100 MiB PUBLISH: connection closed after {sent / 2**20:.1f} MiB sent (socket buffers) in "
          f"{refused_after * 1000:.0f} ms; broker peak memory +{grew} KiB")
