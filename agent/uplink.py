"""The probe's MQTT connection: publishes spooled batches in order and deletes them once acknowledged.

Threads: paho runs its network loop in its own thread and calls ``_on_*`` there; those callbacks only set
flags and queue acknowledgements. Everything that touches the spool happens in ``pump()``, which the
agent's event loop calls; so the spool is only ever used from one thread.

On connect the probe publishes ``online`` (retained) to its status topic; its last will is ``offline``
(retained), so the collector learns of a dead probe from the broker. Over MQTT v5 the first data or events
PUBLISH of each ``pump`` carries the probe's clock at the moment it is sent (user property ``wire.SENT_PROPERTY``),
from which the collector measures how far this clock is off (``collector.clockskew``). With ``config``, it also
subscribes to its own ``config`` topic (the desired configuration, retained: it comes again on every connect);
the payloads wait in a queue for ``take_config`` (the agent's loop, ``agent.fleet.apply``). It always subscribes to
its own ``command`` topic (QoS 1, not retained: what the collector asks of it now, e.g. a diagnostic round); those
payloads wait, at most ``MAX_COMMANDS`` of them (more are dropped, logged once, counted in ``commands_dropped``), for
``take_commands`` (``agent.fleet.commands``). paho reconnects by
itself with backoff, and resends QoS 1 messages that were in flight when the link dropped.

The broker session is a ``Publisher``: paho's client (built by ``make_client``) in production; a test hands
``Uplink`` a fake one, which calls back as paho does, to drive ``pump`` without a broker.

A message the broker refuses (an MQTT v5 PUBACK with a failure reason, e.g. ``Not authorized`` when its ACL does
not let this probe publish on the topic) stays in the spool and frees its place in flight. Its kind (topic) is then
held back: one batch of it is tried again after ``RETRY_FIRST_S``, then after twice as long each time it is refused
again, up to ``RETRY_MAX_S``, until the broker takes one; the other kind goes on as before (events still go out
when data are refused). So a probe whose ACL is wrong sends one message every few minutes instead of its whole
backlog over and over, and is back at full speed as soon as the ACL is mended. Each refusal is counted
(``take_refused``, the ``zonewatch_mqtt_refused_messages`` metric); the first is logged with the reason, and the
end of the refusals too. A batch held back may be dropped by the spool's bounds (counted; the collector sees the
gap in its seqs).

A connection that fails is logged once with the broker's address and the reason in a probe's terms (a TLS
certificate the probe does not trust, a client certificate the broker refuses or requires, a CONNACK
refusal), and again only when the reason changes; a success ends it.
"""

from __future__ import annotations

import logging
import queue
import random
import socket
import ssl
import sys
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.client import CallbackOnConnect, CallbackOnDisconnect, CallbackOnMessage, CallbackOnPublish
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.spool import Spool
from zonewatch import wire
from zonewatch.backoff import Backoff
from zonewatch.mqtt import MqttConfig
from zonewatch.mqtt import make_client as make_paho_client

log = logging.getLogger(__name__)

RETRY_FIRST_S = 5.0   # a kind the broker refused: one batch of it tried again after this long,
RETRY_MAX_S = 300.0   # twice as long after each refusal of that trial, up to this
REFUSED_RETRY = Backoff(RETRY_FIRST_S, RETRY_MAX_S)
MAX_COMMANDS = 64   # command payloads waiting for the agent's loop; more are dropped (the broker lets only the
                    # collector publish them, and it sends a few an hour at most)


def make_client(cfg: MqttConfig, client_id: str) -> mqtt.Client:
    """Return the agent's paho client for ``cfg`` (not yet connected; ``zonewatch.mqtt.make_client``), named
    ``cfg.client_id`` if that is set, else ``client_id``."""
    # Backoff doubles from a base between 1 and 3 s (random per process, so that the probes of a zone whose
    # uplink comes back do not all reconnect in step) up to 60 s.
    return make_paho_client(cfg, cfg.client_id or client_id, reconnect=(random.uniform(1.0, 3.0), 60))


class Published(Protocol):
    """What ``Publisher.publish`` returns (paho's ``MQTTMessageInfo``)."""

    @property
    def mid(self) -> int:
        """The message id that the broker's acknowledgement will name."""

    @property
    def rc(self) -> int:
        """``MQTT_ERR_SUCCESS`` if the message went out now; otherwise the session keeps it for when it is
        connected."""


class Publisher(Protocol):
    """The broker session the uplink publishes through: paho's ``mqtt.Client``, or a fake in tests.

    ``Uplink`` sets the four callbacks when it is made, before anything is published. The session calls them as
    paho does (callback API 2), from a thread of its own, never from inside ``publish``: ``on_connect`` with the
    CONNACK (``reason.is_failure`` if the broker refused), ``on_disconnect`` when a connection ends,
    ``on_publish`` when the broker acknowledges a QoS 1 message (PUBACK; over MQTT 5 its reason may refuse it), and
    ``on_message`` with a message from the centre on a topic subscribed to (the configuration, a command).
    """

    on_connect: CallbackOnConnect | None
    on_disconnect: CallbackOnDisconnect | None
    on_publish: CallbackOnPublish | None
    on_message: CallbackOnMessage | None

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                properties: Properties | None = None) -> Published:
        """Hand one message over and return at once, without waiting for the broker.

        Called from the agent's loop thread (``pump``) and from the session's own thread (``on_connect``). A QoS 1
        message handed over while not connected, or in flight when a connection drops, is kept and sent (again,
        under the same ``mid``) once connected, until the broker acknowledges it."""

    def subscribe(self, topic: str, qos: int = 0) -> tuple[int, int | None]:
        """Subscribe to ``topic`` (called from ``on_connect``, on the session's thread); must not block."""


@dataclass
class _Refused:
    """A kind of batch (its topic) the broker refuses: when to try one again, and the one being tried."""

    reason: str
    until_ns: int
    trials: int = 0            # batches tried again and refused (REFUSED_RETRY's attempt)
    trial: int | None = None   # the mid of the one batch of this kind in flight, while the broker refuses them
    count: int = 0             # refusals since the broker last took one of this kind


class Uplink:
    """Publish what the spool holds, in order, with at most ``max_inflight`` unacknowledged messages."""

    def __init__(self, cfg: MqttConfig, spool: Spool, zone: str, probe: str, max_inflight: int = 100,
                 config: bool = False, client: Publisher | None = None) -> None:
        """Set up the session (``client``: one made elsewhere, e.g. a test's fake, which ``start`` and ``stop``
        leave alone; otherwise a paho client of its own); no I/O until ``start``."""
        self.cfg, self.spool = cfg, spool
        self.config_topic = wire.topic(zone, probe, "config") if config else None
        self._configs: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self.command_topic = wire.topic(zone, probe, "command")
        self._commands: queue.Queue[bytes] = queue.Queue(MAX_COMMANDS)
        self.commands_dropped = 0   # command payloads dropped because MAX_COMMANDS were waiting
        self.connects = 0   # connections the broker accepted (the dead-man rule: was the broker reached?)
        self.max_inflight = max_inflight
        self.status_topic = wire.topic(zone, probe, "status")
        self.topics = {"data": wire.topic(zone, probe, "data"), "events": wire.topic(zone, probe, "events")}
        # paho says why a socket failed only in its log (e.g. the TLS alert of a broker that refused our client
        # certificate): keep its last error, to be said once, with the broker's name, by _failed.
        self._paho_errors = _LastError()
        self._paho: mqtt.Client | None = None   # the paho client this uplink made and runs
        if client is None:
            client = self._paho = make_client(cfg, client_id=f"zw-{zone}-{probe}")
            self._paho.max_inflight_messages_set(max_inflight)
            self._paho.will_set(self.status_topic, wire.STATUS_OFFLINE, qos=1, retain=True)
            self._paho.on_connect_fail = self._on_connect_fail
            paho_log = logging.Logger("agent.uplink.paho", logging.ERROR)  # not in the logging tree: not printed
            paho_log.addHandler(self._paho_errors)
            self._paho.enable_logger(paho_log)
        self.client: Publisher = client
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._failure: str | None = None  # the connection problem last logged, until a connection succeeds
        self._answered = False  # the broker sent a CONNACK on this connection
        self._acked: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._refusals: queue.SimpleQueue[tuple[int, str]] = queue.SimpleQueue()   # (mid, reason) refused
        self._inflight: dict[int, tuple[int, str]] = {}  # paho mid -> spool seq and kind (its topic)
        self._refused: dict[str, _Refused] = {}   # kinds the broker refuses now
        self._refused_log: list[tuple[str, str]] = []   # (kind, reason) of each refusal, until take_refused
        self.refused = 0
        self.connected = False
        self._stopping = False
        self.published = 0
        self.acknowledged = 0

    def start(self) -> None:
        """Start connecting in the background; returns at once."""
        if self._paho is None:
            return   # a session handed in is connected by whoever made it
        props = None
        if self.cfg.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
        self._paho.connect_async(self.cfg.host, self.cfg.port, keepalive=int(self.cfg.keepalive),
                                 properties=props)
        self._paho.loop_start()

    def pump(self, now_ns: int) -> int:
        """Apply acknowledgements and publish more from the spool; return how many were published now.

        Called from the agent's loop thread only. A batch leaves the spool only once the broker acknowledged it;
        one the broker refused stays there, and its kind is held back (the module's docstring). A batch in flight
        is never handed over again: the session resends it after a reconnect, and the spool's bounds never drop
        it. While connected, up to ``max_inflight`` are in flight, taken in the spool's order (``Spool.pending``:
        events, then the last minute, then the backlog oldest first); the first of each call carries the send
        time ``now_ns`` (MQTT v5).
        """
        changed = self._take_refusals(now_ns)   # before the acknowledgements: a kind taken again is taken
        acked: list[int] = []
        while True:
            try:
                mid = self._acked.get_nowait()
            except queue.Empty:
                break
            seq, kind = self._inflight.pop(mid, (None, None))
            if seq is not None:
                acked.append(seq)
            if kind is not None and kind in self._refused:
                state = self._refused.pop(kind)
                log.info("broker %s:%s takes %s again (%d refused meanwhile, the last for: %s)", self.cfg.host,
                         self.cfg.port, self.topics[kind], state.count, state.reason)
        if acked:
            self.spool.ack(acked)  # one transaction for all of them
            self.acknowledged += len(acked)
        if acked or changed:
            self.spool.queue.protected = self._seqs_in_flight()
        if not self.connected:
            return 0
        room = self.max_inflight - len(self._inflight)
        if room <= 0:
            return 0
        sent = 0
        held = frozenset(kind for kind, state in self._refused.items()
                         if state.trial is not None or now_ns < state.until_ns)
        for entry in self.spool.pending(room, now_ns, skip=self._seqs_in_flight(), without=held):
            refused = self._refused.get(entry.kind)
            if refused is not None and refused.trial is not None:
                continue   # one batch at a time of a kind the broker refuses
            # the first message of each round carries the send time: enough to measure by, and a backlog's drain
            # does not pack the property (13 us) for every message
            info = self.client.publish(self.topics[entry.kind], entry.payload, qos=1,
                                       properties=None if sent else self._stamp(now_ns))
            self._inflight[info.mid] = (entry.id, entry.kind)  # the spool's entry id is the batch's seq
            if refused is not None:
                refused.trial = info.mid
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break  # not connected after all: paho keeps the message and sends it on reconnect
            sent += 1
        self.published += sent
        self.spool.queue.protected = self._seqs_in_flight()  # may still arrive: never counted as dropped
        return sent

    def _take_refusals(self, now_ns: int) -> bool:
        """Apply the refusals the session reported since the last call; return whether there were any."""
        any_refused = False
        while True:
            try:
                mid, reason = self._refusals.get_nowait()
            except queue.Empty:
                return any_refused
            seq, kind = self._inflight.pop(mid, (None, None))
            if seq is None or kind is None:   # not a batch: the status message of on_connect
                log.error("broker %s:%s refused message %d: %s", self.cfg.host, self.cfg.port, mid, reason)
                continue
            any_refused = True
            self.refused += 1
            self._refused_log.append((kind, reason))
            state = self._refused.get(kind)
            if state is None:
                state = self._refused[kind] = _Refused(reason, now_ns)
                log.error("broker %s:%s refused a batch (seq %d) on %s: %s. It stays in the spool; %s batches are "
                          "held back, one tried again after %.0f s, then after twice as long each time it is "
                          "refused, up to %.0f s (does the broker's ACL let this probe publish there?)",
                          self.cfg.host, self.cfg.port, seq, self.topics[kind], reason, kind, RETRY_FIRST_S,
                          RETRY_MAX_S)
            elif state.trial == mid:   # the one batch tried again was refused too: wait longer
                state.trial, state.trials = None, state.trials + 1
            state.reason, state.count = reason, state.count + 1
            state.until_ns = now_ns + int(REFUSED_RETRY.delay(state.trials) * 1e9)

    def _seqs_in_flight(self) -> set[int]:
        return {seq for seq, _ in self._inflight.values()}

    def take_refused(self) -> list[tuple[str, str]]:
        """Return the kind and the broker's reason of every batch refused since the last call."""
        out, self._refused_log = self._refused_log, []
        return out

    def _stamp(self, now_ns: int) -> Properties | None:
        """Return the PUBLISH properties that carry this probe's clock at sending (MQTT v5; None on 3.1.1): the
        collector compares them with its own clock at arrival to measure this clock's offset
        (``wire.SENT_PROPERTY``)."""
        if self.cfg.protocol != "5":
            return None
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.UserProperty = (wire.SENT_PROPERTY, str(now_ns))
        return props

    def take_config(self) -> bytes | None:
        """Return the newest payload of the config topic received since the last call (b"" when it was cleared),
        or None if none came."""
        newest = None
        while True:
            try:
                newest = self._configs.get_nowait()
            except queue.Empty:
                return newest

    def take_commands(self) -> list[bytes]:
        """Return the payloads of the command topic received since the last call, oldest first."""
        out: list[bytes] = []
        while True:
            try:
                out.append(self._commands.get_nowait())
            except queue.Empty:
                return out

    def inflight(self) -> int:
        """Return how many published messages wait for the broker's acknowledgement."""
        return len(self._inflight)

    def stop(self, planned: bool = False) -> None:
        """Say ``stopping`` (``planned``: asked to stop, as for a restart or an upgrade) or ``offline`` (the
        agent fails), then disconnect (a clean disconnect does not fire the last will). The collector pages
        ProbeDown at once for ``offline``, and only if the probe is not back in time for ``stopping``."""
        self._stopping = True
        if self._paho is None:
            return   # a session handed in belongs to whoever made it
        status = wire.STATUS_STOPPING if planned else wire.STATUS_OFFLINE
        if self.connected:
            self._paho.publish(self.status_topic, status, qos=1, retain=True).wait_for_publish(2)
        self._paho.disconnect()
        self._paho.loop_stop()

    # paho's network thread -----------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._answered = True
        self._paho_errors.take()  # what went wrong before this answer is old news
        if reason.is_failure:
            self._failed(f"broker {self.cfg.host}:{self.cfg.port} refused the connection: {reason}")
            return
        log.info("connected to broker %s:%s", self.cfg.host, self.cfg.port)
        self._failure = None
        client.publish(self.status_topic, wire.STATUS_ONLINE, qos=1, retain=True)
        if self.config_topic is not None:
            client.subscribe(self.config_topic, qos=1)
        client.subscribe(self.command_topic, qos=1)
        self.connects += 1
        self.connected = True

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.config_topic:
            self._configs.put(bytes(msg.payload))
        elif msg.topic == self.command_topic:
            try:
                self._commands.put_nowait(bytes(msg.payload))
            except queue.Full:
                if not self.commands_dropped:
                    log.warning("more than %d commands from the centre wait to be handled: dropping more", MAX_COMMANDS)
                self.commands_dropped += 1

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self.connected and not self._stopping:
            log.warning("lost the broker %s:%s (%s); reconnecting, the spool keeps every batch",
                        self.cfg.host, self.cfg.port, reason)
        elif not self._stopping and not self._answered:
            # closed before any CONNACK: with TLS, this is how a broker refuses a client certificate
            self._failed(f"broker {self.cfg.host}:{self.cfg.port} closed the connection before accepting it: "
                         + _explain(self._paho_errors.take() or str(reason)) + "; retrying")
        self.connected = self._answered = False

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this in its ``except OSError`` around the connection attempt, so the error is at hand
        error = sys.exc_info()[1]
        if error is not None:
            _close_abandoned_sockets(error)
        if isinstance(error, ssl.SSLCertVerificationError):
            why = (f"the broker's TLS certificate was not accepted: {error.verify_message}"
                   " (is mqtt.tls.ca_file the CA that signed it?)")
        elif error is not None:
            why = _explain(f"{type(error).__name__}: {error}")
        else:
            why = "connection failed"
        self._failed(f"cannot connect to broker {self.cfg.host}:{self.cfg.port}: {why}; retrying")

    def _failed(self, message: str) -> None:
        """Log a connection problem once (and again when it changes), until a connection succeeds."""
        if message != self._failure and not self._stopping:
            log.error("%s", message)
        self._failure = message

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        # QoS 1: the broker has the message. v5 reason "No matching subscribers" (16) is a success too.
        if getattr(reason, "is_failure", False):
            self._refusals.put((mid, str(reason)))
            return
        self._acked.put(mid)


class _LastError(logging.Handler):
    """Keeps the last error paho logged (in paho's network thread, where it is read too)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage()

    def take(self) -> str:
        message, self.message = self.message, ""
        return message


def _close_abandoned_sockets(error: BaseException) -> None:
    """Close the sockets that paho's failed connection attempt opened and dropped.

    When the TLS handshake fails (an untrusted broker certificate), paho raises out of ``_create_socket``
    without closing the TCP socket or its TLS wrapper: they stay open for as long as the error (its
    traceback) is referenced, and are then closed by their finaliser with a ResourceWarning. They are the
    locals of paho's frames in the error's traceback; paho holds no socket of its own at that point.
    """
    tb = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if str(frame.f_globals.get("__name__", "")).startswith("paho."):
            for value in list(frame.f_locals.values()):
                if isinstance(value, socket.socket):
                    value.close()
        tb = tb.tb_next


def _explain(error: str) -> str:
    """Return a socket or TLS error with what it most likely means for a probe."""
    if "CERTIFICATE_REQUIRED" in error:
        return f"{error}; the broker requires a client certificate (set mqtt.tls.cert_file and key_file)"
    if any(alert in error for alert in ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN", "DECRYPT_ERROR")):
        return f"{error}; the broker refused this probe's client certificate (not signed by a CA it trusts?)"
    return error
