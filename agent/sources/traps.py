"""SNMP trap receiver: link, restart and UPS traps become events that travel at once.

One ``TrapsSource`` listens on one UDP address (``listen``). It accepts SNMPv1/v2c traps and informs whose
community is in ``communities`` and SNMPv3 traps sent with authPriv by a user in ``v3_users``, each user
tied to the engine ID of the device that sends as that user. Every accepted trap becomes one ``Event``,
passed to ``emit("events", ...)`` at once and stamped with the time it was received.

This module holds the config (``TrapsConfig``), the receiver (``TrapsSource``) and its drop counters. The mapping
of each trap to its event, with the table of traps and events, is ``agent.sources.trapmap`` (pure); the pysnmp
side (the SNMPv3 user config ``V3TrapUser``, the engine that checks communities and users, and the conversion
of its varbinds) is ``agent.sources.trapengine``.

Events only, no ``interface`` or ``power`` sample: traps are hints. They travel over UDP and may be lost,
repeated (upsTrapOnBattery is resent every minute) or reordered, and a flapping port sends linkDown and
linkUp within a second. The measurements stay fed by polls alone, so a dashboard never shows a state that
a poll has not confirmed and a lost linkUp cannot leave a port "down" in the TSDB; the event reaches the
collector at once and the next poll (which the runner may bring forward) confirms it.

Drops: a datagram that is not an acceptable trap is dropped, counted in ``stats`` under its reason and
logged once per sender and reason (never with a community or key)::

    accepted            emitted (one event)
    unknown_sender      accepted, from an address not in ``devices`` (a subset of ``accepted``)
    bad_community       v1/v2c community not in ``communities``
    unknown_user        v3 user name not in ``v3_users``
    unknown_engine_id   v3 user known, but not with the engine ID the trap came from
    wrong_auth_key      v3 authentication failed (auth_key or auth_protocol)
    wrong_priv_key      v3 decryption failed (priv_key or priv_protocol)
    not_in_time_window  v3 engine boots/time outside the USM window
    not_auth_priv       v3 trap sent with noAuthNoPriv or authNoPriv (pysnmp would take those for a known user
                        name: as the non-authoritative side it checks no minimum level, so we do)
    not_a_trap          a request or response sent to the trap port
    malformed           not a valid SNMP message, or a notification without snmpTrapOID.0
    internal_error      the receiver failed on it (a bug); the sender is logged, the trap lost
    dropped             the SNMP engine dropped it for any other reason

Every datagram adds one to exactly one key other than ``unknown_sender`` (an ``emit`` that raises, which it
must not, also adds ``internal_error``).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, Final, Literal

from pydantic import Field, field_validator, model_validator

from agent._compat import pysnmp as pysnmp_compat
from agent.sources import Emit, SourceError, trapengine
from agent.sources.trapengine import (
    ENGINE_COUNTERS,
    V3TrapUser,
    load_pysnmp,
    new_engine,
    plain_var_binds,
    v3_identity,
)
from agent.sources.trapmap import MAX_TAG, TrapError, trap_event
from zonewatch import strict
from zonewatch.wire import Event

__all__ = [
    "TrapsConfig",
    "TrapsSource",
    "STATS_KEYS",
]

log = logging.getLogger(__name__)

STATS_KEYS: Final = (
    "accepted",
    "unknown_sender",
    "bad_community",
    "unknown_user",
    "unknown_engine_id",
    "wrong_auth_key",
    "wrong_priv_key",
    "not_in_time_window",
    "not_auth_priv",
    "not_a_trap",
    "malformed",
    "internal_error",
    "dropped",
)

_EXPLAIN: Final[dict[str, str]] = {
    "bad_community": "its community is not in 'communities'",
    "unknown_user": "its SNMPv3 user is not in 'v3_users'",
    "unknown_engine_id": "its SNMPv3 user is in 'v3_users', but not with the engine ID it was sent from "
    "(add that engine_id)",
    "wrong_auth_key": "SNMPv3 authentication failed (check auth_key and auth_protocol)",
    "wrong_priv_key": "SNMPv3 decryption failed (check priv_key and priv_protocol)",
    "not_in_time_window": "its SNMPv3 engine boots/time are outside the time window",
    "not_auth_priv": "it was sent without authPriv (noAuthNoPriv and authNoPriv are refused)",
    "not_a_trap": "it is not a notification (a request sent to the trap port?)",
    "malformed": "it is not a valid SNMP trap",
    "internal_error": "the receiver failed on it",
    "dropped": "the SNMP engine dropped it",
}

_MAX_LOGGED: Final = 1024  # (sender, reason) pairs remembered for log-once; spoofed senders cannot grow it
_V3_SECURITY_MODEL: Final = 3
_AUTH_PRIV: Final = 3


# ---------------------------------------------------------------------------------------------- config


class TrapsConfig(strict.Strict):
    """The SNMP trap receiver (``type: traps`` in the agent's ``sources``)."""

    type: Literal["traps"]
    name: str = Field(default="traps", min_length=1, max_length=MAX_TAG)
    listen: str = "0.0.0.0:162"
    communities: list[strict.Secret] = Field(default_factory=list)
    v3_users: list[V3TrapUser] = Field(default_factory=list)
    devices: dict[str, str] = Field(default_factory=dict)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        """Check that ``listen`` is ``ip:port`` (``[ipv6]:port`` for IPv6)."""
        _split_listen(value)
        return value

    @field_validator("communities")
    @classmethod
    def _communities(cls, value: list[Any]) -> list[Any]:
        """Refuse an empty community."""
        for secret in value:
            if not secret.get_secret_value():
                raise ValueError("a community must not be empty")
        return value

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: dict[str, str]) -> dict[str, str]:
        """Return the devices keyed by their address in canonical form."""
        out: dict[str, str] = {}
        for address, device in value.items():
            try:
                key = _canonical(ipaddress.ip_address(address))
            except ValueError:
                raise ValueError(f"key {address!r} must be the IP address traps come from, like '10.20.0.11'") from None
            if not device or len(device) > MAX_TAG:
                raise ValueError(f"{address}: the device id must be 1 to {MAX_TAG} characters")
            if key in out:
                raise ValueError(f"{address!r} is the same address as another key ({key})")
            out[key] = device
        return out

    @model_validator(mode="after")
    def _accepts_something(self) -> TrapsConfig:
        """Check that some trap can be accepted and that no v3 user is given twice."""
        if not self.communities and not self.v3_users:
            raise ValueError("accepts no trap: give 'communities' (SNMPv1/v2c) or 'v3_users' (SNMPv3), or both")
        seen: set[tuple[str, str]] = set()
        for i, user in enumerate(self.v3_users):
            key = (user.user, user.engine_id)
            if key in seen:
                raise ValueError(f"v3_users[{i}]: user {user.user!r} with engine_id {user.engine_id} is given twice")
            seen.add(key)
        return self

    @property
    def address(self) -> tuple[str, int]:
        """Return the host and port to bind."""
        return _split_listen(self.listen)


def _split_listen(value: str) -> tuple[str, int]:
    """Return (ip, port) from ``ip:port`` or ``[ipv6]:port``; raise ValueError saying what is expected."""
    host, sep, port = value.rpartition(":")
    problem = f"expected ip:port like '0.0.0.0:162' or '[::]:162', got {value!r}"
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(problem)
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        ip = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        raise ValueError(problem) from None
    if (ip.version == 6) != bracketed:
        raise ValueError(problem)
    return str(ip), int(port)


def _canonical(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """Return the address as text, an IPv4-mapped IPv6 address as plain IPv4."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _sender(address: Any) -> str:
    """Return the sender's IP address from a transport address ``(host, port, ...)``."""
    host = str(address[0])
    try:
        return _canonical(ipaddress.ip_address(host))
    except ValueError:
        return host


# ---------------------------------------------------------------------------------------------- source

class TrapsSource:
    """Receive SNMP traps on one UDP address and emit each as an event (the ``Listener`` contract)."""

    def __init__(self, config: TrapsConfig, clock: Callable[[], int] = time.time_ns) -> None:
        load_pysnmp()
        self.name = config.name
        self.config = config
        self.stats: dict[str, int] = dict.fromkeys(STATS_KEYS, 0)
        self._clock = clock
        self._v3_user_names = frozenset(u.user for u in config.v3_users)
        self._engine: Any = None
        self._receiver: Any = None
        self._counters: list[tuple[Any, str]] = []
        self._sock: socket.socket | None = None
        self._emit: Emit | None = None
        self._logged: set[tuple[str, str]] = set()
        self._event: Event | None = None
        self._outcome: tuple[str, str] | None = None
        self._received_ns = 0
        self._sender = ""
        # Set by the runner: (device, sender address, ifIndex, ifName) -> the last poll of that device found the
        # port notPresent. None: no SNMP source of this agent polls the senders.
        self.absent_ports: Callable[[str, str, int | None, str | None], bool] | None = None

    def __repr__(self) -> str:
        return f"TrapsSource({self.name!r}, udp {self.config.listen})"

    async def start(self, emit: Emit) -> None:
        """Bind the UDP address and start emitting traps; called once by the runner, before any emit."""
        if self._sock is not None:
            raise SourceError(f"trap receiver {self.name}: already listening on udp {self.config.listen}")
        host, port = self.config.address
        v6 = ":" in host
        try:
            self._prepare()
        except Exception as exc:  # pysnmp refused a user or community: not expected after validation
            raise SourceError(f"trap receiver {self.name}: cannot set up the SNMP engine: "
                              f"{type(exc).__name__}") from None
        sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            hint = ""
            if exc.errno in (errno.EACCES, errno.EPERM) and port < 1024:
                hint = " (a port below 1024 needs root or CAP_NET_BIND_SERVICE)"
            elif exc.errno == errno.EADDRINUSE:
                hint = " (another trap receiver, such as snmptrapd, holds it?)"
            raise SourceError(f"trap receiver {self.name}: cannot listen on udp {self.config.listen}: "
                              f"{exc.strerror or exc}{hint}") from None
        self._sock = sock
        self._emit = emit
        try:
            carrier = trapengine.udp6 if v6 else trapengine.udp
            transport = (carrier.Udp6Transport() if v6 else carrier.UdpTransport()).open_server_mode(sock=sock)
            trapengine.snmp_config.add_transport(self._engine, carrier.DOMAIN_NAME, transport)
            # Every datagram goes through ``_datagram`` (which hands it to the engine) so that each drop is
            # counted with its sender and reason.
            pysnmp_compat.route_datagrams(self._engine, self._datagram)
        except Exception as exc:
            await self.stop()
            raise SourceError(f"trap receiver {self.name}: cannot listen on udp {self.config.listen}: "
                              f"{type(exc).__name__}") from None
        log.info("trap receiver %s: listening on udp %s (%d communities, %d SNMPv3 users, %d devices)", self.name,
                 self.config.listen, len(self.config.communities), len(self.config.v3_users),
                 len(self.config.devices))

    async def stop(self) -> None:
        """Close the dispatcher and the socket; called once when the agent stops, also after a failed start."""
        engine, self._engine = self._engine, None
        receiver, self._receiver = self._receiver, None
        sock, self._sock = self._sock, None
        self._emit = None
        if engine is not None:
            if receiver is not None:
                receiver.close(engine)
            pysnmp_compat.close(engine)
        if sock is not None:
            sock.close()
        await asyncio.sleep(0)  # let the transport's close callbacks run

    def process(self, address: Any, datagram: bytes) -> Event | None:
        """Decode one datagram from ``address`` (ip, port); count it and return its event, or None if dropped.

        Called by the transport for every datagram (sans I/O, so tests may call it too); never raises.
        """
        try:
            return self._process(address, datagram)
        except Exception as exc:  # noqa: BLE001 - a trap must never take the receiver down
            self._count(self._sender, "internal_error", type(exc).__name__)
            return None

    def _process(self, address: Any, datagram: bytes) -> Event | None:
        self._prepare()
        self._received_ns = self._clock()
        self._sender = _sender(address)
        self._event, self._outcome = None, None
        before = [pysnmp_compat.counter_value(counter) for counter, _ in self._counters]
        domain = trapengine.udp6.DOMAIN_NAME if len(address) > 2 else trapengine.udp.DOMAIN_NAME
        try:
            pysnmp_compat.feed_datagram(self._engine, domain, address, datagram)
        except Exception as exc:  # noqa: BLE001 - pysnmp raises on some garbage instead of counting it
            if self._outcome is None:
                self._outcome = ("malformed", f"undecodable: {type(exc).__name__}")
        if self._event is not None:
            self._count(self._sender, "accepted", "")
            if self._sender not in self.config.devices:
                self._count(self._sender, "unknown_sender", "")
            return self._event
        reason, detail = self._outcome or (self._engine_reason(before), "")
        if reason in ("unknown_user", "unknown_engine_id", "wrong_auth_key", "wrong_priv_key", "not_in_time_window"):
            identity = v3_identity(datagram)
            if identity is not None:
                user, engine_id = identity
                if reason == "unknown_user" and user in self._v3_user_names:
                    reason = "unknown_engine_id"  # pysnmp finds no (engine ID, user) row: it says "unknown user"
                detail = f"user {user!r}, engine ID {engine_id}"
        self._count(self._sender, reason, detail)
        return None

    def _prepare(self) -> None:
        """Create the engine and notification receiver once (CPU only: key localisation, no I/O)."""
        if self._engine is not None:
            return
        engine = new_engine(self.config)
        builder = engine.get_mib_builder()
        self._counters = [(builder.import_symbols(module, symbol)[0], reason)
                          for module, symbol, reason in ENGINE_COUNTERS]
        self._receiver = trapengine.ntfrcv.NotificationReceiver(engine, self._on_notification)
        self._engine = engine

    def _engine_reason(self, before: list[int]) -> str:
        """Return the drop reason whose engine counter moved while the last datagram was processed."""
        for (counter, reason), old in zip(self._counters, before, strict=True):
            if pysnmp_compat.counter_value(counter) != old:
                return reason
        return "dropped"

    def _on_notification(self, engine: Any, state: Any, context_engine_id: Any, context_name: Any,
                         var_binds: Any, cb_ctx: Any) -> None:
        """Turn an authenticated notification into the pending event (pysnmp's callback; never raises)."""
        try:
            context = pysnmp_compat.request_context(engine)
            if context["securityModel"] == _V3_SECURITY_MODEL and context["securityLevel"] != _AUTH_PRIV:
                self._outcome = ("not_auth_priv", f"user {str(context['securityName'])!r}")
                return
            device = self.config.devices.get(self._sender, self._sender)
            self._event = self._mark_absent(trap_event(plain_var_binds(var_binds), device, self._received_ns))
        except TrapError as exc:
            self._outcome = (exc.reason, exc.detail)
        except Exception as exc:  # noqa: BLE001 - never out of pysnmp's callback
            self._outcome = ("internal_error", type(exc).__name__)

    def _mark_absent(self, event: Event) -> Event:
        """Return a linkDown about a port the last poll found notPresent with ``present=False``."""
        if event.name != "link_down" or "present" in event.fields or self.absent_ports is None:
            return event
        index = event.fields.get("if_index")
        index = index if isinstance(index, int) and not isinstance(index, bool) else None
        if not self.absent_ports(event.tags["device"], self._sender, index, event.tags.get("ifname")):
            return event
        return Event(event.name, event.tags, {**event.fields, "present": False}, event.time_ns)

    def _datagram(self, dispatcher: Any, domain: Any, address: Any, datagram: bytes) -> None:
        """Process one datagram and emit its event; the transport dispatcher's receive callback."""
        event = self.process(address, datagram)
        if event is not None and self._emit is not None:
            try:
                self._emit("events", (), (event,))
            except Exception as exc:  # noqa: BLE001 - emit must not raise; if it does, say so once
                self._count(self._sender, "internal_error", f"emit raised {type(exc).__name__}")

    def _count(self, sender: str, key: str, detail: str) -> None:
        """Count ``key`` and log it once per sender and key (drops as warnings, unknown senders as info)."""
        self.stats[key] = self.stats.get(key, 0) + 1
        if key == "accepted" or (sender, key) in self._logged:
            return
        if len(self._logged) >= _MAX_LOGGED:
            if ("", "") not in self._logged:
                self._logged.add(("", ""))
                log.warning("trap receiver %s: too many senders and reasons to log each once; see the counters",
                            self.name)
            return
        self._logged.add((sender, key))
        if key == "unknown_sender":
            log.info("trap receiver %s: accepted a trap from %s, which is not in 'devices'; tagged device=%s",
                     self.name, sender, sender)
            return
        more = f" ({detail})" if detail else ""
        log.warning("trap receiver %s: dropped a trap from %s: %s%s; counted as %s, logged once per sender and reason",
                    self.name, sender, _EXPLAIN.get(key, key), more, key)
