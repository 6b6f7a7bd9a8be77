"""``Uplink.pump``, the probe's at-least-once delivery, driven through a fake broker session (no sockets, no
sleeps): a batch leaves the spool only once the broker acknowledged it, whatever happens to the connection."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from paho.mqtt.client import MQTT_ERR_NO_CONN, MQTT_ERR_SUCCESS, ConnectFlags, DisconnectFlags
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent import uplink as uplink_module
from agent.spool import Spool
from agent.uplink import Uplink
from zonewatch import wire
from zonewatch.mqtt import MqttConfig

S = 10**9
T0 = 1_700_000_000 * S


@dataclass
class Message:
    """One PUBLISH handed to the session."""

    mid: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties | None

    @property
    def seq(self) -> int:
        return wire.decode(self.payload).seq


@dataclass
class Info:
    """What ``publish`` returns (paho's ``MQTTMessageInfo``)."""

    mid: int
    rc: int


class FakeSession:
    """A broker session without a broker, behaving as paho's client does for QoS 1: it keeps every message until
    the broker acknowledges it and sends what it keeps again after a reconnect. The test says when the broker
    accepts a connection, acknowledges a message or goes away; the session calls the uplink back (callback API 2)."""

    def __init__(self) -> None:
        self.on_connect: Any = None
        self.on_disconnect: Any = None
        self.on_publish: Any = None
        self.on_message: Any = None
        self.connected = False
        self.handed: list[Message] = []          # every publish() call, in order
        self.wire: list[Message] = []            # what reached the broker, in order (resends again)
        self.kept: dict[int, Message] = {}       # QoS 1 messages not acknowledged yet, by mid
        self.subscriptions: list[str] = []
        self._sent_now: set[int] = set()         # mids sent on the current connection
        self._mid = 0

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                properties: Properties | None = None) -> Info:
        self._mid += 1
        message = Message(self._mid, topic, bytes(payload), qos, retain, properties)
        self.handed.append(message)
        if qos:
            self.kept[message.mid] = message
        if not self.connected:
            return Info(message.mid, MQTT_ERR_NO_CONN)
        self._send(message)
        return Info(message.mid, MQTT_ERR_SUCCESS)

    def subscribe(self, topic: str, qos: int = 0) -> tuple[int, int]:
        self._mid += 1
        self.subscriptions.append(topic)
        return MQTT_ERR_SUCCESS, self._mid

    def _send(self, message: Message) -> None:
        self.wire.append(message)
        self._sent_now.add(message.mid)

    # what the broker does

    def accept(self) -> None:
        """The broker accepts a connection: on_connect, then whatever is kept goes out again, oldest first."""
        self.connected, self._sent_now = True, set()
        self.on_connect(self, None, ConnectFlags(False), ReasonCode(PacketTypes.CONNACK, "Success"), None)
        for mid in sorted(self.kept):
            if mid not in self._sent_now:
                self._send(self.kept[mid])

    def refuse(self) -> None:
        """The broker answers a connection with a refusal."""
        self.on_connect(self, None, ConnectFlags(False), ReasonCode(PacketTypes.CONNACK, "Not authorized"), None)
        self.on_disconnect(self, None, DisconnectFlags(False), ReasonCode(PacketTypes.DISCONNECT, "Not authorized"),
                           None)

    def drop(self) -> None:
        """The connection breaks; the session keeps what was not acknowledged."""
        self.connected = False
        self.on_disconnect(self, None, DisconnectFlags(False),
                           ReasonCode(PacketTypes.DISCONNECT, "Unspecified error"), None)

    def ack(self, *seqs: int, reason: str = "Success") -> None:
        """The broker acknowledges the batches ``seqs`` (PUBACK, with an MQTT 5 ``reason``)."""
        for seq in seqs:
            [mid] = [m.mid for m in self.kept.values() if m.topic != STATUS and m.seq == seq]
            del self.kept[mid]
            self.on_publish(self, None, mid, ReasonCode(PacketTypes.PUBACK, reason), None)

    def ack_status(self) -> None:
        for mid in [m.mid for m in self.kept.values() if m.topic == STATUS]:
            del self.kept[mid]
            self.on_publish(self, None, mid, ReasonCode(PacketTypes.PUBACK, "Success"), None)

    def deliver(self, topic: str, payload: bytes) -> None:
        """The broker delivers a message to the probe (a topic it subscribed to)."""
        self.on_message(self, None, SimpleNamespace(topic=topic, payload=payload, qos=1, retain=False))

    def seqs_sent(self) -> list[int]:
        return [m.seq for m in self.wire if m.topic != STATUS]

    def seqs_handed(self) -> list[int]:
        return [m.seq for m in self.handed if m.topic != STATUS]


STATUS = wire.topic("z1", "p1", "status")


def _sample(t: int) -> wire.Sample:
    return wire.Sample("probe", {}, {"up": 1}, t)


Make = Callable[..., tuple[Uplink, FakeSession, Spool]]


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Make]:
    """Return a maker of an uplink on a fake session and a spool in ``tmp_path`` (the same file each time)."""
    spools: list[Spool] = []

    def uplink(max_inflight: int = 100, protocol: str = "5", config: bool = False,
               **bounds: Any) -> tuple[Uplink, FakeSession, Spool]:
        store = Spool(tmp_path / "spool.db", "z1", "p1", **bounds)
        spools.append(store)
        session = FakeSession()
        cfg = MqttConfig.model_validate({"protocol": protocol})
        return (Uplink(cfg, store, "z1", "p1", max_inflight=max_inflight, config=config, client=session), session,
                store)

    yield uplink
    for store in spools:
        store.close()


def _data(store: Spool, n: int, t: int = T0) -> list[int]:
    return [store.append("data", t, (_sample(t),)) for _ in range(n)]


def _in_spool(store: Spool) -> list[int]:
    return sorted(e.id for e in store.pending(1000))


def test_nothing_leaves_the_spool_before_the_broker_acknowledges_it(make: Make) -> None:
    uplink, broker, store = make()
    s1, s2, s3 = _data(store, 3)
    broker.accept()
    assert uplink.pump(T0) == 3
    assert broker.seqs_sent() == [s1, s2, s3]
    assert _in_spool(store) == [s1, s2, s3] and uplink.inflight() == 3

    broker.ack(s2)
    assert _in_spool(store) == [s1, s2, s3]  # the acknowledgement is applied by the next pump, on its thread
    assert uplink.pump(T0) == 0
    assert _in_spool(store) == [s1, s3] and uplink.acknowledged == 1 and uplink.inflight() == 2

    broker.ack(s3, s1)
    uplink.pump(T0)
    assert _in_spool(store) == [] and (uplink.published, uplink.acknowledged) == (3, 3)
    assert broker.seqs_handed() == [s1, s2, s3]  # each handed over once


def test_a_refused_message_stays_in_the_spool_and_no_matching_subscribers_is_a_delivery(make: Make) -> None:
    uplink, broker, store = make()
    s1, s2 = _data(store, 2)
    broker.accept()
    uplink.pump(T0)
    broker.ack(s1, reason="Not authorized")
    broker.ack(s2, reason="No matching subscribers")
    uplink.pump(T0)
    assert _in_spool(store) == [s1] and uplink.acknowledged == 1
    # the broker took a data batch after it refused one: data are not held back, the refused one goes again
    assert uplink.refused == 1 and broker.seqs_handed() == [s1, s2, s1]


def _wait_then_one(uplink: Uplink, broker: FakeSession, at_ns: int, wait_s: float) -> int:
    """Pump just before and at ``at_ns + wait_s``: nothing goes out before, exactly one batch at it (and no
    second while that one is in flight); return the seq of the one."""
    handed = len(broker.handed)
    assert uplink.pump(at_ns + int(wait_s * S) - 1) == 0
    assert uplink.pump(at_ns + int(wait_s * S)) == 1
    assert uplink.pump(at_ns + int(wait_s * S)) == 0
    assert len(broker.handed) == handed + 1
    return broker.handed[-1].seq


def test_a_kind_the_broker_refuses_is_tried_one_batch_at_a_time_with_waits_doubling_to_a_bound(make: Make) -> None:
    uplink, broker, store = make(max_inflight=3)
    seqs = _data(store, 5)
    broker.accept()
    assert uplink.pump(T0) == 3
    broker.ack(*seqs[:3], reason="Not authorized")   # e.g. the broker's ACL has the probe in another zone
    assert uplink.pump(T0) == 0 and uplink.inflight() == 0   # every place free, nothing more of that kind yet
    assert uplink.refused == 3 and _in_spool(store) == seqs
    # one batch again after RETRY_FIRST_S, then after twice as long each time it is refused, up to RETRY_MAX_S
    at, waits = T0, []
    wait = uplink_module.RETRY_FIRST_S
    while len(waits) < 9:
        tried = _wait_then_one(uplink, broker, at, wait)
        assert tried == seqs[0]   # the spool's order: the oldest of the last minute... or of the backlog
        at += int(wait * S)
        broker.ack(tried, reason="Not authorized")
        assert uplink.pump(at) == 0   # the refusal is taken in at ``at``: the wait runs from there
        waits.append(wait)
        wait = min(2 * wait, uplink_module.RETRY_MAX_S)
    assert waits == [5, 10, 20, 40, 80, 160, 300, 300, 300]
    assert uplink.take_refused() == [("data", "Not authorized")] * 12 and uplink.take_refused() == []
    # the ACL is mended: the next trial is taken, and the whole window is used again at once
    tried = _wait_then_one(uplink, broker, at, wait)
    broker.ack(tried)
    assert uplink.pump(at + int(wait * S)) == 3
    broker.ack(*seqs[1:4])
    uplink.pump(at + int(wait * S))
    broker.ack(seqs[4])
    uplink.pump(at + int(wait * S))
    assert _in_spool(store) == [] and uplink.acknowledged == 5


def test_events_go_out_at_once_while_the_broker_refuses_data(make: Make) -> None:
    uplink, broker, store = make(max_inflight=2)
    d1, d2 = _data(store, 2)
    broker.accept()
    uplink.pump(T0)
    broker.ack(d1, d2, reason="Not authorized")
    uplink.pump(T0)
    event = store.append("events", T0 + S, events=(wire.Event("link_down", {}, {}, T0 + S),))
    _data(store, 1, T0 + S)
    assert uplink.pump(T0 + S) == 1 and broker.seqs_handed()[-1] == event
    broker.ack(event)
    uplink.pump(T0 + S)
    assert event not in _in_spool(store)


def test_a_batch_held_back_is_not_protected_from_the_spool_bounds(make: Make) -> None:
    uplink, broker, store = make(max_inflight=1, max_age_s=3600)
    s1, = _data(store, 1)
    broker.accept()
    uplink.pump(T0)
    broker.ack(s1, reason="Not authorized")
    uplink.pump(T0)
    s2, = _data(store, 1, T0 + 2 * 3600 * S)   # s1 is past the age bound, and no longer in flight: dropped, counted
    assert _in_spool(store) == [s2] and store.dropped() == 1


def test_what_was_in_flight_at_a_disconnect_goes_out_again_and_leaves_the_spool_only_when_acknowledged(
        make: Make) -> None:
    uplink, broker, store = make()
    s1, s2, s3 = _data(store, 3)
    broker.accept()
    uplink.pump(T0)
    broker.ack(s1)
    broker.drop()
    assert not uplink.connected

    s4, = _data(store, 1, T0 + S)
    assert uplink.pump(T0 + S) == 0      # the acknowledgement that came before the drop still counts
    assert _in_spool(store) == [s2, s3, s4]
    assert broker.seqs_handed() == [s1, s2, s3]   # nothing new handed over while disconnected

    broker.accept()
    assert broker.seqs_sent() == [s1, s2, s3, s2, s3]  # the session sends what was in flight again
    assert uplink.pump(T0 + 2 * S) == 1
    assert broker.seqs_handed() == [s1, s2, s3, s4]    # ...and pump does not hand it over a second time
    assert _in_spool(store) == [s2, s3, s4]

    broker.ack(s2, s3, s4)
    uplink.pump(T0 + 2 * S)
    assert _in_spool(store) == [] and uplink.acknowledged == 4


def test_a_batch_handed_over_as_the_link_drops_is_kept_by_the_session_not_handed_over_twice(
        make: Make) -> None:
    uplink, broker, store = make()
    s1, s2 = _data(store, 2)
    broker.accept()
    broker.connected = False        # the socket is gone; paho has not called on_disconnect yet
    assert uplink.pump(T0) == 0     # publish said "not connected": the round stops there
    assert uplink.pump(T0) == 0
    assert broker.seqs_handed() == [s1, s2] and uplink.published == 0 and uplink.inflight() == 2

    broker.drop()
    broker.accept()
    assert broker.seqs_sent() == [s1, s2]
    uplink.pump(T0)
    assert broker.seqs_handed() == [s1, s2]
    broker.ack(s1, s2)
    uplink.pump(T0)
    assert _in_spool(store) == []


def test_a_new_uplink_on_the_same_spool_sends_again_what_was_never_acknowledged(make: Make) -> None:
    uplink, broker, store = make()
    s1, s2, s3 = _data(store, 3)
    broker.accept()
    uplink.pump(T0)
    broker.ack(s1)
    uplink.pump(T0)
    store.close()                   # the agent stops (or dies) with s2 and s3 in flight

    again, broker, store = make()
    broker.accept()
    assert again.pump(T0 + S) == 2
    assert broker.seqs_sent() == [s2, s3]


def test_nothing_is_published_until_the_broker_accepts_a_connection(make: Make) -> None:
    uplink, broker, store = make()
    _data(store, 2)
    assert uplink.pump(T0) == 0
    broker.refuse()
    assert uplink.pump(T0) == 0
    assert broker.handed == [] and uplink.connects == 0

    broker.accept()
    assert uplink.pump(T0) == 2 and uplink.connects == 1


def test_online_goes_first_then_events_then_the_last_minute_then_the_backlog_oldest_first(make: Make) -> None:
    uplink, broker, store = make(max_inflight=1)
    old, older_still = _data(store, 1, T0 - 2 * 3600 * S), _data(store, 1, T0 - 3600 * S)
    live, = _data(store, 1, T0 - 10 * S)
    events = store.append("events", T0 - 5 * S, events=(wire.Event("link_down", {}, {}, T0 - 5 * S),))
    broker.accept()
    assert [(m.topic, m.payload, m.retain) for m in broker.wire] == [(STATUS, wire.STATUS_ONLINE, True)]
    broker.ack_status()
    for _ in range(4):              # one at a time: each pump takes the first of what is left
        assert uplink.pump(T0) == 1
        assert uplink.pump(T0) == 0  # the in-flight limit: nothing more before the acknowledgement
        broker.ack(broker.seqs_sent()[-1])
    uplink.pump(T0)
    assert broker.seqs_sent() == [events, live, *old, *older_still]
    assert [m.topic for m in broker.wire[1:]] == [wire.topic("z1", "p1", k) for k in ("events", "data", "data",
                                                                                      "data")]
    assert _in_spool(store) == []


def test_at_most_max_inflight_batches_wait_for_acknowledgement_and_order_is_kept(make: Make) -> None:
    uplink, broker, store = make(max_inflight=2)
    seqs = _data(store, 5, T0 - 3600 * S)
    broker.accept()
    assert uplink.pump(T0) == 2
    assert uplink.pump(T0) == 0
    broker.ack(seqs[1])
    assert uplink.pump(T0) == 1 and uplink.inflight() == 2
    broker.ack(seqs[0], seqs[2])
    assert uplink.pump(T0) == 2
    broker.ack(seqs[3])
    assert uplink.pump(T0) == 0     # nothing left to send
    assert broker.seqs_sent() == seqs


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_the_first_publish_of_each_round_carries_the_probes_clock_over_mqtt_5(make: Make, protocol: str) -> None:
    uplink, broker, store = make(protocol=protocol)
    _data(store, 2)
    broker.accept()
    uplink.pump(T0)
    _data(store, 1)
    uplink.pump(T0 + 7)
    stamps = [m.properties.UserProperty if m.properties else None for m in broker.wire if m.topic != STATUS]
    if protocol == "5":
        assert stamps == [[(wire.SENT_PROPERTY, str(T0))], None, [(wire.SENT_PROPERTY, str(T0 + 7))]]
    else:
        assert stamps == [None, None, None]


def test_the_spool_bounds_never_drop_a_batch_in_flight(make: Make) -> None:
    uplink, broker, store = make(max_inflight=1, max_age_s=3600)
    s1, s2 = _data(store, 2)
    broker.accept()
    uplink.pump(T0)                 # s1 in flight, s2 waiting
    s3, = _data(store, 1, T0 + 2 * 3600 * S)   # both are past the age bound now
    assert _in_spool(store) == [s1, s3] and store.dropped() == 1
    broker.ack(s1)
    assert uplink.pump(T0 + 2 * 3600 * S) == 1
    assert uplink.acknowledged == 1 and _in_spool(store) == [s3]
    assert broker.seqs_sent() == [s1, s3]


# ---------------------------------------------------------------------------------------------- from the centre

CONFIG, COMMAND = wire.topic("z1", "p1", "config"), wire.topic("z1", "p1", "command")


def test_the_probe_subscribes_to_its_commands_always_and_to_its_configuration_when_managed(make: Make) -> None:
    _, broker, _ = make()
    broker.accept()
    assert broker.subscriptions == [COMMAND]
    _, managed, _ = make(config=True)
    managed.accept()
    managed.drop()
    managed.accept()   # again on every connect: the retained configuration comes again with it
    assert managed.subscriptions == [CONFIG, COMMAND, CONFIG, COMMAND]


def test_the_agent_takes_the_newest_configuration_and_every_command_in_order(make: Make) -> None:
    uplink, broker, _ = make(config=True)
    broker.accept()
    assert uplink.take_config() is None and uplink.take_commands() == []
    broker.deliver(CONFIG, b"v1")
    broker.deliver(COMMAND, b"c1")
    broker.deliver(CONFIG, b"v2")   # a newer desired configuration before the loop looked: only it counts
    broker.deliver(COMMAND, b"c2")
    assert uplink.take_config() == b"v2" and uplink.take_config() is None
    assert uplink.take_commands() == [b"c1", b"c2"] and uplink.take_commands() == []
    broker.deliver(CONFIG, b"")     # the centre cleared it (retained, empty)
    assert uplink.take_config() == b""
    broker.deliver(wire.topic("z1", "p2", "command"), b"not mine")   # never subscribed; taken by nobody
    assert uplink.take_commands() == []


def test_commands_past_the_bound_are_dropped_and_counted_the_first_kept(make: Make) -> None:
    uplink, broker, _ = make()
    broker.accept()
    for n in range(uplink_module.MAX_COMMANDS + 3):
        broker.deliver(COMMAND, str(n).encode())
    assert uplink.take_commands() == [str(n).encode() for n in range(uplink_module.MAX_COMMANDS)]
    assert uplink.commands_dropped == 3


def test_polls_joined_by_the_spool_go_as_one_message_when_their_window_is_over(make: Make) -> None:
    uplink, broker, store = make(coalesce_s=5.0)
    broker.accept()
    seqs = [store.append("data", T0 + i * S, (_sample(T0 + i * S),)) for i in range(3)]
    assert seqs == [1, 1, 1]
    event = store.append("events", T0 + S, events=(wire.Event("link_down", {}, {}, T0 + S),))
    assert uplink.pump(T0 + 4 * S) == 1 and broker.seqs_sent() == [event]   # events never wait
    assert uplink.pump(T0 + 5 * S) == 1
    sent = wire.decode(broker.wire[-1].payload)
    assert (sent.seq, [s.time_ns for s in sent.samples]) == (1, [T0, T0 + S, T0 + 2 * S])
    assert store.append("data", T0 + 5 * S, (_sample(T0 + 5 * S),)) == 3   # a new batch: 1 is on its way
