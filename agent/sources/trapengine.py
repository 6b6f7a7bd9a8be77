"""The pysnmp side of the trap receiver: who may send (SNMPv3 users, communities) and plain varbinds.

``V3TrapUser`` is the config of one SNMPv3 sender (part of ``TrapsConfig``); its protocols are the keys of the
pysnmp constants here. The receiver (``agent.sources.traps``) builds its engine here (``new_engine``), reads the
engine's drop counters (``ENGINE_COUNTERS``), names the SNMPv3 user of a refused datagram (``v3_identity``) and
hands each notification's varbinds to ``agent.sources.trapmap`` as plain values (``plain_var_binds``). The pysnmp
internals the receiver reaches into are read in ``agent._compat.pysnmp``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import Field, field_validator

from agent.sources.trapmap import TrapValue, VarBind
from zonewatch import strict

if TYPE_CHECKING:
    from agent.sources.traps import TrapsConfig

__all__ = ["V3TrapUser", "ENGINE_COUNTERS", "load_pysnmp", "new_engine", "v3_identity", "plain_var_binds"]

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


def load_pysnmp() -> None:
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


_HEX: Final = re.compile(r"^[0-9a-fA-F]+$")


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


# pysnmp's own statistics (RFC 3412/3414/3418 counters), each moved by one kind of drop.
ENGINE_COUNTERS: Final = (
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


def new_engine(config: TrapsConfig) -> Any:
    """Return a pysnmp engine that accepts the configured communities and v3 users (no I/O)."""
    load_pysnmp()
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


def v3_identity(datagram: bytes) -> tuple[str, str] | None:
    """Return the (user name, engine ID in hex) an SNMPv3 datagram claims, or None if it is not one."""
    load_pysnmp()
    try:
        message, _ = ber_decoder.decode(datagram, asn1Spec=SNMPv3Message())
        params, _ = ber_decoder.decode(bytes(message["msgSecurityParameters"]), asn1Spec=UsmSecurityParameters())
        user = bytes(params["msgUserName"]).decode("utf-8", errors="replace")
        return "".join(c for c in user if c.isprintable())[:64], bytes(params["msgAuthoritativeEngineId"]).hex()
    except Exception:  # noqa: BLE001 - anything that does not decode is "not SNMPv3"
        return None


def plain_var_binds(var_binds: Iterable[tuple[Any, Any]]) -> list[VarBind]:
    """Return pysnmp varbinds as (dotted OID, plain value) pairs for ``trap_event``."""
    load_pysnmp()
    return [(_dotted(name), _plain(value)) for name, value in var_binds]


def _dotted(name: Any) -> str:
    """Return an OID (pysnmp object, tuple or string) as dotted text without a leading dot."""
    return ".".join(str(n) for n in univ.ObjectIdentifier(name).asTuple())


def _plain(value: Any) -> TrapValue:
    """Return INTEGER-like values as int, OCTET STRING as bytes, OID and IpAddress as str, others as None."""
    load_pysnmp()
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
