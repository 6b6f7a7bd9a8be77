"""The MQTT contract: golden payloads every later version must keep decoding, and clear rejections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zonewatch import wire

GOLDEN = Path(__file__).parent / "golden"


def test_golden_v1_data_decodes_to_these_values() -> None:
    batch = wire.decode((GOLDEN / "v1-data.json").read_bytes())
    assert (batch.version, batch.zone, batch.probe, batch.seq) == (1, "dinh-vu", "p1", 42)
    assert batch.sent_ns == 1764290000000000000
    cell, iface = batch.samples
    assert cell == wire.Sample("cellular", {"carrier": "452-04", "modem": "viettel", "rat": "lte", "cell": "5F1EA15"},
                               {"rsrp_dbm": -95, "rsrq_db": -10.5, "rssi_dbm": -77, "registered": True},
                               1764289990000000000)
    assert iface.fields["in_octets"] == 2**64 - 1  # a Counter64 at its top survives exactly
    assert iface.fields["oper_up"] is False
    assert batch.events == ()


def test_golden_v1_events_and_status_only() -> None:
    batch = wire.decode((GOLDEN / "v1-events.json").read_bytes())
    assert batch.events == (wire.Event("link_down", {"device": "bts-01", "ifname": "ge-0/0/1"}, {"if_index": 3},
                                       1764290000500000000),)
    empty = wire.decode((GOLDEN / "v1-status-only.json").read_bytes())
    assert (empty.probe, empty.samples, empty.events) == ("probe-7.b", (), ())


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.json")), ids=lambda p: p.name)
def test_every_golden_file_round_trips(path: Path) -> None:
    batch = wire.decode(path.read_bytes())
    assert json.loads(wire.encode(batch)) == json.loads(path.read_bytes())


@pytest.mark.parametrize(("payload", "reason", "where"), [
    (b"\xff\xfe", "not_json", ""),
    (b"{", "not_json", ""),
    (b"[]", "bad_schema", "list"),
    (b'{"zone":"z","probe":"p","seq":1,"sent_ns":1}', "bad_schema", "'v'"),
    (b'{"v":99,"zone":"z","probe":"p","seq":1,"sent_ns":1}', "unsupported_version", "99"),
    (b'{"v":1,"zone":"Z Z","probe":"p","seq":1,"sent_ns":1}', "bad_schema", "'zone'"),
    (b'{"v":1,"zone":"z","probe":"p","seq":-1,"sent_ns":1}', "bad_schema", "'seq'"),
    (b'{"v":1,"zone":"z","probe":"p","seq":true,"sent_ns":1}', "bad_schema", "'seq'"),
    (b'{"v":1,"zone":"z","probe":"p","seq":1,"sent_ns":1,"extra":1}', "bad_schema", "'extra'"),
    (b'{"v":1,"zone":"z","probe":"p","seq":1,"sent_ns":1,"samples":[{"m":"c","ts":1,"fields":{"x":"str"}}]}',
     "bad_field", "samples[0].fields.x"),
    (b'{"v":1,"zone":"z","probe":"p","seq":1,"sent_ns":1,"samples":[{"m":"c","ts":1,"fields":{"x":NaN}}]}',
     "bad_field", "samples[0].fields.x"),
    (b'{"v":1,"zone":"z","probe":"p","seq":1,"sent_ns":1,"samples":[{"m":"c","ts":1,"fields":{"x":18446744073709551616}}]}',
     "bad_field", "samples[0].fields.x"),
    (b'{"v":1,"zone":"z","probe":"p","seq":1,"sent_ns":1,"samples":[{"m":"c","ts":"1"}]}', "bad_time", "samples[0].ts"),
    (b'{"v":1,"zone":"z","probe":"p","seq":1,"sent_ns":1,"samples":[{"m":"c d","ts":1}]}', "bad_name", "samples[0].m"),
    (b'{"v":1,"zone":"z","probe":"p","seq":1,"sent_ns":1,"samples":[{"m":"c","ts":1,"tags":{"t":""}}]}',
     "bad_tag", "samples[0].tags.t"),
    (b'{"v":1,"zone":"z","probe":"p","seq":1,"sent_ns":1,"samples":[{"m":"c","ts":1,"tags":{"t":"a\\ud800"}}]}',
     "bad_tag", "samples[0].tags.t"),
    (b'{"v":1,"zone":"z","probe":"p","seq":1,"sent_ns":1,"events":{}}', "bad_schema", "'events'"),
])
def test_bad_payloads_name_the_reason_and_the_place(payload: bytes, reason: str, where: str) -> None:
    with pytest.raises(wire.WireError) as err:
        wire.decode(payload)
    assert err.value.reason == reason
    assert where in str(err.value)


def _tagged(*values: str) -> str:
    rows = ",".join(json.dumps({"m": "cellular", "ts": 1, "tags": {"cell": v}}) for v in values)
    return f'{{"v":1,"zone":"z","probe":"p","seq":1,"sent_ns":1,"samples":[{rows}]}}'


def test_a_tag_value_must_be_unicode_text_whatever_the_path_through_the_decoder() -> None:
    # A lone surrogate (JSON "\\udfff", or one in a str payload) is no text: encode (and the stores) refuse it.
    # The first row is valid, so its names are known and the second row takes the fast path.
    escaped = _tagged("1F", "1F\udfff")  # json.dumps writes the surrogate as the escape \udfff
    assert "\\udfff" in escaped
    for payload in (escaped, escaped.encode(), escaped.replace("\\udfff", "\udfff")):  # the last: a raw one
        with pytest.raises(wire.WireError) as err:
            wire.decode(payload)
        assert err.value.reason == "bad_tag" and "samples[1].tags.cell" in err.value.detail
    events = '{"v":1,"zone":"z","probe":"p","seq":1,"sent_ns":1,"events":[{"name":"t","ts":1,"tags":{"x":"\\ud800"}}]}'
    with pytest.raises(wire.WireError, match=r"bad_tag: events\[0\]\.tags\.x is not Unicode text"):
        wire.decode(events)


def test_tag_values_beyond_ascii_pass_both_paths() -> None:
    payload = _tagged("Hải Phòng", "Đình Vũ 日本 \U0001f4e1").encode()
    batch = wire.decode(payload)
    assert [s.tags["cell"] for s in batch.samples] == ["Hải Phòng", "Đình Vũ 日本 \U0001f4e1"]
    assert wire.decode(wire.encode(batch)) == batch


def test_encoding_refuses_nan() -> None:
    batch = wire.Batch("z", "p", 1, 1, (wire.Sample("c", {}, {"x": float("nan")}, 1),))
    with pytest.raises(wire.WireError, match="bad_field"):
        wire.encode(batch)


def test_topics() -> None:
    assert wire.topic("dinh-vu", "p1", "data") == "zw/v1/dinh-vu/p1/data"
    assert wire.parse_topic("zw/v1/dinh-vu/p1/events") == wire.Topic("dinh-vu", "p1", "events")
    assert wire.subscription("status") == "zw/v1/+/+/status"
    for bad in ("zw/v1/dinh-vu/p1", "zw/v2/z/p/data", "zw/v1/z/p/other", "zw/v1/Z/p/data"):
        with pytest.raises(wire.WireError, match="bad_topic"):
            wire.parse_topic(bad)
    with pytest.raises(wire.WireError, match="bad_name"):
        wire.topic("z", "p/x", "data")


names = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)
values = st.one_of(st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False, allow_infinity=False))
samples = st.builds(wire.Sample, names, st.dictionaries(names, st.text(min_size=1, max_size=20), max_size=4),
                    st.dictionaries(names, values, max_size=4), st.integers(0, 2**63 - 1))


@given(st.lists(samples, max_size=5), st.integers(0, 2**40))
def test_encode_then_decode_is_identity(batch_samples: list[wire.Sample], seq: int) -> None:
    batch = wire.Batch("zone-1", "probe-1", seq, 1, tuple(batch_samples))
    assert wire.decode(wire.encode(batch)) == batch


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_decoder(data: bytes) -> None:
    try:
        wire.decode(data)
    except wire.WireError as exc:
        assert exc.reason


NOW_NS = 1_764_290_000 * 10**9


def limited(**kw: object) -> wire.Limits:
    return wire.Limits(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("batch", "limits", "reason", "where"), [
    (wire.Batch("z", "p", 3, 0, tuple(wire.Sample("c", {}, {"x": 1}, NOW_NS) for _ in range(5))),
     limited(max_rows=4), "too_many_rows", "5 samples and events"),
    (wire.Batch("z", "p", 3, 0, (wire.Sample("c", {f"t{i}": "v" for i in range(5)}, {"x": 1}, NOW_NS),)),
     limited(max_tags=4), "too_many_tags", "samples[0] has 5 tags"),
    (wire.Batch("z", "p", 3, 0, (wire.Sample("c", {}, {f"f{i}": 1 for i in range(9)}, NOW_NS),)),
     limited(max_fields=8), "too_many_fields", "samples[0] has 9 fields"),
    (wire.Batch("z", "p", 3, 0, events=(wire.Event("link_down", {}, {}, NOW_NS + 3600 * 10**9),)),
     limited(), "time_future", "events[0] is 3600 s in the future"),
    (wire.Batch("z", "p", 3, 0, (wire.Sample("c", {}, {"x": 1}, NOW_NS - 90 * 86400 * 10**9),)),
     limited(), "time_past", "samples[0] is 90 days old"),
])
def test_limits_reject_with_a_reason_and_name_the_sender(batch: wire.Batch, limits: wire.Limits, reason: str,
                                                         where: str) -> None:
    with pytest.raises(wire.WireError) as err:
        wire.check_limits(batch, limits, NOW_NS)
    assert err.value.reason == reason
    assert "probe z/p seq 3" in str(err.value) and where in str(err.value)


def test_a_week_old_backlog_and_a_slightly_fast_clock_are_accepted() -> None:
    rows = (wire.Sample("c", {}, {"x": 1}, NOW_NS - 7 * 86400 * 10**9), wire.Sample("c", {}, {"x": 1}, NOW_NS + 10**9))
    wire.check_limits(wire.Batch("z", "p", 1, 0, rows), wire.Limits(), NOW_NS)
    with pytest.raises(wire.WireError, match="too_large"):
        wire.check_limits(wire.Batch("z", "p", 1, 0, rows), wire.Limits(max_bytes=100), NOW_NS, size=101)


def test_a_name_with_a_trailing_line_break_is_not_a_name() -> None:
    assert wire.valid_name("p1") and not wire.valid_name("p1\n")
    payload = b'{"v":1,"zone":"z","probe":"p","seq":0,"sent_ns":0,"samples":[{"m":"x\\n","ts":0}]}'
    with pytest.raises(wire.WireError, match="bad_name|must match"):
        wire.decode(payload)


def test_tags_or_fields_left_out_or_null_are_none_whatever_names_the_decoder_knows() -> None:
    # The fast check (names known) and the full one (a name seen for the first time) read null alike.
    name = "never_seen_row_name"
    payload = ('{"v":1,"zone":"z","probe":"p","seq":1,"sent_ns":1,"samples":[{"m":"%s","ts":1,"tags":null,'
               '"fields":{"x":1}},{"m":"%s","ts":1,"fields":null}]}' % (name, name))
    wire.CHECKED_NAMES.add("x")
    wire.CHECKED_NAMES.discard(name)
    for known in (False, True):   # the second time, the name is known
        assert (name in wire.CHECKED_NAMES) is known
        assert wire.decode(payload).samples == (wire.Sample(name, {}, {"x": 1}, 1), wire.Sample(name, {}, {}, 1))


# plain_samples, a receiver's fast path: the samples decode gives, or None (the collector's engine then decodes in
# full). Fuzzed against the collector's full path (tests/fuzz, target fastdecode); these pin what it leaves.

def plain(*rows: object, now: int = NOW_NS, limits: wire.Limits | None = None) -> tuple[wire.Sample, ...] | None:
    wire.CHECKED_NAMES.update({"c", "x", "y", "t"})   # as the full decoder leaves them once it has seen them
    return wire.plain_samples(list(rows), now, limits or wire.Limits())


def test_plain_samples_are_the_rows_as_decode_reads_them() -> None:
    rows = [{"m": "c", "ts": NOW_NS, "tags": {"t": "v"}, "fields": {"x": True, "y": 1.0}}, {"m": "c", "ts": NOW_NS}]
    got = plain(*rows)
    assert got == (wire.Sample("c", {"t": "v"}, {"x": True, "y": 1.0}, NOW_NS), wire.Sample("c", {}, {}, NOW_NS))
    assert got is not None and [type(v) for v in got[0].fields.values()] == [bool, float]


@pytest.mark.parametrize(("row", "limits"), [
    ({"m": "c", "ts": NOW_NS, "tags": {f"t{i}": "v" for i in range(5)}}, limited(max_tags=4)),
    ({"m": "c", "ts": NOW_NS, "fields": {f"f{i}": 1 for i in range(9)}}, limited(max_fields=8)),
    ({"m": "c", "ts": NOW_NS + 3600 * 10**9}, None),                      # time_future
    ({"m": "c", "ts": NOW_NS - 90 * 86400 * 10**9}, None),                # time_past
    ({"m": "c", "ts": True}, None),                                       # not an integer
    ({"m": "c", "ts": NOW_NS, "fields": {"x": 2**64}}, None),             # beyond 64 bits
    ({"m": "c", "ts": NOW_NS, "fields": {"x": -(2**63) - 1}}, None),
    ({"m": "c", "ts": NOW_NS, "fields": {"x": float("nan")}}, None),      # from a parser that reads NaN
    ({"m": "c", "ts": NOW_NS, "fields": {"x": float("inf")}}, None),
    ({"m": "c", "ts": NOW_NS, "fields": {"x": None}}, None),
    ({"m": "c", "ts": NOW_NS, "tags": {"t": 1}}, None),
    ({"m": "c", "ts": NOW_NS, "tags": {"t": "x" * 257}}, None),
    ({"m": "c", "ts": NOW_NS, "tags": {"t": "a\udfffb"}}, None),          # a lone surrogate is no text
    ({"m": "c", "ts": NOW_NS, "tags": []}, None),
    ({"m": "c", "ts": NOW_NS, "name": "c"}, None),                       # an event's key in a sample
    ({"m": "not_checked_yet_by_decode", "ts": NOW_NS}, None),
])
def test_plain_samples_leave_what_they_are_not_sure_of(row: dict[str, object], limits: wire.Limits | None) -> None:
    assert plain({"m": "c", "ts": NOW_NS}, row, limits=limits) is None


def test_plain_samples_leave_more_rows_than_the_limit() -> None:
    rows = [{"m": "c", "ts": NOW_NS}] * 5
    assert plain(*rows, limits=limited(max_rows=4)) is None and plain(*rows, limits=limited(max_rows=5)) is not None
