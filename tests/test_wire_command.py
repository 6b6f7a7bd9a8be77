"""The command contract (zonewatch.wire): a diagnostic round's message, its limits, and what a receiver refuses."""

from __future__ import annotations

import json

import pytest

from zonewatch import wire

ROUND = wire.DiagnosticRound("452-04", "viettel", False, "DataAccessFailure")
COMMAND = wire.Command("9f2c01", "z", "p1", 100, 700, ROUND)


def message(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = json.loads(wire.encode_command(COMMAND))
    doc.update(changes)
    return doc


def test_a_command_round_trips_on_its_own_topic() -> None:
    assert wire.decode_command(wire.encode_command(COMMAND)) == COMMAND
    assert wire.topic("z", "p1", "command") == "zw/v1/z/p1/command"
    assert wire.parse_topic("zw/v1/z/p1/command") == wire.Topic("z", "p1", "command")
    assert COMMAND.kind == "diagnostic_round" and message()["kind"] == "diagnostic_round"


def test_a_command_expires_by_the_receivers_clock() -> None:
    assert not COMMAND.expired(699) and COMMAND.expired(700)


@pytest.mark.parametrize(("payload", "reason", "detail"), [
    (b"{not json", "not_json", ""),
    (b"[1]", "bad_schema", "JSON list"),
    (json.dumps(message(v=2)).encode(), "unsupported_version", "command schema version 2"),
    (json.dumps(message(kind="reboot")).encode(), "unknown_kind", "'reboot'"),
    (json.dumps(message(extra=1)).encode(), "bad_schema", "key 'extra' is unknown"),
    (json.dumps({k: v for k, v in message().items() if k != "expires_ns"}).encode(), "bad_schema",
     "key 'expires_ns' is missing"),
    (json.dumps(message(expires_ns=50)).encode(), "bad_schema", "expires_ns the later"),
    (json.dumps(message(probe="P1")).encode(), "bad_schema", "'probe' 'P1'"),
    (json.dumps(message(id="a/b")).encode(), "bad_schema", "'id'"),
    (json.dumps(message(args={"carrier": "452-04"})).encode(), "bad_schema", "args key"),
    (json.dumps(message(args={**message()["args"], "carrier": "viettel"})).encode(),  # type: ignore[dict-item]
     "bad_schema", "PLMN"),
    (json.dumps(message(args={**message()["args"], "transfers": 1})).encode(),  # type: ignore[dict-item]
     "bad_schema", "'transfers'"),
    (b" " * (wire.MAX_COMMAND_BYTES + 1), "too_large", ""),
])
def test_a_broken_command_is_refused_with_the_reason(payload: bytes, reason: str, detail: str) -> None:
    with pytest.raises(wire.WireError) as caught:
        wire.decode_command(payload)
    assert caught.value.reason == reason and detail in str(caught.value)


def test_the_encoder_refuses_what_the_decoder_would() -> None:
    with pytest.raises(wire.WireError, match="expires_ns must come after"):
        wire.encode_command(wire.Command("x", "z", "p1", 5, 5, ROUND))
    with pytest.raises(wire.WireError, match="PLMN"):
        wire.encode_command(wire.Command("x", "z", "p1", 5, 6, wire.DiagnosticRound("x", "", False, "A")))
