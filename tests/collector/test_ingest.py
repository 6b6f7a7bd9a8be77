"""Ingest logic without a broker: topic/payload checks and duplicate detection."""

from __future__ import annotations

import pytest

from agent import wire
from collector.ingest import SeqWindow, parse_message

CLOCK = lambda: 1_000  # noqa: E731 - a fixed clock for status messages


def payload(zone: str = "z1", probe: str = "p1", seq: int = 1) -> bytes:
    return wire.encode(wire.Batch(zone, probe, seq, 5, (wire.Sample("probe", {}, {"up": True}, 4),)))


def test_data_message_becomes_its_batch() -> None:
    batch = parse_message("zw/v1/z1/p1/data", payload(), CLOCK)
    assert (batch.zone, batch.probe, batch.seq) == ("z1", "p1", 1)


def test_a_probe_cannot_speak_for_another() -> None:
    with pytest.raises(wire.WireError) as err:
        parse_message("zw/v1/z1/p2/data", payload(probe="p1"), CLOCK)
    assert err.value.reason == "identity_mismatch"
    assert "zw/v1/z1/p2/data" in str(err.value) and "z1/p1" in str(err.value)


def test_status_becomes_a_probe_up_sample_at_receive_time() -> None:
    online = parse_message("zw/v1/z1/p1/status", b"online", CLOCK)
    offline = parse_message("zw/v1/z1/p1/status", b"offline", CLOCK)
    assert online.samples == (wire.Sample("probe", {}, {"up": True}, 1_000),)
    assert offline.samples[0].fields == {"up": False}
    with pytest.raises(wire.WireError, match="bad_status"):
        parse_message("zw/v1/z1/p1/status", b"maybe", CLOCK)


def test_config_topic_is_not_ingested() -> None:
    with pytest.raises(wire.WireError, match="bad_topic"):
        parse_message("zw/v1/z1/p1/config", b"{}", CLOCK)


def test_seq_window_drops_repeats_per_probe_and_forgets_the_oldest() -> None:
    w = SeqWindow(size=3)
    assert [w.first_time("p1", s) for s in (1, 2, 1, 3)] == [True, True, False, True]
    assert w.first_time("p2", 1) is True  # another probe's seq 1 is its own
    w.first_time("p1", 4)  # window now 2, 3, 4
    assert w.first_time("p1", 1) is True  # beyond the window: taken again
    assert w.first_time("p1", 4) is False
