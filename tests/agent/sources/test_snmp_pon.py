"""Per-row filtering and per-group aggregation of SNMP tables (``keep_rows_when``, ``aggregate``), and the GPON
profiles built on them, against FakeSnmpClient (no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from agent import profiles
from agent.snmpclient import FakeSnmpClient, SnmpValue
from agent.sources.snmp import SnmpConfig, SnmpSource
from agent.sources.snmpeval import Context, table_samples
from zonewatch import strict
from zonewatch.measurements import problems
from zonewatch.wire import Sample

NOW = 1_764_290_000_000_000_000
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
IFNAME = "1.3.6.1.2.1.31.1.1.1.1"
CONFIG = "type: snmp\nname: olt-1\nhost: 192.0.2.20\nversion: v2c\ncommunity: c\nprofiles: [{}]\n"


def collect(profile: str, values: dict[str, SnmpValue]) -> list[Sample]:
    fake = FakeSnmpClient({SYS_UPTIME: 100, **values})
    source = SnmpSource(strict.load(SnmpConfig, CONFIG.format(profile), "agent.yaml"), client_factory=lambda t: fake)
    samples = asyncio.run(source.collect(NOW))
    for s in samples:
        assert problems(s.measurement, s.tags, s.fields) == [], s
    return samples


def of(samples: list[Sample], measurement: str) -> list[tuple[dict[str, str], dict[str, object]]]:
    return [(s.tags, dict(s.fields)) for s in samples if s.measurement == measurement]


# ---------------------------------------------------------------------------------------------- the profiles

HW = "1.3.6.1.4.1.2011.6.128.1.1.2"
PORT = 4194312192  # GPON 0/1/0


def test_huawei_dark_ont_gives_no_reading_and_counts_offline() -> None:
    # ONT 0 is up with Rx -20.00 dBm; ONT 1 is down and its DDM gives 2147483647 ("no value") everywhere;
    # ONT 2 claims down but still has a stale level: a level of an ONT that is not up is not read.
    values: dict[str, SnmpValue] = {f"{IFNAME}.{PORT}": b"GPON 0/1/0"}
    for ont, status, level in ((0, 1, -2000), (1, 2, 2147483647), (2, 2, -2600)):
        values |= {f"{HW}.46.1.15.{PORT}.{ont}": status, f"{HW}.51.1.4.{PORT}.{ont}": level,
                   f"{HW}.51.1.3.{PORT}.{ont}": 2147483647, f"{HW}.51.1.6.{PORT}.{ont}": 2147483647}
    samples = collect("huawei_gpon", values)
    assert of(samples, "onu") == []
    assert of(samples, "pon") == [({"device": "olt-1", "port": "GPON 0/1/0"},
                                   {"onus": 3, "onus_online": 1, "onus_offline": 2, "onu_rx_min_dbm": -20.0,
                                    "onu_rx_median_dbm": -20.0})]


def test_zte_sentinels_are_offline_onus_without_a_level() -> None:
    rx = "1.3.6.1.4.1.3902.1082.500.1.2.4.2.1.2"
    port = 0x11010201
    # 65535000: not in service; -80000: no signal; neither is a level. No ifName: the port is named by ifIndex.
    samples = collect("zte_gpon", {f"{rx}.{port}.1": 65535000, f"{rx}.{port}.2": -80000, f"{rx}.{port}.3": -27500})
    assert of(samples, "onu") == [({"device": "olt-1", "port": f"ifIndex.{port}", "onu": "3"}, {"olt_rx_dbm": -27.5})]
    assert of(samples, "pon") == [({"device": "olt-1", "port": f"ifIndex.{port}"},
                                   {"onus": 3, "onus_online": 1, "onus_offline": 2, "olt_rx_min_dbm": -27.5,
                                    "olt_rx_median_dbm": -27.5})]


def test_an_olt_without_onus_gives_no_pon_sample() -> None:
    assert of(collect("zte_gpon", {}), "pon") == []


# ---------------------------------------------------------------------------------------------- the language

TABLE = """\
name: t
description: test
tables:
  - measurement: onu
    columns:
      level: 1.3.6.1.9.1
      state: 1.3.6.1.9.2
    joins:
      portname: {oid: 1.3.6.1.9.3, by: parent_index}
    tags:
      port: [portname, {text: "p{index_parent}"}]
      onu: [{text: "{index_last}"}]
    fields:
      level_db: {column: level, missing: [999]}
      _up: {column: state, one_of: [1]}
    keep_rows_when:
      - {field: level_db, below: -25}
    aggregate:
      measurement: pon
      by: [port]
      fields:
        n: {count: rows}
        up: {count_true: _up}
        down: {count_false: _up}
        with_level: {count: level_db}
        weak: {count: level_db, below: -25}
        strong: {count: level_db, above: -15}
        lo: {min: level_db}
        hi: {max: level_db}
        mid: {median: level_db}
"""


def evaluate(text: str, columns: dict[str, dict[str, SnmpValue]],
             joins: dict[str, dict[str, SnmpValue]] | None = None) -> list[Sample]:
    table = profiles.load(text).tables[0]
    config = strict.load(SnmpConfig, CONFIG.format("system"), "agent.yaml")
    return table_samples(table, columns, joins or {}, Context(config, NOW, {}))


def test_rows_are_kept_by_their_fields_and_aggregated_per_group() -> None:
    samples = evaluate(TABLE, {
        "level": {"7.1": -10, "7.2": -26, "7.3": -21, "7.4": 999, "8.1": 999},
        "state": {"7.1": 1, "7.2": 1, "7.3": 1, "7.4": 2, "8.1": 2},
    }, {"portname": {"7": b"pon-7"}})
    # only ONU 7.2 is below -25; '_up' is never sent
    assert of(samples, "onu") == [({"device": "olt-1", "port": "pon-7", "onu": "2"}, {"level_db": -26})]
    # pon-7 levels -10, -26, -21 (999 is missing): median -21; port 8 has no ifName join: named by its index
    assert of(samples, "pon") == [
        ({"device": "olt-1", "port": "pon-7"},
         {"n": 4, "up": 3, "down": 1, "with_level": 3, "weak": 1, "strong": 1, "lo": -26, "hi": -10, "mid": -21.0}),
        ({"device": "olt-1", "port": "p8"}, {"n": 1, "up": 0, "down": 1, "with_level": 0, "weak": 0, "strong": 0}),
    ]


def test_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    samples = evaluate(TABLE, {"level": {"1.1": -20, "1.2": -23, "1.3": -10, "1.4": -30}})
    (pon,) = of(samples, "pon")
    assert pon[1]["mid"] == -21.5


def test_without_keep_rows_when_every_row_gives_its_sample() -> None:
    text = TABLE.replace("    keep_rows_when:\n      - {field: level_db, below: -25}\n", "")
    samples = evaluate(text, {"level": {"1.1": -20, "1.2": -30}})
    assert [f for _, f in of(samples, "onu")] == [{"level_db": -20}, {"level_db": -30}]


@pytest.mark.parametrize(("change", "message"), [
    (("by: [port]", "by: [slot]"), "aggregate 'by' uses 'slot'"),
    (("lo: {min: level_db}", "lo: {min: level}"), "aggregate field 'lo' uses 'level'"),
    (("lo: {min: level_db}", "lo: {min: level_db, max: level_db}"), "exactly one of: count"),
    (("lo: {min: level_db}", "lo: {min: level_db, below: 1}"), "'below' and 'above' go with 'count' only"),
    (("n: {count: rows}", "n: {count: rows, below: 1}"), "'count: rows' counts every row"),
    (("- {field: level_db, below: -25}", "- {field: nope, below: -25}"), "keep_rows_when uses 'nope'"),
    (("- {field: level_db, below: -25}", "- {field: level_db}"), "exactly one of 'below' and 'above'"),
    (("    aggregate:", "    merge_rows: true\n    aggregate:"), "'aggregate' and 'merge_rows' cannot be combined"),
    (("state: 1.3.6.1.9.2", "parent_index: 1.3.6.1.9.2"), "'parent_index' is a value of a join's 'by'"),
    (('{text: "p{index_parent}"}', '{text: "p{slot}"}'), "the placeholders are {index}, {index_parent}"),
])
def test_profile_errors(change: tuple[str, str], message: str) -> None:
    with pytest.raises(strict.ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        profiles.load(TABLE.replace(*change))


def test_a_hidden_field_needs_an_aggregate_or_row_filter() -> None:
    text = TABLE[: TABLE.index("    keep_rows_when:")]
    with pytest.raises(strict.ConfigError, match="starts with '_' is never sent"):
        profiles.load(text)
