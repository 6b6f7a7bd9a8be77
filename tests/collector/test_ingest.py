"""Ingest logic without a broker: topic/payload checks, repeats and gap counting."""

from __future__ import annotations

import sqlite3

import pytest

from agent import wire
from collector.ingest import SeqTracker, parse_entry
from zwqueue import Entry


def payload(zone: str = "z1", probe: str = "p1", seq: int = 1) -> bytes:
    return wire.encode(wire.Batch(zone, probe, seq, 5, (wire.Sample("probe", {}, {"up": True}, 4),)))


def entry(topic: str, body: bytes, created_ns: int = 1_000) -> Entry:
    return Entry(1, topic, created_ns, body)


def test_data_message_becomes_its_batch() -> None:
    batch = parse_entry(entry("zw/v1/z1/p1/data", payload()))
    assert (batch.zone, batch.probe, batch.seq) == ("z1", "p1", 1)


def test_a_probe_cannot_speak_for_another() -> None:
    with pytest.raises(wire.WireError) as err:
        parse_entry(entry("zw/v1/z1/p2/data", payload(probe="p1")))
    assert err.value.reason == "identity_mismatch"
    assert "zw/v1/z1/p2/data" in str(err.value) and "z1/p1" in str(err.value)


def test_status_becomes_a_probe_up_sample_at_receive_time() -> None:
    online = parse_entry(entry("zw/v1/z1/p1/status", b"online", 1_000))
    offline = parse_entry(entry("zw/v1/z1/p1/status", b"offline", 2_000))
    assert online.samples == (wire.Sample("probe", {}, {"up": True}, 1_000),)
    assert offline.samples == (wire.Sample("probe", {}, {"up": False}, 2_000),)
    stopping = parse_entry(entry("zw/v1/z1/p1/status", b"stopping", 3_000))   # a stop on purpose
    assert stopping.samples == (wire.Sample("probe", {}, {"up": False, "planned": True}, 3_000),)
    with pytest.raises(wire.WireError, match="bad_status"):
        parse_entry(entry("zw/v1/z1/p1/status", b"maybe"))


def test_config_topic_is_not_ingested() -> None:
    with pytest.raises(wire.WireError, match="bad_topic"):
        parse_entry(entry("zw/v1/z1/p1/config", b"{}"))


def tracker(window: int = 65536) -> SeqTracker:
    return SeqTracker(sqlite3.connect(":memory:"), window=window)


def test_repeats_are_dropped_per_probe_and_origin() -> None:
    t = tracker()
    assert [t.first_time("z/p1", 7, s) for s in (1, 2, 1, 3, 3)] == [True, True, False, True, False]
    assert t.first_time("z/p2", 7, 1) is True  # another probe's seq 1 is its own
    assert t.first_time("z/p1", 8, 1) is True  # a replaced spool starts a new origin


def test_events_ahead_of_data_are_not_gaps_once_the_data_arrive() -> None:
    t = tracker()
    for s in (1, 2, 5, 6):  # 5 and 6 were events sent ahead of a backlog
        t.first_time("z/p1", 1, s)
    assert t.gaps("z/p1") == 2  # 3 and 4 are missing for now
    t.first_time("z/p1", 1, 3)
    t.first_time("z/p1", 1, 4)
    assert t.gaps("z/p1") == 0
    assert t.state[("z/p1", 1)].above == set()  # contiguous again: nothing kept in memory


def test_long_missing_seqs_are_given_up_as_lost_and_still_counted() -> None:
    t = tracker(window=10)
    t.first_time("z/p1", 1, 1)
    for s in range(5, 30):  # 2, 3, 4 never arrive (dropped by the probe's spool bounds)
        t.first_time("z/p1", 1, s)
    st = t.state[("z/p1", 1)]
    assert t.gaps("z/p1") == 3 and st.lost == 3 and st.above == set()
    assert t.first_time("z/p1", 1, 3) is False  # too late: already given up


def test_bookkeeping_survives_a_restart() -> None:
    db = sqlite3.connect(":memory:")
    t = SeqTracker(db)
    for s in (1, 2, 4):
        t.first_time("z/p1", 1, s)
    t.store(t.snapshot()[0])
    again = SeqTracker(db)
    assert again.first_time("z/p1", 1, 4) is False
    assert again.first_time("z/p1", 1, 3) is True
    assert again.gaps("z/p1") == 0


def test_events_are_stored_as_the_event_measurement() -> None:
    body = wire.encode(wire.Batch("z1", "p1", 3, 5, events=(
        wire.Event("link_down", {"device": "bts-01", "ifname": "ge-0/0/1"}, {"if_index": 2, "oper_up": False}, 7),)))
    batch = parse_entry(entry("zw/v1/z1/p1/events", body))
    assert batch.samples == (wire.Sample("event", {"device": "bts-01", "ifname": "ge-0/0/1", "event": "link_down"},
                                         {"if_index": 2, "oper_up": False, "occurred": True}, 7),)


def test_oversize_and_future_payloads_are_refused_by_the_intake() -> None:
    big = wire.encode(wire.Batch("z1", "p1", 1, 5, tuple(wire.Sample("probe", {}, {"up": True}, 4) for _ in range(50))))
    with pytest.raises(wire.WireError) as err:
        parse_entry(entry("zw/v1/z1/p1/data", big), wire.Limits(max_bytes=1000))
    assert err.value.reason == "too_large" and "zw/v1/z1/p1/data" in str(err.value)
    future = wire.encode(wire.Batch("z1", "p1", 2, 5, (wire.Sample("probe", {}, {"up": True}, 10**18),)))
    with pytest.raises(wire.WireError, match="time_future"):
        parse_entry(entry("zw/v1/z1/p1/data", future, created_ns=10**18 - 3600 * 10**9))
