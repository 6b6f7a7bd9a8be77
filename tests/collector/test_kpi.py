"""QCVN 81:2019's indicators per carrier (collector.report.kpi), from samples written into a real SQLite store,
against values worked out by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.alerting.qos import CarrierTargets, QosSettings
from collector.report import SqliteSource, span_period
from collector.report.kpi import compute, table
from collector.storage import SqliteStorage
from collector.storage.sqlite import SqliteWriter
from zonewatch import wire

S = 10**9
T0 = 1_767_225_600 * S   # 2026-01-01 00:00 UTC
VT, VN = "452-04", "452-02"


def qos(t: int, carrier: str, test: str, **fields: wire.FieldValue) -> wire.Sample:
    return wire.Sample("qos", {"carrier": carrier, "modem": "m", "test": test, "target": "srv"}, dict(fields),
                       T0 + t * S)


def cell(t: int, carrier: str, registered: bool, rsrp: float | None, rat: str = "lte") -> wire.Sample:
    fields: dict[str, wire.FieldValue] = {"registered": registered}
    if rsrp is not None:
        fields["rsrp_dbm"] = rsrp
    return wire.Sample("cellular", {"carrier": carrier, "modem": "m", "rat": rat}, fields, T0 + t * S)


def samples() -> list[wire.Sample]:
    out = []
    # Viettel: 10 readings: 7 registered at or above -110 dBm, 1 at -115 (a hole), 1 unregistered, 1 at -110 exactly
    for i, rsrp in enumerate([-80, -85, -90, -95, -100, -105, -109, -115]):
        out.append(cell(i * 30, VT, True, rsrp))
    out.append(cell(300, VT, False, None))
    out.append(cell(330, VT, True, -110))
    # access tests: 8 dns/http, 2 failed; 2 transfers that started (1 dropped), 1 download that never started
    times = [100, 200, 300, 400, 500, 600]
    for i, ms in enumerate(times):
        out.append(qos(i * 60, VT, "dns" if i % 2 else "http", success=True, time_ms=ms))
    out.append(qos(400, VT, "tcp", success=False))
    out.append(qos(460, VT, "http", success=False))
    out.append(qos(500, VT, "download", success=True, dropped=False, time_ms=900, down_mbps=12.0, bytes=10**7))
    out.append(qos(560, VT, "download", success=False, dropped=True, time_ms=800))
    out.append(qos(600, VT, "download", success=False))                            # never started: failed access
    out.append(qos(650, VT, "upload", success=True, dropped=False, time_ms=700, up_mbps=4.0))
    out.append(qos(700, VT, "icmp", success=True, rtt_ms=40.0))                      # not an access test
    # VinaPhone: two readings, both fine; one download at 3 Mbit/s (under the 5 Mbit/s minimum)
    out.append(cell(0, VN, True, -70))
    out.append(cell(30, VN, True, -75, rat="nr5g-sa"))
    out.append(qos(10, VN, "download", success=True, dropped=False, time_ms=300, down_mbps=3.0))
    return out


@pytest.fixture
def source(tmp_path: Path) -> SqliteSource:
    path = tmp_path / "zw.db"
    writer = SqliteWriter(SqliteStorage(type="sqlite", path=str(path)))
    try:
        writer.write([wire.Batch("dv", "p1", 1, T0, tuple(samples()))])
    finally:
        writer.close()
    return SqliteSource(str(path))


def period() -> object:
    return span_period("2026-01-01T00:00:00+00:00", "2026-01-01T01:00:00+00:00")


def test_indicators_are_the_hand_computed_ones(source: SqliteSource) -> None:
    settings = QosSettings(carriers={VN: CarrierTargets(down_avg_mbps=10.0)})
    try:
        rows = {(r.carrier, r.kpi): r for r in compute(source, "dv", period(), settings)}   # type: ignore[arg-type]
    finally:
        source.close()
    avail = rows[(VT, "availability")]
    assert (avail.samples, avail.value) == (10, pytest.approx(80.0)) and avail.meets is False   # 8 of 10 < 95 %
    failed = rows[(VT, "failed_access")]
    # access tests: 6 + tcp + http + 3 downloads + upload = 12; failed: tcp, http, the download that never started
    assert (failed.samples, failed.value, failed.meets) == (12, pytest.approx(25.0), False)
    latency = rows[(VT, "access_latency")]
    # the 9 that reached the service: (100+200+300+400+500+600 + 900 + 800 + 700) / 9 ms
    assert latency.value == pytest.approx(4500 / 9 / 1000) and latency.samples == 9 and latency.meets is True
    dropped = rows[(VT, "dropped_transfers")]
    assert (dropped.samples, dropped.value, dropped.meets) == (3, pytest.approx(100 / 3), False)
    speed = rows[(VT, "download_speed")]
    assert (speed.samples, speed.value, speed.meets) == (1, 12.0, None)   # Viettel declared no average
    assert speed.limit == "declared by the carrier: not set"
    at_min = rows[(VT, "download_at_min")]
    assert (at_min.value, at_min.meets, at_min.limit) == (100.0, True, ">= 95 % at 5 Mbit/s")

    assert rows[(VN, "availability")].value == 100.0 and rows[(VN, "availability")].meets is True
    assert rows[(VN, "download_speed")].meets is False and rows[(VN, "download_speed")].limit == ">= 10 Mbit/s"
    assert rows[(VN, "download_at_min")].value == 0.0 and rows[(VN, "download_at_min")].meets is False
    assert rows[(VN, "failed_access")].value == 0.0


def test_a_carrier_with_nothing_measured_is_listed_empty_and_judged_neither_way(source: SqliteSource) -> None:
    try:
        rows = compute(source, "dv", period(), QosSettings(), carriers=["452-01"])   # type: ignore[arg-type]
    finally:
        source.close()
    mobi = [r for r in rows if r.carrier == "452-01"]
    assert len(mobi) == 6 and all(r.value is None and r.samples == 0 and r.meets is None for r in mobi)
    header, body = table("dv", mobi, {"452-01": "MobiFone"})
    assert header[-3:] == ["samples", "limit", "meets"]
    assert body[0][:7] == ["dv", "452-01", "MobiFone", "availability", "2.1.1", "radio network availability", ""]
