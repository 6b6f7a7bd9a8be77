"""The ingest's intake (``collector.ingest.pipeline``): what its two broker sessions subscribe to, when a delivery is
acknowledged, and what the alert engine is offered, driven through fake sessions (``tests.collector.fake_mqtt``):
no broker, no sockets. Most tests run the intake thread's round on the test's thread (``Ingest._take_arrivals``),
so that what is waiting at once is known; one starts the threads and waits with a bounded poll.

What a user would notice: a message the collector acknowledged is on its disk, so a crash right after loses
nothing (the broker no longer has it); a probe's last will or a trap is not held up behind a data backlog; a
malformed message does not stop the stream; a restart behind a backlog says "subscribed" at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from collector.ingest import TICK_EVERY, Ingest
from collector.metrics import CollectorMetrics
from tests.collector.fake_mqtt import Delivery, FakeSession, FakeSessions, stamped
from tests.services import wait_for
from zonewatch import wire
from zonewatch.mqtt import MqttConfig
from zonewatch.queue import DiskQueue

S = 10**9
NOW = 1_764_290_000 * S
DATA = wire.topic("z1", "p1", "data")
EVENTS = wire.topic("z1", "p1", "events")
STATUS = wire.topic("z1", "p1", "status")

Message = tuple[str, bytes]


def data(seq: int, probe: str = "p1") -> Message:
    batch = wire.Batch("z1", probe, seq, NOW, (wire.Sample("probe", {}, {"spool_depth": seq}, NOW),))
    return wire.topic("z1", probe, "data"), wire.encode(batch)


def event(seq: int) -> Message:
    batch = wire.Batch("z1", "p1", seq, NOW, events=(wire.Event("link_down", {"link": "dsl"}, {}, NOW),))
    return EVENTS, wire.encode(batch)


def sent(*deliveries: Delivery) -> list[Message]:
    return [(d.topic, d.payload) for d in deliveries]


class Store:
    """A store that keeps (probe, seq) of what it is given."""

    def __init__(self) -> None:
        self.written: list[tuple[str, int]] = []

    def write(self, batches: Sequence[wire.Batch]) -> None:
        self.written += [(b.probe, b.seq) for b in batches if b.seq]

    def close(self) -> None:
        pass


@dataclass
class Rig:
    """An ingest on fake sessions, not started: the test runs the intake thread's rounds itself."""

    ingest: Ingest[FakeSession]
    sessions: FakeSessions
    path: Path
    offered: list[list[Message]] = field(default_factory=list)      # what on_arrival got, call by call
    on_disk_when_offered: list[list[Message]] = field(default_factory=list)

    def on_disk(self) -> list[Message]:
        """What the intake queue's file holds, committed, in queue order (read as a restart would)."""
        with closing(sqlite3.connect(self.path)) as db:
            rows = db.execute("SELECT kind, payload FROM entries ORDER BY id").fetchall()
        return [(kind, bytes(payload)) for kind, payload in rows]

    def intake_rounds(self) -> int:
        """Run the intake thread's rounds until nothing waits; return how many took something."""
        rounds = 0
        while self.ingest._take_arrivals():
            rounds += 1
        return rounds


def make_rig(tmp_path: Path, username: str | None = None) -> tuple[Rig, DiskQueue]:
    path = tmp_path / "intake.db"
    intake = DiskQueue(path, 64 * 2**20, 0)
    sessions = FakeSessions()
    rig: Rig

    def on_arrival(messages: list[Message], now: int, *more: object) -> None:   # the alert engine's place
        rig.offered.append(list(messages))
        rig.on_disk_when_offered.append(rig.on_disk())

    ingest = Ingest(MqttConfig(username=username), Store(), CollectorMetrics(), intake, clock=lambda: NOW,
                    on_arrival=on_arrival, zones=["z1", "z2"], sessions=sessions)
    rig = Rig(ingest, sessions, path)
    return rig, intake


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made, intake = make_rig(tmp_path, username="central")
    try:
        yield made
    finally:
        intake.close()


def metric(ing: Ingest[FakeSession], name: str, labels: dict[str, str] | None = None) -> float | None:
    return ing.metrics.registry.get_sample_value(name, labels or {})


# acknowledgements ----------------------------------------------------------------------------------------------


def test_a_delivery_is_acknowledged_only_once_it_is_committed_and_in_the_order_it_arrived(rig: Rig) -> None:
    rig.sessions.connack()
    on_disk_at_ack: list[list[Message]] = []
    rig.sessions.on_ack = lambda delivery: on_disk_at_ack.append(rig.on_disk())
    arrived = [rig.sessions.data.deliver(*data(seq)) for seq in (3, 1, 2)]
    once = rig.sessions.data.deliver(*data(4), qos=0)   # QoS 0: stored, nothing to acknowledge

    assert rig.sessions.acks == []           # handed over by paho's thread: not acknowledged before the intake
    assert rig.intake_rounds() == 1          # everything waiting at once: one transaction
    assert rig.sessions.acks == arrived      # in arrival order, not by seq
    assert on_disk_at_ack == [sent(*arrived, once)] * 3   # at each acknowledgement, all of them already committed
    assert rig.offered == [sent(*arrived, once)]
    assert rig.on_disk_when_offered == [sent(*arrived, once)]   # the engine, too, sees only what is on disk
    assert metric(rig.ingest, "zonewatch_ingest_messages_total") == 4


def test_status_and_events_waiting_with_data_are_committed_offered_and_acknowledged_first(rig: Rig) -> None:
    rig.sessions.connack()
    backlog = [rig.sessions.data.deliver(*data(seq)) for seq in (1, 2, 3)]
    trap = rig.sessions.urgent.deliver(*event(7))
    will = rig.sessions.urgent.deliver(STATUS, wire.STATUS_OFFLINE)

    assert rig.intake_rounds() == 2
    assert rig.offered == [sent(trap, will), sent(*backlog)]
    assert rig.on_disk_when_offered[0] == sent(trap, will)   # in a transaction of their own, before the data
    assert rig.on_disk() == sent(trap, will, *backlog)
    assert rig.sessions.acks == [trap, will, *backlog]
    assert rig.sessions.urgent.acks == [trap, will] and rig.sessions.data.acks == backlog   # each by its session


def test_ticks_and_park_bridge_states_are_offered_to_the_engine_but_not_stored(rig: Rig) -> None:
    rig.sessions.connack()
    tick = rig.sessions.data.deliver(rig.ingest.tick_topic, str(NOW - 3 * S).encode())   # published 3 s ago
    reading = rig.sessions.data.deliver(*data(1))
    bridge = rig.sessions.urgent.deliver("zonewatch/bridge/z1/state", b"0")   # the park's uplink is cut
    will = rig.sessions.urgent.deliver(STATUS, wire.STATUS_OFFLINE)

    assert rig.intake_rounds() == 2
    assert rig.offered == [sent(bridge, will), sent(tick, reading)]   # each in its place
    assert rig.on_disk() == sent(will, reading)
    assert rig.sessions.acks == [bridge, will, tick, reading]
    assert metric(rig.ingest, "zonewatch_ingest_messages_total") == 2
    assert rig.ingest.caught_up_ns == NOW - 3 * S   # everything published before the tick has arrived
    assert metric(rig.ingest, "zonewatch_ingest_lag_seconds") == 3.0


def test_a_malformed_message_is_stored_and_acknowledged_then_rejected_and_counted_without_stopping_the_stream(
        tmp_path: Path) -> None:
    """The whole ingest, its threads started: a bad message is the preparer's to reject (and count), not the
    intake's, which must not lose what follows it nor leave the broker redelivering it for ever."""
    rig, intake = make_rig(tmp_path)
    store = rig.ingest.writer
    assert isinstance(store, Store)
    rig.ingest.start()
    try:
        rig.sessions.connack()
        bad = rig.sessions.data.deliver(DATA, b'{"v": 1, "zone": "z1", "probe": ')
        good = rig.sessions.data.deliver(*data(1))
        wait_for(lambda: len(rig.sessions.acks) == 2 and rig.ingest.intake.depth() == 0, 10,
                 "both messages to be acknowledged and the intake queue to drain")
        assert rig.sessions.acks == [bad, good]
        assert store.written == [("p1", 1)]
        assert metric(rig.ingest, "zonewatch_ingest_rejected_messages_total", {"reason": "not_json"}) == 1
    finally:
        rig.ingest.stop(timeout=2)
        intake.close()
    # Both sessions were started as the broker must keep them (a week, over MQTT 5), and stopped.
    for session in (rig.sessions.data, rig.sessions.urgent):
        [connect] = session.connects
        assert connect["clean_start"] is False and connect["properties"].SessionExpiryInterval == 7 * 86400
        assert session.disconnects == 1 and not session.looping


# the clock-skew stamps and the ticks ------------------------------------------------------------------------------


def test_a_probe_clock_ahead_is_measured_from_its_send_stamps_before_its_messages_are_committed(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    rig.sessions.connack()
    clocks_at_commit: list[list[tuple[str, int]]] = []
    put_many = rig.ingest.intake.put_many

    def look_then_put(items: list[Message], now: int) -> object:
        with closing(sqlite3.connect(rig.path)) as db:
            clocks_at_commit.append(db.execute("SELECT probe, offset_ns FROM clockskew").fetchall())
        return put_many(items, now)

    monkeypatch.setattr(rig.ingest.intake, "put_many", look_then_put)
    rig.sessions.data.deliver(*data(1), properties=stamped(NOW + 600 * S))   # sent by a clock 10 min ahead
    rig.sessions.data.deliver(*data(1, probe="p2"))                         # MQTT 3.1.1: no stamp

    assert rig.intake_rounds() == 1
    # On disk before the messages it applies to: the preparer never takes one of them without it.
    assert clocks_at_commit == [[("z1/p1", 600 * S)]]
    assert rig.ingest.skew.offset_at(DATA, NOW) == 600 * S
    assert rig.ingest.skew.offset_at(wire.topic("z1", "p2", "data"), NOW) == 0


def test_a_tick_goes_out_on_the_data_session_every_tick_period_once_both_sessions_are_connected(rig: Rig) -> None:
    ing, data_session = rig.ingest, rig.sessions.data
    ing._tick(100.0)
    assert data_session.published == []          # not connected: nothing to measure
    rig.sessions.connack()
    ing._tick(100.0)
    ing._tick(100.0 + TICK_EVERY / 2)
    ing._tick(100.0 + TICK_EVERY)
    assert [(m.topic, m.payload, m.qos) for m in data_session.published] == [
        ("zonewatch/tick/central", str(NOW).encode(), 1)] * 2
    assert rig.sessions.urgent.published == []   # only the data session's queue is measured


# subscriptions ---------------------------------------------------------------------------------------------------


def test_each_session_subscribes_to_its_own_topics_of_every_zone_and_drops_the_others(rig: Rig) -> None:
    data_session, urgent = rig.sessions.data, rig.sessions.urgent
    assert (data_session.client_id, data_session.username) == ("zonewatch-collector", "central")
    assert (urgent.client_id, urgent.username) == ("zonewatch-collector-urgent", "central-urgent")
    rig.sessions.connack()

    assert [sorted(filters) for _, filters in data_session.subscribes] == [
        [("zonewatch/tick/central", 1), ("zw/v1/z1/+/data", 1), ("zw/v1/z2/+/data", 1)]]
    assert sorted(data_session.unsubscribed) == ["zw/v1/z1/+/events", "zw/v1/z1/+/status", "zw/v1/z2/+/events",
                                                 "zw/v1/z2/+/status"]
    assert [sorted(filters) for _, filters in urgent.subscribes] == [   # the bridges' states apart (may be refused)
        [("zw/v1/z1/+/events", 1), ("zw/v1/z1/+/status", 1), ("zw/v1/z2/+/events", 1), ("zw/v1/z2/+/status", 1)],
        [("zonewatch/bridge/z1/state", 1), ("zonewatch/bridge/z2/state", 1)]]
    assert sorted(urgent.unsubscribed) == ["zw/v1/z1/+/data", "zw/v1/z2/+/data"]


def test_a_session_the_broker_kept_counts_as_subscribed_at_its_connack(rig: Rig) -> None:
    """After a restart behind a backlog, the SUBACK for the subscriptions sent again comes after what the broker
    held: the kept session's subscriptions deliver from its CONNACK on, so "subscribed" is said then."""
    rig.sessions.urgent.connack(session_present=True)
    assert not rig.ingest.subscribed.is_set()          # the data session is not back yet
    rig.sessions.data.connack(session_present=True)
    assert rig.ingest.subscribed.is_set() and rig.ingest.connected.is_set()


def test_a_new_session_is_subscribed_at_its_suback_which_the_bridge_states_do_not_stand_for(rig: Rig) -> None:
    data_session, urgent = rig.sessions.data, rig.sessions.urgent
    rig.sessions.connack(session_present=False)
    assert rig.ingest.connected.is_set() and not rig.ingest.subscribed.is_set()
    [(data_mid, _)] = data_session.subscribes
    [(urgent_mid, _), (bridge_mid, _)] = urgent.subscribes
    data_session.suback(data_mid)
    urgent.suback(bridge_mid)   # the park bridges' states: not the status and events
    assert not rig.ingest.subscribed.is_set()
    urgent.suback(urgent_mid)
    assert rig.ingest.subscribed.is_set()

    data_session.drop()
    assert not rig.ingest.connected.is_set() and not rig.ingest.subscribed.is_set()
    data_session.connack(session_present=False)
    data_session.suback(data_session.subscribes[-1][0], refused=True)   # the broker refuses: not subscribed
    assert rig.ingest.connected.is_set() and not rig.ingest.subscribed.is_set()
