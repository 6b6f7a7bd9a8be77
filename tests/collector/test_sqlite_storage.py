"""The embedded SQLite store: exact values back, tags from the batch header, one transaction per write."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.storage import SqliteStorage, StorageError, Writer, make_writer
from collector.storage.sqlite import SqliteWriter, StoredPoint
from zonewatch import wire

T0 = 1_764_289_990_000_000_000
S = 1_000_000_000


def batch(*samples: wire.Sample, zone: str = "dinh-vu", probe: str = "p1", seq: int = 1) -> wire.Batch:
    return wire.Batch(zone=zone, probe=probe, seq=seq, sent_ns=T0, samples=samples)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "zonewatch.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteWriter]:
    writer = SqliteWriter(SqliteStorage(type="sqlite", path=str(db_path)))
    yield writer
    writer.close()


def test_make_writer_returns_a_sqlite_writer(db_path: Path) -> None:
    writer: Writer = make_writer(SqliteStorage(type="sqlite", path=str(db_path)))
    assert isinstance(writer, SqliteWriter)
    assert not db_path.exists()  # nothing is opened before the first use
    writer.close()


def test_values_come_back_exact_with_their_types(store: SqliteWriter) -> None:
    fields: dict[str, wire.FieldValue] = {
        "in_octets": 2**64 - 1,          # Counter64 at its top: above SQLite's signed 64 bits
        "out_octets": 2**63 - 1,
        "in_errors": 0,
        "speed_mbps": 10_000,
        "oper_up": True,
        "admin_up": False,
        "rx_dbm": -7.25,
        "ratio": 1 / 3,
        "whole": 5.0,
    }
    store.write([batch(wire.Sample("interface", {"device": "sw1", "ifname": "ge-0/0/1"}, fields, T0))])
    tags = {"device": "sw1", "ifname": "ge-0/0/1", "zone": "dinh-vu", "probe": "p1"}
    for name, value in fields.items():
        (point,) = store.query("interface", name)
        assert point == StoredPoint(tags, T0, int(value) if isinstance(value, bool) else value)
        assert type(point.value) is (float if isinstance(value, float) else int), name


def test_values_are_stored_as_integer_real_or_text_for_reports(store: SqliteWriter, db_path: Path) -> None:
    store.write([batch(wire.Sample("m", {}, {"i": 3, "b": True, "f": 2.0, "c": 2**63}, T0))])
    with sqlite3.connect(db_path) as conn:
        rows = dict(conn.execute("SELECT field, typeof(value) FROM points").fetchall())
        series = conn.execute("SELECT measurement, tags FROM series").fetchall()
    conn.close()
    assert rows == {"i": "integer", "b": "integer", "f": "real", "c": "text"}
    assert series == [("m", '{"probe":"p1","zone":"dinh-vu"}')]


def test_tags_include_zone_and_probe_from_the_batch_header(store: SqliteWriter) -> None:
    store.write([
        batch(wire.Sample("cellular", {"carrier": "452-04", "zone": "other", "probe": "px"}, {"rsrp_dbm": -95}, T0)),
        batch(wire.Sample("cellular", {"carrier": "452-04"}, {"rsrp_dbm": -101}, T0), probe="p2", seq=9),
    ])
    assert store.query("cellular", "rsrp_dbm") == [
        StoredPoint({"carrier": "452-04", "probe": "p1", "zone": "dinh-vu"}, T0, -95),
        StoredPoint({"carrier": "452-04", "probe": "p2", "zone": "dinh-vu"}, T0, -101),
    ]


def test_query_filters_by_tags_and_time(store: SqliteWriter) -> None:
    samples = [wire.Sample("cellular", {"carrier": c}, {"registered": i % 2 == 0, "rsrp_dbm": -90 - i}, T0 + i * S)
               for i in range(6) for c in ("452-04", "452-01")]
    store.write([batch(*samples)])
    got = store.query("cellular", "registered", {"carrier": "452-04"}, since_ns=T0 + 2 * S, until_ns=T0 + 5 * S)
    tags = {"carrier": "452-04", "probe": "p1", "zone": "dinh-vu"}
    assert got == [StoredPoint(tags, T0 + 2 * S, 1), StoredPoint(tags, T0 + 3 * S, 0), StoredPoint(tags, T0 + 4 * S, 1)]
    assert store.query("cellular", "registered", {"carrier": "452-99"}) == []
    assert store.query("cellular", "no_such_field") == []
    assert store.query("no_such_measurement", "registered") == []
    assert len(store.query("cellular", "rsrp_dbm", {"zone": "dinh-vu"})) == 12


def test_latest_returns_the_newest_point_of_each_series(store: SqliteWriter) -> None:
    store.write([batch(wire.Sample("device", {"device": d}, {"up": up}, T0 + i * S))
                 for i, (d, up) in enumerate([("bts1", True), ("bts2", True), ("bts1", False)])])
    assert store.latest("device", "up") == [
        StoredPoint({"device": "bts1", "probe": "p1", "zone": "dinh-vu"}, T0 + 2 * S, 0),
        StoredPoint({"device": "bts2", "probe": "p1", "zone": "dinh-vu"}, T0 + 1 * S, 1),
    ]
    assert store.latest("device", "up", {"device": "bts2"}) == [
        StoredPoint({"device": "bts2", "probe": "p1", "zone": "dinh-vu"}, T0 + 1 * S, 1),
    ]


def test_rewriting_a_point_replaces_it(store: SqliteWriter) -> None:
    store.write([batch(wire.Sample("probe", {}, {"spool_depth": 5}, T0))])
    store.write([batch(wire.Sample("probe", {}, {"spool_depth": 5}, T0))])  # the same batch again
    store.write([batch(wire.Sample("probe", {}, {"spool_depth": 6}, T0))])
    assert [p.value for p in store.query("probe", "spool_depth")] == [6]


def test_nan_infinities_and_empty_samples_are_not_stored(store: SqliteWriter) -> None:
    store.write([batch(wire.Sample("m", {"a": "1"}, {"x": math.nan, "y": math.inf, "z": 1.5}, T0),
                       wire.Sample("m", {"a": "2"}, {}, T0),
                       wire.Sample("m", {"a": "3"}, {"x": -math.inf}, T0))])
    assert store.query("m", "x") == []
    assert store.query("m", "y") == []
    assert store.query("m", "z") == [StoredPoint({"a": "1", "probe": "p1", "zone": "dinh-vu"}, T0, 1.5)]
    assert store.latest("m", "x") == []


def test_a_reopened_store_keeps_its_data(db_path: Path) -> None:
    first = SqliteWriter(SqliteStorage(type="sqlite", path=str(db_path)))
    first.write([batch(wire.Sample("power", {"device": "ups1"}, {"battery_pct": 97.5, "on_battery": False}, T0))])
    first.close()
    again = SqliteWriter(SqliteStorage(type="sqlite", path=str(db_path)))
    try:
        tags = {"device": "ups1", "probe": "p1", "zone": "dinh-vu"}
        assert again.query("power", "battery_pct") == [StoredPoint(tags, T0, 97.5)]
        again.write([batch(wire.Sample("power", {"device": "ups1"}, {"battery_pct": 96.0}, T0 + S))])
        assert [p.value for p in again.query("power", "battery_pct")] == [97.5, 96.0]
    finally:
        again.close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM series").fetchone() == (1,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def test_a_failed_write_stores_nothing_of_that_call(store: SqliteWriter) -> None:
    good = batch(wire.Sample("m", {"s": "new"}, {"v": 1}, T0), seq=3)
    bad = batch(wire.Sample("m", {}, {"v": "text"}, T0), probe="p2", seq=4)  # type: ignore[dict-item]
    with pytest.raises(StorageError, match=r"zone dinh-vu probe p2 seq 4: field 'v': str 'text'") as info:
        store.write([good, bad])
    assert info.value.retryable is False
    assert store.query("m", "v") == []
    store.write([good])  # the series rolled back with the call is created again
    assert store.query("m", "v") == [StoredPoint({"probe": "p1", "s": "new", "zone": "dinh-vu"}, T0, 1)]


def test_an_unopenable_file_is_a_retryable_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    writer = SqliteWriter(SqliteStorage(type="sqlite", path=str(tmp_path / "file" / "db.sqlite")))
    with pytest.raises(StorageError) as info:
        writer.write([batch(wire.Sample("m", {}, {"v": 1}, T0))])
    assert info.value.retryable is True
    assert str(tmp_path / "file" / "db.sqlite") in str(info.value)
    writer.close()
