"""Enrolment, the running side: the collector's enrolment session, its thread, and what it does with each
request and decision (the flow and the choices: ``collector.fleet.enrol``)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import CollectorRegistry, Counter, Gauge

from collector import mosquitto
from collector.fleet.registry import Registry
from collector.scope import Scope
from collector.threads import named
from zonewatch import wire
from zonewatch.mqtt import MqttConfig, make_client

if TYPE_CHECKING:
    pass

from collector.fleet.enrol import (
    FORGET_EVERY_NS,
    INBOX,
    EnrolConfig,
    RateLimit,
    Refused,
    check_request,
    request_zone,
)

__all__ = ["EnrolService", "EnrolMetrics"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- the running side


class Link(Protocol):
    """The enrolment session's broker connection, as ``EnrolService.step`` uses it (one real, one fake)."""

    def publish(self, topic: str, payload: bytes) -> bool:
        """Publish retained, QoS 1; return True once the broker acknowledged it, False if it could not (not
        connected, no acknowledgement in time: the caller tries again at its next step). Called from the
        service's thread only; may block a few seconds."""
        ...

    def watch(self, topics: set[str]) -> None:
        """Be subscribed to exactly these status topics (besides the request topics). Service thread only."""
        ...


class EnrolMetrics:
    """What the running enrolment counts, on the collector's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("zonewatch_enrol_requests", "Enrolment requests received, by result (new, repeat, "
                                "resend, or why refused)", ["result"], registry=registry)
        self.pending = Gauge("zonewatch_enrol_pending", "Enrolment requests waiting for a decision",
                             registry=registry)
        self.replies = Counter("zonewatch_enrol_replies", "Sealed replies published, by state", ["state"],
                               registry=registry)


class EnrolService:
    """Receives requests and publishes replies for the running collector (see the module docstring).

    ``step`` does one round (requests and logins taken, replies published and cleared, the retired probes handed
    to ``scopes``); it reads no clock. ``start`` runs it on a thread of its own with its own broker session."""

    def __init__(self, cfg: EnrolConfig, registry: Registry, metrics: EnrolMetrics, scopes: Sequence[Scope] = (),
                 link: Link | None = None, inbox: int = INBOX) -> None:
        self.cfg, self.registry, self.metrics, self.scopes = cfg, registry, metrics, list(scopes)
        self.link = link
        self.rate = RateLimit(cfg.rate)
        self._inbox: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=inbox)   # (topic, payload) from paho
        self._overflow = 0                    # messages the full inbox could not take (paho's thread adds)
        self._overflow_lock = threading.Lock()
        self._refused: dict[str, tuple[int, str]] = {}   # this round's refusals: reason -> (count, last detail)
        self._said: dict[str, int] = {}       # refusal reason -> when last logged
        self._forgotten_ns = 0
        self._retired: frozenset[str] | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: mqtt.Client | None = None

    # paho's thread --------------------------------------------------------------------------------------

    def offer(self, topic: str, payload: bytes) -> None:
        """Take a message from the broker (a request, or a probe's status); any thread. Never blocks: past
        ``INBOX`` messages waiting, it is dropped and counted (``overflow``)."""
        try:
            self._inbox.put_nowait((topic, payload))
        except queue.Full:
            with self._overflow_lock:
                self._overflow += 1
        self._wake.set()

    # the service's thread ---------------------------------------------------------------------------------

    def step(self, now_ns: int) -> None:
        """Do one round at ``now_ns``."""
        while True:
            try:
                topic, payload = self._inbox.get_nowait()
            except queue.Empty:
                break
            if topic.startswith(f"{wire.TOPIC_ROOT}/{wire.ENROL_ZONE}/"):
                self._request(topic, payload, now_ns)
            else:
                self._status(topic, payload, now_ns)
        with self._overflow_lock:
            overflow, self._overflow = self._overflow, 0
        if overflow:
            self._refuse(Refused("overflow", f"{overflow} messages came faster than they could be read"), now_ns,
                         overflow)
        for reason, (n, detail) in self._refused.items():   # one write for the round, however many were refused
            self.registry.count(reason, now_ns, detail, n)
        self._refused.clear()
        if now_ns - self._forgotten_ns >= FORGET_EVERY_NS:
            self._forgotten_ns = now_ns
            forgotten = self.registry.forget_stale(now_ns, int(self.cfg.pending_ttl * 1e9))
            if forgotten:
                log.info("enrolment: forgot %d pending request(s) not heard from for %gs", forgotten,
                         self.cfg.pending_ttl)
        self.metrics.pending.set(len(self.registry.entries("pending")))
        self._replies(now_ns)
        self._hand_retired()

    def _request(self, topic: str, payload: bytes, now_ns: int) -> None:
        try:
            zone = request_zone(topic, self.cfg.zones)   # before the rate: only open zones get a bucket
            if not self.rate.allow(zone, now_ns):         # before decoding: a flood costs a bucket's arithmetic
                raise Refused("rate_limited", f"zone {zone} is over {self.cfg.rate} requests a minute")
            request = check_request(topic, payload, self.cfg.zones, self.cfg.max_request_bytes)
            result = self.registry.receive(request, now_ns, self.cfg.max_pending)
            if result in ("replayed", "too_many_pending", "zone_mismatch"):
                raise Refused(result, {"replayed": f"key {request.request_id[:12]} is retired, or its credentials "
                                                   "were used already",
                                       "too_many_pending": f"zone {request.zone} holds {self.cfg.max_pending} "
                                                           "pending requests (enrol.max_pending)",
                                       "zone_mismatch": f"key {request.request_id[:12]} asked in another zone "
                                                        "before"}[result])
        except Refused as refused:
            self._refuse(refused, now_ns)
            return
        self.metrics.requests.labels(result).inc()
        if result == "new":
            log.info("enrolment: new request %s in zone %s (asks for id %s; key fingerprint %s): see "
                     "`zonewatch-collector probes list`", request.request_id[:12], request.zone, request.probe or "-",
                     wire.enrol_fingerprint(request.key))

    def _refuse(self, refused: Refused, now_ns: int, n: int = 1) -> None:
        """Count a refused request (the registry's count is written once a round) and log it, once a minute a
        reason."""
        self.metrics.requests.labels(refused.reason).inc(n)
        count = self._refused.get(refused.reason, (0, ""))[0]
        self._refused[refused.reason] = (count + n, refused.detail)
        if now_ns - self._said.get(refused.reason, -(10**18)) >= 60 * 10**9:
            self._said[refused.reason] = now_ns
            log.warning("enrolment: refused a request (%s): %s", refused.reason, refused.detail)

    def _status(self, topic: str, payload: bytes, now_ns: int) -> None:
        try:
            where = wire.parse_topic(topic)
        except wire.WireError:
            return
        if payload.strip() == wire.STATUS_ONLINE and self.registry.logged_in(where.zone, where.probe, now_ns):
            log.info("enrolment: probe %s/%s logged in with its own credentials", where.zone, where.probe)

    def _replies(self, now_ns: int) -> None:
        if self.link is None:
            return
        # Watch for the login before the reply goes out, so the first "online" is not missed.
        watch = set()
        for name in self.registry.awaiting_login():
            zone, _, probe = name.partition("/")
            watch.add(wire.topic(zone, probe, "status"))
        self.link.watch(watch)
        for entry in self.registry.to_publish():
            if not entry.reply:
                continue
            if not self.link.publish(wire.enrol_topic(entry.zone, entry.request, "reply"), entry.reply):
                return   # not connected: the next step tries again
            self.registry.published(entry.request, now_ns)
            self.metrics.replies.labels(entry.state).inc()
            log.info("enrolment: reply to request %s published (%s%s)", entry.request[:12], entry.state,
                     f" as {entry.zone}/{entry.probe}" if entry.state == "approved" else "")
        for entry in self.registry.to_clear(now_ns, int(self.cfg.reply_ttl * 1e9)):
            if not self.link.publish(wire.enrol_topic(entry.zone, entry.request, "reply"), b""):
                return
            self.registry.cleared(entry.request, now_ns)

    def _hand_retired(self) -> None:
        retired = self.registry.retired_names()
        if retired == self._retired:
            return
        for scope in self.scopes:
            scope.retired = retired   # one assignment: readers see the old set or the new one
        if self._retired is not None or retired:
            log.info("enrolment: retired probes, refused whatever they send: %s", ", ".join(sorted(retired)) or "none")
        self._retired = retired

    # running -------------------------------------------------------------------------------------------------

    def start(self, mqtt_cfg: MqttConfig) -> None:
        """Connect the enrolment session and run ``step`` on a thread until ``stop``; the retired probes are handed
        to the scopes before this returns, so nothing of theirs is taken while the session connects."""
        self._hand_retired()
        self._client, self.link = _connect(mqtt_cfg, self.cfg.zones, self.offer)
        self._thread = named(self._loop, "zw-enrol")
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step(time.time_ns())
            except Exception:  # a bad round (the disk, the broker) must not end enrolment; it is logged
                log.exception("enrolment step failed; carrying on")
            self._wake.wait(self.cfg.poll_interval)
            self._wake.clear()

    def stop(self) -> None:
        """Stop the thread and the broker session."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        self.registry.close()


class _MqttLink:
    """The enrolment session: a persistent session reading requests, writing replies, watching logins."""

    def __init__(self, client: mqtt.Client, client_id: str, requests: list[tuple[str, int]]) -> None:
        self.client, self.client_id = client, client_id
        self.requests = requests
        self._watched: set[str] = set()
        self._lock = threading.Lock()
        self.acks: dict[int, Any] = {}   # mid -> PUBACK reason (paho's thread)
        self._refused: str | None = None   # the broker's last refusal, logged once until it changes

    def on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            if str(reason) != self._refused:
                log.error("broker refused the collector's enrolment session (%s): %s; render-mosquitto writes its "
                          "user when the configuration has an enrol section", self.client_id, reason)
            self._refused = str(reason)
            return
        self._refused = None
        with self._lock:
            watched = sorted(self._watched)
        client.subscribe(self.requests + [(t, 1) for t in watched])
        log.info("enrolment open for zones %s (session %s)", ", ".join(t.split("/")[3] for t, _ in self.requests),
                 self.client_id)

    def on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self.acks[mid] = reason

    def publish(self, topic: str, payload: bytes) -> bool:
        if not self.client.is_connected():
            return False   # never handed to paho while down: it would send it again on reconnect
        info = self.client.publish(topic, payload, qos=1, retain=True)
        deadline = time.monotonic() + 5.0
        while info.mid not in self.acks and time.monotonic() < deadline and self.client.is_connected():
            time.sleep(0.01)
        reason = self.acks.pop(info.mid, None)
        if reason is None:
            return False
        if getattr(reason, "is_failure", False) and getattr(reason, "value", 0) != 0x10:   # 0x10: no subscribers
            log.error("broker refused the enrolment reply on %s: %s (the ACL must let %s write it)", topic, reason,
                      "the collector's enrolment user")
            return False
        return True

    def watch(self, topics: set[str]) -> None:
        with self._lock:
            new, gone = topics - self._watched, self._watched - topics
            self._watched = set(topics)
        if new and self.client.is_connected():
            self.client.subscribe([(t, 1) for t in sorted(new)])
        if gone and self.client.is_connected():
            self.client.unsubscribe(sorted(gone))


def _connect(cfg: MqttConfig, zones: Sequence[str],
             offer: Callable[[str, bytes], None]) -> tuple[mqtt.Client, _MqttLink]:
    """Return the enrolment session's paho client (connecting in the background) and its link."""
    client_id = (cfg.client_id or "zonewatch-collector") + mosquitto.ENROL_SUFFIX
    client = make_client(cfg, client_id, persistent=True,
                         username=cfg.username + mosquitto.ENROL_SUFFIX if cfg.username else "")
    link = _MqttLink(client, client_id, [(wire.enrol_subscription("request", zone), 1) for zone in zones])
    client.on_connect = link.on_connect
    client.on_publish = link.on_publish
    client.on_message = lambda c, u, msg: offer(msg.topic, bytes(msg.payload))
    props = None
    kwargs: dict[str, Any] = {}
    if cfg.protocol == "5":
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 86400   # requests wait at the broker through a collector restart
        kwargs["clean_start"] = False
    client.connect_async(cfg.host, cfg.port, keepalive=int(cfg.keepalive), properties=props, **kwargs)
    client.loop_start()
    return client, link


