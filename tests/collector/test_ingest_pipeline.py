"""The writer pipeline of the ingest (preparer, sender, committer) without a broker (its sessions are fakes that
never connect: ``tests.collector.fake_mqtt``; the intake is ``test_ingest_intake``'s): batches go in through
``Ingest.inject`` (the intake queue) and come out of a fake store. What it must keep: every batch written
once and in order; a store that is down holds everything; a refusal drops only the refused batches; and the
bookkeeping on disk never runs ahead of the entries deleted, so a crash replays instead of losing.

Each test runs twice: with a store that takes batches (as SQLite does), and with one that takes line protocol
(as VictoriaMetrics and InfluxDB do), to which most messages come encoded by the preparer's fast path."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from collector.ingest import OPEN, Ingest, SeqTracker, read_entry
from collector.ingest import pipeline as ingest_module
from collector.metrics import CollectorMetrics
from collector.storage import StorageError
from collector.storage.lineproto import Encoded, Encoder
from tests.collector.fake_mqtt import FakeSessions
from tests.services import wait_for
from zonewatch import wire
from zonewatch.mqtt import MqttConfig
from zonewatch.queue import DiskQueue, Entry

NOW = 1_764_290_000 * 10**9


def batch(seq: int, probe: str = "p1", value: int = 0) -> wire.Batch:
    return wire.Batch("z1", probe, seq, NOW, (wire.Sample("probe", {}, {"spool_depth": value or seq}, NOW + seq),))


class Store:
    """A store that records what it is given; ``fail`` decides, per batch, the error to raise (if any)."""

    def __init__(self) -> None:
        self.written: list[tuple[str, int]] = []  # (probe, seq) of every batch with data, in write order
        self.gaps: list[tuple[int, int]] = []  # (time, value) of every seq_gaps sample, in write order
        self.calls = 0
        self.encoded = 0  # messages that came encoded (a line store only)
        self.fail: Callable[[wire.Batch | Encoded], StorageError | None] = lambda b: None
        self.lock = threading.Lock()

    def write(self, batches: Sequence[wire.Batch | Encoded]) -> None:
        with self.lock:
            self.calls += 1
            for b in batches:
                error = self.fail(b)
                if error is not None:
                    raise error
            self.written += [(b.probe, b.seq) for b in batches if b.seq]
            self.encoded += sum(isinstance(b, Encoded) for b in batches)
            self.gaps += [(x.time_ns, int(x.fields["seq_gaps"])) for b in batches
                          if isinstance(b, wire.Batch) and not b.seq for x in b.samples if "seq_gaps" in x.fields]

    def close(self) -> None:
        pass


Make = Callable[[Store], Ingest]


@pytest.fixture(params=["batch store", "line store"])
def make(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Make]:
    made: list[tuple[Ingest, Store]] = []

    def factory(store: Store) -> Ingest:
        if request.param == "line store":  # a LineWriter: it has the preparer's encoder, and prepares
            store.encoder = Encoder()  # type: ignore[attr-defined]
            if not hasattr(store, "prepare"):
                store.prepare = lambda batches: lambda: store.write(batches)  # type: ignore[attr-defined]
        intake = DiskQueue(tmp_path / "intake.db", 64 * 2**20, 0)
        ing = Ingest(MqttConfig(), store, CollectorMetrics(), intake, clock=lambda: NOW, sessions=FakeSessions())
        ing.start()
        made.append((ing, store))
        return ing

    yield factory
    for ing, store in made:
        ing.stop(timeout=2)
        ing.intake.close()
        if request.param == "line store" and store.written:
            assert store.encoded, "no message took the fast path to the line store"
        if request.param == "batch store":
            assert not store.encoded


def counter(ing: Ingest, name: str) -> float:
    return ing.metrics.registry.get_sample_value(name) or 0.0


def test_every_batch_is_written_once_in_order_and_then_leaves(make: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_module, "PART_SAMPLES", 3)  # many parts, so the pipeline really overlaps
    store = Store()
    ing = make(store)
    ing.inject([batch(s) for s in range(1, 41)])
    ing.inject([batch(s) for s in (5, 6, 41)])  # two repeats and a new one
    wait_for(lambda: ing.intake.depth() == 0, 10, "the intake queue to drain")
    assert store.written == [("p1", s) for s in range(1, 42)]
    assert counter(ing, "zonewatch_ingest_duplicate_batches_total") == 2
    assert counter(ing, "zonewatch_storage_written_batches_total") >= 41  # and one seq_gaps batch per part
    saved = ing.intake.db.execute("SELECT watermark FROM seqstate WHERE probe = 'z1/p1'").fetchone()
    assert saved == (41,)


def test_the_last_gap_count_is_the_latest_point_even_within_one_clock_tick(
        make: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_module, "PART_SAMPLES", 1)  # a part, and a seq_gaps sample, per batch
    store = Store()
    ing = make(store)  # its clock stands still: every part is prepared "at the same time"
    ing.inject([batch(s) for s in (5, 1, 2, 3, 4)])  # live data first, then the backlog fills in behind it
    wait_for(lambda: ing.intake.depth() == 0, 10, "the intake queue to drain")
    assert [value for _, value in store.gaps] == [4, 3, 2, 1, 0]
    times = [t for t, _ in store.gaps]
    assert times[0] == NOW  # a millisecond apart, each:
    assert all(later - earlier >= 1_000_000 for earlier, later in zip(times, times[1:], strict=False))
    # so a store that keeps milliseconds (VictoriaMetrics) has 0 as the latest value, not a tie it may settle
    # for the bigger, older one


def test_a_trickle_is_written_whether_the_queue_empties_between_arrivals_or_not(make: Make) -> None:
    store = Store()
    ing = make(store)
    seq = 0
    for burst in (1, 1, 3, 1, 5, 2, 1):
        ing.inject([batch(s) for s in range(seq + 1, seq + burst + 1)])
        seq += burst
        if burst % 2:  # sometimes the queue has emptied before the next arrival, sometimes not
            wait_for(lambda: ing.intake.depth() == 0, 10, "the intake queue to drain")
    wait_for(lambda: ing.intake.depth() == 0, 10, "the intake queue to drain")
    assert store.written == [("p1", s) for s in range(1, seq + 1)]


def test_a_store_that_is_down_holds_everything(make: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_module, "PART_SAMPLES", 2)
    store = Store()
    down = threading.Event()
    down.set()
    store.fail = lambda b: StorageError("connection refused", retryable=True) if down.is_set() else None
    ing = make(store)
    ing.inject([batch(s) for s in range(1, 11)])
    wait_for(lambda: counter(ing, "zonewatch_storage_write_errors_total") >= 2, 10, "two failed writes")
    assert store.written == [] and ing.intake.depth() == 10  # nothing written, nothing deleted
    down.clear()
    wait_for(lambda: ing.intake.depth() == 0, 20, "the intake queue to drain")
    assert store.written == [("p1", s) for s in range(1, 11)]
    assert counter(ing, "zonewatch_storage_dropped_batches_total") == 0


def test_a_refusal_drops_only_the_refused_batch_even_if_the_store_blinks(make: Make) -> None:
    store = Store()
    blinks = [StorageError("timeout", retryable=True)]  # once, during the batch-by-batch writes

    def fail(b: wire.Batch | Encoded) -> StorageError | None:
        if b.seq == 3:
            return StorageError("HTTP 400: bad line", retryable=False)
        if b.seq == 4 and store.calls > 1 and blinks:
            return blinks.pop()
        return None

    store.fail = fail
    ing = make(store)
    ing.inject([batch(s) for s in range(1, 6)])
    wait_for(lambda: ing.intake.depth() == 0, 20, "the intake queue to drain")
    assert store.written == [("p1", 1), ("p1", 2), ("p1", 4), ("p1", 5)]  # 4 was retried, not dropped
    assert counter(ing, "zonewatch_storage_dropped_batches_total") == 1


class Refusing(Store):
    """A store that encodes ahead (``prepare``) and cannot encode the data of probe ``bad``."""

    def prepare(self, batches: Sequence[wire.Batch | Encoded]) -> Callable[[], None]:
        if any(b.probe == "bad" and b.seq for b in batches):
            raise StorageError("cannot encode", retryable=False)
        return lambda: self.write(batches)


def test_a_batch_the_store_cannot_encode_is_dropped_alone(make: Make) -> None:
    store = Refusing()
    ing = make(store)
    ing.inject([batch(1), batch(1, probe="bad"), batch(2)])
    wait_for(lambda: ing.intake.depth() == 0, 10, "the intake queue to drain")
    assert store.written == [("p1", 1), ("p1", 2)]
    assert counter(ing, "zonewatch_storage_dropped_batches_total") == 1


def test_bookkeeping_on_disk_never_runs_ahead_of_the_entries_deleted(make: Make, monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    """Hold the store on seq 4 while the preparer has decided about later seqs, and look at the file as a
    collector killed at that moment would leave it: every entry still there must be new to the bookkeeping
    stored beside it (else it would be dropped as a repeat at the restart: lost)."""
    monkeypatch.setattr(ingest_module, "PART_SAMPLES", 1)  # one batch per part
    store = Store()
    release = threading.Event()
    held = threading.Event()

    def fail(b: wire.Batch | Encoded) -> None:
        if b.seq == 4:
            held.set()
            release.wait(10)

    store.fail = fail
    ing = make(store)
    ing.inject([batch(s) for s in range(1, 9)])
    try:
        assert held.wait(10)
        wait_for(lambda: ing._to_send.full(), 10, "the preparer to be parts ahead")  # decided about 5, 6, ...
        # What a restart would find, read as one snapshot: the committer may still be committing the parts
        # before seq 4, and entries and bookkeeping read at two moments need not belong together.
        source = sqlite3.connect(tmp_path / "intake.db")
        disk = sqlite3.connect(":memory:")
        source.backup(disk)
        source.close()
        try:
            left = [wire.decode(p).seq for (p,) in disk.execute("SELECT payload FROM entries ORDER BY id")]
            restarted = SeqTracker(disk)
            assert left and left[0] <= 4
            assert all(restarted.first_time("z1/p1", 0, s) for s in left)
        finally:
            disk.close()
    finally:
        release.set()
    wait_for(lambda: ing.intake.depth() == 0, 10, "the intake queue to drain")
    assert store.written == [("p1", s) for s in range(1, 9)]


def test_the_threads_carry_their_names_in_the_kernel_for_top_and_ps(make: Make) -> None:
    make(Store())

    def names() -> set[str]:
        return {(task / "comm").read_text().strip() for task in Path("/proc/self/task").iterdir()}

    wait_for(lambda: {"zw-intake", "zw-prepare", "zw-send", "zw-commit"} <= names(), 5, "the threads' names")


def test_the_preparer_gives_the_engine_each_message_it_decoded_whole(make: Make) -> None:
    """What the alert engine takes instead of decoding again (``Ingest.on_prepared``): every entry of a probe, in
    the order decoded, as ``read_entry`` reads it (a rejected one as None, a repeat too), whatever storage keeps."""
    ing = make(Store())
    got: list[tuple[int, wire.Batch | None, object]] = []
    ing.on_prepared = got.extend
    topic = wire.topic("z1", "p1", "data")
    two = wire.Batch("z1", "p1", 2, NOW, (wire.Sample("probe", {}, {"spool_depth": 2}, NOW),
                                          wire.Sample("interface", {"device": "sw", "ifname": "xe-1"},
                                                      {"oper_up": True, "in_octets": 2**64 - 1}, NOW)))
    payloads = [wire.encode(batch(1)), b"{not json", wire.encode(two), wire.encode(two)]
    with ing._lock:
        ids = ing.intake.put_many([(topic, p) for p in payloads], NOW)
    ing.inject([batch(9, probe="collector")])   # the collector's own: not the engine's to judge again
    ing._wake_writer.set()
    wait_for(lambda: ing.intake.depth() == 0, 10, "the intake queue to drain")
    want = [read_entry(Entry(i, topic, NOW, p), OPEN)[0] if p != b"{not json" else None
            for i, p in zip(ids, payloads, strict=True)]
    assert [(entry_id, b) for entry_id, b, _ in got] == list(zip(ids, want, strict=True))
    assert all(refused is None for _, _, refused in got)
