"""Commands the collector sends one probe (the contract: ``zonewatch.wire``, "Commands")."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

from zonewatch.wire.core import _NAME, MAX_SEQ, WireError, read_envelope, valid_name

COMMAND_SCHEMA_VERSION: Final = 1
MAX_COMMAND_BYTES: Final = 4096
DIAGNOSTIC_ROUND: Final = "diagnostic_round"
COMMAND_KINDS: Final = (DIAGNOSTIC_ROUND,)
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
_PLMN = re.compile(r"^\d{3}-\d{2,3}\Z")
_REASON = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}\Z")
_KEYS: Final = frozenset({"v", "id", "zone", "probe", "kind", "issued_ns", "expires_ns", "args"})
_ROUND_KEYS: Final = frozenset({"carrier", "modem", "transfers", "reason"})


@dataclass(frozen=True, slots=True)
class DiagnosticRound:
    """Run every active test of the carrier's modem once, now (``agent.sources.qos``: ``request_round``)."""

    carrier: str          # the modem's carrier (PLMN)
    modem: str            # the modem's name (the ``modem`` tag); "" for every modem on the carrier
    transfers: bool       # the downloads and uploads too (the probe's SIM budget still decides)
    reason: str           # the alert that asked for it (``DataAccessFailure`` ...)


@dataclass(frozen=True, slots=True)
class Command:
    """One command for one probe (a message on its ``command`` topic)."""

    id: str               # unique per command: a probe runs each once
    zone: str
    probe: str
    issued_ns: int
    expires_ns: int       # the probe ignores the command past this time (its own clock)
    action: DiagnosticRound
    v: int = COMMAND_SCHEMA_VERSION

    @property
    def kind(self) -> str:
        """Return the command's kind (one of ``COMMAND_KINDS``)."""
        return DIAGNOSTIC_ROUND

    def expired(self, now_ns: int) -> bool:
        """Return True if the command is too old to act on at ``now_ns``."""
        return now_ns >= self.expires_ns


def _check_names(zone: Any, probe: Any) -> None:
    for what, value in (("zone", zone), ("probe", probe)):
        if not isinstance(value, str) or not valid_name(value):
            raise WireError("bad_schema", f"'{what}' {value!r} must be a string matching {_NAME.pattern}")


def _check_round(args: Any) -> DiagnosticRound:
    if not isinstance(args, dict) or args.keys() != _ROUND_KEYS:
        odd = sorted(set(args) ^ _ROUND_KEYS) if isinstance(args, dict) else ["args"]
        raise WireError("bad_schema", f"diagnostic_round: args key {odd[0]!r} is unknown or missing")
    carrier, modem, transfers, reason = args["carrier"], args["modem"], args["transfers"], args["reason"]
    if not isinstance(carrier, str) or not _PLMN.match(carrier):
        raise WireError("bad_schema", f"'carrier' {carrier!r} must be a PLMN such as 452-04")
    if not isinstance(modem, str) or len(modem) > 256:
        raise WireError("bad_schema", "'modem' must be text of at most 256 characters")
    if type(transfers) is not bool:
        raise WireError("bad_schema", f"'transfers' {transfers!r} must be true or false")
    if not isinstance(reason, str) or not _REASON.match(reason):
        raise WireError("bad_schema", f"'reason' {reason!r} must be an alert name")
    return DiagnosticRound(carrier, modem, transfers, reason)


def encode_command(command: Command) -> bytes:
    """Encode a command; raise WireError if it breaks the contract."""
    _check_names(command.zone, command.probe)
    if not _ID.match(command.id):
        raise WireError("bad_schema", f"id {command.id!r} must match {_ID.pattern}")
    a = command.action
    args = {"carrier": a.carrier, "modem": a.modem, "transfers": a.transfers, "reason": a.reason}
    _check_round(args)
    if not 0 <= command.issued_ns < command.expires_ns <= MAX_SEQ:
        raise WireError("bad_schema", "expires_ns must come after issued_ns (both 63-bit, not negative)")
    payload = json.dumps({"v": command.v, "id": command.id, "zone": command.zone, "probe": command.probe,
                          "kind": command.kind, "issued_ns": command.issued_ns, "expires_ns": command.expires_ns,
                          "args": args}, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(payload) > MAX_COMMAND_BYTES:
        raise WireError("too_large", f"{len(payload)} bytes, at most {MAX_COMMAND_BYTES}")
    return payload


def decode_command(payload: bytes | bytearray | str) -> Command:
    """Decode and check a command; raise WireError (``reason``: ``too_large``, ``not_json``,
    ``unsupported_version``, ``bad_schema``, ``unknown_kind``) naming what is wrong. Expiry is the receiver's
    to judge (``Command.expired``), by its own clock."""
    doc = read_envelope(payload, MAX_COMMAND_BYTES, COMMAND_SCHEMA_VERSION, _KEYS, "command")
    if doc["kind"] not in COMMAND_KINDS:
        raise WireError("unknown_kind", f"command kind {doc['kind']!r} is not one of {', '.join(COMMAND_KINDS)}")
    _check_names(doc["zone"], doc["probe"])
    if not isinstance(doc["id"], str) or not _ID.match(doc["id"]):
        raise WireError("bad_schema", f"'id' {doc['id']!r} must match {_ID.pattern}")
    issued, expires = doc["issued_ns"], doc["expires_ns"]
    if type(issued) is not int or type(expires) is not int or not 0 <= issued < expires <= MAX_SEQ:
        raise WireError("bad_schema", "'issued_ns' and 'expires_ns' must be integers, expires_ns the later")
    return Command(doc["id"], doc["zone"], doc["probe"], issued, expires, _check_round(doc["args"]))
