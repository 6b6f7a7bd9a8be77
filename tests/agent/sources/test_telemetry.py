"""Telemetry: config checks, the pure message -> samples mapping, and the hand-over from paho's thread to the
event loop (driven by hand: no broker, no sockets, no sleeps)."""

from __future__ import annotations

import asyncio
import logging
import re
import textwrap
import threading
from collections.abc import Sequence
from typing import cast

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.sources import telemetry
from agent.sources.telemetry import TelemetryConfig, TelemetrySource
from agent.sources.telemetry_map import Mapped, Problem, Subscription, map_message
from zonewatch import strict, wire
from zonewatch.wire import Event, Sample

NOW = 1_764_290_000_000_000_000  # receive time: 2025-11-28T00:33:20Z
TS_S = 1_764_289_990  # ten seconds earlier, in seconds

CONFIG = """\
type: telemetry
name: site-sensors
broker: {host: 127.0.0.1, port: 1883}
subscriptions:
  - topic: site/+/power
    measurement: power
    tags: {owner: viettel}
    topic_tags: {site: 1}
    fields: {on_battery: mains, battery_pct: battery.charge, battery_minutes: battery.runtime}
    booleans: {on_battery: [battery, mains]}
    time: ts
  - topic: site/+/door
    measurement: site_sensor
    topic_tags: {site: 1}
    fields: {door_open: $}
    booleans: {door_open: [open, closed]}
  - topic: site/+/temperature/#
    measurement: site_sensor
    topic_tags: {site: 1, probe_point: -1}
    fields: {temperature_c: $}
"""


def load(text: str = CONFIG) -> TelemetryConfig:
    return strict.load(TelemetryConfig, text, "agent.yaml")


def subs(text: str = CONFIG) -> Sequence[Subscription]:
    return load(text).subscriptions


def one(topic: str, payload: bytes | str, text: str = CONFIG, received_ns: int = NOW, limit: int = 65536) -> Mapped:
    data = payload.encode() if isinstance(payload, str) else payload
    return map_message(subs(text), topic, data, received_ns, limit)


def sub_text(fields: str, extra: str = "", topic: str = "s/+/x") -> str:
    """Return a config with one subscription on ``topic`` (tag ``site`` from level 1)."""
    return (f"type: telemetry\nname: t\nbroker: {{}}\nsubscriptions:\n  - topic: {topic}\n    measurement: m\n"
            f"    topic_tags: {{site: 1}}\n    fields: {fields}\n{textwrap.indent(extra, '    ')}")


def reasons(mapped: Mapped) -> list[str]:
    return [p.reason for p in mapped.problems]


# ---------------------------------------------------------------------------------------------- config


def test_the_module_docstring_example_loads() -> None:
    doc = telemetry.__doc__ or ""
    block = doc.split("Config (one entry per local broker)::\n", 1)[1].split("\n\n", 1)[0]
    (item,) = yaml.safe_load(textwrap.dedent(block))
    cfg = load(yaml.safe_dump(item))
    (sub,) = cfg.subscriptions
    assert (cfg.name, cfg.broker.host, cfg.max_payload_bytes, cfg.connect_timeout) == ("site-sensors", "10.20.0.5",
                                                                                      65536, 10.0)
    assert sub.fields["battery_pct"] == "battery.charge" and sub.booleans == {"on_battery": ["battery", "mains"]}


def test_defaults() -> None:
    cfg = load(sub_text("{v: $}"))
    assert (cfg.max_payload_bytes, cfg.connect_timeout, cfg.broker.port) == (65536, 10.0, 1883)
    assert (cfg.subscriptions[0].qos, cfg.subscriptions[0].time, cfg.subscriptions[0].booleans) == (0, None, {})


@pytest.mark.parametrize(("text", "message"), [
    (sub_text("{bad-name: $}"),
     "agent.yaml:8: subscriptions[0].fields: field name 'bad-name' must match ^[a-zA-Z_][a-zA-Z0-9_]{0,62}$ "
     "(letters, digits, _; not starting with a digit)"),
    (sub_text("{v: $}").replace("measurement: m", "measurement: 9m"),
     "agent.yaml:6: subscriptions[0].measurement: measurement name '9m' must match ^[a-zA-Z_][a-zA-Z0-9_]{0,62}$ "
     "(letters, digits, _; not starting with a digit)"),
    (sub_text("{v: $}", "tags: {site-id: x}"),
     "agent.yaml:9: subscriptions[0].tags: tag name 'site-id' must match ^[a-zA-Z_][a-zA-Z0-9_]{0,62}$ "
     "(letters, digits, _; not starting with a digit)"),
    (sub_text("{v: $}", "tags: {owner: ''}"),
     "agent.yaml:9: subscriptions[0].tags: tag 'owner' must be a non-empty string of at most 256 characters"),
    (sub_text("{v: $}").replace("{site: 1}", "{site.name: 1}"),
     "agent.yaml:7: subscriptions[0].topic_tags: tag name 'site.name' must match ^[a-zA-Z_][a-zA-Z0-9_]{0,62}$ "
     "(letters, digits, _; not starting with a digit)"),
    (sub_text("{v: $}", "tags: {site: x}"),
     "agent.yaml:7: subscriptions[0].topic_tags: tag 'site' is given both in tags and in topic_tags"),
    (sub_text("{v: $}").replace("{site: 1}", "{site: 3}"),
     "agent.yaml:7: subscriptions[0].topic_tags: tag 'site': topic 's/+/x' has 3 levels (0..2), so there is no "
     "level 3"),
    (sub_text("{v: $}", topic="s/+x/y"),
     "agent.yaml:5: subscriptions[0].topic: topic filter 's/+x/y': level '+x' mixes a wildcard with text; + and # "
     "must stand alone between slashes"),
    (sub_text("{v: $}", topic="s/#/y"),
     "agent.yaml:5: subscriptions[0].topic: topic filter 's/#/y': # must be the last level"),
    (sub_text("{v: $}", topic="$share/g/s/+"),
     "agent.yaml:5: subscriptions[0].topic: topic filter '$share/g/s/+': shared subscriptions are not supported "
     "here"),
    (sub_text("{v: $}", topic="''"), "agent.yaml:5: subscriptions[0].topic: topic filter is empty"),
    (sub_text("{v: battery..voltage}"),
     "agent.yaml:8: subscriptions[0].fields: field 'v': path 'battery..voltage' must be '$' (the whole payload) "
     "or dotted keys like 'battery.voltage'"),
    (sub_text("{v: $}", "time: ''"),
     "agent.yaml:9: subscriptions[0].time: path '' must be '$' (the whole payload) or dotted keys like "
     "'battery.voltage'"),
    (sub_text("{v: $}", "booleans: {door: [open, closed]}"),
     "agent.yaml:9: subscriptions[0].booleans: 'door' is not one of the fields (v)"),
    (sub_text("{v: $}", "booleans: {v: [open]}"),
     "agent.yaml:9: subscriptions[0].booleans: 'v' must be two different words: [meaning true, meaning false], "
     "e.g. [open, closed]"),
    (sub_text("{}"), "agent.yaml:8: subscriptions[0].fields: give at least one field (name: path in the payload)"),
    (sub_text("{v: $}", "booleans: {v: [on, off]}"),
     "agent.yaml:9: subscriptions[0].booleans: 'v': YAML reads on, off, yes, no, true and false without quotes as "
     "booleans; quote the words, e.g. ['on', 'off']"),
    (sub_text("{v: $}", "field: {w: x}"), "agent.yaml:9: subscriptions[0].field: unknown key 'field' (did you "
                                          "mean 'fields'?)"),
    (sub_text("{v: $}", "qos: 3"), "agent.yaml:9: subscriptions[0].qos: expected 0, 1 or 2, got 3"),
    (sub_text("{v: $}") + "max_payload_bytes: 0\n",
     "agent.yaml:9: max_payload_bytes: expected greater than or equal to 1, got 0"),
    ("type: telemetry\nname: t\nbroker: {}\nsubscriptions: []\n",
     "agent.yaml:4: subscriptions: List should have at least 1 item after validation, not 0"),
])
def test_config_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(strict.ConfigError) as info:
        load(text)
    assert str(info.value) == message


def test_every_config_name_is_one_the_wire_accepts() -> None:
    # The load-time check and zonewatch.wire's decoder agree: what loads also decodes.
    (sample,) = one("site/bts-dv-01/power", '{"mains": "mains", "battery": {"charge": 100}}').samples
    batch = wire.Batch("z", "p", 1, NOW, (sample,))
    assert wire.decode(wire.encode(batch)) == batch


# ---------------------------------------------------------------------------------------------- mapping


def test_power_nested_paths_topic_tags_fixed_tags_booleans_and_time_in_seconds() -> None:
    payload = f'{{"mains": "battery", "battery": {{"charge": 87, "runtime": 41.5}}, "ts": {TS_S}}}'
    assert one("site/bts-dv-01/power", payload) == Mapped(samples=[Sample(
        "power", {"owner": "viettel", "site": "bts-dv-01"},
        {"on_battery": True, "battery_pct": 87.0, "battery_minutes": 41.5}, TS_S * 10**9)])


def test_numbers_become_floats_and_booleans_stay_booleans() -> None:
    text = sub_text("{a: a, b: b, c: c}")
    (sample,) = one("s/x/x", '{"a": 23, "b": true, "c": 1e3}', text).samples
    assert [(k, type(v)) for k, v in sample.fields.items()] == [("a", float), ("b", bool), ("c", float)]
    assert sample.fields == {"a": 23.0, "b": True, "c": 1000.0}


def test_whole_payload_as_a_bare_number_and_as_a_bare_string() -> None:
    assert one("site/bts-dv-01/temperature/rack", "27.25") == Mapped(samples=[Sample(
        "site_sensor", {"site": "bts-dv-01", "probe_point": "rack"}, {"temperature_c": 27.25}, NOW)])
    assert one("site/bts-dv-01/door", '"closed"').samples == [
        Sample("site_sensor", {"site": "bts-dv-01"}, {"door_open": False}, NOW)]
    assert one("site/bts-dv-01/door", '"open"').samples[0].fields == {"door_open": True}


def test_a_path_can_index_a_list() -> None:
    text = sub_text("{cell1: battery.cells.1.v}")
    assert one("s/x/x", '{"battery": {"cells": [{"v": 2.1}, {"v": 2.2}]}}', text).samples[0].fields == {"cell1": 2.2}
    assert reasons(one("s/x/x", '{"battery": {"cells": [{"v": 2.1}]}}', text)) == ["missing_field"]


@pytest.mark.parametrize(("ts", "expected"), [
    (str(TS_S), TS_S * 10**9),
    ("1764289990.123", 1_764_289_990_123_000_000),
    ("1764289990123", 1_764_289_990_123_000_000),
    ("1764289990123.5", 1_764_289_990_123_500_000),
    ("1764289990123456", 1_764_289_990_123_456_000),
    ("1764289990123456789", 1_764_289_990_123_456_789),
    (str(NOW + 600 * 10**9), NOW + 600 * 10**9),  # ten minutes ahead is still taken
])
def test_time_in_seconds_ms_us_or_ns_is_told_by_magnitude(ts: str, expected: int) -> None:
    mapped = one("s/x/x", f'{{"v": 1, "t": {ts}}}', sub_text("{v: v}", "time: t"))
    assert (mapped.samples[0].time_ns, mapped.problems) == (expected, [])


@pytest.mark.parametrize("ts", ['"2025-11-28T00:33:10Z"', "true", "null", "12345", "-1",
                                str(NOW + 601 * 10**9), "1e400"])
def test_a_bad_or_implausible_time_falls_back_to_the_receive_time(ts: str) -> None:
    mapped = one("s/x/x", f'{{"v": 1, "t": {ts}}}', sub_text("{v: v}", "time: t"))
    assert [s.time_ns for s in mapped.samples] == [NOW]
    assert reasons(mapped) == ["bad_time"]


def test_a_missing_time_falls_back_to_the_receive_time() -> None:
    mapped = one("s/x/x", '{"v": 1}', sub_text("{v: v}", "time: meta.t"))
    assert ([s.time_ns for s in mapped.samples], mapped.problems) == (
        [NOW], [Problem("bad_time", "time 'meta.t' is missing; used the receive time")])


def test_wrong_types_are_skipped_and_the_rest_kept() -> None:
    text = sub_text("{ok: ok, n: n, o: o, l: l, s: s, gone: x.y, b: b, nan: nan}", "booleans: {b: ['on', 'off']}")
    payload = '{"ok": -3.5, "n": null, "o": {"a": 1}, "l": [1], "s": "12", "x": 5, "b": "ON", "nan": NaN}'
    mapped = one("s/x/x", payload, text)
    assert mapped.samples == [Sample("m", {"site": "x"}, {"ok": -3.5}, NOW)]
    assert mapped.problems == [
        Problem("wrong_type", "field 'n' at 'n' is null, expected a number or boolean"),
        Problem("wrong_type", "field 'o' at 'o' is an object, expected a number or boolean"),
        Problem("wrong_type", "field 'l' at 'l' is a list, expected a number or boolean"),
        Problem("wrong_type", "field 's' at 's' is a string, expected a number or boolean"),
        Problem("missing_field", "field 'gone': no 'y' at 'x.y'"),
        Problem("unknown_string", "field 'b' is 'ON', expected 'on' or 'off'"),
        Problem("bad_number", "field 'nan' is nan"),
    ]


def test_a_booleans_field_takes_json_booleans_and_its_words_but_never_numbers() -> None:
    text = sub_text("{door_open: $}", "booleans: {door_open: [open, closed]}")
    assert [one("s/x/x", p, text).samples[0].fields["door_open"] for p in ("true", '"open"', "false")] == [
        True, True, False]
    assert one("s/x/x", "1", text) == Mapped(problems=[Problem(
        "wrong_type", "field 'door_open' at '$' is a number, expected a boolean, 'open' or 'closed'")])


def test_a_message_without_usable_fields_gives_no_sample() -> None:
    mapped = one("site/bts-dv-01/power", '{"mains": "unknown", "battery": {}}')
    assert mapped.samples == []
    assert reasons(mapped) == ["unknown_string", "missing_field", "missing_field"]
    assert one("site/bts-dv-01/door", "{}").samples == []


@pytest.mark.parametrize("payload", [b"{not json", b"", b'{"v": 1', b"\xff\xfe\x00", b"open", b"9" * 5000])
def test_bad_json_is_one_problem(payload: bytes) -> None:
    mapped = one("s/x/x", payload, sub_text("{v: $}"))
    assert (mapped.samples, reasons(mapped)) == ([], ["bad_json"])


def test_a_number_too_large_for_a_float_is_bad_number() -> None:
    assert reasons(one("s/x/x", "1" + "0" * 400, sub_text("{v: $}"))) == ["bad_number"]


def test_oversize_payloads_are_rejected_before_decoding() -> None:
    text = sub_text("{v: $}")
    at_limit = b"1" + b" " * 99
    assert one("s/x/x", at_limit, text, limit=100).samples[0].fields == {"v": 1.0}
    mapped = one("s/x/x", at_limit + b" ", text, limit=100)
    assert mapped == Mapped(problems=[Problem("oversize", "101 bytes; the limit is 100")])


def test_topics_are_matched_with_mqtt_rules() -> None:
    assert reasons(one("site/bts-dv-01/fuel", "1")) == ["no_subscription"]
    assert reasons(one("site/a/b/power", "1")) == ["no_subscription"]  # + is exactly one level
    assert one("site/bts-dv-01/temperature/rack/top", "20").samples[0].tags == {"site": "bts-dv-01",
                                                                              "probe_point": "top"}
    hashed = sub_text("{v: $}", topic="'#'")
    assert reasons(one("$SYS/broker/uptime", "1", hashed)) == ["no_subscription"]  # # does not match $ topics


def test_a_topic_tag_from_a_missing_or_empty_level_is_a_problem() -> None:
    text = sub_text("{v: $}", topic="s/#").replace("{site: 1}", "{site: 1, room: 2}")
    assert one("s/x/y", "1", text).samples[0].tags == {"site": "x", "room": "y"}
    mapped = one("s/x", "1", text)
    assert mapped == Mapped(problems=[Problem("bad_topic_tag", "tag 'room': the topic has no level 2")])
    assert reasons(one("s//y", "1", text)) == ["bad_topic_tag"]


def test_every_matching_subscription_makes_its_own_sample() -> None:
    text = CONFIG + "  - topic: site/#\n    measurement: seen\n    fields: {any: $}\n"
    mapped = one("site/bts-dv-01/temperature/rack", "21", text)
    assert [(s.measurement, s.fields) for s in mapped.samples] == [("site_sensor", {"temperature_c": 21.0}),
                                                                   ("seen", {"any": 21.0})]
    assert mapped.problems == []


# ---------------------------------------------------------------------------------------------- listener


class Recorder:
    """An ``emit`` that records every call and the thread it ran on."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Sample], list[Event]]] = []
        self.threads: set[int] = set()
        self.changed = asyncio.Event()

    def __call__(self, kind: str, samples: Sequence[Sample], events: Sequence[Event]) -> None:
        self.calls.append((kind, list(samples), list(events)))
        self.threads.add(threading.get_ident())
        self.changed.set()

    def samples(self) -> list[Sample]:
        return [s for _, batch, _ in self.calls for s in batch]


def message(topic: bytes | str, payload: bytes | str, ids: list[int] | None = None) -> mqtt.MQTTMessage:
    msg = mqtt.MQTTMessage(topic=topic.encode() if isinstance(topic, str) else topic)
    msg.payload = payload.encode() if isinstance(payload, str) else payload
    if ids is not None:
        msg.properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        msg.properties.SubscriptionIdentifier = ids
    return msg


def deliver(source: TelemetrySource, *messages: mqtt.MQTTMessage) -> None:
    """Call the source's on_message the way paho's network thread does."""
    for msg in messages:
        source._on_message(cast(mqtt.Client, None), None, msg)


async def drained(source: TelemetrySource) -> None:
    """Let the loop run the callbacks paho's thread scheduled (bounded)."""
    for _ in range(100):
        if not source._inbox and not source._drain_scheduled:
            return
        await asyncio.sleep(0)
    raise AssertionError("the inbox was not drained")


def test_messages_from_paho_thread_are_emitted_on_the_loop_thread(caplog: pytest.LogCaptureFixture) -> None:
    source = TelemetrySource(load(), clock=lambda: NOW)
    rec = Recorder()

    async def run() -> None:
        source._attach(asyncio.get_running_loop(), rec)
        incoming = [message("site/bts-dv-01/door", "open"), message("site/bts-dv-01/door", "{"),
                    message("site/bts-dv-02/door", '"open"'), message("site/bts-dv-01/door", '"closed"')]
        paho_thread = threading.Thread(target=deliver, args=(source, *incoming))
        paho_thread.start()
        paho_thread.join(5)
        await drained(source)

    with caplog.at_level(logging.WARNING, logger="agent.sources.telemetry"):
        asyncio.run(run())
    assert rec.samples() == [Sample("site_sensor", {"site": "bts-dv-02"}, {"door_open": True}, NOW),
                             Sample("site_sensor", {"site": "bts-dv-01"}, {"door_open": False}, NOW)]
    assert {kind for kind, _, events in rec.calls} == {"data"} and all(not e for _, _, e in rec.calls)
    assert rec.threads == {threading.get_ident()}
    assert (source.received, source.emitted, source.stats) == (4, 2, {"bad_json": 2})
    # logged once per topic and reason
    assert [r.getMessage().split(":", 2)[1] for r in caplog.records] == [" bad_json on site/bts-dv-01/door"]


def test_mqtt5_subscription_identifiers_keep_overlapping_filters_from_doubling() -> None:
    text = CONFIG + "  - topic: site/#\n    measurement: seen\n    fields: {any: $}\n"
    source = TelemetrySource(load(text), clock=lambda: NOW)
    rec = Recorder()

    async def run() -> None:
        source._attach(asyncio.get_running_loop(), rec)
        # An MQTT 5 broker sends one copy per matching filter: temperature (id 3), then site/# (id 4).
        topic = "site/s1/temperature/rack"
        deliver(source, message(topic, "21", ids=[3]))
        deliver(source, message(topic, "21", ids=[4]))
        deliver(source, message(topic, "21"))  # MQTT 3.1.1: one copy for all filters
        await drained(source)

    asyncio.run(run())
    assert [s.measurement for s in rec.samples()] == ["site_sensor", "seen", "site_sensor", "seen"]


def test_a_flood_beyond_the_bound_is_dropped_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "_MAX_PENDING", 3)
    source = TelemetrySource(load(), clock=lambda: NOW)
    rec = Recorder()

    async def run() -> None:
        source._attach(asyncio.get_running_loop(), rec)
        for _ in range(5):  # the loop does not run in between: nothing is drained yet
            deliver(source, message("site/s1/door", '"open"'))
        await drained(source)

    asyncio.run(run())
    assert (len(rec.samples()), source.stats) == (3, {"queue_full": 2})


def test_a_topic_that_is_not_utf8_is_counted() -> None:
    source = TelemetrySource(load(), clock=lambda: NOW)
    rec = Recorder()

    async def run() -> None:
        source._attach(asyncio.get_running_loop(), rec)
        deliver(source, message(b"site/\xff/door", '"open"'))
        await drained(source)

    asyncio.run(run())
    assert (rec.calls, source.stats) == ([], {"bad_topic": 1})


def test_nothing_is_emitted_after_stop_and_stop_is_safe_without_start() -> None:
    source = TelemetrySource(load(), clock=lambda: NOW)
    assert source._client is None  # the constructor does no I/O
    rec = Recorder()

    async def run() -> None:
        await source.stop()
        source._attach(asyncio.get_running_loop(), rec)
        deliver(source, message("site/s1/door", '"open"'))
        await source.stop()
        await drained(source)

    asyncio.run(run())
    assert rec.calls == []


def test_log_once_is_bounded(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(telemetry, "_MAX_LOGGED", 2)
    source = TelemetrySource(load(), clock=lambda: NOW)
    with caplog.at_level(logging.WARNING, logger="agent.sources.telemetry"):
        for i in range(5):
            source._handle(f"site/s{i}/door", b"{", NOW, None)
    assert source.stats == {"bad_json": 5}
    assert [re.sub(r".*: (bad_json on [^:\s]+|more than).*", r"\1", r.getMessage()) for r in caplog.records] == [
        "bad_json on site/s0/door", "bad_json on site/s1/door", "more than"]
