"""Enrolment: a new probe asks with its zone's bootstrap credential, an operator decides, the probe gets its own.

The flow (topics and payloads: ``agent.wire``, "Enrolment")::

    probe ──request (bootstrap user enrol-<zone>)──► broker ──► collector (EnrolService): checked, bounded,
        pending in the registry (``collector.fleet.registry``)            counted; never a crash
    operator: zonewatch-collector probes list | approve | reject | retire   (edits the registry, from a shell)
        approve: a new password, hashed into the broker's password file and the ACL
                 (``collector.mosquitto.write_access``, as render-mosquitto renders them), the broker reloaded
                 (``enrol.reload_command``); the answer (id, username, password) sealed to the probe's key
    collector (polls the registry every ``poll_interval``) ──sealed reply, retained──► probe
    probe logs in as itself ──status online──► collector clears the reply (or ``reply_ttl`` after publishing it)
    retire: the user leaves the password file and ACL, the broker reloads (mosquitto drops a connected client
        whose credentials no longer hold) and the collector refuses every row of the probe (``Scope.retired``)

Choices, and why:

- The running collector receives the requests: it owns the broker sessions (a command cannot log in as the
  collector: ``use_username_as_clientid`` would throw the running one off). It uses a third session,
  ``<client_id>-enrol`` as ``<username>-enrol`` (same password; ``render-mosquitto`` writes the user), so the
  ingest's two sessions stay as they are. The session is persistent: requests sent while the collector is down
  are delivered when it is back.
- The registry keeps the password's hash only; the password exists in the clear only in the ``approve`` command's
  memory and, sealed (libsodium's sealed box: X25519 and XSalsa20-Poly1305, through PyNaCl), in the reply. Every
  holder of the bootstrap credential may read reply topics; only the probe's private key opens its reply. The
  reply's origin rests on the broker: only the collector's enrolment user may write reply topics, and the probe
  verifies the broker's TLS certificate.
- ``approve`` needs the request (its id, a unique prefix of at least six hex digits, or the fingerprint as the
  probe prints it); the id defaults to the one the probe asked for (``--id`` gives another); the zone is the
  request's, which is the bootstrap credential's (the ACL pins each bootstrap user to its zone's topics); the area
  is optional. An approved probe the inventory does not list may publish, about itself only (``collector.scope``):
  it watches nothing until the inventory lists it, and ``probes list`` says so.
- Bounds: a request is at most ``max_request_bytes``; each zone takes ``rate`` requests a minute (a burst of as
  many) and holds at most ``max_pending`` pending requests; a pending request not heard from for ``pending_ttl``
  is forgotten. Whatever is refused (malformed, too large, over a bound, replayed: from a key that is retired or
  whose credentials were used already) is counted by reason (``zonewatch_enrol_requests{result}`` and the
  registry, which ``probes list`` shows) and logged at most once a minute a reason.
- Sending a request again is harmless: the request id is the key's, so it is the same request (two probes
  sharing a bootstrap username throw each other off the broker and send again; see ``agent.fleet.enrol``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import queue
import shlex
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import paho.mqtt.client as mqtt
from nacl.public import PublicKey, SealedBox
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import Field, field_validator

from agent import wire
from collector import mosquitto
from collector.fleet.registry import Entry, Registry, RegistryError
from collector.scope import Scope
from collector.threads import named
from zwconf import Duration, RefPath, Strict
from zwconf.mqtt import MqttConfig

if TYPE_CHECKING:
    from collector.config import CollectorConfig
    from collector.inventory import Inventory

__all__ = ["EnrolConfig", "EnrolService", "RateLimit", "Refused", "check_request", "sealed_reply", "access",
           "registry_path", "problems", "add_parser", "run_command", "current_access"]

log = logging.getLogger(__name__)

REGISTRY_FILE = "enrol.db"   # default: beside the intake queue
FORGET_EVERY_NS = 60 * 10**9
INBOX = 10_000               # messages from the broker waiting for the service's thread, at most


class EnrolConfig(Strict):
    """``enrol:`` of the collector configuration: which zones take new probes, and how the broker follows."""

    zones: list[str] = Field(min_length=1)
    broker_dir: str                        # where the broker reads passwd and acl (render-mosquitto --out)
    reload_command: list[str] = Field(default=["systemctl", "reload", "mosquitto"], min_length=1)
    registry: str | None = None            # default: enrol.db beside queue.path
    reply_ttl: Duration = 3600.0           # a reply stays on the broker at most this long (the probe asks again)
    pending_ttl: Duration = 7 * 86400.0    # a pending request not heard from for this long is forgotten
    max_pending: int = Field(default=20, ge=1)        # pending requests per zone
    rate: int = Field(default=30, ge=1)               # requests a minute per zone (and the burst)
    max_request_bytes: int = Field(default=wire.ENROL_MAX_BYTES, ge=256, le=wire.ENROL_MAX_BYTES)
    poll_interval: Duration = 1.0          # how often the running collector looks at the registry

    @field_validator("zones")
    @classmethod
    def _zones(cls, value: list[str]) -> list[str]:
        for zone in value:
            if not wire.valid_name(zone) or zone == wire.ENROL_ZONE:
                raise ValueError(f"zone {zone!r} is not a zone id (lowercase letters, digits, - _ .; not "
                                 f"{wire.ENROL_ZONE!r})")
        if len(set(value)) != len(value):
            raise ValueError("a zone is listed twice")
        return value


def registry_path(cfg: CollectorConfig) -> Path:
    """Return the registry file of a collector configuration (``enrol.registry``, else beside the queue)."""
    assert cfg.enrol is not None
    return Path(cfg.enrol.registry) if cfg.enrol.registry else Path(cfg.queue.path).parent / REGISTRY_FILE


def problems(cfg: CollectorConfig, inventory: Inventory | None) -> list[tuple[RefPath, str]]:
    """Return what in ``enrol`` the inventory contradicts: a zone it does not define."""
    if cfg.enrol is None or inventory is None:
        return []
    known = ", ".join(sorted(inventory.zones)) or "none defined"
    return [(("enrol", "zones", i), f"unknown zone {zone!r} (the inventory's: {known})")
            for i, zone in enumerate(cfg.enrol.zones) if zone not in inventory.zones]


def access(zones: Sequence[str], registry: Registry | None) -> mosquitto.Enrolment:
    """Return what enrolment adds to the broker's users, from the registry as it stands (none yet: nothing)."""
    if registry is None:
        return mosquitto.Enrolment(tuple(zones))
    return mosquitto.Enrolment(tuple(zones), registry.approved(), registry.retired())


def current_access(cfg: CollectorConfig) -> mosquitto.Enrolment | None:
    """Return enrolment's users for ``render-mosquitto``: None without an ``enrol`` section; the open zones and
    what the registry holds (nothing before the collector first made it)."""
    if cfg.enrol is None:
        return None
    path = registry_path(cfg)
    if not path.exists():
        return access(cfg.enrol.zones, None)
    try:
        registry = Registry(path, create=False)
        try:
            return access(cfg.enrol.zones, registry)
        finally:
            registry.close()
    except (OSError, sqlite3.Error) as exc:
        raise ValueError(f"cannot read the enrolment registry {path}: {exc}") from None


# ---------------------------------------------------------------------------------------------- pure logic


class Refused(Exception):
    """A request that is not taken; ``reason`` is a short token for counting, ``detail`` says what."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def request_zone(topic: str, zones: Iterable[str]) -> str:
    """Return the zone of a request topic, or raise Refused: not a request topic, or a zone not open."""
    try:
        zone, _, kind = wire.parse_enrol_topic(topic)
    except wire.WireError as exc:
        raise Refused(exc.reason, str(exc)) from None
    if kind != "request":
        raise Refused("bad_topic", f"{topic[:120]!r} is not a request topic")
    if zone not in zones:
        raise Refused("zone_closed", f"zone {zone!r} takes no new probes (enrol.zones)")
    return zone


def check_request(topic: str, payload: bytes, zones: Iterable[str], max_bytes: int) -> wire.EnrolRequest:
    """Return the request in a message, or raise Refused: malformed, too large, from a zone not open, or not
    matching its topic (the request id is the key's, and the zone is the topic's, which the ACL pins)."""
    zone = request_zone(topic, zones)
    request_id = topic.split("/")[4]
    try:
        request = wire.decode_enrol_request(payload, max_bytes)
    except wire.WireError as exc:
        raise Refused(exc.reason, str(exc)) from None
    if (request.zone, request.request_id) != (zone, request_id):
        raise Refused("identity_mismatch", f"{topic[:120]}: the payload is zone {request.zone!r}, key "
                      f"{request.request_id[:12]}")
    return request


class RateLimit:
    """At most ``per_minute`` requests a minute per zone, a burst of as many (a token bucket per zone)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, int]] = {}   # zone -> (tokens, when counted)

    def allow(self, zone: str, now_ns: int) -> bool:
        """Take one request of ``zone`` at ``now_ns``; return False if it is over the rate."""
        tokens, then = self._buckets.get(zone, (float(self.per_minute), now_ns))
        tokens = min(float(self.per_minute), tokens + max(0, now_ns - then) * self.per_minute / 60e9)
        if tokens < 1.0:
            self._buckets[zone] = (tokens, now_ns)
            return False
        self._buckets[zone] = (tokens - 1.0, now_ns)
        return True


def sealed_reply(key: bytes, answer: wire.EnrolAnswer) -> bytes:
    """Return the reply to publish for ``answer``: sealed to the probe's public ``key``."""
    sealed = SealedBox(PublicKey(key)).encrypt(wire.encode_enrol_answer(answer))
    return wire.encode_enrol_reply(answer.request, sealed)


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
    v5 = cfg.protocol == "5"
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, clean_session=None if v5 else False)
    if cfg.username:
        client.username_pw_set(cfg.username + mosquitto.ENROL_SUFFIX,
                               cfg.password.get_secret_value() if cfg.password else None)
    if cfg.tls:
        client.tls_set(ca_certs=cfg.tls.ca_file, certfile=cfg.tls.cert_file, keyfile=cfg.tls.key_file)
    link = _MqttLink(client, client_id, [(wire.enrol_subscription("request", zone), 1) for zone in zones])
    client.on_connect = link.on_connect
    client.on_publish = link.on_publish
    client.on_message = lambda c, u, msg: offer(msg.topic, bytes(msg.payload))
    props = None
    kwargs: dict[str, Any] = {}
    if v5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 86400   # requests wait at the broker through a collector restart
        kwargs["clean_start"] = False
    client.connect_async(cfg.host, cfg.port, keepalive=int(cfg.keepalive), properties=props, **kwargs)
    client.loop_start()
    return client, link


# ---------------------------------------------------------------------------------------------- the commands


def add_parser(sub: Any) -> None:
    """Add ``probes`` and its commands to the collector's command line."""
    probes = sub.add_parser("probes", help="enrolment: list, approve, reject or retire probes")
    cmd = probes.add_subparsers(dest="probes_command", required=True, metavar="probes-command")
    ls = cmd.add_parser("list", help="every request and what became of it, with key fingerprints")
    ls.add_argument("--json", action="store_true", help="print JSON instead of text")
    ls.add_argument("--state", choices=["pending", "approved", "rejected", "retired"], help="only these")
    ok = cmd.add_parser("approve", help="admit a pending request: it gets its own MQTT credentials")
    ok.add_argument("request", help="the request id (at least 6 of its hex digits) or its fingerprint")
    ok.add_argument("--id", dest="probe_id", help="the probe's id (default: the one it asked for)")
    ok.add_argument("--area", help="the zone area it stands in")
    no = cmd.add_parser("reject", help="refuse a pending request (the probe is told)")
    no.add_argument("request", help="the request id (at least 6 of its hex digits) or its fingerprint")
    no.add_argument("--reason", help="why, for the probe's log")
    retire = cmd.add_parser("retire", help="take an enrolled probe's credentials away; its data is refused")
    retire.add_argument("probe", help="the probe id")


def run_command(args: argparse.Namespace, cfg: CollectorConfig, inventory: Inventory | None,
                now_ns: int | None = None) -> int:
    """Run ``zonewatch-collector probes ...``; return the exit code (2: bad input, 1: the broker did not reload)."""
    if cfg.enrol is None or inventory is None:
        print(f"zonewatch-collector: {args.config} has no enrol section (and an inventory): enrolment is off",
              file=sys.stderr)
        return 2
    now_ns = time.time_ns() if now_ns is None else now_ns
    try:
        registry = Registry(registry_path(cfg), create=False)
    except (RegistryError, OSError, sqlite3.Error) as exc:
        return _fail(f"{registry_path(cfg)}: {exc}" if not isinstance(exc, RegistryError) else str(exc))
    try:
        command = args.probes_command
        if command == "list":
            return _list(registry, inventory, args.json, args.state, now_ns)
        if command == "reject":
            entry = registry.find(args.request)
            answer = wire.EnrolAnswer(entry.request, "rejected", reason=args.reason)
            entry = registry.reject(args.request, args.reason, sealed_reply(entry.key, answer), now_ns)
            print(f"rejected request {entry.request[:12]} (zone {entry.zone}); the probe is told at the collector's "
                  "next look at the registry")
            return 0
        if command == "approve":
            entry = approve(cfg, inventory, registry, args.request, args.probe_id, args.area, now_ns)
            where = "" if entry.probe in inventory.probes else (
                "; the inventory does not list it yet: it may publish about itself, and watches nothing until "
                "the inventory lists it")
            print(f"approved request {entry.request[:12]} as probe {entry.zone}/{entry.probe}{where}")
        else:
            entry = retire(cfg, inventory, registry, args.probe, now_ns)
            listed = (f"; the inventory still lists {entry.probe}: take it out (until then it pages ProbeDown)"
                      if entry.probe in inventory.probes else "")
            print(f"retired probe {entry.zone}/{entry.probe}: its credentials are gone and whatever it sends is "
                  f"refused{listed}")
    except (RegistryError, ValueError, OSError, sqlite3.Error) as exc:
        return _fail(str(exc))
    finally:
        registry.close()
    try:
        reload_broker(cfg.enrol.reload_command)
    except RuntimeError as exc:
        return _fail(f"{exc}; the registry and the broker's files are updated: run "
                     f"`{shlex.join(cfg.enrol.reload_command)}` by hand", code=1)
    print(f"broker reloaded ({shlex.join(cfg.enrol.reload_command)})")
    return 0


def _fail(message: str, code: int = 2) -> int:
    print(f"zonewatch-collector: probes: {message}", file=sys.stderr)
    return code


def _write_access(cfg: CollectorConfig, inventory: Inventory) -> Callable[[Registry], object]:
    """Return what rewrites the broker's password file and ACL from the registry (inside its transaction)."""
    assert cfg.enrol is not None
    enrol = cfg.enrol
    collector = cfg.mqtt.username if cfg.mqtt is not None and cfg.mqtt.username else mosquitto.DEFAULT_COLLECTOR

    def write(registry: Registry) -> object:
        return mosquitto.write_access(Path(enrol.broker_dir), inventory, access(enrol.zones, registry), collector,
                                      cfg.alerting.noc)

    return write


def approve(cfg: CollectorConfig, inventory: Inventory, registry: Registry, selector: str, probe_id: str | None,
            area: str | None, now_ns: int) -> Entry:
    """Approve a pending request (see the module docstring); return the entry as approved."""
    entry = registry.find(selector)
    probe = probe_id or entry.asked_id
    if probe is None:
        raise ValueError(f"request {entry.request[:12]} asks for no id: give one with --id")
    if not wire.valid_name(probe):
        raise ValueError(f"--id {probe!r} is not a probe id: lowercase letters, digits, - _ . (at most 63)")
    listed = inventory.probes.get(probe)
    if listed is not None and listed.zone != entry.zone:
        raise ValueError(f"the inventory puts probe {probe!r} in zone {listed.zone!r}, the request is for zone "
                         f"{entry.zone!r} (the bootstrap credential's): choose another --id")
    areas = inventory.zones[entry.zone].areas if entry.zone in inventory.zones else []
    if area is not None and area not in areas:
        raise ValueError(f"--area {area!r} is not an area of zone {entry.zone!r} (areas: {', '.join(areas) or 'none'})")
    password = mosquitto.new_password()
    answer = wire.EnrolAnswer(entry.request, "approved", entry.zone, probe, probe, password)
    reply = sealed_reply(entry.key, answer)
    return registry.approve(entry.request, probe, area, mosquitto.hash_password(password), reply, now_ns,
                            then=_write_access(cfg, inventory))


def retire(cfg: CollectorConfig, inventory: Inventory, registry: Registry, probe: str, now_ns: int) -> Entry:
    """Retire an enrolled probe: out of the broker's files, its data refused by the running collector."""
    return registry.retire(probe, now_ns, then=_write_access(cfg, inventory))


def reload_broker(command: Sequence[str], timeout: float = 30.0) -> None:
    """Run the broker's reload command; raise RuntimeError saying how it failed."""
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"the broker did not reload: {shlex.join(command)}: {exc}") from None
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"the broker did not reload: {shlex.join(command)} exited with {done.returncode}: "
                           f"{said[0][:200]}")


def _when(ns: int | None) -> str:
    if not ns:
        return "-"
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _ago(ns: int, now_ns: int) -> str:
    s = max(0, (now_ns - ns) // 10**9)
    return f"{s}s ago" if s < 120 else f"{s // 60}m ago" if s < 7200 else f"{s // 3600}h ago"


def describe(entry: Entry, inventory: Inventory, now_ns: int) -> dict[str, Any]:
    """Return what ``probes list --json`` says of one entry."""
    listed = entry.probe is not None and entry.probe in inventory.probes
    reply: str | None = None
    if entry.state == "approved":
        on_broker = entry.reply_published_ns is not None and entry.reply_cleared_ns is None
        reply = "picked up" if entry.delivered_ns else "published" if on_broker else "waiting"
    return {
        "request": entry.request, "fingerprint": entry.fingerprint, "zone": entry.zone, "state": entry.state,
        "asked_id": entry.asked_id, "probe": entry.probe, "area": entry.area, "reason": entry.reason,
        "machine_id": entry.machine_id,
        "modems": [{"name": m.name, "imei": m.imei, "iccid": m.iccid} for m in entry.modems],
        "requests": entry.requests, "first_seen": _when(entry.first_seen_ns), "last_seen": _when(entry.last_seen_ns),
        "probe_clock": _when(entry.probe_clock_ns), "decided": _when(entry.decided_ns),
        "logged_in": _when(entry.delivered_ns) if entry.delivered_ns else None, "reply": reply,
        "in_inventory": listed if entry.probe is not None else None,
    }


def _list(registry: Registry, inventory: Inventory, as_json: bool, state: Any, now_ns: int) -> int:
    entries = registry.entries(state)
    refused = registry.refusals()
    if as_json:
        print(json.dumps({"requests": [describe(e, inventory, now_ns) for e in entries],
                          "refused": {k: {"count": c, "last": _when(at), "what": what}
                                      for k, (c, at, what) in refused.items()}}, indent=1))
        return 0
    if not entries:
        print("no enrolment requests" + (f" {state}" if state else ""))
    for e in entries:
        head = f"{e.request[:12]}  {e.state:<8}  zone {e.zone}"
        if e.state == "pending":
            head += f"  asks for id {e.asked_id or '-'}"
        elif e.state == "rejected":
            head += f"  asked for id {e.asked_id or '-'}"
        elif e.probe is not None:
            head += f"  probe {e.probe}" + (f" (area {e.area})" if e.area else "")
        print(head)
        print(f"    fingerprint  {e.fingerprint}")
        hardware = [f"machine {e.machine_id or 'unknown'}"] + [
            f"modem {m.name} IMEI {m.imei or '?'} ICCID {m.iccid or '?'}" for m in e.modems]
        print(f"    hardware     {'; '.join(hardware)}")
        print(f"    seen         {e.requests} request(s), first {_when(e.first_seen_ns)}, last "
              f"{_ago(e.last_seen_ns, now_ns)} (probe's clock {_when(e.probe_clock_ns)})")
        if e.state == "approved":
            said = describe(e, inventory, now_ns)
            inv = ("in the inventory" if said["in_inventory"] else
                   "not in the inventory: it may publish about itself, and watches nothing until the inventory "
                   "lists it")
            login = f"logged in {_when(e.delivered_ns)}" if e.delivered_ns else f"reply {said['reply']}, not logged in"
            print(f"    approved     {_when(e.decided_ns)}; {login}; {inv}")
        elif e.state in ("rejected", "retired"):
            print(f"    {e.state:<12} {_when(e.decided_ns)}" + (f": {e.reason}" if e.reason else ""))
    if refused:
        print("refused requests: " + ", ".join(f"{c} {k} (last {_when(at)}: {what})"
                                               for k, (c, at, what) in refused.items()))
    return 0
