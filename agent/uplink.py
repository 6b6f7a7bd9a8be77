"""The probe's MQTT connection: publishes spooled batches in order and deletes them once acknowledged.

Threads: paho runs its network loop in its own thread and calls ``_on_*`` there; those callbacks only set
flags and queue acknowledgements. Everything that touches the spool happens in ``pump()``, which the
agent's event loop calls; so the spool is only ever used from one thread.

On connect the probe publishes ``online`` (retained) to its status topic; its last will is ``offline``
(retained), so the collector learns of a dead probe from the broker. paho reconnects by itself with
backoff, and resends QoS 1 messages that were in flight when the link dropped.
"""

from __future__ import annotations

import logging
import queue
import random
import ssl
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent import wire
from agent.spool import Spool
from zwconf.mqtt import MqttConfig

log = logging.getLogger(__name__)


def make_client(cfg: MqttConfig, client_id: str) -> mqtt.Client:
    """Return a paho client set up from ``cfg`` (not yet connected)."""
    protocol = mqtt.MQTTv5 if cfg.protocol == "5" else mqtt.MQTTv311
    kwargs: dict[str, Any] = {} if protocol == mqtt.MQTTv5 else {"clean_session": True}
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=cfg.client_id or client_id,
                         protocol=protocol, **kwargs)
    if cfg.username:
        client.username_pw_set(cfg.username, cfg.password.get_secret_value() if cfg.password else None)
    if cfg.tls:
        client.tls_set(ca_certs=cfg.tls.ca_file, certfile=cfg.tls.cert_file, keyfile=cfg.tls.key_file,
                       cert_reqs=ssl.CERT_REQUIRED)
    # Backoff doubles from a base between 1 and 3 s (random per process, so that the probes of a zone whose
    # uplink comes back do not all reconnect in step) up to 60 s.
    client.reconnect_delay_set(min_delay=random.uniform(1.0, 3.0), max_delay=60)  # type: ignore[arg-type]
    return client


class Uplink:
    """Publish what the spool holds, in order, with at most ``max_inflight`` unacknowledged messages."""

    def __init__(self, cfg: MqttConfig, spool: Spool, zone: str, probe: str, max_inflight: int = 100) -> None:
        self.cfg, self.spool = cfg, spool
        self.max_inflight = max_inflight
        self.status_topic = wire.topic(zone, probe, "status")
        self.topics = {"data": wire.topic(zone, probe, "data"), "events": wire.topic(zone, probe, "events")}
        self.client = make_client(cfg, client_id=f"zw-{zone}-{probe}")
        self.client.max_inflight_messages_set(max_inflight)
        self.client.will_set(self.status_topic, wire.STATUS_OFFLINE, qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self._acked: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._inflight: dict[int, int] = {}  # paho mid -> spool seq
        self.connected = False
        self._stopping = False
        self.published = 0
        self.acknowledged = 0

    def start(self) -> None:
        """Start connecting in the background; returns at once."""
        props = None
        if self.cfg.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=int(self.cfg.keepalive),
                                  properties=props)
        self.client.loop_start()

    def pump(self, now_ns: int) -> int:
        """Apply acknowledgements and publish more from the spool; return how many were published now."""
        acked: list[int] = []
        while True:
            try:
                mid = self._acked.get_nowait()
            except queue.Empty:
                break
            seq = self._inflight.pop(mid, None)
            if seq is not None:
                acked.append(seq)
        if acked:
            self.spool.ack(acked)  # one transaction for all of them
            self.acknowledged += len(acked)
            self.spool.queue.protected = set(self._inflight.values())
        if not self.connected:
            return 0
        room = self.max_inflight - len(self._inflight)
        if room <= 0:
            return 0
        sent = 0
        for entry in self.spool.pending(room, now_ns, skip=set(self._inflight.values())):
            info = self.client.publish(self.topics[entry.kind], entry.payload, qos=1)
            self._inflight[info.mid] = entry.id  # the spool's entry id is the batch's seq
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break  # not connected after all: paho keeps the message and sends it on reconnect
            sent += 1
        self.published += sent
        self.spool.queue.protected = set(self._inflight.values())  # may still arrive: never counted as dropped
        return sent

    def inflight(self) -> int:
        """Return how many published messages wait for the broker's acknowledgement."""
        return len(self._inflight)

    def stop(self) -> None:
        """Say ``offline`` and disconnect (a clean disconnect does not fire the last will)."""
        self._stopping = True
        if self.connected:
            self.client.publish(self.status_topic, wire.STATUS_OFFLINE, qos=1, retain=True).wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()

    # paho's network thread -----------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("broker %s:%s refused the connection: %s", self.cfg.host, self.cfg.port, reason)
            return
        log.info("connected to broker %s:%s", self.cfg.host, self.cfg.port)
        client.publish(self.status_topic, wire.STATUS_ONLINE, qos=1, retain=True)
        self.connected = True

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self.connected and not self._stopping:
            log.warning("lost the broker %s:%s (%s); reconnecting, the spool keeps every batch",
                        self.cfg.host, self.cfg.port, reason)
        self.connected = False

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        # QoS 1: the broker has the message. v5 reason "No matching subscribers" (16) is a success too.
        if getattr(reason, "is_failure", False):
            log.error("broker refused message %d: %s", mid, reason)
            return
        self._acked.put(mid)

