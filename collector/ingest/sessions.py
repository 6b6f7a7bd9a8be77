"""The ingest's broker sessions: what ``Ingest`` needs of an MQTT client, paho's client made to fit it, and what
a session hands to the intake thread.

``Subscriber`` is the seam: paho's ``mqtt.Client`` (``paho_session``, built by ``zonewatch.mqtt.make_client``) in
production, a fake in the unit tests of the intake thread (``tests.collector.fake_mqtt``), which calls back as
paho does. ``Ingest`` makes two sessions through a ``SessionFactory`` (data; status and events) and gives each a
``Session`` as paho's user data: which kinds it takes, where its deliveries go (``Arrival``s on a hand-over queue
of its own, emptied by the intake thread with ``drain``) and whether it is connected and subscribed. The
callbacks themselves are ``Ingest``'s (``collector.ingest.pipeline``): what they do depends on both sessions
and on the intake thread.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.client import CallbackOnConnect, CallbackOnDisconnect, CallbackOnMessage, CallbackOnSubscribe
from paho.mqtt.properties import Properties
from typing_extensions import TypeVar  # comes with pydantic; typing's TypeVar takes a default from Python 3.13

from zonewatch import wire
from zonewatch.mqtt import MqttConfig, make_client

__all__ = ["Arrival", "S", "Session", "SessionFactory", "Subscriber", "drain", "paho_session"]


class Subscriber(Protocol):
    """One of the collector's broker sessions, as ``Ingest`` uses it: paho's ``mqtt.Client`` (``paho_session``),
    or a fake in tests.

    ``Ingest`` sets the user data (the session's ``Session``) and the four callbacks when it is made, before
    ``connect_async``. The session calls them as paho does (callback API 2), from a network thread of its own,
    with itself and the user data first: ``on_connect`` with each CONNACK (``flags.session_present``;
    ``reason.is_failure`` if the broker refused), ``on_subscribe`` with each SUBACK (its mid and a reason per
    topic filter), ``on_message`` with each message delivered (``topic``, ``payload``, ``mid``, ``qos``,
    ``properties``), ``on_disconnect`` when a connection ends. It reconnects by itself. A QoS 1 delivery is
    acknowledged to the broker by ``ack`` only, never on receipt (paho's ``manual_ack``).
    """

    on_connect: CallbackOnConnect | None
    on_subscribe: CallbackOnSubscribe | None
    on_message: CallbackOnMessage | None
    on_disconnect: CallbackOnDisconnect | None

    def user_data_set(self, userdata: Any) -> None:
        """Keep ``userdata`` for the callbacks (called once, by ``Ingest.__init__``, before any connection)."""

    def user_data_get(self) -> Any:
        """Return the user data (called from any of the ingest's threads); must not block."""

    def connect_async(self, host: str, port: int, keepalive: int, *, clean_start: bool = ...,
                      properties: Properties | None = None) -> None:
        """Connect once ``loop_start`` runs, and again whenever the connection drops (``Ingest.start``, once);
        must not wait for the broker."""

    def loop_start(self) -> object:
        """Start the session's network thread (``Ingest.start``, after ``connect_async``)."""

    def loop_stop(self) -> object:
        """Stop the network thread and wait for it (``Ingest.stop``, after ``disconnect``)."""

    def disconnect(self) -> object:
        """End the connection on purpose (``Ingest.stop``); the broker keeps the session."""

    def subscribe(self, topic: list[tuple[str, int]]) -> tuple[int, int | None]:
        """Send one SUBSCRIBE for the (topic filter, QoS) pairs; return (result, its mid or None if not sent).

        Called from ``on_connect``, on the network thread; must not wait for the SUBACK (it comes to
        ``on_subscribe``)."""

    def unsubscribe(self, topic: list[str]) -> object:
        """Send one UNSUBSCRIBE for the topic filters (from ``on_connect``, on the network thread); must not block."""

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> object:
        """Hand one message over and return at once (the intake thread's ticks). A QoS 1 message handed over
        while not connected is sent once connected."""

    def ack(self, mid: int, qos: int) -> object:
        """Acknowledge the delivery ``mid`` to the broker (the intake thread, once the message is in the intake
        queue on disk, in the order the deliveries arrived); must not block."""


S = TypeVar("S", bound=Subscriber, default=mqtt.Client)
# Makes one session's client, not connected, from the broker settings, its client id and its user name ("": none).
SessionFactory = Callable[[MqttConfig, str, str], S]


def paho_session(cfg: MqttConfig, client_id: str, username: str) -> mqtt.Client:
    """Return a paho client for one of the collector's sessions: persistent, a QoS 1 delivery acknowledged only
    when the ingest says (once it is on disk), and up to 1000 of its own QoS 1 messages in flight."""
    # persistent: over MQTT 5, by clean_start and the session expiry given in Ingest.start
    client = make_client(cfg, client_id, username=username, persistent=True, manual_ack=True)
    client.max_inflight_messages_set(1000)
    return client


@dataclass(slots=True)
class Arrival:
    """One delivery, as a session's ``on_message`` hands it to the intake thread."""

    client: Subscriber
    mid: int
    qos: int
    topic: str
    payload: bytes
    sent_ns: int | None = None   # the probe's clock when it sent the message (MQTT v5: collector.clockskew)


@dataclass
class Session:
    """One of the collector's two broker sessions (paho's user data for its client)."""

    client_id: str
    kinds: tuple[wire.Kind, ...]
    arrivals: queue.Queue[Arrival]
    connected: bool = False
    subscribed: bool = False
    bridge_mid: int = -1   # the subscription to the park bridges' states (the status session's)


def drain(arrivals: queue.Queue[Arrival], most: int) -> list[Arrival]:
    """Return up to ``most`` arrivals waiting in ``arrivals``, without waiting."""
    out: list[Arrival] = []
    while len(out) < most:
        try:
            out.append(arrivals.get_nowait())
        except queue.Empty:
            break
    return out
