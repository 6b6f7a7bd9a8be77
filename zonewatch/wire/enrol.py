"""Enrolment: a new probe's request and the collector's sealed reply (the contract: ``zonewatch.wire``,
"Enrolment")."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from zonewatch.wire.core import (
    _NAME,
    MAX_SEQ,
    SCHEMA_VERSION,
    SUPPORTED_VERSIONS,
    TOPIC_ROOT,
    WireError,
    valid_name,
)

# ---------------------------------------------------------------------------------------------- enrolment
#
# A new probe asks to be admitted with its zone's bootstrap credential, which may publish requests and read replies
# and nothing else (the broker's ACL, ``collector.mosquitto``). Its topics sit one level deeper than a probe's, so
# no filter of the collector's ingest (``zw/v1/+/+/<kind>``) can match one, and no zone may be called ``enrol``:
#
#     zw/v1/enrol/{zone}/{request}/request   the probe's request (JSON below), QoS 1; sent again until answered
#     zw/v1/enrol/{zone}/{request}/reply     retained, collector to probe: {"v", "request", "sealed"}
#
# ``request`` is the id of the probe's public key (``enrol_request_id``), so a request names the key it comes with,
# and sending it again is the same request. The request::
#
#     {"v": 1, "zone": "dinh-vu", "key": "<base64 of a 32-byte X25519 public key>", "probe": "p3",
#      "machine_id": "<32 hex digits>", "modems": [{"name": "viettel", "imei": "867962040012345",
#      "iccid": "89840480000012345678"}], "sent_ns": 1764290000000000000}
#
# ``probe`` is the id the probe asks for (the collector's operator may give another), ``machine_id`` and ``modems``
# are the hardware identity a field engineer can check (either may be null or empty), ``sent_ns`` is the probe's
# clock (shown, never trusted: a probe without a real-time clock may be years off before NTP). ``sealed`` is the
# answer (``EnrolAnswer`` as JSON) sealed to ``key`` (libsodium's sealed box): only the holder of the private key
# can open it, though every holder of the bootstrap credential may read the reply topics.

ENROL_ZONE: Final = "enrol"        # reserved: the first level of enrolment topics, never a zone id
ENROL_MAX_BYTES: Final = 4096      # a request, or a reply, as published
ENROL_MAX_MODEMS: Final = 8
_ENROL_KINDS: Final = ("request", "reply")
_REQUEST_ID = re.compile(r"^[0-9a-f]{32}\Z")
_MACHINE_ID = re.compile(r"^[0-9a-f]{32}\Z")
_IMEI = re.compile(r"^[0-9]{14,16}\Z")          # 15 digits; 14 without the check digit, 16 as IMEISV
_ICCID = re.compile(r"^[0-9]{18,22}F?\Z")       # ITU-T E.118: up to 22 digits, an F pads an odd count
_REQUEST_KEYS = frozenset({"v", "zone", "key", "probe", "machine_id", "modems", "sent_ns"})
_MODEM_KEYS = frozenset({"name", "imei", "iccid"})
EnrolKind = Literal["request", "reply"]


@dataclass(frozen=True, slots=True)
class ModemIdentity:
    """One modem of a probe asking to be enrolled: its name in the agent's configuration, IMEI and SIM ICCID."""

    name: str
    imei: str | None = None
    iccid: str | None = None


@dataclass(frozen=True, slots=True)
class EnrolRequest:
    """What a new probe sends: its zone, its public key, the id it asks for and its hardware identity."""

    zone: str
    key: bytes
    probe: str | None = None
    machine_id: str | None = None
    modems: tuple[ModemIdentity, ...] = ()
    sent_ns: int = 0
    version: int = SCHEMA_VERSION

    @property
    def request_id(self) -> str:
        """Return the id of this request: that of its key."""
        return enrol_request_id(self.key)


@dataclass(frozen=True, slots=True)
class EnrolAnswer:
    """What the sealed reply holds: approved (with the probe's id and MQTT credentials) or rejected (why)."""

    request: str
    status: Literal["approved", "rejected"]
    zone: str | None = None
    probe: str | None = None
    username: str | None = None
    password: str | None = None
    reason: str | None = None


def enrol_topic(zone: str, request: str, kind: EnrolKind) -> str:
    """Return the topic of ``kind`` for request ``request`` in ``zone``."""
    if not valid_name(zone) or zone == ENROL_ZONE:
        raise WireError("bad_name", f"zone {zone!r} must match {_NAME.pattern} and not be {ENROL_ZONE!r}")
    if not _REQUEST_ID.match(request):
        raise WireError("bad_name", f"request {request!r} must be 32 lowercase hex digits")
    if kind not in _ENROL_KINDS:
        raise WireError("bad_topic", f"kind {kind!r} is not one of {', '.join(_ENROL_KINDS)}")
    return f"{TOPIC_ROOT}/{ENROL_ZONE}/{zone}/{request}/{kind}"


def enrol_subscription(kind: EnrolKind, zone: str = "+") -> str:
    """Return the topic filter matching ``kind`` of every request (of one zone, or all)."""
    return f"{TOPIC_ROOT}/{ENROL_ZONE}/{zone}/+/{kind}"


def parse_enrol_topic(name: str) -> tuple[str, str, EnrolKind]:
    """Split an enrolment topic into zone, request id and kind."""
    parts = name.split("/")
    if len(parts) != 6 or "/".join(parts[:3]) != f"{TOPIC_ROOT}/{ENROL_ZONE}":
        raise WireError("bad_topic", f"{name[:200]!r} is not {TOPIC_ROOT}/{ENROL_ZONE}/<zone>/<request>/<kind>")
    zone, request, kind = parts[3], parts[4], parts[5]
    if not valid_name(zone) or zone == ENROL_ZONE or not _REQUEST_ID.match(request) or kind not in _ENROL_KINDS:
        raise WireError("bad_topic", f"{name[:200]!r}: expected a zone id, 32 hex digits and request or reply")
    return zone, request, "request" if kind == "request" else "reply"


def enrol_request_id(key: bytes) -> str:
    """Return the id of a public key: the first 16 bytes of its SHA-256, in hex."""
    return hashlib.sha256(key).hexdigest()[:32]


def enrol_fingerprint(key: bytes) -> str:
    """Return a public key's id as a field engineer reads it aloud: eight groups of four hex digits."""
    rid = enrol_request_id(key)
    return " ".join(rid[i:i + 4] for i in range(0, 32, 4))


def encode_enrol_request(request: EnrolRequest) -> bytes:
    """Return the JSON of a request (checked as the collector will check it)."""
    doc = {"v": request.version, "zone": request.zone, "key": base64.b64encode(request.key).decode("ascii"),
           "probe": request.probe, "machine_id": request.machine_id,
           "modems": [{"name": m.name, "imei": m.imei, "iccid": m.iccid} for m in request.modems],
           "sent_ns": request.sent_ns}
    payload = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    decode_enrol_request(payload)
    return payload


def decode_enrol_request(payload: bytes | bytearray | str, max_bytes: int = ENROL_MAX_BYTES) -> EnrolRequest:
    """Return the request a payload holds, or raise WireError naming what is wrong (every field is bounded)."""
    if len(payload) > max_bytes:
        raise WireError("too_large", f"{len(payload)} bytes, at most {max_bytes}")
    doc = _enrol_json(payload)
    extra = set(doc) - _REQUEST_KEYS
    if extra:
        known = ", ".join(sorted(_REQUEST_KEYS))
        raise WireError("bad_schema", f"unknown key {sorted(extra)[0][:40]!r} (known: {known})")
    version = doc.get("v")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        raise WireError("bad_version", f"v {str(version)[:20]!r} is not one of {sorted(SUPPORTED_VERSIONS)}")
    zone = doc.get("zone")
    if not isinstance(zone, str) or not valid_name(zone) or zone == ENROL_ZONE:
        raise WireError("bad_name", f"zone {str(zone)[:70]!r} must match {_NAME.pattern}")
    key = _b64(doc.get("key"), "key")
    if len(key) != 32:
        raise WireError("bad_key", f"key is {len(key)} bytes, expected a 32-byte X25519 public key")
    probe = doc.get("probe")
    if probe is not None and (not isinstance(probe, str) or not valid_name(probe)):
        raise WireError("bad_name", f"probe {str(probe)[:70]!r} must match {_NAME.pattern}")
    machine_id = doc.get("machine_id")
    if machine_id is not None and (not isinstance(machine_id, str) or not _MACHINE_ID.match(machine_id)):
        raise WireError("bad_identity", f"machine_id {str(machine_id)[:40]!r} must be 32 lowercase hex digits")
    modems = doc.get("modems", [])
    if not isinstance(modems, list) or len(modems) > ENROL_MAX_MODEMS:
        raise WireError("bad_identity", f"modems must be a list of at most {ENROL_MAX_MODEMS}")
    sent_ns = doc.get("sent_ns", 0)
    if type(sent_ns) is not int or not 0 <= sent_ns <= MAX_SEQ:
        raise WireError("bad_time", "sent_ns must be a non-negative integer of nanoseconds")
    return EnrolRequest(zone, key, probe, machine_id, tuple(_modem(m, i) for i, m in enumerate(modems)), sent_ns,
                        version)


def _modem(doc: Any, i: int) -> ModemIdentity:
    where = f"modems[{i}]"
    if not isinstance(doc, dict) or set(doc) - _MODEM_KEYS:
        raise WireError("bad_identity", f"{where} must be an object with {', '.join(sorted(_MODEM_KEYS))}")
    name, imei, iccid = doc.get("name"), doc.get("imei"), doc.get("iccid")
    if not isinstance(name, str) or not 0 < len(name) <= 64 or not name.isprintable():
        raise WireError("bad_identity", f"{where}.name must be printable text of 1 to 64 characters")
    if imei is not None and (not isinstance(imei, str) or not _IMEI.match(imei)):
        raise WireError("bad_identity", f"{where}.imei {str(imei)[:40]!r} must be 14 to 16 digits")
    if iccid is not None and (not isinstance(iccid, str) or not _ICCID.match(iccid)):
        raise WireError("bad_identity", f"{where}.iccid {str(iccid)[:40]!r} must be 18 to 22 digits (and an F)")
    return ModemIdentity(name, imei, iccid)


def encode_enrol_answer(answer: EnrolAnswer) -> bytes:
    """Return the JSON of an answer (the plaintext the collector seals), checked as the probe will check it."""
    doc = {"v": SCHEMA_VERSION, "request": answer.request, "status": answer.status, "zone": answer.zone,
           "probe": answer.probe, "username": answer.username, "password": answer.password, "reason": answer.reason}
    payload = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    decode_enrol_answer(payload)
    return payload


def decode_enrol_answer(plaintext: bytes) -> EnrolAnswer:
    """Return the answer an opened reply holds, or raise WireError naming what is wrong."""
    doc = _enrol_json(plaintext)
    request, status = doc.get("request"), doc.get("status")
    if not isinstance(request, str) or not _REQUEST_ID.match(request):
        raise WireError("bad_schema", "request must be 32 lowercase hex digits")
    if status == "rejected":
        reason = doc.get("reason")
        return EnrolAnswer(request, "rejected", reason=reason[:500] if isinstance(reason, str) else None)
    if status != "approved":
        raise WireError("bad_schema", f"status {str(status)[:20]!r} is not approved or rejected")
    zone, probe, username, password = (doc.get(k) for k in ("zone", "probe", "username", "password"))
    for what, value in (("zone", zone), ("probe", probe), ("username", username)):
        if not isinstance(value, str) or not valid_name(value):
            raise WireError("bad_name", f"{what} {str(value)[:70]!r} must match {_NAME.pattern}")
    if not isinstance(password, str) or not 16 <= len(password) <= 128 or not password.isprintable():
        raise WireError("bad_schema", "password must be 16 to 128 printable characters")
    return EnrolAnswer(request, "approved", zone, probe, username, password)


def encode_enrol_reply(request: str, sealed: bytes) -> bytes:
    """Return the reply the collector publishes: the request id and the sealed answer."""
    payload = json.dumps({"v": SCHEMA_VERSION, "request": request, "sealed": base64.b64encode(sealed).decode("ascii")},
                         separators=(",", ":")).encode("ascii")
    if len(payload) > ENROL_MAX_BYTES:
        raise WireError("too_large", f"reply of {len(payload)} bytes, at most {ENROL_MAX_BYTES}")
    return payload


def decode_enrol_reply(payload: bytes) -> tuple[str, bytes]:
    """Return (request id, sealed answer) of a reply, or raise WireError."""
    if len(payload) > ENROL_MAX_BYTES:
        raise WireError("too_large", f"{len(payload)} bytes, at most {ENROL_MAX_BYTES}")
    doc = _enrol_json(payload)
    request = doc.get("request")
    if not isinstance(request, str) or not _REQUEST_ID.match(request):
        raise WireError("bad_schema", "request must be 32 lowercase hex digits")
    return request, _b64(doc.get("sealed"), "sealed")


def _enrol_json(payload: bytes | bytearray | str) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise WireError("not_json", f"not JSON: {str(exc)[:80]}") from None
    if not isinstance(doc, dict):
        raise WireError("bad_schema", f"expected a JSON object, got {type(doc).__name__}")
    return doc


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or len(value) > 2 * ENROL_MAX_BYTES:
        raise WireError("bad_key", f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise WireError("bad_key", f"{what} is not valid base64") from None
