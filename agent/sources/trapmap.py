"""Trap -> event: the pure mapping from one trap's varbinds (SNMPv2 form, dotted OIDs) to its ``Event``.

The trap receiver (``agent.sources.traps``) calls ``trap_event`` for every trap it accepts, with the varbinds
``agent.sources.trapengine.plain_var_binds`` made plain. Nothing here imports pysnmp.

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
this agent whose name or host is the sender's) found notPresent (``TrapsSource.absent_ports``, set by the runner). A
device sends linkDown for its empty cages when it boots: those are no link going down (the collector does
not apply them, so they page no LinkDown). ``cleared`` is False when an alarm entry is added (and for
upsTrapOnBattery), True when it is removed. A value the trap does not carry is left out
(upsEstimatedMinutesRemaining -1 means "unsupported").
``varbinds`` counts the trap's own objects, without sysUpTime.0, snmpTrapOID.0 and the RFC 3584 objects below.

SNMPv1 traps arrive in the v2 form: pysnmp's notification receiver translates them per RFC 3584 3.1 before
they reach ``trap_event`` (generic-trap 0..5 -> snmpTraps.1..6, i.e. 1.3.6.1.6.3.1.1.5.1..6;
enterpriseSpecific(6) -> <enterprise>.0.<specific-trap>) and appends snmpTrapAddress.0, snmpTrapCommunity.0
and snmpTrapEnterprise.0. The community is a secret and never goes into an event.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from zonewatch.wire import Event, FieldValue

__all__ = ["TrapError", "TrapValue", "VarBind", "trap_event", "MAX_TAG"]

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

MAX_TAG: Final = 256
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1  # an ifIndex beyond this is no ifIndex (IF-MIB: 1..2^31-1)
_OID: Final = re.compile(r"^[0-9]+(?:\.[0-9]+)+$")


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
    if len(value) > MAX_TAG:
        raise TrapError("malformed", f"snmpTrapOID.0 is longer than {MAX_TAG} characters")
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
    return value if isinstance(value, str) and _OID.match(value) and len(value) <= MAX_TAG else None


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
    return text[:MAX_TAG] or None

