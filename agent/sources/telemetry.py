"""Site sensors (power, door, temperature) that publish JSON on the site's own MQTT broker.

Config (one entry per local broker)::

    - type: telemetry
      name: site-sensors
      broker: {host: 10.20.0.5, port: 1883}   # the site's broker; the same keys as the agent's ``mqtt:``
      connect_timeout: 10s                    # how long start() waits for the broker (see below)
      max_payload_bytes: 65536                # larger messages are rejected and counted
      subscriptions:
        - topic: site/+/power                 # an MQTT topic filter: + and # allowed
          measurement: power
          qos: 0                              # 0 (default), 1 or 2
          tags: {owner: viettel}              # fixed tags
          topic_tags: {site: 1}               # tag <- a level of the actual topic: 0 the first, -1 the last
          fields:                             # field <- dotted path into the JSON payload; "cells.0" indexes
            on_battery: mains                 #   a list; "$" is the whole payload (e.g. a bare 53.2)
            battery_pct: battery.charge
            battery_minutes: battery.runtime
          booleans: {on_battery: [battery, mains]}   # a boolean field's words: [meaning true, meaning false]
          time: ts                            # optional: epoch s, ms, us or ns, told by magnitude

Message -> samples (``map_message``, pure; it and the ``Subscription`` model are in
``agent.sources.telemetry_map``): every subscription whose filter matches the topic (paho's ``topic_matches_sub``)
makes one sample of its measurement, tagged with its fixed tags and its topic tags. JSON booleans stay booleans;
JSON numbers become floats, so a sensor that prints ``23`` one time and ``23.5`` the next never changes the type of
its field. A field listed in ``booleans`` is boolean: it takes JSON booleans and its two words (exact match), never
numbers. Any other value is skipped. A message whose fields are all skipped emits nothing. The sample's time is the
payload's ``time`` when configured and plausible (after 2000-01-01 and not more than 10 minutes ahead of the
receive time), otherwise the receive time.

What is skipped is counted in ``TelemetrySource.stats`` by reason and logged once per topic and reason:

    oversize          payload larger than max_payload_bytes (not decoded)
    bad_json          not UTF-8 JSON
    missing_field     a field's path is absent from the payload
    wrong_type        a field is null, an object, a list, a string without a booleans entry, or a number
                      in a booleans field
    unknown_string    a string that is neither of the field's two booleans words
    bad_number        a number that is not finite or does not fit a float
    bad_time          the time path is absent, not a number, or implausible (the receive time is used)
    bad_topic_tag     the topic has no level at a topic_tags index, or it is too long for a tag
    no_subscription   a message no subscription matches
    bad_topic         a topic name that is not UTF-8
    queue_full        the event loop fell more than 10000 messages behind; the newest were dropped

Connection: paho's network thread receives; every message goes to the event loop's thread through a
bounded queue and ``loop.call_soon_threadsafe``, and is mapped and emitted (``kind="data"``) there, so
``stats`` and ``emit`` are only touched on the loop's thread. Sessions are clean and every filter is
subscribed again on each (re)connect. Under MQTT 5 each filter carries its own subscription identifier,
so overlapping filters (which MQTT 5 brokers deliver once per filter) never produce a sample twice.
Retained messages count as current readings. ``received`` counts the messages delivered, ``emitted`` the
samples handed to ``emit``.

``start()`` returns once connected and subscribed, or after ``connect_timeout``: an unreachable site
broker is logged and paho keeps reconnecting in the background (with backoff up to a minute), because a
sensor broker that boots slower than the probe must not cost the probe its other sources. A setup that
can never work (a TLS file that cannot be read) raises ``SourceError``; a wrong topic filter or name is a
configuration error at load.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import Field

from agent.sources import Emit, SourceError
from agent.sources.telemetry_map import DEFAULT_MAX_PAYLOAD, MAX_TAG, Problem, Subscription, map_message
from agent.uplink import make_client
from zonewatch import strict
from zonewatch.mqtt import MqttConfig
from zonewatch.wire import Sample

__all__ = ["TelemetryConfig", "TelemetrySource"]

log = logging.getLogger(__name__)

_MAX_PENDING: Final = 10_000
_MAX_LOGGED: Final = 1000  # distinct (topic, reason) pairs remembered for "log once"


class TelemetryConfig(strict.Strict):
    """A site's MQTT broker and the sensor topics to turn into samples (``type: telemetry``)."""

    type: Literal["telemetry"]
    name: str = Field(min_length=1, max_length=MAX_TAG)
    broker: MqttConfig
    subscriptions: list[Subscription] = Field(min_length=1)
    max_payload_bytes: int = Field(default=DEFAULT_MAX_PAYLOAD, ge=1, le=256 * 1024 * 1024)
    connect_timeout: strict.Duration = Field(default=10.0, gt=0)


class TelemetrySource:
    """Listen to a site's MQTT broker and emit the sensor readings as ``data`` samples."""

    def __init__(self, config: TelemetryConfig, clock: Callable[[], int] = time.time_ns) -> None:
        self.name = config.name
        self.config = config
        self.clock = clock
        self.stats: dict[str, int] = {}  # skipped by reason; touched on the event loop's thread only
        self.received = 0
        self.emitted = 0
        self.connected = False
        filters: dict[str, list[Subscription]] = {}
        for sub in config.subscriptions:
            filters.setdefault(sub.topic, []).append(sub)
        self._filters = list(filters.items())  # subscription identifier i + 1 -> (filter, subscriptions)
        self._v5 = config.broker.protocol == "5"
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._emit: Emit | None = None
        self._ready: asyncio.Event | None = None
        self._stopping = False
        self._pending: dict[int, str] = {}  # SUBSCRIBE mid -> filter, on paho's thread
        self._connect_error: str | None = None
        self._inbox: deque[tuple[str | None, bytes, int, list[int] | None]] = deque()
        self._drain_scheduled = False
        self._dropped = 0  # written on paho's thread only
        self._logged: set[tuple[str, str]] = set()

    @property
    def where(self) -> str:
        """Return the broker address for messages."""
        return f"{self.config.broker.host}:{self.config.broker.port}"

    async def start(self, emit: Emit) -> None:
        """Connect and subscribe; return when subscribed or after ``connect_timeout`` (paho keeps trying)."""
        ready = self._attach(asyncio.get_running_loop(), emit)
        try:
            client = make_client(self.config.broker, client_id=f"zw-telemetry-{self.name}-{secrets.token_hex(4)}")
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise SourceError(f"telemetry {self.name}: cannot set up the client for {self.where}: {exc}") from exc
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        try:
            client.connect_async(self.config.broker.host, self.config.broker.port,
                                 keepalive=max(1, int(self.config.broker.keepalive)))
        except ValueError as exc:
            raise SourceError(f"telemetry {self.name}: cannot connect to {self.where}: {exc}") from exc
        self._client = client
        client.loop_start()
        try:
            await asyncio.wait_for(ready.wait(), self.config.connect_timeout)
        except TimeoutError:
            log.warning("telemetry %s: the site broker %s did not answer within %gs; going on, and listening as "
                        "soon as it does (retrying in the background)", self.name, self.where,
                        self.config.connect_timeout)

    def _attach(self, loop: asyncio.AbstractEventLoop, emit: Emit) -> asyncio.Event:
        """Bind the loop and ``emit`` that messages from paho's thread are handed to; return the ready event."""
        self._loop, self._emit, self._ready = loop, emit, asyncio.Event()
        return self._ready

    async def stop(self) -> None:
        """Disconnect and stop paho's thread; nothing is emitted afterwards."""
        self._stopping = True
        self._emit = None
        client, self._client = self._client, None
        if client is None:
            return
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)

    # paho's network thread -----------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._connect_failed(f"refused the connection: {reason}")
            return
        if self._connect_error is not None:
            log.info("telemetry %s: connected to %s again", self.name, self.where)
        self._connect_error = None
        self.connected = True
        self._pending.clear()
        for ident, (topic, subs) in enumerate(self._filters, start=1):
            properties = None
            if self._v5:
                properties = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]
                properties.SubscriptionIdentifier = ident
            rc, mid = client.subscribe(topic, qos=max(s.qos for s in subs), properties=properties)
            if rc == mqtt.MQTT_ERR_SUCCESS and mid is not None:
                self._pending[mid] = topic

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._connect_failed("cannot be reached")

    def _connect_failed(self, what: str) -> None:
        if self._connect_error != what and not self._stopping:
            log.error("telemetry %s: the site broker %s %s; retrying in the background", self.name, self.where, what)
        self._connect_error = what

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self.connected and not self._stopping:
            log.warning("telemetry %s: lost the site broker %s (%s); reconnecting", self.name, self.where, reason)
            self._connect_error = "lost"
        self.connected = False

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        topic = self._pending.pop(mid, None)
        for reason in reasons:
            if reason.is_failure:
                log.error("telemetry %s: the site broker %s refused the subscription to %r: %s", self.name,
                          self.where, topic, reason)
        if not self._pending:
            self._call_soon(self._set_ready)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # Never raise here: paho would stop its network thread.
        received_ns = self.clock()
        try:
            topic: str | None = msg.topic
        except UnicodeDecodeError:
            topic = None
        ids = getattr(msg.properties, "SubscriptionIdentifier", None) if msg.properties is not None else None
        if len(self._inbox) >= _MAX_PENDING:
            self._dropped += 1
            return
        self._inbox.append((topic, bytes(msg.payload), received_ns, list(ids) if ids else None))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._call_soon(self._drain)

    def _call_soon(self, callback: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop is closed: the agent is stopping
            pass

    # the event loop's thread ---------------------------------------------------------------------------

    def _set_ready(self) -> None:
        if self._ready is not None:
            self._ready.set()

    def _drain(self) -> None:
        self._drain_scheduled = False  # first: a message queued from now on schedules another drain
        samples: list[Sample] = []
        while self._inbox:
            topic, payload, received_ns, ids = self._inbox.popleft()
            samples.extend(self._handle(topic, payload, received_ns, ids))
        if self._dropped:
            self.stats["queue_full"] = self._dropped
        emit = self._emit
        if samples and emit is not None:
            self.emitted += len(samples)
            emit("data", samples, ())

    def _handle(self, topic: str | None, payload: bytes, received_ns: int, ids: list[int] | None) -> list[Sample]:
        self.received += 1
        if topic is None:
            self._count("<not UTF-8>", Problem("bad_topic", "the topic name is not UTF-8"))
            return []
        if ids is None:
            subs: Sequence[Subscription] = self.config.subscriptions
        else:
            subs = [s for i in ids if 0 < i <= len(self._filters) for s in self._filters[i - 1][1]]
        mapped = map_message(subs, topic, payload, received_ns, self.config.max_payload_bytes)
        for problem in mapped.problems:
            self._count(topic, problem)
        return mapped.samples

    def _count(self, topic: str, problem: Problem) -> None:
        self.stats[problem.reason] = self.stats.get(problem.reason, 0) + 1
        key = (topic, problem.reason)
        if key in self._logged or len(self._logged) > _MAX_LOGGED:
            return
        self._logged.add(key)
        if len(self._logged) > _MAX_LOGGED:
            log.warning("telemetry %s: more than %d distinct topic problems; from now on they are only counted",
                        self.name, _MAX_LOGGED)
            return
        log.warning("telemetry %s: %s on %s: %s (counted; logged once per topic and reason)", self.name,
                    problem.reason, topic, problem.detail)
