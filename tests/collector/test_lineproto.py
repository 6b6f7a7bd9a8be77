"""Line-protocol encoding: exact lines written out by hand, and a strict parser that every line passes."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.cardinality import SeriesLimit
from collector.storage import lineproto
from collector.storage.lineproto import Encoder, encode_batches, encode_sample
from zonewatch import wire

T = 1_764_289_990_123_456_789


def batch(*samples: wire.Sample, zone: str = "dinh-vu", probe: str = "p1", seq: int = 7) -> wire.Batch:
    return wire.Batch(zone=zone, probe=probe, seq=seq, sent_ns=T, samples=samples)


def line(measurement: str, tags: dict[str, str], fields: dict[str, wire.FieldValue],
         t: int = T) -> str | None:
    return encode_sample(wire.Sample(measurement, tags, fields, t), "dinh-vu", "p1")


# ---------------------------------------------------------------------------------------------- exact lines


def test_tags_are_sorted_and_include_zone_and_probe_from_the_batch() -> None:
    got = line("interface", {"link": "primary", "device": "sw1", "ifname": "ge-0/0/1"},
               {"in_octets": 123, "oper_up": True, "speed_mbps": 1000})
    assert got == ("interface,device=sw1,ifname=ge-0/0/1,link=primary,probe=p1,zone=dinh-vu"
                   " in_octets=123i,oper_up=1i,speed_mbps=1000i 1764289990123456789")


def test_the_batch_header_wins_over_a_sample_zone_or_probe_tag() -> None:
    got = line("probe", {"zone": "elsewhere", "probe": "p9"}, {"up": True})
    assert got == "probe,probe=p1,zone=dinh-vu up=1i 1764289990123456789"


def test_a_sample_without_tags_gets_zone_and_probe() -> None:
    assert line("probe", {}, {"spool_depth": 0}, 5) == "probe,probe=p1,zone=dinh-vu spool_depth=0i 5"


@pytest.mark.parametrize(("value", "text"), [
    (True, "1i"),
    (False, "0i"),
    (0, "0i"),
    (-95, "-95i"),
    (2**63 - 1, "9223372036854775807i"),
    (-(2**63), "-9223372036854775808i"),
    (2**63, "9223372036854775808u"),            # a Counter64 above the signed range
    (2**64 - 1, "18446744073709551615u"),
    (-71.5, "-71.5"),
    (0.1, "0.1"),
    (1 / 3, "0.3333333333333333"),
    (5.0, "5.0"),                               # stays a float
    (-0.0, "-0.0"),
    (1e16, "1e+16"),
    (1.5e-7, "1.5e-07"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
])
def test_field_values(value: wire.FieldValue, text: str) -> None:
    assert line("m", {}, {"f": value}, 1) == f"m,probe=p1,zone=dinh-vu f={text} 1"


def test_fields_keep_sample_order() -> None:
    got = line("cellular", {"carrier": "452-04"}, {"rsrp_dbm": -95, "sinr_db": 7.25, "registered": False}, 1)
    assert got == "cellular,carrier=452-04,probe=p1,zone=dinh-vu rsrp_dbm=-95i,sinr_db=7.25,registered=0i 1"


def test_nan_and_infinities_are_left_out() -> None:
    got = line("m", {}, {"a": math.nan, "b": 1.5, "c": math.inf, "d": -math.inf}, 1)
    assert got == "m,probe=p1,zone=dinh-vu b=1.5 1"


def test_a_sample_without_fields_produces_no_line() -> None:
    assert line("m", {"a": "b"}, {}) is None
    assert line("m", {"a": "b"}, {"only": math.nan}) is None
    samples = (wire.Sample("m", {}, {}, 1), wire.Sample("m", {}, {"v": 1}, 2),
               wire.Sample("m", {}, {"x": math.nan}, 3))
    assert encode_batches([batch(*samples)]) == ["m,probe=p1,zone=dinh-vu v=1i 2"]


def test_measurement_escapes_comma_and_space_only() -> None:
    assert line("a b,c=d", {}, {"v": 1}, 1) == r"a\ b\,c=d,probe=p1,zone=dinh-vu v=1i 1"


def test_tag_keys_values_and_field_keys_escape_comma_equals_and_space() -> None:
    got = line("m", {"site name": "Gi0/1 uplink, primary=a"}, {"in=x y,z": 1}, 1)
    assert got == r"m,probe=p1,site\ name=Gi0/1\ uplink\,\ primary\=a,zone=dinh-vu in\=x\ y\,z=1i 1"


def test_backslashes_are_doubled_so_a_trailing_one_cannot_escape_the_separator() -> None:
    got = line("m\\", {"path": "C:\\dir\\"}, {"v": 1}, 1)
    assert got == r"m\\,path=C:\\dir\\,probe=p1,zone=dinh-vu v=1i 1"
    assert line("m", {"a": "x\\,y"}, {"v": 1}, 1) == r"m,a=x\\\,y,probe=p1,zone=dinh-vu v=1i 1"


def test_line_breaks_and_tabs_in_tag_values_are_spelled_out() -> None:
    assert line("m", {"a": "x\ny\r\tz"}, {"v": 1}, 1) == r"m,a=x\ny\r\tz,probe=p1,zone=dinh-vu v=1i 1"


def test_unicode_passes_unchanged() -> None:
    assert line("m", {"site": "Đình Vũ"}, {"v": 1}, 1) == r"m,probe=p1,site=Đình\ Vũ,zone=dinh-vu v=1i 1"


def test_empty_tag_values_are_left_out() -> None:
    assert line("m", {"a": "", "b": "x"}, {"v": 1}, 1) == "m,b=x,probe=p1,zone=dinh-vu v=1i 1"


@pytest.mark.parametrize(("measurement", "tags", "fields", "message"), [
    ("m", {}, {"s": "up"}, "field 's': str 'up' is not a number or a boolean"),
    ("m", {}, {"big": 2**64}, "field 'big': integer 18446744073709551616 does not fit in 64 bits"),
    ("m", {}, {"small": -(2**63) - 1}, "does not fit in 64 bits"),
    ("", {}, {"v": 1}, "empty measurement name"),
    ("#m", {}, {"v": 1}, "starts with '#'"),
    ("m", {"": "x"}, {"v": 1}, "empty tag key"),
    ("m", {}, {"": 1}, "empty field key"),
    ("m", {"a": "\ud800"}, {"v": 1}, "is not valid Unicode"),
])
def test_what_cannot_be_a_valid_line_raises(measurement: str, tags: dict[str, str],
                                            fields: dict[str, object], message: str) -> None:
    sample = wire.Sample(measurement, tags, fields, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape(message)):
        encode_sample(sample, "dinh-vu", "p1")
    with pytest.raises(ValueError, match=r"^zone dinh-vu probe p1 seq 7: "):
        encode_batches([batch(sample)])


def test_encode_batches_keeps_order_across_batches() -> None:
    b1 = batch(wire.Sample("m", {}, {"v": 1}, 1), wire.Sample("m", {}, {"v": 2}, 2))
    b2 = batch(wire.Sample("m", {}, {"v": 3}, 3), probe="p2")
    assert encode_batches([b1, b2]) == [
        "m,probe=p1,zone=dinh-vu v=1i 1",
        "m,probe=p1,zone=dinh-vu v=2i 2",
        "m,probe=p2,zone=dinh-vu v=3i 3",
    ]


def test_the_encoder_cache_keeps_series_of_different_probes_apart() -> None:
    encoder = Encoder(max_series=2)
    sample = wire.Sample("device", {"device": "bts1"}, {"up": True}, 1)
    origins = [("p1", "z1"), ("p2", "z1"), ("p1", "z2"), ("p1", "z1")]
    batches = [batch(sample, probe=p, zone=z) for p, z in origins]
    expected = [
        "device,device=bts1,probe=p1,zone=z1 up=1i 1",
        "device,device=bts1,probe=p2,zone=z1 up=1i 1",
        "device,device=bts1,probe=p1,zone=z2 up=1i 1",
        "device,device=bts1,probe=p1,zone=z1 up=1i 1",
    ]
    assert encoder.encode(batches) == expected
    assert encoder.encode(batches) == expected  # again, from the cache (evicted and refilled)


# ---------------------------------------------------------------------------------------------- encode_rows
# The fast path's agreement with the full path is fuzzed (tests/fuzz, target fastpath); these pin its rules.

NOW_NS = 1_764_290_000 * 10**9
ROWS = [{"m": "interface", "ts": NOW_NS, "tags": {"device": "sw1"}, "fields": {"oper_up": True}},
        {"m": "interface", "ts": NOW_NS, "tags": {"device": "sw2"}, "fields": {"oper_up": False, "util": 0.25}},
        {"m": "interface", "ts": NOW_NS, "tags": {"device": "sw3"}, "fields": {}}]


def rows(**last: object) -> list[dict[str, object]]:
    """ROWS, with keys of the last row replaced."""
    out = [dict(row) for row in ROWS]
    out[-1].update(last)
    return out


def fast(rows: list[dict[str, object]], max_series: int = 10,
         seen: dict[tuple[str, ...], int] | None = None) -> tuple[lineproto.Encoded, int, str] | None:
    for name in ("interface", "device", "oper_up", "util"):
        wire.CHECKED_NAMES.add(name)  # as the full decoder leaves them once it has seen them
    limit = SeriesLimit(max_series, 10**12)
    table, room = limit.table("z1/p1", NOW_NS)
    table.update(seen or {})
    got = Encoder().encode_rows("z1", "p1", rows, NOW_NS, wire.Limits(), table, room)
    if seen is not None:
        seen.clear()
        seen.update(table)
    return got


def test_encode_rows_encodes_admits_and_counts_a_sample_without_fields() -> None:
    got = fast(ROWS)
    assert got is not None
    encoded, refused, example = got
    assert encoded.lines == [f"interface,device=sw1,probe=p1,zone=z1 oper_up=1i {NOW_NS}",
                             f"interface,device=sw2,probe=p1,zone=z1 oper_up=0i,util=0.25 {NOW_NS}"]
    assert (encoded.zone, encoded.probe, encoded.samples, refused, example) == ("z1", "p1", 3, 0, "")


def test_encode_rows_refuses_new_series_over_the_limit_and_keeps_the_rest() -> None:
    got = fast(ROWS, max_series=1)
    assert got is not None
    assert got[0].samples == 1 and got[1:] == (2, "interface,device=sw2")


@pytest.mark.parametrize("last", [
    {"tags": {"device": "Đình Vũ"}},  # not ASCII: valid, but the full decoder checks it
    {"m": "never_seen_before_name"},  # a name the full decoder has not checked yet
    {"fields": {"oper_up": 2**64}},  # beyond 64 bits: the full decoder rejects it and says where
    {"fields": {"oper_up": "up"}},
    {"ts": NOW_NS + 10**12},  # in the future, beyond the limit
    {"tags": {"device": ""}},
    {"tags": {"device": ["sw3"]}},  # not a string, nor anything a series key can hold
    {"tags": {"device": {"id": "sw3"}}},
    {"m": ["interface"]},
    {"extra": 1},
])
def test_encode_rows_leaves_a_message_it_is_not_sure_of_and_takes_back_what_it_admitted(
        last: dict[str, object]) -> None:
    seen: dict[tuple[str, ...], int] = {("interface", "device", "old"): 1}
    assert fast(rows(**last), seen=seen) is None
    assert seen == {("interface", "device", "old"): 1}  # sw1 and sw2 were admitted, then taken back


# The encoder remembers each series it found plain (its prefix) and each field key it escaped; these rows of one
# known series change their fields one way or another (kinds, order, keys, values out of range), and each must be
# encoded (or left to the full decoder) exactly as a row of a series seen for the first time.
LATER_FIELDS: list[dict[str, object]] = [
    {"oper_up": True, "util": 0.25},
    {"oper_up": False, "util": -0.0},
    {"oper_up": 1, "util": 1e300},  # an integer where a boolean was: 1i either way
    {"oper_up": True, "util": 1},  # an integer where a float was
    {"oper_up": True, "util": 0.5},
    {"oper_up": True, "util": 2**64 - 1},  # unsigned
    {"oper_up": True, "util": 2**63 - 1},
    {"oper_up": True, "util": -(2**63)},
    {"util": 0.5, "oper_up": True},  # the same keys in another order
    {"util": 0.5, "oper_up": True, "in_octets": 7},
    {"util": 0.5},
    {},
    {"util": 0.5, "oper_up": True},
    {"util": math.nan, "oper_up": True},
    {"util": math.inf, "oper_up": True},
    {"util": 0.5, "oper_up": 2**63},  # unsigned, where a signed one was
    {"util": 0.5, "oper_up": -(2**63) - 1},  # below 64 bits signed
    {"util": 0.5, "oper_up": "1"},
    {"util": 0.5, "oper_up": None},
    {"util": "0.5", "oper_up": True},
    {"oper_up": True, "in_octets": 5},
    {"in_octets": 5, "oper_up": True},  # the same keys and kinds in another order
    {"util": 0.5, "oper_up": True},
    {"util": 0.5, "in_octets": 1},  # another key with a value of the same kind
    {"util": 0.75, "oper_up": True},
]


def alone(row: dict[str, object]) -> tuple[list[str], int] | None:
    """Return what a fresh encoder makes of ``row`` alone (its series new to it)."""
    table, room = SeriesLimit(10, 10**12).table("z1/p1", NOW_NS)
    got = Encoder().encode_rows("z1", "p1", [row], NOW_NS, wire.Limits(), table, room)
    return None if got is None else (got[0].lines, got[0].samples)


def test_encode_rows_encodes_a_known_series_exactly_as_a_new_one() -> None:
    for name in ("interface", "device", "oper_up", "util", "in_octets"):
        wire.CHECKED_NAMES.add(name)
    encoder = Encoder()
    table, room = SeriesLimit(10, 10**12).table("z1/p1", NOW_NS)
    taken = 0
    for i, fields in enumerate(LATER_FIELDS):
        row = {"m": "interface", "ts": NOW_NS - i, "tags": {"device": "sw1"}, "fields": fields}
        got = encoder.encode_rows("z1", "p1", [row], NOW_NS, wire.Limits(), table, room)
        assert (None if got is None else (got[0].lines, got[0].samples)) == alone(row), fields
        taken += got is not None
    assert taken == 19
    got = encoder.encode_rows("z1", "p1", [{"m": "interface", "ts": NOW_NS, "tags": {"device": "sw1"},
                                            "fields": {"util": 0.75, "oper_up": False}}], NOW_NS, wire.Limits(),
                              table, room)
    assert got is not None and got[0].lines == [f"interface,device=sw1,probe=p1,zone=z1 util=0.75,oper_up=0i {NOW_NS}"]


def test_encode_rows_keeps_a_percent_sign_in_a_tag_value_of_a_known_series() -> None:
    rows = [{"m": "interface", "ts": NOW_NS, "tags": {"device": "sw%d %s"}, "fields": {"oper_up": True}}] * 2
    got = fast(rows)
    assert got is not None
    assert got[0].lines == [f"interface,device=sw%d\\ %s,probe=p1,zone=z1 oper_up=1i {NOW_NS}"] * 2


_LATER_ROWS = st.fixed_dictionaries({
    "m": st.sampled_from(["interface", "device"]),
    "ts": st.just(NOW_NS),
    "tags": st.sampled_from([{"device": "sw1"}, {"device": "sw2"}, {}]),
    "fields": st.dictionaries(st.sampled_from(["oper_up", "util", "in_octets"]), st.one_of(
        st.booleans(), st.integers(-(2**63) - 2, -(2**63) + 2), st.integers(2**63 - 3, 2**64 + 1),
        st.integers(-3, 3), st.floats(), st.just("1")), max_size=3),
})


@given(st.lists(st.lists(_LATER_ROWS, min_size=1, max_size=4), max_size=8))
def test_encode_rows_of_an_encoder_that_has_seen_other_messages_agree_with_each_row_alone(
        messages: list[list[dict[str, object]]]) -> None:
    for name in ("interface", "device", "oper_up", "util", "in_octets"):
        wire.CHECKED_NAMES.add(name)
    encoder = Encoder()
    for message in messages:
        table, room = SeriesLimit(100, 10**12).table("z1/p1", NOW_NS)
        got = encoder.encode_rows("z1", "p1", message, NOW_NS, wire.Limits(), table, room)
        each = [alone(row) for row in message]
        if any(one is None for one in each):
            assert got is None
        else:
            assert got is not None
            assert got[0].lines == [text for one in each if one is not None for text in one[0]]
            assert got[0].samples == len(message)


# ---------------------------------------------------------------------------------------------- strict parser

_SPECIAL = {",", "=", " ", "\\"}
_INT = re.compile(r"^-?(0|[1-9][0-9]*)i$")
_UINT = re.compile(r"^(0|[1-9][0-9]*)u$")
_FLOAT = re.compile(r"^-?([0-9]+\.[0-9]+|[0-9]+(\.[0-9]+)?e[+-][0-9]+)$")


def _scan(text: str, pos: int, stops: str) -> tuple[str, int]:
    """Read up to an unescaped character of ``stops``; return the unescaped token and its end."""
    out: list[str] = []
    while pos < len(text) and text[pos] not in stops:
        ch = text[pos]
        assert ch not in "\n\r", "raw line break inside a line"
        if ch == "\\":
            assert pos + 1 < len(text), "line ends in an escape"
            nxt = text[pos + 1]
            if nxt in _SPECIAL:
                out.append(nxt)
                pos += 2
                continue
        out.append(ch)
        pos += 1
    return "".join(out), pos


def parse(text: str) -> tuple[str, dict[str, str], dict[str, int | float], int]:
    """Parse one line strictly: every part present, nothing unescaped where it must not be."""
    measurement, pos = _scan(text, 0, ", ")
    assert measurement and not measurement.startswith("#")
    tags: dict[str, str] = {}
    while text[pos] == ",":
        key, pos = _scan(text, pos + 1, "=, ")
        assert key and text[pos] == "=", f"tag without '=' at {pos}"
        value, pos = _scan(text, pos + 1, "=, ")
        assert value and text[pos] in ", ", f"bad tag value end at {pos}"
        assert key not in tags
        tags[key] = value
    assert list(tags) == sorted(tags), "tags not sorted"
    assert text[pos] == " "
    fields: dict[str, int | float] = {}
    while True:
        key, pos = _scan(text, pos + 1, "=, ")
        assert key and text[pos] == "=", f"field without '=' at {pos}"
        end = pos + 1
        while end < len(text) and text[end] not in ", ":
            end += 1
        assert end < len(text), "no timestamp"
        raw, pos = text[pos + 1:end], end
        if _INT.match(raw):
            fields[key] = int(raw[:-1])
            assert -(2**63) <= fields[key] < 2**63
        elif _UINT.match(raw):
            fields[key] = int(raw[:-1])
            assert 2**63 <= fields[key] < 2**64
        else:
            assert _FLOAT.match(raw), f"bad field value {raw!r}"
            fields[key] = float(raw)
        if text[pos] == " ":
            break
    stamp = text[pos + 1:]
    assert re.fullmatch(r"-?[0-9]+", stamp), f"bad timestamp {stamp!r}"
    return measurement, tags, fields, int(stamp)


_text = st.text(st.characters(codec="utf-8", exclude_characters="\n\r\t"), max_size=12)
_name = _text.filter(lambda s: s != "" and not s.startswith("#"))
_value = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
)


def sample_strategy(text: st.SearchStrategy[str],
                    name: st.SearchStrategy[str]) -> st.SearchStrategy[wire.Sample]:
    return st.builds(
        wire.Sample,
        measurement=name,
        tags=st.dictionaries(name, text, max_size=5),
        fields=st.dictionaries(name, _value, max_size=5),
        time_ns=st.integers(min_value=0, max_value=2**63 - 1),
    )


@given(st.lists(sample_strategy(_text, _name), max_size=5), st.sampled_from(["dinh-vu", "z.1"]),
       st.sampled_from(["p1", "probe-2"]))
def test_every_line_parses_back_to_its_sample(samples: list[wire.Sample], zone: str, probe: str) -> None:
    lines = Encoder().encode([wire.Batch(zone=zone, probe=probe, seq=1, sent_ns=0, samples=tuple(samples))])
    expected = []
    for s in samples:
        fields = {k: (int(v) if isinstance(v, bool) else v) for k, v in s.fields.items()
                  if not (isinstance(v, float) and not math.isfinite(v))}
        if fields:
            tags = {k: v for k, v in s.tags.items() if v}
            tags.update(zone=zone, probe=probe)
            expected.append((s.measurement, tags, fields, s.time_ns))
    assert [parse(text) for text in lines] == expected


_any_text = st.text(st.characters(codec="utf-8"), max_size=12)


_any_name = _any_text.filter(lambda s: s != "" and not s.startswith("#"))


@given(st.lists(sample_strategy(_any_text, _any_name), max_size=5))
def test_no_line_ever_contains_a_line_break(samples: list[wire.Sample]) -> None:
    for text in encode_batches([wire.Batch(zone="z", probe="p", seq=1, sent_ns=0, samples=tuple(samples))]):
        assert "\n" not in text and "\r" not in text


def test_the_parser_rejects_what_it_must() -> None:
    good = "m,a=b v=1i 1"
    assert parse(good) == ("m", {"a": "b"}, {"v": 1}, 1)
    for bad in ["m,a=b c v=1i 1", "m,a= v=1i 1", "m,b=1,a=2 v=1i 1", "m v=1 1", "m v=1.0i 1", "m v=1i",
                "m v=9223372036854775808i 1", "m,a=b\nc v=1i 1", "m v=1i 1.5", "m,a==b v=1i 1"]:
        with pytest.raises(AssertionError):
            parse(bad)


def test_module_exports() -> None:
    assert set(lineproto.__all__) == {"Encoder", "Encoded", "encode_batches", "encode_sample", "escape_measurement",
                                      "escape_key"}


def test_encode_rows_checks_a_series_once_and_its_rows_every_time() -> None:
    encoder = Encoder()
    table, room = SeriesLimit(10, 10**12).table("z1/p1", NOW_NS)
    for name in ("interface", "device", "oper_up", "util"):
        wire.CHECKED_NAMES.add(name)
    assert encoder.encode_rows("z1", "p1", ROWS, NOW_NS, wire.Limits(), table, room) is not None
    again = [dict(row) for row in ROWS]
    again[0]["ts"] = NOW_NS + 10**12   # a series known to be plain, in a row that is not
    assert encoder.encode_rows("z1", "p1", again, NOW_NS, wire.Limits(), table, room) is None
    again[0] = dict(ROWS[0], tags={"device": "sw1", "port": "x" * 300})   # a new series, not plain
    assert encoder.encode_rows("z1", "p1", again, NOW_NS, wire.Limits(), table, room) is None
    got = encoder.encode_rows("z1", "p1", ROWS, NOW_NS, wire.Limits(max_tags=0), table, room)
    assert got is None   # the tag count is checked against the limits of each call
