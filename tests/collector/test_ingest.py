"""Ingest logic without a broker: topic/payload checks, repeats, gap counting and the engine's fast decode."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.ingest import DERIVED, SeqRanges, SeqTracker, parse_entry, plain_batch, read_entry
from collector.inventory import Inventory
from collector.scope import Refusals, Scope
from zonewatch import strict, wire
from zonewatch.queue import Entry


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
    assert t.state[("z/p1", 1)].above.ranges() == []  # contiguous again: nothing kept in memory


def test_long_missing_seqs_are_given_up_as_lost_and_still_counted() -> None:
    t = tracker(window=10)
    t.first_time("z/p1", 1, 1)
    for s in range(5, 30):  # 2, 3, 4 never arrive (dropped by the probe's spool bounds)
        t.first_time("z/p1", 1, s)
    st = t.state[("z/p1", 1)]
    assert t.gaps("z/p1") == 3 and st.lost == 3 and st.above.ranges() == []
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


def state(t: SeqTracker, key: tuple[str, int] = ("z/p1", 1)) -> tuple[int, int, list[tuple[int, int]]]:
    st = t.state[key]
    return st.watermark, st.lost, st.above.ranges()


def test_after_a_hole_later_seqs_are_one_range_and_the_hole_one_gap() -> None:
    t = tracker()
    assert all(t.first_time("z/p1", 1, s) for s in (1, *range(3, 20_003)))  # 2 is late
    assert t.gaps("z/p1") == 1
    assert state(t) == (1, 0, [(3, 20_002)])
    rows, gaps = t.snapshot()
    assert rows == [("z/p1", 1, 1, 0, "[[3,20002]]")] and gaps == {"z/p1": 1}  # one pair, not 20,000 seqs
    assert t.first_time("z/p1", 1, 2) is True
    assert state(t) == (20_002, 0, []) and t.gaps("z/p1") == 0


def test_late_seqs_fill_their_holes_and_the_watermark_moves_over_everything() -> None:
    t = tracker()
    for s in (1, 3, 5, 6, 7, 9):
        t.first_time("z/p1", 1, s)
    assert state(t) == (1, 0, [(3, 3), (5, 7), (9, 9)]) and t.gaps("z/p1") == 3  # 2, 4, 8
    assert t.first_time("z/p1", 1, 4) is True  # joins the ranges on either side
    assert state(t) == (1, 0, [(3, 7), (9, 9)]) and t.gaps("z/p1") == 2
    assert t.first_time("z/p1", 1, 2) is True
    assert state(t) == (7, 0, [(9, 9)]) and t.gaps("z/p1") == 1
    assert t.first_time("z/p1", 1, 8) is True
    assert state(t) == (9, 0, []) and t.gaps("z/p1") == 0


def test_a_seq_inside_a_range_or_at_or_below_the_watermark_is_a_repeat() -> None:
    t = tracker()
    for s in (1, 2, 5, 6, 7):
        t.first_time("z/p1", 1, s)
    t.snapshot()
    assert [t.is_repeat("z/p1", 1, s) for s in range(0, 9)] == [True, True, True, False, False,
                                                                 True, True, True, False]
    assert [t.first_time("z/p1", 1, s) for s in (0, 1, 2, 5, 6, 7)] == [False] * 6
    assert t.snapshot() == ([], {})  # a repeat changes nothing, so nothing is written again
    assert t.gaps("z/p1") == 2


def test_give_up_counts_exactly_the_lost_seqs_when_holes_straddle_the_floor() -> None:
    t = tracker(window=10)
    for s in (1, 3, 5, *range(7, 13)):
        t.first_time("z/p1", 1, s)
    assert t.gaps("z/p1") == 3  # 2, 4, 6: still missing, not lost
    assert t.first_time("z/p1", 1, 20) is True  # 20 - 10: everything up to 10 is seen or given up
    # lost: 2, 4, 6; the range 7..12 across the floor keeps 11, 12, and the watermark moves over them
    assert state(t) == (12, 3, [(20, 20)])
    assert t.gaps("z/p1") == 3 + 7  # the lost ones, and 13..19 still missing
    assert [t.first_time("z/p1", 1, s) for s in (2, 4, 6, 10, 12)] == [False] * 5
    assert t.first_time("z/p1", 1, 13) is True


def test_a_jump_far_beyond_the_window_gives_up_everything_below_it_at_once() -> None:
    t = tracker(window=10)
    for s in (1, 3):
        t.first_time("z/p1", 1, s)
    assert t.first_time("z/p1", 1, 1_000_000) is True
    assert state(t) == (999_990, 999_988, [(1_000_000, 1_000_000)])  # 2 and 4..999,990 lost
    assert t.gaps("z/p1") == 999_999 - 2  # every seq below the top but 1 and 3
    assert t.is_repeat("z/p1", 1, 999_990) and not t.is_repeat("z/p1", 1, 999_991)


def test_state_in_the_old_format_loads_and_gives_the_same_answers() -> None:
    db = sqlite3.connect(":memory:")
    t = SeqTracker(db)
    for s in (1, 3, 4, 6, 9):
        t.first_time("z/p1", 1, s)
    t.store(t.snapshot()[0])
    # what the set-based bookkeeping stored: the seqs above the watermark, one by one
    db.execute("UPDATE seqstate SET above = ?", (json.dumps([3, 4, 6, 9]),))
    old = SeqTracker(db)
    assert state(old) == state(t) == (1, 0, [(3, 4), (6, 6), (9, 9)])
    assert old.gaps("z/p1") == t.gaps("z/p1") == 4
    assert [old.is_repeat("z/p1", 1, s) for s in range(12)] == [t.is_repeat("z/p1", 1, s) for s in range(12)]
    assert [old.first_time("z/p1", 1, s) for s in (2, 3, 5, 7, 8)] == [True, False, True, True, True]
    assert state(old) == (9, 0, []) and old.gaps("z/p1") == 0
    old.store(old.snapshot()[0])
    assert db.execute("SELECT above FROM seqstate").fetchall() == [("[]",)]  # written back as ranges
    mended = SeqRanges.from_json("[9, [3, 4], 6, [4, 5]]")  # unsorted, overlapping: still the seqs they name
    assert mended.ranges() == [(3, 6), (9, 9)] and len(mended) == 5


def test_state_round_trips_through_snapshot_and_store() -> None:
    db = sqlite3.connect(":memory:")
    t = SeqTracker(db, window=100)
    for s in (1, 2, 4, 7, 8, 9, 300):  # a give-up too: 3..200 lost but the ones seen
        t.first_time("z/p1", 1, s)
    for s in (5, 6, 10):
        t.first_time("z/p1", 2, s)
    t.first_time("z/p2", 1, 1)
    t.store(t.snapshot()[0])
    again = SeqTracker(db, window=100)
    assert {key: state(again, key) for key in again.state} == {key: state(t, key) for key in t.state}
    assert [again.gaps(p) for p in ("z/p1", "z/p2")] == [t.gaps(p) for p in ("z/p1", "z/p2")]
    assert state(again, ("z/p1", 1)) == (200, 194, [(300, 300)]) and again.gaps("z/p1") == 194 + 99 + 7
    for key in t.state:
        assert [again.is_repeat(*key, s) for s in range(320)] == [t.is_repeat(*key, s) for s in range(320)]


class NaiveSeqs:
    """The reference for the property test: every seq seen in a set, and the give-up rule written plainly."""

    def __init__(self, window: int) -> None:
        self.window, self.seen, self.given_up, self.lost = window, set[int](), 0, 0  # given up: up to here

    def is_repeat(self, seq: int) -> bool:
        return seq <= self.given_up or seq in self.seen

    def first_time(self, seq: int) -> bool:
        if self.is_repeat(seq):
            return False
        self.seen.add(seq)
        floor = max(self.seen) - self.window
        if floor > self.given_up:  # more than window newer seqs: give up on everything missing up to floor
            self.lost += sum(1 for s in range(self.given_up + 1, floor + 1) if s not in self.seen)
            self.given_up = floor
        return True

    @property
    def top(self) -> int:
        return max(self.seen, default=0)

    @property
    def first_missing(self) -> int:
        s = self.given_up + 1
        while s in self.seen:
            s += 1
        return s

    def gaps(self) -> int:
        return self.lost + sum(1 for s in range(self.given_up + 1, self.top + 1) if s not in self.seen)


SEQ_STEPS = st.lists(st.one_of(
    st.tuples(st.just("run"), st.sampled_from([1, 2]), st.integers(1, 12)),  # the next n seqs, in order
    st.tuples(st.just("hole"), st.sampled_from([1, 2]), st.integers(2, 17)),  # within the window, or just past
    st.tuples(st.just("edge"), st.sampled_from([1, 2]), st.integers(0, 12)),  # gives up n from the first hole on
    st.tuples(st.just("near"), st.sampled_from([1, 2]), st.integers(-40, 40)),  # late, repeats, past the window
    st.tuples(st.just("far"), st.sampled_from([1, 2]), st.integers(-1000, 1000)),  # big jumps either way
    st.tuples(st.just("at"), st.sampled_from([1, 2]), st.integers(-2, 60)),  # early seqs again, 0 and below
    st.tuples(st.sampled_from(["restart", "restart in the old format"]), st.just(1), st.just(0)),
), min_size=10, max_size=100)


def assert_agree(t: SeqTracker, models: dict[int, NaiveSeqs]) -> None:
    for origin, m in models.items():
        for s in (*range(max(1, m.given_up - 2), m.top + 3), m.top + 1000):  # (an origin never seen: no repeat)
            assert t.is_repeat("z/p1", origin, s) == m.is_repeat(s), (origin, s)
        st = t.state.get(("z/p1", origin))
        assert (st.lost if st else 0) == m.lost
    assert t.gaps("z/p1") == sum(m.gaps() for m in models.values())


@settings(max_examples=int(os.environ.get("ZW_FUZZ_EXAMPLES", "200")), deadline=None)
@given(window=st.integers(0, 16), steps=SEQ_STEPS)
def test_seq_tracker_agrees_with_a_plain_set_of_seen_seqs(window: int, steps: list[tuple[str, int, int]]) -> None:
    db = sqlite3.connect(":memory:")
    t = SeqTracker(db, window=window)
    models = {1: NaiveSeqs(window), 2: NaiveSeqs(window)}  # two origins of one probe
    for kind, origin, n in steps:
        model = models[origin]
        if kind.startswith("restart"):
            t.store(t.snapshot()[0])
            if kind == "restart in the old format":  # as the set-based bookkeeping wrote it
                for rowid, above in db.execute("SELECT rowid, above FROM seqstate").fetchall():
                    ranges = [r if isinstance(r, list) else [r, r] for r in json.loads(above)]  # if old already
                    old = [s for lo, hi in ranges for s in range(lo, hi + 1)]
                    db.execute("UPDATE seqstate SET above = ? WHERE rowid = ?", (json.dumps(old), rowid))
            t = SeqTracker(db, window=window)
            assert_agree(t, models)
            continue
        top = model.top
        seqs = {"at": [n], "run": list(range(top + 1, top + n + 1)),
                "edge": [model.first_missing + window + n - 1]}.get(kind, [top + n])
        for seq in seqs:
            assert t.first_time("z/p1", origin, seq) == model.first_time(seq), (kind, origin, seq)
            assert_agree(t, models)


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


def test_seq_and_origin_past_63_bits_are_refused_by_the_contract() -> None:
    for key in ("seq", "origin"):
        doc = json.loads(payload())
        doc[key] = 2**64 - 1
        with pytest.raises(wire.WireError, match="63-bit"):
            parse_entry(entry("zw/v1/z1/p1/data", json.dumps(doc).encode()))
    doc = json.loads(payload())
    doc["seq"] = wire.MAX_SEQ
    assert parse_entry(entry("zw/v1/z1/p1/data", json.dumps(doc).encode())).seq == wire.MAX_SEQ


def jumpy(**kw: int) -> SeqTracker:
    return SeqTracker(sqlite3.connect(":memory:"), **{"window": 10, "max_jump": 1000, "resync": 3, **kw})


def test_one_absurd_seq_is_stored_but_moves_nothing() -> None:
    t = jumpy()
    for s in range(1, 6):
        t.first_time("z/p1", 1, s)
    assert t.first_time("z/p1", 1, wire.MAX_SEQ) is True   # its data is kept (the store treats a repeat as one)
    assert t.jumps == [("z/p1", 1, wire.MAX_SEQ)]
    assert state(t) == (5, 0, []) and t.gaps("z/p1") == 0   # the stream has not moved, nothing counted lost
    assert [t.first_time("z/p1", 1, s) for s in (6, 7, 7)] == [True, True, False]   # and is not silenced
    assert state(t) == (7, 0, [])
    t.jumps.clear()
    assert t.first_time("z/p1", 1, 3) is False   # an ordinary repeat is still one
    assert t.first_time("z/p1", 1, 1005) is True and t.jumps == []   # a jump within max_jump is believed
    assert t.gaps("z/p1") == 997


def test_a_stream_that_really_goes_on_far_away_is_followed_after_a_few_in_a_row() -> None:
    t = jumpy()
    for s in (1, 2, 4):
        t.first_time("z/p1", 1, s)
    far = 10**9
    assert [t.first_time("z/p1", 1, s) for s in (far, far + 1)] == [True, True]
    assert state(t) == (2, 0, [(4, 4)])   # not yet
    assert t.first_time("z/p1", 1, 7) is True   # one ordinary seq breaks the run
    assert [t.first_time("z/p1", 1, s) for s in (far + 2, far + 3)] == [True, True]
    assert state(t) == (2, 0, [(4, 4), (7, 7)])
    assert t.first_time("z/p1", 1, far + 4) is True   # three in a row that follow on: the stream is there
    # lost: 3, 5, 6 and 8 .. far + 1 (far and far + 1 were stored, but as jumps not believed: counted too)
    assert state(t) == (far + 4, far - 3, [])
    assert t.is_repeat("z/p1", 1, far + 3) and not t.is_repeat("z/p1", 1, far + 5)
    assert t.first_time("z/p1", 1, far + 5) is True and t.gaps("z/p1") == far - 3
    # and back: a stream that goes on far below (its spool's counter after a hostile or corrupt jump)
    assert [t.first_time("z/p1", 1, s) for s in (10, 11, 12)] == [True, True, True]
    assert state(t)[0] == 12 and t.first_time("z/p1", 1, 13) is True and t.first_time("z/p1", 1, 12) is False


def test_lost_counts_stay_within_sqlite_integers_however_absurd_the_seqs() -> None:
    db = sqlite3.connect(":memory:")
    t = SeqTracker(db, window=10, max_jump=1000, resync=2)
    for first in (wire.MAX_SEQ - 5, 1, wire.MAX_SEQ - 3, 1):   # far up, back, far up again ...
        for s in range(first, first + 2):
            t.first_time("z/p1", 1, s)
    assert t.gaps("z/p1") <= wire.MAX_SEQ
    t.store(t.snapshot()[0])   # would raise OverflowError past 2^63 - 1
    assert SeqTracker(db).gaps("z/p1") == t.gaps("z/p1")


def test_a_probe_with_many_origins_keeps_only_its_latest_few() -> None:
    db = sqlite3.connect(":memory:")
    t = SeqTracker(db, window=10, max_origins=3)
    t.first_time("z/p1", 1, 5)   # 1..4 missing under origin 1
    for origin in range(2, 200):
        t.first_time("z/p1", origin, 1)
        t.first_time("z/p1", 1, 6) if origin == 2 else None   # origin 1 sent recently once
    assert len(t.state) == 3 and all(key[0] == "z/p1" for key in t.state)
    assert t.gaps("z/p1") == 4   # origin 1's missing seqs are kept as lost when it is retired
    t.store(t.snapshot()[0])
    again = SeqTracker(db, window=10, max_origins=3)
    assert set(again.state) == set(t.state) and again.gaps("z/p1") == 4
    assert db.execute("SELECT count(*) FROM seqstate").fetchone() == (4,)   # three origins and the retired count
    assert again.first_time("z/p1", 199, 1) is False and again.first_time("z/p1", 5, 1) is True   # retired: news


# ---------------------------------------------------------------------------------------------- plain_batch
# The alert engine's fast decode: read_entry's batch, to the last type, or None. Fuzzed against read_entry
# (tests/fuzz, target fastdecode); these pin its edge cases.

NOW = 1_764_290_000 * 10**9
SCOPE = Scope(strict.load(Inventory, """
zones: {z1: {name: One}}
carriers: {viettel: {plmn: 452-04, name: Viettel}}
sites: {pop: {zone: z1}}
devices: {sw-1: {site: pop, probe: p1}, olt-2: {site: pop, probe: p2}}
probes: {p1: {zone: z1, modems: [{name: vt, carrier: viettel}]}, p2: {zone: z1}}
"""))


def data(*rows: object, topic: str = "zw/v1/z1/p1/data", **head: object) -> Entry:
    """A data message with ``rows`` as its samples (JSON objects as a probe may write them)."""
    doc = {"v": 1, "zone": "z1", "probe": "p1", "seq": 3, "sent_ns": NOW, "origin": 9, "samples": list(rows), **head}
    return Entry(1, topic, NOW, json.dumps(doc, ensure_ascii=False).encode())


def row(**over: object) -> dict[str, object]:
    return {"m": "interface", "ts": NOW, "tags": {"device": "sw-1", "ifname": "ge-0/0/1"},
            "fields": {"oper_up": True}, **over}


def fast(entry: Entry, scope: Scope = SCOPE) -> wire.Batch | None:
    """plain_batch once the names are known (read_entry teaches them), checked against read_entry's batch."""
    try:
        want, refused = read_entry(entry, scope)
    except wire.WireError:
        want, refused = None, Refusals()
    got = plain_batch(entry, scope)
    if got is not None:
        assert want is not None and not refused
        assert got == want and [list(s.fields.items()) for s in got.samples] == [
            list(s.fields.items()) for s in want.samples]
    return got


def test_plain_batch_keeps_each_value_as_sent_bool_int_or_float() -> None:
    fields = {"up": True, "down": False, "one": 1, "zero": 0, "float_one": 1.0, "sci": 1e2, "neg": -0.0,
              "top": 2**64 - 1, "bottom": -(2**63)}
    got = fast(data(row(fields=fields)))
    assert got is not None
    values = got.samples[0].fields
    assert [(k, type(v)) for k, v in values.items()] == [
        ("up", bool), ("down", bool), ("one", int), ("zero", int), ("float_one", float), ("sci", float),
        ("neg", float), ("top", int), ("bottom", int)]
    assert values == fields and repr(values["neg"]) == "-0.0"


def test_plain_batch_is_the_whole_header_and_every_row_in_order() -> None:
    rows = [row(ts=NOW - i, tags={"device": "sw-1", "ifname": f"ge-0/0/{i}"}) for i in range(5)]
    got = fast(data(*rows))
    samples = tuple(wire.Sample("interface", r["tags"], r["fields"], r["ts"]) for r in rows)
    assert got == wire.Batch("z1", "p1", 3, NOW, samples, origin=9)


@pytest.mark.parametrize("left_out", [{"tags": None}, {"fields": None}, {"tags": {}, "fields": {}}])
def test_plain_batch_takes_tags_and_fields_left_out_or_null_as_none(left_out: dict[str, object]) -> None:
    for r in ({k: v for k, v in row(m="probe").items() if k not in left_out}, row(m="probe", **left_out)):
        got = fast(data(r))
        assert got is not None
        expected = {k: {} for k in left_out}
        assert {k: getattr(got.samples[0], k) for k in left_out} == expected


@pytest.mark.parametrize("entry", [
    data(row(), events=[{"name": "link_down", "ts": NOW, "tags": {"device": "sw-1"}, "fields": {}}]),  # events
    data(row(tags={"device": "olt-2"})),               # p2's device: refused by the full path, and counted
    data(row(tags={"carrier": "452-02"})),             # a carrier p1 has no modem for
    data(row(m="coverage", tags={})),                   # only the collector writes it
    data(row(), topic="zw/v1/z1/p2/data"),             # the topic says another probe
    data(row(), topic="zw/v1/z1/p1/events"),           # not a data message
    data(row(ts=NOW + 3600 * 10**9)),                  # beyond the clock skew allowed
    data(row(ts=NOW - 40 * 86400 * 10**9)),            # older than kept
    data(row(fields={"oper_up": "up"})),               # a string field
    data(row(tags={"device": "sw-1", "ifname": ""})),  # an empty tag value
    data(row(extra=1)),                                 # a key a row does not have
    data(row(), 7),                                     # a row that is not an object
])
def test_plain_batch_leaves_to_read_entry_what_it_refuses_rejects_or_handles_otherwise(entry: Entry) -> None:
    assert fast(entry) is None


def test_plain_batch_takes_an_empty_events_list_and_text_beyond_ascii() -> None:
    got = fast(data(row(tags={"device": "sw-1", "ifname": "cổng-1"}), events=[]))
    assert got is not None and got.samples[0].tags["ifname"] == "cổng-1" and got.events == ()


def test_plain_batch_checks_no_scope_for_the_collectors_own_batches() -> None:
    entry = data(row(m="coverage", tags={"area": "a"}), topic=DERIVED + "zw/v1/z1/p1/data")
    got = fast(entry, SCOPE)
    assert got is not None and got.samples[0].measurement == "coverage"
    assert fast(data(row(m="coverage", tags={"area": "a"})), SCOPE) is None


def test_plain_batch_leaves_a_name_the_decoder_has_not_checked_yet() -> None:
    entry = data(row(m="a_measurement_never_seen_here"))
    assert plain_batch(entry, SCOPE) is None
    assert fast(entry) is not None   # read_entry checked the name: from now on it is plain
