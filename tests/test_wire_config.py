"""The desired-configuration contract (zonewatch.wire): the message, its limits, and the probe's report."""

from __future__ import annotations

import json

import pytest

from zonewatch import wire

TEXT = "probe: {id: p1, zone: z}\nsources: []\n"


def message(text: str = TEXT, **changes: object) -> dict[str, object]:
    doc: dict[str, object] = {"v": 1, "zone": "z", "probe": "p1", "version": 3, "hash": wire.config_hash(text),
                              "issued_ns": 5, "yaml": text}
    doc.update(changes)
    return doc


def test_a_desired_config_round_trips() -> None:
    desired = wire.DesiredConfig("z", "p1", 3, wire.config_hash(TEXT), 5, TEXT)
    assert wire.decode_config(wire.encode_config(desired)) == desired
    assert wire.config_hash(TEXT) == "sha256:" + __import__("hashlib").sha256(TEXT.encode()).hexdigest()


@pytest.mark.parametrize(("doc", "reason", "detail"), [
    (message(hash="sha256:" + "0" * 64), "bad_hash", "does not match"),
    (message(hash="md5:00"), "bad_schema", "sha256:<64 hex digits>"),
    (message(version=0), "bad_schema", "'version' 0"),
    (message(v=2), "unsupported_version", "config schema version 2"),
    (message(extra=1), "bad_schema", "key 'extra' is unknown"),
    ({k: v for k, v in message().items() if k != "issued_ns"}, "bad_schema", "key 'issued_ns' is missing"),
    (message(probe="P1"), "bad_schema", "'probe' 'P1'"),
])
def test_a_broken_message_is_refused_with_the_reason(doc: dict[str, object], reason: str, detail: str) -> None:
    with pytest.raises(wire.WireError) as caught:
        wire.decode_config(json.dumps(doc).encode())
    assert caught.value.reason == reason and detail in str(caught.value)


def test_a_config_over_the_brokers_packet_limit_is_not_published() -> None:
    text = "# " + "x" * wire.MAX_CONFIG_BYTES + "\n"
    with pytest.raises(wire.WireError, match=r"too_large: the desired configuration of probe z/p1 is 1048728 bytes, "
                                             r"at most 1048576 \(the broker's packet limit\)"):
        wire.encode_config(wire.DesiredConfig("z", "p1", 1, wire.config_hash(text), 0, text))
    with pytest.raises(wire.WireError, match="too_large"):
        wire.decode_config(b" " * (wire.MAX_CONFIG_BYTES + 1))


def test_the_report_travels_as_an_event_any_probe_may_send() -> None:
    report = wire.ConfigReport("rejected", "sha256:" + "a" * 64, 3, wire.LOCAL_CONFIG, 0,
                               "desired config v3:6: sources[0].timout: unknown\nkey " + "x" * 400, 0.25, 7)
    event = wire.config_report(report)
    assert event.name == "config" and "device" not in event.tags and "carrier" not in event.tags
    assert len(event.tags["error"]) == wire.MAX_TAG_VALUE and event.tags["error"].endswith("\u2026")
    assert "\n" not in event.tags["error"]
    batch = wire.decode(wire.encode(wire.Batch("z", "p1", 1, 7, events=(event,))))   # the contract takes it
    back = wire.read_config_report(batch.events[0])
    assert back is not None and (back.result, back.hash, back.version, back.running, back.seconds) == \
        ("rejected", report.hash, 3, "local", 0.25)
    assert wire.read_config_report(wire.Event("link_down", {}, {}, 1)) is None
    assert wire.read_config_report(wire.Event("config", {"result": "maybe", "hash": "h", "running": "r"},
                                              {"version": 1}, 1)) is None
