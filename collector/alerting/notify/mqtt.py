"""Publish Alertmanager's webhook JSON, QoS 1, on a carrier's topic of the collector's broker.

``notify`` returns once the broker acknowledged the message (PUBACK). An MQTT 5 PUBACK may refuse it
(``Not authorized``: the broker's ACL does not let the collector write that topic, see
``collector/mosquitto.py``): not retried. No connection, or no PUBACK in time: retried. A message is
never handed to paho while the connection is down (paho would keep it and send it on reconnect as well
as the outbox's retry, twice).

One ``MqttPublisher`` serves every mqtt receiver. It either opens its own connection from the collector's
``MqttConfig`` (client id ``<client_id>-notify``) or publishes through a client that is already connected
(the ingest's). Use the latter when the broker sets ``use_username_as_clientid`` (the listener that
``render-mosquitto`` writes does): two connections with one username take the session from each other
in turn, forever.

Delivery: by the collector; Alertmanager has no MQTT receiver, so with ``alerting.mqtt_delivery: alertmanager``
it posts to the collectors' relay (``relay.py``), which publishes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt

from collector.alerting.model import Notification
from collector.alerting.notify.base import Delivery, NotifyError, redact
from collector.alerting.notify.payload import webhook_message
from collector.inventory import MqttReceiver
from zonewatch import wire
from zonewatch.mqtt import MqttConfig, make_client

log = logging.getLogger(__name__)

NO_MATCHING_SUBSCRIBERS = 0x10  # MQTT 5: accepted, nobody subscribed right now: a success for us
# The largest message published: the broker's max_packet_size (collector/mosquitto.py) is the wire's 1 MiB of
# payload plus room for the topic and header.
MAX_MESSAGE = wire.Limits().max_bytes


class MqttPublisher:
    """A broker connection that publishes QoS 1 and waits for the PUBACK; thread-safe."""

    def __init__(self, cfg: MqttConfig | None = None, client: mqtt.Client | None = None) -> None:
        if (cfg is None) == (client is None):
            raise ValueError("give either the collector's MqttConfig or a connected paho client")
        self._own = client is None
        self._where = f"mqtt {cfg.host}:{cfg.port}" if cfg is not None else "mqtt (the collector's connection)"
        self._secret = cfg.password.get_secret_value() if cfg is not None and cfg.password else None
        self._lock = threading.Lock()
        self._acks: dict[int, Any] = {}   # mid -> PUBACK reason code, filled by paho's network thread
        self._last_failure = "not connected yet"
        self._connected = threading.Event()
        if cfg is not None:
            self._cfg = cfg
            self.client = self._make_client(cfg)
        else:
            assert client is not None
            self.client = client
            previous: Any = client.on_publish

            def chained(c: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
                self._on_publish(c, userdata, mid, reason, props)
                if previous is not None:
                    previous(c, userdata, mid, reason, props)

            client.on_publish = chained

    def _make_client(self, cfg: MqttConfig) -> mqtt.Client:
        client = make_client(cfg, f"{cfg.client_id or 'zonewatch-collector'}-notify", reconnect=(1, 30))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def start(self) -> None:
        """Connect in the background (own connection only); publishing waits for it."""
        if self._own:
            self.client.connect_async(self._cfg.host, self._cfg.port, keepalive=int(self._cfg.keepalive))
            self.client.loop_start()

    def close(self) -> None:
        """Disconnect (own connection only; a shared client belongs to its owner)."""
        if self._own:
            self.client.disconnect()
            self.client.loop_stop()

    # paho's network thread --------------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._last_failure = f"the broker refused the connection: {reason}"
            log.error("%s: %s", self._where, self._last_failure)
            return
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()
        self._last_failure = f"disconnected: {reason}"

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            if len(self._acks) > 10_000:  # acks of messages someone else published on a shared client
                self._acks.clear()
            self._acks[mid] = reason

    # delivery threads ---------------------------------------------------------------------------------------

    def connected(self) -> bool:
        """Return True if the connection is up."""
        return self.client.is_connected() and (self._connected.is_set() or not self._own)

    def publish(self, topic: str, payload: bytes, timeout: float) -> None:
        """Publish QoS 1 and wait for the PUBACK; raise NotifyError (see the module docstring)."""
        where = f"{self._where} topic {topic!r}"
        if self._own:
            self._connected.wait(timeout)
        if not self.connected():
            raise NotifyError(redact(f"{where}: not connected ({self._last_failure})", [self._secret]),
                              retryable=True)
        info = self.client.publish(topic, payload, qos=1)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise NotifyError(f"{where}: {exc}", retryable=True) from None
        if not info.is_published():
            raise NotifyError(f"{where}: no PUBACK within {timeout:g}s", retryable=True)
        with self._lock:
            reason = self._acks.pop(info.mid, None)
        if reason is not None and reason.is_failure and reason.value != NO_MATCHING_SUBSCRIBERS:
            raise NotifyError(f"{where}: the broker refused the message: {reason}", retryable=False)


class MqttNotifier:
    """One topic."""

    def __init__(self, cfg: MqttReceiver, publisher: MqttPublisher, *, receiver: str, timeout: float = 10.0,
                 external_url: str = "") -> None:
        self.topic = cfg.topic
        self.publisher = publisher
        self.receiver = receiver
        self.timeout = timeout
        self.external_url = external_url

    def notify(self, notifications: Sequence[Notification]) -> None:
        """Publish one webhook message, or as many as it takes to keep each within ``MAX_MESSAGE`` (the broker
        cuts a connection that sends it a larger packet: the ingest's, which this may share); see
        ``Notifier.notify``. A retry after a failure part way publishes the parts already sent again."""
        body = json.dumps(webhook_message(notifications, self.receiver, self.external_url)).encode()
        if len(body) <= MAX_MESSAGE:
            self.publisher.publish(self.topic, body, self.timeout)
            return
        if len(notifications) == 1:
            raise NotifyError(f"topic {self.topic!r}: one alert makes a {len(body)}-byte message, over the "
                              f"{MAX_MESSAGE}-byte limit", retryable=False)
        half = len(notifications) // 2
        self.notify(notifications[:half])
        self.notify(notifications[half:])

    def close(self) -> None:
        """Nothing to close: the publisher is shared and closed by the dispatcher."""


DELIVERY = Delivery(collector=True, relay=True, needs=frozenset({"broker"}))
