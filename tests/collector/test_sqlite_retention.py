"""Retention of the SQLite store: old points go, recent ones and every series stay, in short steps."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from collector.storage import SqliteStorage
from collector.storage.retention import Pruner
from collector.storage.sqlite import SqliteWriter
from zonewatch import strict, wire

T0 = 1_764_289_990_000_000_000
S = 1_000_000_000
DAY = 86_400 * S


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteWriter]:
    writer = SqliteWriter(SqliteStorage(type="sqlite", path=str(tmp_path / "zw.db")))
    yield writer
    writer.close()


def fill(store: SqliteWriter, carriers: int, days: int, per_day: int = 4) -> None:
    """Write ``per_day`` cellular points a day for ``days`` days from T0, per carrier, two fields each."""
    samples = [wire.Sample("cellular", {"carrier": f"452-{c:02d}"}, {"rsrp_dbm": -90.0 - d, "registered": True},
                           T0 + d * DAY + i * (DAY // per_day))
               for c in range(carriers) for d in range(days) for i in range(per_day)]
    store.write([wire.Batch(zone="dinh-vu", probe="p1", seq=1, sent_ns=T0, samples=tuple(samples))])


def times(store: SqliteWriter, field: str = "rsrp_dbm", carrier: str = "452-00") -> list[int]:
    return [p.time_ns for p in store.query("cellular", field, {"carrier": carrier})]


def test_a_pass_deletes_exactly_the_points_older_than_the_retention(store: SqliteWriter) -> None:
    fill(store, carriers=3, days=10)
    registry = CollectorRegistry()
    pruner = Pruner(store, retention_s=3 * 86_400, every_s=3600, registry=registry)
    now = T0 + 10 * DAY          # keep days 7, 8 and 9
    result = pruner.run_pass(now)
    assert result.cutoff_ns == T0 + 7 * DAY
    assert result.deleted == 3 * 2 * 7 * 4             # carriers x fields x days x points a day
    for carrier in ("452-00", "452-01", "452-02"):
        for field in ("rsrp_dbm", "registered"):
            kept = times(store, field, carrier)
            assert kept[0] == T0 + 7 * DAY and len(kept) == 3 * 4
    assert registry.get_sample_value("zonewatch_collector_sqlite_pruned_points_total") == result.deleted
    assert pruner.run_pass(now).deleted == 0           # a second pass finds nothing more


def test_small_steps_resume_where_they_stopped_and_reach_every_series(store: SqliteWriter) -> None:
    fill(store, carriers=5, days=6)
    pruner = Pruner(store, retention_s=86_400, every_s=3600, step_rows=7, step_pairs=2)
    result = pruner.run_pass(T0 + 6 * DAY)
    assert result.deleted == 5 * 2 * 5 * 4
    assert result.steps >= result.deleted // 7        # no step deleted more than its share
    for c in range(5):
        assert times(store, carrier=f"452-{c:02d}") == [T0 + 5 * DAY + i * (DAY // 4) for i in range(4)]


def test_one_step_deletes_at_most_its_rows_and_says_where_to_go_on(store: SqliteWriter) -> None:
    fill(store, carriers=1, days=10)
    deleted, start = store.prune(T0 + 9 * DAY, None, max_rows=5)
    assert deleted == 5
    assert start is not None                           # the same series field still has old points
    assert len(times(store, start[1])) == 40 - 5
    deleted, start = store.prune(T0 + 9 * DAY, start, max_rows=1000)
    assert deleted == 2 * 36 - 5 and start is None


def test_series_and_new_writes_survive_a_pass(store: SqliteWriter) -> None:
    fill(store, carriers=1, days=2)
    Pruner(store, retention_s=1, every_s=3600).run_pass(T0 + 30 * DAY)     # every point is old
    assert times(store) == []
    late = wire.Sample("cellular", {"carrier": "452-00"}, {"rsrp_dbm": -80.0}, T0 + 30 * DAY)
    store.write([wire.Batch(zone="dinh-vu", probe="p1", seq=2, sent_ns=T0, samples=(late,))])
    assert times(store) == [T0 + 30 * DAY]             # the series id the writer remembers is still valid


def test_a_stop_ends_the_pass_between_steps(store: SqliteWriter) -> None:
    fill(store, carriers=4, days=4)
    stop = threading.Event()
    stop.set()
    result = Pruner(store, retention_s=1, every_s=3600, step_rows=3).run_pass(T0 + 9 * DAY, pause=stop)
    assert result.steps == 1 and result.deleted == 3


def test_retention_is_configurable_and_checked() -> None:
    cfg = strict.load(SqliteStorage, "type: sqlite\npath: x.db\nretention: 90d\n", "collector.yaml")
    assert cfg.retention == 90 * 86_400
    assert strict.load(SqliteStorage, "type: sqlite\npath: x.db\n", "c").retention == 400 * 86_400
    with pytest.raises(strict.ConfigError, match="prune_every"):
        strict.load(SqliteStorage, "type: sqlite\npath: x.db\nprune_every: 0s\n", "collector.yaml")
