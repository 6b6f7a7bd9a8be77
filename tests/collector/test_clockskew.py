"""Probe clocks (``collector.clockskew``): measured from the agents' send stamps without trusting them, and the
messages of a probe whose clock is off stored and judged at corrected times (pure parts with time as an argument;
the preparer with a line store and a batch store, as ``test_ingest_pipeline`` runs it).

What a user would notice: a probe ten minutes ahead has its readings stored at the right time, not refused; a
healthy probe behind a collector that is catching up is not taken for a clock behind; a clock that is fixed is
followed, and a message is corrected by the offset in force when it arrived, also after a restart.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from collector.clockskew import SLACK_NS, ClockSkew, Estimate, sent_stamp, shifted
from collector.ingest import Ingest, read_entry
from collector.metrics import CollectorMetrics
from collector.scope import Scope
from collector.storage.lineproto import Encoded, Encoder
from tests.services import wait_for
from zonewatch import wire
from zonewatch.mqtt import MqttConfig
from zonewatch.queue import DiskQueue, Entry

S = 1_000_000_000
NOW = 1_764_290_000 * S
TOPIC = "zw/v1/z1/p1/data"
AHEAD = 600 * S   # ten minutes


def test_a_clock_ahead_is_proven_by_one_stamp_and_a_healthy_one_is_left_alone() -> None:
    e = Estimate()
    e.add(AHEAD - 30_000_000, None, NOW)   # ten minutes ahead, 30 ms in transit, no ticks
    assert e.offset() == AHEAD - 30_000_000
    ok = Estimate()
    for i in range(10):
        ok.add(-(5 + i) * 1_000_000, None, NOW + i * S)   # a right clock: a few ms of transit
    assert ok.offset() == 0 and ok.best() == (-5_000_000, None)


def test_a_late_message_is_not_a_clock_behind_unless_the_ticks_bound_its_transit() -> None:
    late = Estimate()
    for i in range(5):
        late.add(-300 * S, None, NOW + i * S)   # five minutes in the broker's queue, and no ticks to tell
    assert late.offset() == 0
    unsure = Estimate()
    for i in range(5):   # the collector itself was 5 minutes behind: its ticks came back that late
        unsure.add(-300 * S, 300 * S + SLACK_NS, NOW + i * S)
    assert unsure.offset() == 0
    behind = Estimate()
    for i in range(3):   # ticks back within a second: the message cannot have waited 5 minutes
        behind.add(-300 * S, 1 * S + SLACK_NS, NOW + i * S)
    assert behind.offset() == -300 * S
    few = Estimate()
    few.add(-300 * S, SLACK_NS, NOW)
    assert few.offset() == 0   # one stamp is not enough to shift a probe's data into the future


def test_the_best_floor_wins_and_old_ones_leave_the_window() -> None:
    e = Estimate()
    e.add(AHEAD - 5 * S, None, NOW)          # a resend after a reconnect: stamped long before it went
    e.add(AHEAD - 10_000_000, None, NOW + S)
    assert e.offset() == AHEAD - 10_000_000
    e.add(-10_000_000, None, NOW + 200 * S)   # the clock was fixed: two minutes later only that is left
    assert e.offset() == 0


def stamped(skew: ClockSkew, offset: int, at: int, caught_up: int = 0) -> list[tuple[str, int, int]]:
    return skew.observe([(TOPIC, at + offset)], at, caught_up)


def test_the_offset_in_force_is_a_timeline_kept_in_the_intake_file(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path / "intake.db", 2**30, 0)
    skew = ClockSkew(queue.db)
    assert stamped(skew, 40_000_000, NOW) == []                       # 40 ms: within the tolerance
    assert skew.offset_at(TOPIC, NOW) == 0
    points = stamped(skew, AHEAD, NOW + 10 * S)
    assert points == [("z1/p1", NOW + 10 * S, AHEAD)]
    skew.store(points, NOW + 10 * S, 30 * 86400 * S)
    assert stamped(skew, AHEAD + 300_000_000, NOW + 11 * S) == []     # moved by less than a second: the same
    assert skew.offset_at(TOPIC, NOW + 9 * S) == 0                    # arrived before: as it was
    assert skew.offset_at(TOPIC, NOW + 10 * S) == AHEAD
    assert skew.offset_at("zw/v1/z1/p2/data", NOW + 10 * S) == 0
    assert skew.offset_at("zw/v1/z1/p1/events", NOW + 20 * S) == AHEAD
    fixed = stamped(skew, 0, NOW + 200 * S)                           # NTP set it right
    assert fixed == [("z1/p1", NOW + 200 * S, 0)]
    skew.store(fixed, NOW + 200 * S, 30 * 86400 * S)
    assert skew.offset_at(TOPIC, NOW + 150 * S) == AHEAD and skew.offset_at(TOPIC, NOW + 200 * S) == 0
    view = skew.views()["z1/p1"]
    assert (view.offset_ns, view.since_ns, view.measured_ns) == (0, NOW + 200 * S, NOW + 200 * S)

    again = ClockSkew(queue.db)   # a restart: what is still queued is corrected as it was
    assert again.offset_at(TOPIC, NOW + 150 * S) == AHEAD and again.offset_at(TOPIC, NOW + 201 * S) == 0
    later = stamped(again, AHEAD, NOW + 40 * 86400 * S)   # forty days on, the clock is off again
    again.store(later, NOW + 40 * 86400 * S, 30 * 86400 * S)
    rows = queue.db.execute("SELECT since_ns, offset_ns FROM clockskew ORDER BY 1").fetchall()
    assert rows == [(NOW + 200 * S, 0), (NOW + 40 * 86400 * S, AHEAD)]   # what ended a month ago is gone
    queue.close()


def test_the_send_stamp_is_read_from_the_publish_properties() -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    def publish(*pairs: tuple[str, str]) -> Properties:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if pairs:
            props.UserProperty = list(pairs)
        return props

    assert sent_stamp(publish(("other", "x"), (wire.SENT_PROPERTY, str(NOW)))) == NOW
    assert sent_stamp(publish((wire.SENT_PROPERTY, "1e21"))) is None
    assert sent_stamp(publish()) is None and sent_stamp(None) is None   # MQTT 3.1.1 has no properties


def payload(probe: str = "p1", seq: int = 1, ahead: int = AHEAD, rows: int = 3) -> bytes:
    samples = tuple(wire.Sample("probe", {}, {"spool_depth": i}, NOW + ahead + i * S) for i in range(rows))
    return wire.encode(wire.Batch("z1", probe, seq, NOW + ahead, samples, (), origin=7))


def test_a_message_ten_minutes_ahead_is_read_at_corrected_times_instead_of_refused() -> None:
    entry = Entry(1, TOPIC, NOW, payload())
    with pytest.raises(wire.WireError) as refused:
        read_entry(entry, Scope())
    assert refused.value.reason == "time_future"
    batch, _ = read_entry(entry, Scope(), offset_ns=AHEAD)
    assert [s.time_ns for s in batch.samples] == [NOW, NOW + S, NOW + 2 * S]
    assert shifted(batch, AHEAD).samples[0].time_ns == NOW + AHEAD


class BatchStore:
    """Records the times of the ``spool_depth`` samples it is given (as SQLite is given them: batches)."""

    def __init__(self) -> None:
        self.times: list[int] = []
        self.encoded = 0
        self.lock = threading.Lock()

    def write(self, batches: Sequence[wire.Batch | Encoded]) -> None:
        with self.lock:
            for b in batches:
                assert isinstance(b, wire.Batch)
                self.times += [x.time_ns for x in b.samples if "spool_depth" in x.fields]

    def close(self) -> None:
        pass


class LineStore(BatchStore):
    """The same for a store of line protocol (as VictoriaMetrics): most messages come encoded (the fast path)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()

    def prepare(self, batches: Sequence[wire.Batch | Encoded]) -> Callable[[], None]:
        lines = self.encoder.encode(batches)
        encoded = sum(isinstance(b, Encoded) for b in batches)

        def write() -> None:
            with self.lock:
                self.encoded += encoded
                self.times += [int(line.rsplit(" ", 1)[1]) for line in lines if "spool_depth=" in line]

        return write

    def write(self, batches: Sequence[wire.Batch | Encoded]) -> None:
        self.prepare(batches)()


@pytest.mark.parametrize("store", [BatchStore, LineStore], ids=["batch store", "line store"])
def test_the_preparer_stores_a_probe_ahead_at_corrected_times_and_others_by_the_fast_path(
        tmp_path: Path, store: type[BatchStore]) -> None:
    writer = store()
    metrics = CollectorMetrics(CollectorRegistry())
    intake = DiskQueue(tmp_path / "intake.db", 2**30, 0)
    ingest = Ingest(MqttConfig(port=1), writer, metrics, intake, clock=lambda: NOW)
    points = ingest.skew.observe([(TOPIC, NOW + AHEAD)], NOW, 0)   # what the intake thread measured
    ingest.skew.store(points, NOW, 86400 * S)
    intake.put_many([(TOPIC, payload()), ("zw/v1/z1/p2/data", payload("p2", ahead=0))], NOW)
    ingest._reader = intake.reader()
    threads = [threading.Thread(target=ingest._prepare_loop, daemon=True), ingest._threads[2]]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: len(writer.times) >= 6, 10, "both probes' samples to be stored")
    finally:
        ingest._stop.set()
        for thread in threads:
            thread.join(5)
        ingest._reader.close()
        intake.close()
    assert sorted(writer.times) == sorted([NOW, NOW + S, NOW + 2 * S] * 2)   # p1 corrected, p2 as it said
    assert metrics.registry.get_sample_value("zonewatch_ingest_rejected_messages_total",
                                             {"reason": "time_future"}) is None
    assert metrics.registry.get_sample_value("zonewatch_probe_corrected_messages_total", {"probe": "z1/p1"}) == 1
    assert metrics.registry.get_sample_value("zonewatch_probe_clock_offset_seconds", {"probe": "z1/p1"}) == 600
    assert writer.encoded == (1 if store is LineStore else 0)   # p2's message took the fast path, p1's the full one
