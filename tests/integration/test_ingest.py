"""The collector against real mosquitto: bad input is rejected and counted, the stream goes on, repeats
are dropped, and a storage outage loses nothing."""

from __future__ import annotations

import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector.app import Collector
from collector.config import CollectorConfig
from collector.storage import SqliteStorage
from collector.storage.sqlite import SqliteWriter
from tests import services
from zonewatch import wire
from zonewatch.strict import load

pytestmark = pytest.mark.integration


def batch(probe: str, seq: int, value: int) -> bytes:
    ts = (time.time_ns() // 10**9 - 60 + seq) * 10**9  # one point a second, about a minute ago
    return wire.encode(wire.Batch("z1", probe, seq, 1, (wire.Sample("probe", {}, {"spool_depth": value}, ts),)))


def publisher(port: int) -> mqtt.Client:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="test-pub", protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def subscribed_collector(tmp_path: Path, broker: int, client_id: str, storage_yaml: str, extra: str = "") -> Collector:
    """Start an in-process collector and return it once its subscriptions are in place."""
    cfg = load(CollectorConfig, f"mqtt: {{port: {broker}, client_id: {client_id}}}\n{storage_yaml}\n"
                                f"queue: {{path: '{tmp_path / 'intake.db'}'}}\nhttp: {{enabled: false}}\n{extra}")
    col = Collector(cfg)
    col.start()
    assert col.ingest is not None
    try:
        services.wait_for(col.ingest.subscribed.is_set, 10, "the collector to subscribe")
    except BaseException:
        col.stop()
        raise
    return col


def counter(col: Collector, name: str, **labels: str) -> float:
    return col.metrics.registry.get_sample_value(name, labels) or 0.0


def test_bad_input_is_counted_and_the_stream_goes_on(tmp_path: Path, mosquitto: services.Service) -> None:
    db = tmp_path / "zw.db"
    col = subscribed_collector(tmp_path, mosquitto.port, "c1", f"storage: {{type: sqlite, path: '{db}'}}")
    pub = publisher(mosquitto.port)
    try:
        sent = [
            ("zw/v1/z1/p1/data", batch("p1", 1, 10)),
            ("zw/v1/z1/p1/data", b"{not json"),
            ("zw/v1/z1/p1/data", b'{"v":7,"zone":"z1","probe":"p1","seq":2,"sent_ns":1}'),
            ("zw/v1/z1/p2/data", batch("p1", 3, 99)),  # p2's topic, p1's payload: spoofing
            ("zw/v1/z1/p1/data", batch("p1", 1, 10)),  # a resend of seq 1
            ("zw/v1/z1/p1/data", batch("p1", 4, 40)),
        ]
        for topic, body in sent:
            pub.publish(topic, body, qos=1).wait_for_publish(5)
        services.wait_for(lambda: counter(col, "zonewatch_storage_written_batches_total") >= 2, 10,
                          "two good batches written")
        services.wait_for(lambda: counter(col, "zonewatch_ingest_duplicate_batches_total") >= 1, 10, "the repeat")
    finally:
        pub.disconnect()
        pub.loop_stop()
        col.stop()
    assert counter(col, "zonewatch_ingest_rejected_messages_total", reason="not_json") == 1
    assert counter(col, "zonewatch_ingest_rejected_messages_total", reason="unsupported_version") == 1
    assert counter(col, "zonewatch_ingest_rejected_messages_total", reason="identity_mismatch") == 1
    store = SqliteWriter(SqliteStorage(type="sqlite", path=str(db)))
    try:
        points = store.query("probe", "spool_depth")
        assert [(p.tags["probe"], p.value) for p in points] == [("p1", 10), ("p1", 40)]  # nothing from p2
    finally:
        store.close()


def test_storage_outage_loses_nothing(tmp_path: Path, mosquitto: services.Service) -> None:
    vm = services.start_victoriametrics(tmp_path / "vm")
    vm_port = vm.port
    vm.stop()  # storage is down when the data arrive
    col = subscribed_collector(tmp_path, mosquitto.port, "c2",
                               f"storage: {{type: victoriametrics, url: 'http://127.0.0.1:{vm_port}'}}")
    pub = publisher(mosquitto.port)
    try:
        for seq in range(1, 6):
            pub.publish("zw/v1/z1/p1/data", batch("p1", seq, seq), qos=1).wait_for_publish(5)
        services.wait_for(lambda: counter(col, "zonewatch_storage_write_errors_total") >= 2, 20,
                          "the writer to retry against the dead store")
        assert counter(col, "zonewatch_storage_written_batches_total") == 0
        vm = services.start_victoriametrics(tmp_path / "vm", port=vm_port)
        services.wait_for(lambda: len(services.vm_query(vm.url, "last_over_time(probe_spool_depth[1h])")) == 1 and int(
            services.vm_query(vm.url, "count_over_time(probe_spool_depth[1h])")[0]["value"][1]) == 5,  # type: ignore[index]
            60, "the writer to catch up: all five points in VictoriaMetrics")
    finally:
        pub.disconnect()
        pub.loop_stop()
        col.stop()
        vm.stop()


def cells(probe: str, seq: int, cell_ids: range) -> bytes:
    """A batch with one ``cell`` sample per cell id: each id a series of its own (a tag value)."""
    ts = (time.time_ns() // 10**9 - 60 + seq) * 10**9
    samples = tuple(wire.Sample("cell", {"modem": "m1", "cell_id": str(c)}, {"rsrp_dbm": -90.0}, ts) for c in cell_ids)
    return wire.encode(wire.Batch("z1", probe, seq, 1, samples))


def test_a_probe_over_its_series_limit_loses_only_its_new_series(
        tmp_path: Path, mosquitto: services.Service, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "zw.db"
    col = subscribed_collector(tmp_path, mosquitto.port, "c3", f"storage: {{type: sqlite, path: '{db}'}}",
                               "limits: {max_series_per_probe: 10}\n")
    pub = publisher(mosquitto.port)
    try:
        sent = [
            ("zw/v1/z1/p1/data", cells("p1", 1, range(0, 8))),  # 8 series: within the limit
            ("zw/v1/z1/p1/data", cells("p1", 2, range(0, 30))),  # a runaway: 22 new, room for 2
            ("zw/v1/z1/p2/data", cells("p2", 1, range(0, 10))),  # another probe: its own 10
            ("zw/v1/z1/p1/data", cells("p1", 3, range(0, 10))),  # p1's known series still land
        ]
        for topic, body in sent:
            pub.publish(topic, body, qos=1).wait_for_publish(5)
        services.wait_for(lambda: counter(col, "zonewatch_storage_written_batches_total") >= 4, 10,
                          "the four batches written")
    finally:
        pub.disconnect()
        pub.loop_stop()
        col.stop()
    assert counter(col, "zonewatch_ingest_rejected_samples_total", reason="too_many_series") == 20
    assert counter(col, "zonewatch_ingest_rejected_messages_total", reason="too_many_series") == 0
    said = [r.getMessage() for r in caplog.records if "too_many_series" in r.getMessage()]
    assert len(said) == 1  # once, naming the probe, how many, and the setting to change
    assert "probe z1/p1" in said[0] and "20 samples" in said[0] and "limits.max_series_per_probe" in said[0]
    store = SqliteWriter(SqliteStorage(type="sqlite", path=str(db)))
    try:
        points = store.query("cell", "rsrp_dbm")
    finally:
        store.close()
    by_probe: dict[str, set[str]] = {}
    for p in points:
        by_probe.setdefault(p.tags["probe"], set()).add(p.tags["cell_id"])
    assert by_probe["p1"] == {str(c) for c in range(10)}  # the first ten series, and no others
    assert by_probe["p2"] == {str(c) for c in range(10)}  # untouched by p1's runaway
    assert len([p for p in points if p.tags["probe"] == "p1"]) == 8 + 10 + 10
