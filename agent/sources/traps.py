"""SNMP trap receiver: link, restart and UPS traps become events that travel at once.

One ``TrapsSource`` listens on one UDP address (``listen``). It accepts SNMPv1/v2c traps and informs whose
community is in ``communities`` and SNMPv3 traps sent with authPriv by a user in ``v3_users``, each user
tied to the engine ID of the device that sends as that user. Every accepted trap becomes one ``Event``,
passed to ``emit("events", ...)`` at once and stamped with the time it was received.

Trap (snmpTrapOID.0) -> event. Every event has the tag ``device``: the ``devices`` entry for the sender's
address, else the address itself. ``?`` marks what is there only when the trap carries it::

    trap                                  snmpTrapOID.0            event             more tags   fields
    ------------------------------------  -----------------------  ----------------  ----------  ----------------------
    linkDown                              1.3.6.1.6.3.1.1.5.3      link_down         ifname?     if_index?, admin_up?,
    linkUp                                1.3.6.1.6.3.1.1.5.4      link_up           ifname?     oper_up?, present?
    coldStart / warmStart                 1.3.6.1.6.3.1.1.5.1 / .2 device_restarted              cold
    upsTrapOnBattery                      1.3.6.1.2.1.33.2.1       power_on_battery              cleared=False,
                                                                                                 battery_minutes?,
                                                                                                 seconds_on_battery?
    upsTrapAlarmEntryAdded / ...Removed   1.3.6.1.2.1.33.2.3 / .4  (by the well-known alarm in upsAlarmDescr)
      OnBattery                           1.3.6.1.2.1.33.1.6.3.2   power_on_battery              cleared
      LowBattery / DepletedBattery        1.3.6.1.2.1.33.1.6.3.3/4 battery_low                   cleared, depleted
      any other alarm                                              trap              trap_oid,   varbinds, cleared
                                                                                     alarm?
    any other trap                                                 trap              trap_oid    varbinds

``ifname`` is the ifName (else ifDescr) varbind when the vendor appended one; ``if_index`` comes from the
ifIndex varbind or the instance of ifAdminStatus/ifOperStatus (one beyond 64 bits is left out); ``*_up`` is True
for up(1) only. ``present`` is False (and otherwise left out) for a port that is not there: the trap says
ifOperStatus notPresent(6), or it is a linkDown about a port the last poll of its device (an SNMP source of
this agent whose name or host is the sender's) found notPresent (``absent_ports``, set by the runner). A
device sends linkDown for its empty cages when it boots: those are no link going down (the collector does
not apply them, so they page no LinkDown). ``cleared`` is False when an alarm entry is added (and for
upsTrapOnBattery), True when it is removed. A value the trap does not carry is left out
(upsEstimatedMinutesRemaining -1 means "unsupported").
``varbinds`` counts the trap's own objects, without sysUpTime.0, snmpTrapOID.0 and the RFC 3584 objects below.

SNMPv1 traps arrive in the v2 form: pysnmp's notification receiver translates them per RFC 3584 3.1 before
they reach ``trap_event`` (generic-trap 0..5 -> snmpTraps.1..6, i.e. 1.3.6.1.6.3.1.1.5.1..6;
enterpriseSpecific(6) -> <enterprise>.0.<specific-trap>) and appends snmpTrapAddress.0, snmpTrapCommunity.0
and snmpTrapEnterprise.0. The community is a secret and never goes into an event.

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
import re
import socket
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal

from pydantic import Field, field_validator, model_validator

from agent._compat import pysnmp as pysnmp_compat
from agent.sources import Emit, SourceError
from zonewatch import strict
from zonewatch.wire import Event, FieldValue

# pysnmp (and pyasn1) cost the probe about 18 MB of memory, so they are imported when a trap source is first
# made, not when the configuration is read. pysnmp reaches pysmi (deprecated names, when pysmi is installed)
# only through its MIB compiler module; its warnings are silenced for that module only, as in agent.snmpclient.
ber_decoder: Any = None
PyAsn1Error: Any = None
univ: Any = None
udp: Any = None
udp6: Any = None
snmp_config: Any = None
snmp_engine: Any = None
ntfrcv: Any = None
rfc1902: Any = None
v2c: Any = None
SNMPv3Message: Any = None
UsmSecurityParameters: Any = None
_AUTH: dict[str, Any] = {}
_PRIV: dict[str, Any] = {}


def _load_pysnmp() -> None:
    """Import pysnmp and pyasn1 into this module's names, once."""
    global ber_decoder, PyAsn1Error, univ, udp, udp6, snmp_config, snmp_engine, ntfrcv, rfc1902, v2c
    global SNMPv3Message, UsmSecurityParameters
    if snmp_engine is not None:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pysnmp\.smi\.compiler")
        from pyasn1.codec.ber import decoder as ber_decoder
        from pyasn1.error import PyAsn1Error
        from pyasn1.type import univ
        from pysnmp.carrier.asyncio.dgram import udp, udp6
        from pysnmp.entity import config as snmp_config
        from pysnmp.entity import engine as snmp_engine
        from pysnmp.entity.rfc3413 import ntfrcv
        from pysnmp.proto import rfc1902
        from pysnmp.proto.api import v2c
        from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message
        from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters
    _AUTH.update({
        "SHA": snmp_config.USM_AUTH_HMAC96_SHA,
        "SHA256": snmp_config.USM_AUTH_HMAC192_SHA256,
        "MD5": snmp_config.USM_AUTH_HMAC96_MD5,
    })
    # AES256 is the draft-blumenthal key extension, as net-snmp's "AES-256" (and agent.snmpclient).
    _PRIV.update({
        "AES": snmp_config.USM_PRIV_CFB128_AES,
        "AES256": snmp_config.USM_PRIV_CFB256_AES_BLUMENTHAL,
        "DES": snmp_config.USM_PRIV_CBC56_DES,
    })


__all__ = [
    "TrapsConfig",
    "V3TrapUser",
    "TrapsSource",
    "TrapError",
    "TrapValue",
    "VarBind",
    "STATS_KEYS",
    "trap_event",
    "plain_var_binds",
]

log = logging.getLogger(__name__)

TrapValue = int | str | bytes | None
VarBind = tuple[str, TrapValue]

# The notification envelope (RFC 3416 4.2.6) and what RFC 3584 3.1 adds to a translated v1 trap.
SYS_UPTIME: Final = "1.3.6.1.2.1.1.3.0"
SNMP_TRAP_OID: Final = "1.3.6.1.6.3.1.1.4.1.0"
SNMP_TRAP_ADDRESS: Final = "1.3.6.1.6.3.18.1.3.0"
SNMP_TRAP_COMMUNITY: Final = "1.3.6.1.6.3.18.1.4.0"
SNMP_TRAP_ENTERPRISE: Final = "1.3.6.1.6.3.1.1.4.3.0"
_ENVELOPE: Final = frozenset({SYS_UPTIME, SNMP_TRAP_OID, SNMP_TRAP_ADDRESS, SNMP_TRAP_COMMUNITY, SNMP_TRAP_ENTERPRISE})

COLD_START: Final = "1.3.6.1.6.3.1.1.5.1"
WARM_START: Final = "1.3.6.1.6.3.1.1.5.2"
LINK_DOWN: Final = "1.3.6.1.6.3.1.1.5.3"
LINK_UP: Final = "1.3.6.1.6.3.1.1.5.4"

IF_INDEX: Final = "1.3.6.1.2.1.2.2.1.1"
IF_DESCR: Final = "1.3.6.1.2.1.2.2.1.2"
IF_ADMIN_STATUS: Final = "1.3.6.1.2.1.2.2.1.7"
IF_OPER_STATUS: Final = "1.3.6.1.2.1.2.2.1.8"
IF_NAME: Final = "1.3.6.1.2.1.31.1.1.1.1"
IF_NOT_PRESENT: Final = 6   # ifOperStatus notPresent(6): the port's hardware (module, cage, card) is missing

UPS_TRAP_ON_BATTERY: Final = "1.3.6.1.2.1.33.2.1"
UPS_TRAP_ALARM_ADDED: Final = "1.3.6.1.2.1.33.2.3"
UPS_TRAP_ALARM_REMOVED: Final = "1.3.6.1.2.1.33.2.4"
UPS_SECONDS_ON_BATTERY: Final = "1.3.6.1.2.1.33.1.2.2"
UPS_MINUTES_REMAINING: Final = "1.3.6.1.2.1.33.1.2.3"
UPS_ALARM_DESCR: Final = "1.3.6.1.2.1.33.1.6.2.1.2"
UPS_ALARM_ON_BATTERY: Final = "1.3.6.1.2.1.33.1.6.3.2"
UPS_ALARM_LOW_BATTERY: Final = "1.3.6.1.2.1.33.1.6.3.3"
UPS_ALARM_DEPLETED_BATTERY: Final = "1.3.6.1.2.1.33.1.6.3.4"

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

# pysnmp's own statistics (RFC 3412/3414/3418 counters), each moved by one kind of drop.
_ENGINE_COUNTERS: Final = (
    ("__SNMPv2-MIB", "snmpInBadCommunityNames", "bad_community"),
    ("__SNMPv2-MIB", "snmpInBadCommunityUses", "bad_community"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsUnknownUserNames", "unknown_user"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsUnknownEngineIDs", "unknown_engine_id"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsWrongDigests", "wrong_auth_key"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsDecryptionErrors", "wrong_priv_key"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsNotInTimeWindows", "not_in_time_window"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsUnsupportedSecLevels", "not_auth_priv"),
    ("__SNMP-MPD-MIB", "snmpUnknownPDUHandlers", "not_a_trap"),
    ("__SNMPv2-MIB", "snmpInASNParseErrs", "malformed"),
    ("__SNMPv2-MIB", "snmpInBadVersions", "malformed"),
    ("__SNMP-MPD-MIB", "snmpInvalidMsgs", "malformed"),
    ("__SNMP-MPD-MIB", "snmpUnknownSecurityModels", "malformed"),
)


_MAX_TAG: Final = 256
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1  # an ifIndex beyond this is no ifIndex (IF-MIB: 1..2^31-1)
_MAX_LOGGED: Final = 1024  # (sender, reason) pairs remembered for log-once; spoofed senders cannot grow it
_OID: Final = re.compile(r"^[0-9]+(?:\.[0-9]+)+$")
_HEX: Final = re.compile(r"^[0-9a-fA-F]+$")
_V3_SECURITY_MODEL: Final = 3
_AUTH_PRIV: Final = 3


# ---------------------------------------------------------------------------------------------- config


class V3TrapUser(strict.Strict):
    """One SNMPv3 user that sends traps, tied to the engine ID of the device that sends them."""

    user: str = Field(min_length=1, max_length=32)
    auth_key: strict.Secret
    priv_key: strict.Secret
    auth_protocol: Literal["SHA", "SHA256", "MD5"] = "SHA"
    priv_protocol: Literal["AES", "AES256", "DES"] = "AES"
    engine_id: str

    @field_validator("engine_id", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Any:
        """Ask for quotes when YAML read the engine ID as a number."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(f"write the engine ID in quotes: YAML reads {value!r} as a number")
        return value

    @field_validator("engine_id")
    @classmethod
    def _engine_id(cls, value: str) -> str:
        """Return the engine ID as lowercase hex without a 0x prefix."""
        text = value.strip()
        digits = text[2:] if text[:2].lower() == "0x" else text
        if not _HEX.match(digits) or len(digits) % 2:
            raise ValueError(f"expected the sender's engine ID as hex digits (like '80001f8880...'), got {value!r}")
        if not 5 <= len(digits) // 2 <= 32:
            raise ValueError(f"an engine ID is 5 to 32 bytes (10 to 64 hex digits), got {len(digits) // 2} bytes")
        return digits.lower()

    @field_validator("auth_key", "priv_key")
    @classmethod
    def _long_enough(cls, value: Any) -> Any:
        """Refuse keys shorter than the 8 characters USM requires (RFC 3414 11.2)."""
        if len(value.get_secret_value()) < 8:
            raise ValueError("must be at least 8 characters (RFC 3414)")
        return value


class TrapsConfig(strict.Strict):
    """The SNMP trap receiver (``type: traps`` in the agent's ``sources``)."""

    type: Literal["traps"]
    name: str = Field(default="traps", min_length=1, max_length=_MAX_TAG)
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
            if not device or len(device) > _MAX_TAG:
                raise ValueError(f"{address}: the device id must be 1 to {_MAX_TAG} characters")
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


# ---------------------------------------------------------------------------------------------- mapping


class TrapError(ValueError):
    """A notification that cannot be turned into an event; ``reason`` is a key of ``stats``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def trap_event(var_binds: Sequence[VarBind], device: str, time_ns: int) -> Event:
    """Return the event for one trap's varbinds (SNMPv2 form, dotted OIDs) from ``device``."""
    trap_oid = _trap_oid(var_binds)
    objects = [(oid, value) for oid, value in var_binds if oid not in _ENVELOPE]
    tags = {"device": device}
    if trap_oid in (LINK_DOWN, LINK_UP):
        return _link_event("link_down" if trap_oid == LINK_DOWN else "link_up", objects, tags, time_ns)
    if trap_oid in (COLD_START, WARM_START):
        return Event("device_restarted", tags, {"cold": trap_oid == COLD_START}, time_ns)
    if trap_oid == UPS_TRAP_ON_BATTERY:
        fields: dict[str, FieldValue] = {"cleared": False}
        minutes = _scalar(objects, UPS_MINUTES_REMAINING)
        seconds = _scalar(objects, UPS_SECONDS_ON_BATTERY)
        if minutes is not None and minutes >= 0:  # -1: the UPS does not estimate it
            fields["battery_minutes"] = minutes
        if seconds is not None and seconds >= 0:
            fields["seconds_on_battery"] = seconds
        return Event("power_on_battery", tags, fields, time_ns)
    if trap_oid in (UPS_TRAP_ALARM_ADDED, UPS_TRAP_ALARM_REMOVED):
        cleared = trap_oid == UPS_TRAP_ALARM_REMOVED
        alarm = _ups_alarm(objects)
        if alarm == UPS_ALARM_ON_BATTERY:
            return Event("power_on_battery", tags, {"cleared": cleared}, time_ns)
        if alarm in (UPS_ALARM_LOW_BATTERY, UPS_ALARM_DEPLETED_BATTERY):
            depleted = alarm == UPS_ALARM_DEPLETED_BATTERY
            return Event("battery_low", tags, {"cleared": cleared, "depleted": depleted}, time_ns)
        other = {**tags, "trap_oid": trap_oid, **({"alarm": alarm} if alarm else {})}
        return Event("trap", other, {"varbinds": len(objects), "cleared": cleared}, time_ns)
    return Event("trap", {**tags, "trap_oid": trap_oid}, {"varbinds": len(objects)}, time_ns)


def _trap_oid(var_binds: Sequence[VarBind]) -> str:
    """Return the value of snmpTrapOID.0; raise TrapError when it is missing or not an OID."""
    value = next((v for oid, v in var_binds if oid == SNMP_TRAP_OID), None)
    if not isinstance(value, str) or not _OID.match(value):
        raise TrapError("malformed", "the notification has no snmpTrapOID.0 object identifier")
    if len(value) > _MAX_TAG:
        raise TrapError("malformed", f"snmpTrapOID.0 is longer than {_MAX_TAG} characters")
    return value


def _link_event(name: str, objects: Sequence[VarBind], tags: dict[str, str], time_ns: int) -> Event:
    """Return a link_down/link_up event from the ifIndex, ifAdminStatus, ifOperStatus (and ifName) varbinds."""
    columns: dict[str, tuple[int | None, TrapValue]] = {}
    for oid, value in objects:
        column, _, instance = oid.rpartition(".")
        if column in (IF_INDEX, IF_ADMIN_STATUS, IF_OPER_STATUS, IF_NAME, IF_DESCR) and column not in columns:
            columns[column] = (_instance(instance), value)
    index = _int(columns.get(IF_INDEX, (None, None))[1])
    if index is not None and not _INT64_MIN <= index <= _INT64_MAX:
        index = None
    if index is None:  # no usable ifIndex varbind: the instance of the status columns is the ifIndex
        index = next((columns[c][0] for c in (IF_OPER_STATUS, IF_ADMIN_STATUS, IF_INDEX) if c in columns), None)
    ifname = _text(columns.get(IF_NAME, (None, None))[1]) or _text(columns.get(IF_DESCR, (None, None))[1])
    if ifname:
        tags = {**tags, "ifname": ifname}
    fields: dict[str, FieldValue] = {}
    if index is not None:
        fields["if_index"] = index
    for key, column in (("admin_up", IF_ADMIN_STATUS), ("oper_up", IF_OPER_STATUS)):
        status = _int(columns.get(column, (None, None))[1])
        if status is not None:
            fields[key] = status == 1
    if _int(columns.get(IF_OPER_STATUS, (None, None))[1]) == IF_NOT_PRESENT:
        fields["present"] = False
    return Event(name, tags, fields, time_ns)


def _instance(arc: str) -> int | None:
    """Return the last arc of an OID as a number (an ifIndex), None if it is not one arc within 64 bits."""
    if not (arc.isascii() and arc.isdigit()) or len(arc) > 19:  # also keeps int() far from its digit limit
        return None
    value = int(arc)
    return value if value <= _INT64_MAX else None


def _scalar(objects: Sequence[VarBind], column: str) -> int | None:
    """Return the integer value of scalar ``column`` (``.0`` instance, or none as some agents send)."""
    return next((_int(v) for oid, v in objects if oid in (f"{column}.0", column)), None)


def _ups_alarm(objects: Sequence[VarBind]) -> str | None:
    """Return the well-known alarm OID carried in upsAlarmDescr, if any."""
    prefix = UPS_ALARM_DESCR + "."
    value = next((v for oid, v in objects if oid.startswith(prefix)), None)
    return value if isinstance(value, str) and _OID.match(value) and len(value) <= _MAX_TAG else None


def _int(value: TrapValue) -> int | None:
    """Return ``value`` if it is an integer (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: TrapValue) -> str | None:
    """Return a DisplayString varbind as a tag value (printable, at most 256 characters), else None."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    text = "".join(c for c in value if c.isprintable()).strip()
    return text[:_MAX_TAG] or None


def plain_var_binds(var_binds: Iterable[tuple[Any, Any]]) -> list[VarBind]:
    """Return pysnmp varbinds as (dotted OID, plain value) pairs for ``trap_event``."""
    _load_pysnmp()
    return [(_dotted(name), _plain(value)) for name, value in var_binds]


def _dotted(name: Any) -> str:
    """Return an OID (pysnmp object, tuple or string) as dotted text without a leading dot."""
    return ".".join(str(n) for n in univ.ObjectIdentifier(name).asTuple())


def _plain(value: Any) -> TrapValue:
    """Return INTEGER-like values as int, OCTET STRING as bytes, OID and IpAddress as str, others as None."""
    _load_pysnmp()
    try:
        if isinstance(value, univ.Null):  # also noSuchObject, noSuchInstance, endOfMibView
            return None
        if isinstance(value, rfc1902.IpAddress):
            return ".".join(str(b) for b in value.asNumbers())
        if isinstance(value, univ.ObjectIdentifier):
            return _dotted(value)
        if isinstance(value, univ.OctetString):
            return bytes(value.asOctets())
        if isinstance(value, univ.Integer):
            return int(value)
    except PyAsn1Error:  # a value without a value
        return None
    return None


# ---------------------------------------------------------------------------------------------- source


def _new_engine(config: TrapsConfig) -> Any:
    """Return a pysnmp engine that accepts the configured communities and v3 users (no I/O)."""
    _load_pysnmp()
    engine = snmp_engine.SnmpEngine()
    communities = dict.fromkeys(c.get_secret_value() for c in config.communities)
    for i, community in enumerate(communities):
        snmp_config.add_v1_system(engine, f"zw-trap-{i}", community)
    for user in config.v3_users:
        snmp_config.add_v3_user(
            engine,
            user.user,
            _AUTH[user.auth_protocol],
            user.auth_key.get_secret_value(),
            _PRIV[user.priv_protocol],
            user.priv_key.get_secret_value(),
            securityEngineId=v2c.OctetString(hexValue=user.engine_id),
        )
    return engine


def _v3_identity(datagram: bytes) -> tuple[str, str] | None:
    """Return the (user name, engine ID in hex) an SNMPv3 datagram claims, or None if it is not one."""
    _load_pysnmp()
    try:
        message, _ = ber_decoder.decode(datagram, asn1Spec=SNMPv3Message())
        params, _ = ber_decoder.decode(bytes(message["msgSecurityParameters"]), asn1Spec=UsmSecurityParameters())
        user = bytes(params["msgUserName"]).decode("utf-8", errors="replace")
        return "".join(c for c in user if c.isprintable())[:64], bytes(params["msgAuthoritativeEngineId"]).hex()
    except Exception:  # noqa: BLE001 - anything that does not decode is "not SNMPv3"
        return None


class TrapsSource:
    """Receive SNMP traps on one UDP address and emit each as an event (the ``Listener`` contract)."""

    def __init__(self, config: TrapsConfig, clock: Callable[[], int] = time.time_ns) -> None:
        _load_pysnmp()
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
            transport = (udp6.Udp6Transport() if v6 else udp.UdpTransport()).open_server_mode(sock=sock)
            snmp_config.add_transport(self._engine, udp6.DOMAIN_NAME if v6 else udp.DOMAIN_NAME, transport)
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
        domain = udp6.DOMAIN_NAME if len(address) > 2 else udp.DOMAIN_NAME
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
            identity = _v3_identity(datagram)
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
        engine = _new_engine(self.config)
        builder = engine.get_mib_builder()
        self._counters = [(builder.import_symbols(module, symbol)[0], reason)
                          for module, symbol, reason in _ENGINE_COUNTERS]
        self._receiver = ntfrcv.NotificationReceiver(engine, self._on_notification)
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
