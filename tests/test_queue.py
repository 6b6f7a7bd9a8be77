"""The store-and-forward queue both sides use (agent spool, collector intake): durable, ordered,
acknowledged, bounded, counted, and able to keep what is intact in a damaged file."""

from __future__ import annotations

import random
import sqlite3
import threading
from pathlib import Path

import pytest

from agent.spool import Spool
from zonewatch import wire
from zonewatch.queue import LARGE_PAGES, DiskQueue

S = 1_000_000_000
MB = 2**20


def q(tmp_path: Path, **kw: object) -> DiskQueue:
    args: dict[str, object] = {"max_bytes": 64 * MB, "max_age_ns": 0, "priority": ("events",)}
    args.update(kw)
    return DiskQueue(tmp_path / "q.db", **args)  # type: ignore[arg-type]


def test_entries_come_back_in_order_and_leave_only_when_acknowledged(tmp_path: Path) -> None:
    queue = q(tmp_path)
    ids = [queue.put("data", f"p{i}".encode(), i * S) for i in range(5)]
    assert [e.payload for e in queue.pending(10)] == [b"p0", b"p1", b"p2", b"p3", b"p4"]
    assert [e.id for e in queue.pending(2, skip={ids[0], ids[1]})] == ids[2:4]
    assert queue.ack([ids[1], ids[3]]) == 2
    assert [e.payload for e in queue.pending(10)] == [b"p0", b"p2", b"p4"]
    assert queue.ack([ids[1]]) == 0  # acknowledging twice is harmless


def test_priority_kinds_jump_ahead_of_a_backlog(tmp_path: Path) -> None:
    queue = q(tmp_path)
    for i in range(3):
        queue.put("data", b"d", i * S)
    ev = queue.put("events", b"e", 9 * S)
    assert [e.kind for e in queue.pending(10)] == ["events", "data", "data", "data"]
    assert queue.pending(1)[0].id == ev


def test_live_entries_go_before_an_old_backlog(tmp_path: Path) -> None:
    queue = q(tmp_path, live_ns=60 * S)
    for i in range(5):  # an hour-old backlog ...
        queue.put("data", f"old{i}".encode(), i * S)
    queue.put("data", b"now", 3600 * S)  # ... and what was just measured
    got = [e.payload for e in queue.pending(3, now_ns=3601 * S)]
    assert got == [b"now", b"old0", b"old1"]  # the NOC sees now; the past fills in, oldest first


def test_pending_leaves_out_the_kinds_held_back_in_every_part_of_its_order(tmp_path: Path) -> None:
    queue = q(tmp_path, live_ns=60 * S)
    queue.put("data", b"old", 0)
    queue.put("events", b"e", 3600 * S)
    queue.put("data", b"now", 3600 * S)
    queue.put("other", b"o", 0)
    now = 3601 * S
    assert [e.payload for e in queue.pending(10, now)] == [b"e", b"now", b"old", b"o"]
    assert [e.payload for e in queue.pending(10, now, without=frozenset({"data"}))] == [b"e", b"o"]
    assert [e.payload for e in queue.pending(10, now, without=frozenset({"events"}))] == [b"now", b"old", b"o"]
    assert [e.payload for e in queue.pending(1, now, without=frozenset({"events", "data"}))] == [b"o"]
    reader = queue.reader()
    assert [e.payload for e in reader.pending(10, now, without=frozenset({"data", "other"}))] == [b"e"]
    reader.close()


def test_everything_committed_survives_a_restart(tmp_path: Path) -> None:
    queue = q(tmp_path)
    ids = queue.put_many([("data", b"a"), ("data", b"b"), ("events", b"c")], 5 * S)
    queue.ack([ids[0]])
    queue.close()
    again = q(tmp_path)
    assert [e.payload for e in again.pending(10)] == [b"c", b"b"]
    assert again.size_bytes() == 2


def test_size_bound_drops_oldest_non_priority_first_and_counts(tmp_path: Path) -> None:
    queue = q(tmp_path, max_bytes=350)
    ev = queue.put("events", b"e" * 100, 0)
    for i in range(5):
        queue.put("data", bytes([i]) * 100, i * S)
    kept = queue.pending(10)
    assert kept[0].id == ev  # the event outlives older data
    assert [e.payload[0] for e in kept[1:]] == [3, 4]  # the newest data survive
    assert queue.dropped() == 3
    assert queue.size_bytes() <= 350
    queue.close()
    assert q(tmp_path, max_bytes=350).dropped() == 3  # the count survives restarts


def test_while_everything_older_is_in_flight_the_newest_is_kept_over_the_bound(tmp_path: Path) -> None:
    queue = q(tmp_path, max_bytes=350)
    sent = [queue.put("data", bytes([i]) * 100, i * S) for i in range(3)]
    queue.protected = set(sent)  # published, not yet acknowledged: they may still arrive
    new = queue.put("data", b"n" * 100, 3 * S)  # over the bound, and nothing may go but the newest
    assert queue.dropped() == 0 and [e.id for e in queue.pending(10)] == [*sent, new]
    queue.ack(sent)  # acknowledged: the room comes back
    queue.protected = set()
    for i in range(4, 8):
        queue.put("data", bytes([i]) * 100, i * S)
    assert [e.payload[0] for e in queue.pending(10)] == [5, 6, 7]  # oldest first again: n and 4 went
    assert queue.dropped() == 2


def test_age_bound_drops_what_is_too_old(tmp_path: Path) -> None:
    queue = q(tmp_path, max_age_ns=60 * S)
    queue.put("data", b"0", 0)
    queue.put("data", b"50", 50 * S)
    queue.put("data", b"100", 100 * S)  # now = 100 s: the first is 100 s old
    assert [e.payload for e in queue.pending(10)] == [b"50", b"100"]
    assert queue.dropped() == 1


def test_committed_entries_are_visible_to_another_process(tmp_path: Path) -> None:
    queue = q(tmp_path)
    queue.put("data", b"x", 0)
    other = sqlite3.connect(tmp_path / "q.db")  # what another process sees after a crash
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT count(*) FROM entries").fetchone()[0] == 1
    other.close()


@pytest.mark.parametrize("seed", range(8))
def test_a_file_cut_at_a_random_byte_opens_and_keeps_what_is_intact(tmp_path: Path, seed: int) -> None:
    queue = q(tmp_path)
    payloads = {queue.put("data", f"{i:06d}".encode() * 50, i * S): f"{i:06d}".encode() * 50 for i in range(2000)}
    queue.close()
    path = tmp_path / "q.db"
    data = path.read_bytes()
    for side in ("-wal", "-shm"):
        (tmp_path / f"q.db{side}").unlink(missing_ok=True)
    cut = random.Random(seed).randrange(4096, len(data))
    path.write_bytes(data[:cut])
    again = q(tmp_path)  # must not raise
    kept = again.pending(10_000)
    assert again.salvaged is not None and again.salvaged[0] == len(kept)
    assert again.get_meta("damaged_files") == 1
    assert 0 < len(kept) < len(payloads)
    for entry in kept:  # what was kept is exactly what was written
        assert entry.payload == payloads[entry.id]
    again.put("data", b"new", 3000 * S)  # and the queue works on
    assert again.pending(1, skip={e.id for e in kept})[0].payload == b"new"


# The agent's use of it: seq numbers -------------------------------------------------------------------


def sample(i: int) -> tuple[wire.Sample, ...]:
    return (wire.Sample("cellular", {"modem": "m1"}, {"rsrp_dbm": -90 - i}, i * S),)


def test_spool_numbers_batches_and_never_reuses_a_seq(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", "z", "p")
    assert [spool.append("data", i * S, samples=sample(i)) for i in range(3)] == [1, 2, 3]
    decoded = [wire.decode(e.payload) for e in spool.pending(10)]
    assert [(d.zone, d.probe, d.seq) for d in decoded] == [("z", "p", 1), ("z", "p", 2), ("z", "p", 3)]
    assert decoded[2].samples == sample(2)
    spool.ack([1, 2, 3])
    spool.close()
    again = Spool(tmp_path / "s.db", "z", "p")
    assert again.depth() == 0
    assert again.append("data", 9 * S, samples=sample(9)) == 4  # not even after the outbox emptied


def test_at_its_bound_the_queue_drops_the_oldest_counts_each_and_warns_once_a_minute(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A spool at its bound during a long outage dropped at every put by sorting the whole table (20 ms a put)
    and logged a warning per put; the oldest still go first, every drop is counted, one warning says it."""
    queue = q(tmp_path, max_bytes=100 * 1000, priority=("events",))
    event = queue.put("events", bytes(1000), S)
    ids = [queue.put("data", bytes(1000), S) for _ in range(2000)]
    left = [e.id for e in queue.pending(10_000)]
    assert queue.size_bytes() <= 100 * 1000 and event in left          # events go last
    assert [i for i in left if i != event] == ids[-(len(left) - 1):]     # the newest data are what is left
    assert queue.dropped() == 2001 - len(left)                           # every drop counted
    assert len([r for r in caplog.records if "over its bounds" in r.getMessage()]) == 1


def test_a_batch_the_collector_would_refuse_is_split_into_batches_it_takes(tmp_path: Path) -> None:
    """A chassis with thousands of ports gave one poll over 1 MiB: the broker refused it and the agent retried it
    for ever. It is now spooled as several batches, each within the collector's limits, nothing left out."""
    spool = Spool(tmp_path / "s.db", "z", "p")
    limits = wire.Limits()
    big = tuple(wire.Sample("interface", {"device": "olt-1", "ifname": f"gpon-0/{i // 128}/{i % 128}"},
                            {"oper_up": True, "in_octets": 10**12 + i, "out_octets": 10**12 + 2 * i}, S + i)
                for i in range(12_000))
    many = tuple(wire.Sample("probe", {}, {"cpu_pct": float(i % 100)}, S + i) for i in range(45_000))
    first = spool.append("data", S, samples=big)
    last = spool.append("data", S, samples=many)
    entries = spool.pending(100)
    assert [e.id for e in entries] == list(range(1, last + 1)) and first >= 2 and last - first >= 3
    decoded = [wire.decode(e.payload) for e in entries]
    assert all(len(e.payload) <= limits.max_bytes for e in entries)
    assert all(len(d.samples) <= limits.max_rows for d in decoded)
    assert [d.seq for d in decoded] == [e.id for e in entries]
    assert tuple(s for d in decoded[:first] for s in d.samples) == big
    assert tuple(s for d in decoded[first:] for s in d.samples) == many
    assert spool.append("data", S, samples=sample(1)) == last + 1   # and the next one is one batch again


def test_a_damaged_spool_keeps_counting_seq_upwards(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", "z", "p")
    for i in range(300):
        spool.append("data", i * S, samples=sample(i))
    spool.close()
    data = (tmp_path / "s.db").read_bytes()
    (tmp_path / "s.db").write_bytes(data[: len(data) // 2])
    for side in ("-wal", "-shm"):
        (tmp_path / f"s.db{side}").unlink(missing_ok=True)
    again = Spool(tmp_path / "s.db", "z", "p")
    assert again.damaged() == 1
    assert again.append("data", 400 * S, samples=sample(400)) > max(e.id for e in again.pending(1000) if e.id < 301)


def test_pending_after_an_id_skips_what_a_reader_has_taken_already(tmp_path: Path) -> None:
    queue = q(tmp_path, priority=())
    ids = queue.put_many([("data", b"a"), ("data", b"b"), ("data", b"c")], S)
    assert [e.payload for e in queue.pending(10, after=ids[0])] == [b"b", b"c"]
    assert queue.pending(10, after=ids[2]) == []
    queue.ack(ids)
    assert queue.put("data", b"d", S) == ids[2] + 1  # even once empty, ids only grow: a reader's mark holds
    queue.close()
    assert q(tmp_path).put("data", b"e", S) == ids[2] + 2  # and after a restart, above every id in the file


def test_a_reader_sees_what_is_committed_from_another_thread_without_waiting(tmp_path: Path) -> None:
    queue = q(tmp_path)
    queue.put("data", b"a", S)
    reader = queue.reader()
    try:
        queue.begin()
        queue.put_within([("data", b"b")], S)  # not committed yet: the writer holds the file
        got: list[list[bytes]] = []
        t = threading.Thread(target=lambda: got.append([e.payload for e in reader.pending(10)]))
        t.start()
        t.join(5)
        assert got == [[b"a"]]  # did not wait for the writer, and saw only what is committed
        queue.commit()
        assert [e.payload for e in reader.pending(10)] == [b"a", b"b"]
        with pytest.raises(sqlite3.OperationalError):
            reader._db.execute("DELETE FROM entries")  # read-only
    finally:
        reader.close()


def file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def test_the_file_shrinks_again_once_a_backlog_has_drained(tmp_path: Path) -> None:
    queue = q(tmp_path)
    blob = random.randbytes(16 * 1024)
    ids = [queue.put_many([("data", blob)] * 100, i * S)[0] for i in range(20)]   # about 32 MiB of backlog
    assert file_bytes(queue.path) > 30 * MB
    queue.ack([e.id for e in queue.pending(10_000)])
    assert ids and queue.depth() == 0
    given_back = 0
    while (given := queue.reclaim(max_bytes=4 * MB)) > 0:   # bounded steps, as the collector takes them
        assert given <= 4 * MB
        given_back += given
    assert given_back > 30 * MB
    queue.close()
    assert file_bytes(tmp_path / "q.db") < 2 * MB


def test_a_file_from_before_is_converted_to_give_space_back(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    old = sqlite3.connect(path)   # as the queue made its files before: no auto-vacuum
    old.executescript("CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
                      "INSERT INTO meta VALUES ('dropped', 7);")
    old.close()
    queue = q(tmp_path)
    assert queue.db.execute("PRAGMA auto_vacuum").fetchone() == (2,) and queue.dropped() == 7


def test_a_new_file_takes_the_page_size_asked_for_and_a_file_from_before_keeps_its_own(tmp_path: Path) -> None:
    big = DiskQueue(tmp_path / "big.db", 64 * MB, 0, page_size=LARGE_PAGES)
    big.put("data", random.randbytes(5000), S)   # one agent batch: one page, no overflow chain
    big.close()
    small = DiskQueue(tmp_path / "small.db", 64 * MB, 0)
    small.close()
    again = DiskQueue(tmp_path / "small.db", 64 * MB, 0, page_size=LARGE_PAGES)   # a file from before
    again.close()

    def pages(name: str) -> int:
        db = sqlite3.connect(tmp_path / name)
        try:
            return int(db.execute("PRAGMA page_size").fetchone()[0])
        finally:
            db.close()

    assert (pages("big.db"), pages("small.db")) == (LARGE_PAGES, 4096)


def test_depth_and_size_stay_exact_through_puts_acks_drops_and_rollbacks(tmp_path: Path) -> None:
    """``depth`` and ``size_bytes`` are kept in memory: they agree with the file after every kind of change."""
    queue = q(tmp_path, max_bytes=1000, priority=())
    other = sqlite3.connect(tmp_path / "q.db")   # what the file says, as committed

    def in_file() -> tuple[int, int]:
        count, size = other.execute("SELECT count(*), coalesce(sum(size), 0) FROM entries").fetchone()
        return int(count), int(size)

    try:
        ids = queue.put_many([("data", bytes(100))] * 5, S)
        assert (queue.depth(), queue.size_bytes()) == in_file() == (5, 500)
        queue.ack([ids[0], ids[0], 999])   # a repeat and an unknown id count for nothing
        assert (queue.depth(), queue.size_bytes()) == in_file() == (4, 400)
        queue.put_many([("data", bytes(300))] * 3, 2 * S)   # over max_bytes: the oldest are dropped
        assert queue.dropped() > 0 and (queue.depth(), queue.size_bytes()) == in_file()
        before = in_file()
        kept = [e.id for e in queue.pending(10)]
        queue.begin()
        queue.put_within([("data", bytes(10))], 3 * S)
        queue.ack_within(kept[:1])
        queue.rollback()
        assert (queue.depth(), queue.size_bytes()) == in_file() == before
        with pytest.raises(sqlite3.IntegrityError):   # an id that is taken: nothing of the put stays
            queue.put_many([("data", b"a"), ("data", b"b")], 4 * S, ids=[10_000, kept[0]])
        assert (queue.depth(), queue.size_bytes()) == in_file() == before
        queue.close()
        again = q(tmp_path, max_bytes=1000, priority=())
        assert (again.depth(), again.size_bytes()) == before
        again.close()
    finally:
        other.close()


def test_heads_reads_the_payloads_of_small_entries_only(tmp_path: Path) -> None:
    queue = q(tmp_path)
    small, large, other = (queue.put("t1", bytes([1]) * 100, S), queue.put("t1", bytes([2]) * 5000, 2 * S),
                           queue.put("t2", b"x", 3 * S))
    reader = queue.reader()
    try:
        assert reader.heads("t1", 0, 10, inline=1000) == [(small, S, 100, bytes([1]) * 100),
                                                          (large, 2 * S, 5000, None)]
        assert reader.heads("t1", small, 10, inline=5000) == [(large, 2 * S, 5000, bytes([2]) * 5000)]
        assert reader.heads("t1", 0, 1, inline=0) == [(small, S, 100, None)]
        assert reader.heads("t2", 0, 10, inline=0) == [(other, 3 * S, 1, None)]
    finally:
        reader.close()
