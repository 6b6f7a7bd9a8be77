"""The probe's outbox: durable, ordered, acknowledged, bounded and counted."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent import wire
from agent.spool import Spool

S = 1_000_000_000


def sample(i: int) -> tuple[wire.Sample, ...]:
    return (wire.Sample("cellular", {"modem": "m1"}, {"rsrp_dbm": -90 - i}, i * S),)


def test_batches_come_back_in_order_with_increasing_seq(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", "z", "p")
    seqs = [spool.append("data", i * S, samples=sample(i)) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    entries = spool.pending(10)
    assert [e.seq for e in entries] == seqs
    decoded = [wire.decode(e.payload) for e in entries]
    assert [d.samples[0].fields["rsrp_dbm"] for d in decoded] == [-90, -91, -92, -93, -94]
    assert {(d.zone, d.probe) for d in decoded} == {("z", "p")}


def test_events_jump_ahead_of_a_data_backlog(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", "z", "p")
    for i in range(3):
        spool.append("data", i * S, samples=sample(i))
    ev = spool.append("events", 9 * S, events=(wire.Event("link_down", {"device": "d"}, {}, 9 * S),))
    assert [e.seq for e in spool.pending(10)] == [ev, 1, 2, 3]
    assert [e.kind for e in spool.pending(2)] == ["events", "data"]


def test_only_acknowledged_batches_leave_and_skip_hides_inflight(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", "z", "p")
    for i in range(4):
        spool.append("data", i * S, samples=sample(i))
    assert [e.seq for e in spool.pending(2, skip={1, 2})] == [3, 4]
    spool.ack(2)
    assert [e.seq for e in spool.pending(10)] == [1, 3, 4]
    assert spool.depth() == 3


def test_unacknowledged_batches_and_seq_survive_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", "z", "p")
    for i in range(3):
        spool.append("data", i * S, samples=sample(i))
    spool.ack(1)
    spool.close()
    again = Spool(tmp_path / "s.db", "z", "p")
    assert [e.seq for e in again.pending(10)] == [2, 3]
    assert again.append("data", 5 * S, samples=sample(5)) == 4  # never reuses a seq
    spool2 = Spool(tmp_path / "s.db", "z", "p")
    spool2.ack(4)
    spool2.ack(3)
    spool2.ack(2)
    assert spool2.append("data", 6 * S, samples=sample(6)) == 5  # not even after the outbox emptied


def test_size_bound_drops_oldest_data_first_and_counts(tmp_path: Path) -> None:
    probe = Spool(tmp_path / "probe.db", "z", "p")
    probe.append("data", 0, samples=sample(0))
    one = probe.size_bytes()
    spool = Spool(tmp_path / "s.db", "z", "p", max_bytes=one * 3 + one // 2)
    ev = spool.append("events", 0, events=(wire.Event("link_down", {}, {}, 0),))
    for i in range(6):
        spool.append("data", i * S, samples=sample(i))
    kept = [e.seq for e in spool.pending(100)]
    assert kept[0] == ev  # the event outlives older data
    assert kept[1:] == [6, 7]  # the newest data survive
    assert spool.dropped() == 4
    assert spool.size_bytes() <= spool.max_bytes


def test_age_bound_drops_what_is_too_old(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", "z", "p", max_age_s=60)
    spool.append("data", 0, samples=sample(0))
    spool.append("data", 50 * S, samples=sample(50))
    spool.append("data", 100 * S, samples=sample(100))  # now = 100 s: the first is 100 s old
    assert [e.seq for e in spool.pending(10)] == [2, 3]
    assert spool.dropped() == 1


def test_spool_is_sqlite_wal_on_disk(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", "z", "p")
    spool.append("data", 0, samples=sample(0))
    # A second, independent connection (another process after a crash) sees the committed batch.
    other = sqlite3.connect(tmp_path / "s.db")
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1
