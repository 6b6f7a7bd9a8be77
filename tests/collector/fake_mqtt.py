"""The collector's broker sessions without a broker: a fake of what ``Ingest`` uses of paho's client
(``collector.ingest.sessions.Subscriber``), for unit tests of the intake thread.

``FakeSessions`` is the session factory handed to ``Ingest``; it keeps the two sessions it made (``data`` and
``urgent``) and one log of the acknowledgements of both, in the order they were sent. A test plays the broker:
``connack``, ``suback``, ``deliver`` and ``drop`` call the ingest back as paho does (callback API 2), on the test's
thread, which stands for paho's network thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from paho.mqtt.client import MQTT_ERR_SUCCESS, ConnectFlags, DisconnectFlags
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from zonewatch import wire
from zonewatch.mqtt import MqttConfig


@dataclass
class Delivery:
    """A message the broker delivers, shaped as paho's ``MQTTMessage`` as far as the ingest reads it."""

    topic: str
    payload: bytes
    mid: int
    qos: int = 1
    properties: Properties | None = None
    session: str = ""   # the client id of the session it came through


def stamped(sent_ns: int) -> Properties:
    """Return PUBLISH properties carrying an agent's send time (``wire.SENT_PROPERTY``), as an MQTT 5 agent sends."""
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = (wire.SENT_PROPERTY, str(sent_ns))
    return props


@dataclass
class Published:
    topic: str
    payload: bytes
    qos: int
    mid: int
    rc: int = MQTT_ERR_SUCCESS


class FakeSession:
    """One broker session: records what the ingest asks of it, and calls the ingest back when told."""

    def __init__(self, owner: FakeSessions, cfg: MqttConfig, client_id: str, username: str) -> None:
        self.owner, self.cfg, self.client_id, self.username = owner, cfg, client_id, username
        self.on_connect: Any = None
        self.on_subscribe: Any = None
        self.on_message: Any = None
        self.on_disconnect: Any = None
        self._userdata: Any = None
        self.connects: list[dict[str, Any]] = []   # the arguments of every connect_async
        self.looping = False                        # between loop_start and loop_stop
        self.disconnects = 0
        self.subscribes: list[tuple[int, list[tuple[str, int]]]] = []   # (mid, filters) of every SUBSCRIBE, in order
        self.unsubscribed: list[str] = []           # every filter unsubscribed, in order
        self.published: list[Published] = []
        self.acks: list[Delivery] = []              # the deliveries acknowledged through this session, in order
        self._delivered: dict[int, Delivery] = {}   # mid -> delivery not acknowledged yet
        self._mid = 0

    # what the ingest calls (``Subscriber``)

    def user_data_set(self, userdata: Any) -> None:
        self._userdata = userdata

    def user_data_get(self) -> Any:
        return self._userdata

    def connect_async(self, host: str, port: int, keepalive: int, *, clean_start: bool | int = 3,
                      properties: Properties | None = None) -> None:
        self.connects.append({"host": host, "port": port, "keepalive": keepalive, "clean_start": clean_start,
                              "properties": properties})

    def loop_start(self) -> int:
        self.looping = True
        return MQTT_ERR_SUCCESS

    def loop_stop(self) -> int:
        self.looping = False
        return MQTT_ERR_SUCCESS

    def disconnect(self) -> int:
        self.disconnects += 1
        return MQTT_ERR_SUCCESS

    def subscribe(self, topic: list[tuple[str, int]]) -> tuple[int, int]:
        self.subscribes.append((self._next_mid(), list(topic)))
        return MQTT_ERR_SUCCESS, self._mid

    def unsubscribe(self, topic: list[str]) -> tuple[int, int]:
        self.unsubscribed += topic
        return MQTT_ERR_SUCCESS, self._next_mid()

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> Published:
        message = Published(topic, bytes(payload), qos, self._next_mid())
        self.published.append(message)
        return message

    def ack(self, mid: int, qos: int) -> int:
        delivery = self._delivered.pop(mid)   # a mid never delivered, or acknowledged twice, fails here
        assert qos == delivery.qos == 1
        if self.owner.on_ack is not None:
            self.owner.on_ack(delivery)
        self.acks.append(delivery)
        self.owner.acks.append(delivery)
        return MQTT_ERR_SUCCESS

    # what the broker does

    @property
    def subscribed(self) -> list[str]:
        """Every topic filter subscribed to, in order."""
        return [name for _, filters in self.subscribes for name, _ in filters]

    def connack(self, session_present: bool = False, refused: bool = False) -> None:
        """The broker answers the connection (CONNACK)."""
        reason = ReasonCode(PacketTypes.CONNACK, "Not authorized" if refused else "Success")
        self.on_connect(self, self._userdata, ConnectFlags(session_present), reason, None)

    def suback(self, mid: int, refused: bool = False) -> None:
        """The broker answers the SUBSCRIBE ``mid`` (one reason per topic filter)."""
        [filters] = [f for m, f in self.subscribes if m == mid]
        reason = ReasonCode(PacketTypes.SUBACK, "Not authorized" if refused else "Granted QoS 1")
        self.on_subscribe(self, self._userdata, mid, [reason] * len(filters), None)

    def deliver(self, topic: str, payload: bytes, qos: int = 1, properties: Properties | None = None) -> Delivery:
        """The broker delivers a message (as paho's network thread calls ``on_message``)."""
        delivery = Delivery(topic, payload, self._next_mid(), qos, properties, self.client_id)
        if qos:
            self._delivered[delivery.mid] = delivery
        self.on_message(self, self._userdata, delivery)
        return delivery

    def drop(self) -> None:
        """The connection breaks."""
        reason = ReasonCode(PacketTypes.DISCONNECT, "Unspecified error")
        self.on_disconnect(self, self._userdata, DisconnectFlags(False), reason, None)

    def _next_mid(self) -> int:
        self._mid += 1
        return self._mid


@dataclass
class FakeSessions:
    """The session factory for ``Ingest(..., sessions=FakeSessions())``."""

    made: dict[str, FakeSession] = field(default_factory=dict)   # client id -> session
    acks: list[Delivery] = field(default_factory=list)           # of both sessions, in the order sent
    on_ack: Callable[[Delivery], None] | None = None             # called at each ack, before it counts as sent

    def __call__(self, cfg: MqttConfig, client_id: str, username: str) -> FakeSession:
        assert client_id not in self.made
        session = self.made[client_id] = FakeSession(self, cfg, client_id, username)
        return session

    @property
    def data(self) -> FakeSession:
        [session] = [s for name, s in self.made.items() if not name.endswith("-urgent")]
        return session

    @property
    def urgent(self) -> FakeSession:
        [session] = [s for name, s in self.made.items() if name.endswith("-urgent")]
        return session

    def connack(self, session_present: bool = False) -> None:
        """Both sessions are accepted (urgent first, as the ingest connects them)."""
        self.urgent.connack(session_present)
        self.data.connack(session_present)
