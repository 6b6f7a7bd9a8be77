"""The data contract: topics, batches of samples and events, their encoding and decoding, and the limits a
receiver applies (the whole contract: ``zonewatch.wire``).

One module: the rows' fast checks (``_rows`` in ``decode``, ``plain_samples``) repeat, inline, the rules of the
full check (``_decode_row``) and of ``check_limits``; they must agree exactly (the fuzz targets check that they
do), and that is easiest to see with the contract and both forms side by side."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple, TypeVar

SCHEMA_VERSION: Final = 1
SUPPORTED_VERSIONS: Final = frozenset({1})
TOPIC_ROOT: Final = "zw/v1"
KINDS: Final = ("status", "data", "events", "config", "command")
STATUS_ONLINE: Final = b"online"
STATUS_OFFLINE: Final = b"offline"
STATUS_STOPPING: Final = b"stopping"   # a stop on purpose (restart, upgrade): ProbeDown waits before paging
SENT_PROPERTY: Final = "zw-sent-ns"   # MQTT v5 user property: the probe's clock when it sent the message

# Sequence numbers and origins fit a signed 64-bit integer (SQLite's, on both sides); a probe makes about two
# messages a second, so this is never reached by counting.
MAX_SEQ: Final = 2**63 - 1
# Measurements only the collector writes (derived from what the probes send): a probe's sample or event named
# one of these is refused (``collector_only``). ``event`` is how the collector stores the events it receives.
COLLECTOR_MEASUREMENTS: Final = frozenset({"alert", "coverage", "coverage_at_probe", "redundancy", "event"})

Kind = Literal["status", "data", "events", "config", "command"]
FieldValue = int | float | bool

# Zone and probe ids become topic segments and tag values: keep them plain.
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}\Z")
# Measurement, tag and field names: what Influx line protocol and PromQL both take without quoting.
_IDENT = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,62}\Z")
MAX_TAG_VALUE: Final = 256  # characters of a tag value
FIELD_INT_MIN: Final = -(2**63)  # an integer field: signed 64-bit down,
FIELD_INT_MAX: Final = 2**64 - 1  # Counter64 up
_MAX_TAG_VALUE, _INT_MIN, _INT_MAX = MAX_TAG_VALUE, FIELD_INT_MIN, FIELD_INT_MAX


class WireError(ValueError):
    """A payload or topic that breaks the contract; ``reason`` is a stable token for counting."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def read_envelope(payload: bytes | bytearray | str, max_bytes: int, version: int, keys: frozenset[str],
                  what: str) -> dict[str, Any]:
    """Return the JSON object of a versioned message with exactly ``keys`` (a desired configuration, a command);
    raise WireError: ``too_large`` past ``max_bytes``, ``not_json``, ``bad_schema`` (not an object, a key unknown
    or missing), ``unsupported_version`` (``what`` names the message in the text)."""
    if len(payload) > max_bytes:
        raise WireError("too_large", f"{len(payload)} bytes, at most {max_bytes}")
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise WireError("not_json", str(exc)) from None
    if not isinstance(doc, dict):
        raise WireError("bad_schema", f"payload is a JSON {type(doc).__name__}, expected an object")
    if type(doc.get("v")) is not int or doc["v"] != version:
        raise WireError("unsupported_version", f"{what} schema version {doc.get('v')!r}; this side reads {version}")
    if doc.keys() != keys:
        odd = sorted(set(doc) ^ keys)
        raise WireError("bad_schema", f"key {odd[0]!r} is {'unknown' if odd[0] in doc else 'missing'}")
    return doc


def valid_name(name: str) -> bool:
    """Return True if ``name`` may be used as a zone or probe id."""
    return bool(_NAME.match(name))


# Sample and Event are not frozen, but are never changed once made: a receiver makes one per row (the
# collector some 100,000 a second), and a frozen dataclass takes three times as long to construct.


@dataclass(slots=True)
class Sample:
    """One measurement at one time: a row of the measurement table in the README."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time_ns: int


@dataclass(slots=True)
class Event:
    """A state change that must travel fast (a trap, a link going down)."""

    name: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time_ns: int


@dataclass(frozen=True, slots=True)
class Batch:
    """What one MQTT message carries."""

    zone: str
    probe: str
    seq: int
    sent_ns: int
    samples: tuple[Sample, ...] = ()
    events: tuple[Event, ...] = ()
    version: int = SCHEMA_VERSION
    origin: int = 0


@dataclass(frozen=True, slots=True)
class Topic:
    zone: str
    probe: str
    kind: Kind


def topic(zone: str, probe: str, kind: Kind) -> str:
    """Return the topic on which ``probe`` in ``zone`` publishes ``kind``."""
    for what, value in (("zone", zone), ("probe", probe)):
        if not valid_name(value):
            raise WireError("bad_name", f"{what} {value!r} must match {_NAME.pattern}")
    if kind not in KINDS:
        raise WireError("bad_topic", f"kind {kind!r} is not one of {', '.join(KINDS)}")
    return f"{TOPIC_ROOT}/{zone}/{probe}/{kind}"


def subscription(kind: Kind, zone: str = "+") -> str:
    """Return the topic filter matching ``kind`` from every probe (of one zone, or all)."""
    return f"{TOPIC_ROOT}/{zone}/+/{kind}"


def parse_topic(name: str) -> Topic:
    """Split a ZoneWatch topic into zone, probe and kind."""
    parts = name.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != TOPIC_ROOT:
        raise WireError("bad_topic", f"{name!r} is not {TOPIC_ROOT}/<zone>/<probe>/<kind>")
    zone, probe, kind = parts[2], parts[3], parts[4]
    if kind not in KINDS:
        raise WireError("bad_topic", f"{name!r}: kind {kind!r} is not one of {', '.join(KINDS)}")
    if not (valid_name(zone) and valid_name(probe)):
        raise WireError("bad_topic", f"{name!r}: zone and probe must match {_NAME.pattern}")
    return Topic(zone, probe, kind)  # type: ignore[arg-type]


def _row(name_key: str, name: str, tags: dict[str, str], fields: dict[str, FieldValue], ts: int) -> dict[str, Any]:
    return {name_key: name, "ts": ts, "tags": tags, "fields": fields}


def encode(batch: Batch) -> bytes:
    """Encode a batch as the JSON payload of one MQTT message."""
    doc: dict[str, Any] = {
        "v": batch.version,
        "zone": batch.zone,
        "probe": batch.probe,
        "seq": batch.seq,
        "sent_ns": batch.sent_ns,
    }
    if batch.origin:
        doc["origin"] = batch.origin
    if batch.samples:
        doc["samples"] = [_row("m", s.measurement, s.tags, s.fields, s.time_ns) for s in batch.samples]
    if batch.events:
        doc["events"] = [_row("name", e.name, e.tags, e.fields, e.time_ns) for e in batch.events]
    try:
        return json.dumps(doc, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()
    except ValueError as exc:  # NaN or infinity in a field
        raise WireError("bad_field", f"probe {batch.probe} seq {batch.seq}: {exc}") from None


def decode(payload: bytes | bytearray | str, loads: Callable[[Any], Any] = json.loads) -> Batch:
    """Decode and validate one payload; raise WireError naming what is wrong and where.

    ``loads`` may be a faster JSON parser with the same contract (the collector passes orjson's); whatever
    it raises is reported as ``not_json``.
    """
    try:
        doc = loads(payload)
    except (ValueError, RecursionError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise WireError("not_json", str(exc)) from None
    head = decode_header(doc)
    samples = _rows(Sample, _list(doc, "samples"), "m", "samples")
    events = _rows(Event, _list(doc, "events"), "name", "events")
    return Batch(zone=head.zone, probe=head.probe, seq=head.seq, sent_ns=head.sent_ns, samples=samples,
                 events=events, version=head.version, origin=head.origin)


class Header(NamedTuple):
    """What a payload says of itself, outside its samples and events."""

    zone: str
    probe: str
    seq: int
    sent_ns: int
    version: int
    origin: int


_BATCH_KEYS: Final = frozenset({"v", "zone", "probe", "seq", "origin", "sent_ns", "samples", "events"})


def decode_header(doc: Any) -> Header:
    """Check a parsed payload's own keys (everything but the rows); raise WireError as ``decode`` does.

    For a receiver that reads the rows itself (the collector's ingest fast path); ``decode`` calls it."""
    if not isinstance(doc, dict):
        raise WireError("bad_schema", f"payload is a JSON {type(doc).__name__}, expected an object")
    version = doc.get("v")
    if type(version) is not int:
        raise WireError("bad_schema", "'v' (schema version) is missing or not an integer")
    if version not in SUPPORTED_VERSIONS:
        raise WireError("unsupported_version",
                        f"schema version {version}; this side reads {sorted(SUPPORTED_VERSIONS)}")
    if not doc.keys() <= _BATCH_KEYS:
        unknown = sorted(set(doc) - _BATCH_KEYS)
        raise WireError("bad_schema", f"unknown key {unknown[0]!r} in batch")
    zone, probe = doc.get("zone"), doc.get("probe")
    for what, value in (("zone", zone), ("probe", probe)):
        if not isinstance(value, str) or not valid_name(value):
            raise WireError("bad_schema", f"'{what}' {value!r} must be a string matching {_NAME.pattern}")
    seq, sent = doc.get("seq"), doc.get("sent_ns")
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise WireError("bad_schema", f"'seq' {seq!r} must be a non-negative 63-bit integer")
    if type(sent) is not int or sent < 0:
        raise WireError("bad_schema", f"'sent_ns' {sent!r} must be a non-negative integer")
    origin = doc.get("origin", 0)
    if type(origin) is not int or not 0 <= origin <= MAX_SEQ:
        raise WireError("bad_schema", f"'origin' {origin!r} must be a non-negative 63-bit integer")
    return Header(zone, probe, seq, sent, version, origin)  # type: ignore[arg-type]  # both checked to be str


@dataclass(frozen=True, slots=True)
class Limits:
    """What a receiver accepts from one probe in one message (beyond the contract's own rules)."""

    max_bytes: int = 2**20
    max_rows: int = 20_000  # samples + events
    max_tags: int = 32  # per row
    max_fields: int = 64  # per row
    max_future_ns: int = 300 * 10**9  # a probe's clock may run a little ahead
    max_past_ns: int = 35 * 86400 * 10**9  # a spool keeps a week by default; a month of backlog still lands


def check_limits(batch: Batch, limits: Limits, now_ns: int, size: int = 0) -> None:
    """Raise WireError (reason ``too_large``, ``too_many_rows``, ``too_many_tags``, ``too_many_fields``,
    ``time_future`` or ``time_past``) if ``batch`` exceeds ``limits``; ``size`` is the payload's length."""
    who = f"probe {batch.zone}/{batch.probe} seq {batch.seq}"
    if size > limits.max_bytes:
        raise WireError("too_large", f"{who}: {size} bytes, at most {limits.max_bytes}")
    rows = len(batch.samples) + len(batch.events)
    if rows > limits.max_rows:
        raise WireError("too_many_rows", f"{who}: {rows} samples and events, at most {limits.max_rows}")
    low, high = now_ns - limits.max_past_ns, now_ns + limits.max_future_ns
    rows_of: list[tuple[str, int, dict[str, str], dict[str, FieldValue], int]] = [
        ("samples", i, r.tags, r.fields, r.time_ns) for i, r in enumerate(batch.samples)]
    rows_of += [("events", i, r.tags, r.fields, r.time_ns) for i, r in enumerate(batch.events)]
    for section, i, tags, fields, time_ns in rows_of:
        if len(tags) > limits.max_tags:
            raise WireError("too_many_tags", f"{who}: {section}[{i}] has {len(tags)} tags, at most {limits.max_tags}")
        if len(fields) > limits.max_fields:
            raise WireError("too_many_fields", f"{who}: {section}[{i}] has {len(fields)} fields, "
                                               f"at most {limits.max_fields}")
        if time_ns > high:
            raise WireError("time_future", f"{who}: {section}[{i}] is {(time_ns - now_ns) / 1e9:.0f} s "
                                           "in the future (is the probe's clock right?)")
        if time_ns < low:
            raise WireError("time_past", f"{who}: {section}[{i}] is {(now_ns - time_ns) / 86400e9:.0f} "
                                         "days old, older than kept")


def _list(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise WireError("bad_schema", f"'{key}' must be a list")
    return value


_ROW_KEYS = {"m": frozenset({"m", "ts", "tags", "fields"}), "name": frozenset({"name", "ts", "tags", "fields"})}
# Names (measurements, tag and field keys) that passed _IDENT, so that a fast path only looks them up. A
# bounded cache, emptied in place when full: a name missing from it may still be valid (the full check
# adds it), a name in it is valid.
CHECKED_NAMES: Final[set[str]] = set()
_GOOD_NAMES = CHECKED_NAMES


_R = TypeVar("_R", Sample, Event)


def _rows(cls: type[_R], rows: list[Any], name_key: str, section: str) -> tuple[_R, ...]:
    """Return the rows of one section as ``cls`` instances.

    One loop with a fast check of the common case inlined (on the collector's hot path: a function call
    per row costs as much as the check); a row it does not pass goes through the full check, which
    either accepts it or raises with the message naming the place.
    """
    good = _GOOD_NAMES
    allowed = _ROW_KEYS[name_key]
    int_min, int_max, max_tag = _INT_MIN, _INT_MAX, _MAX_TAG_VALUE
    out: list[_R] = []
    append = out.append
    for index, row in enumerate(rows):
        if type(row) is dict and row.keys() <= allowed:
            name, ts = row.get(name_key), row.get("ts")
            tags, fields = row.get("tags"), row.get("fields")
            if tags is None:
                tags = {}
            if fields is None:
                fields = {}
            if type(name) is str and name in good and type(ts) is int and ts >= 0 and type(tags) is dict \
                    and type(fields) is dict:
                for k, v in tags.items():
                    if k not in good or type(v) is not str or not v or len(v) > max_tag \
                            or not (v.isascii() or _is_text(v)):
                        break
                else:
                    for k, v in fields.items():
                        t = type(v)
                        if k not in good or (t is float and v - v != 0) or (t is int and not int_min <= v <= int_max) \
                                or (t is not float and t is not int and t is not bool):
                            break
                    else:
                        append(cls(name, tags, fields, ts))
                        continue
        append(cls(*_decode_row(row, name_key, f"{section}[{index}]")))
    return tuple(out)


def plain_samples(rows: list[Any], now_ns: int, limits: Limits) -> tuple[Sample, ...] | None:
    """Return the ``samples`` rows of a parsed payload as Samples if every row is plain, else None.

    For a receiver's fast path (the collector's alert engine): a row is *plain* if it passes the checks of
    ``decode`` by their fast form (its names already in ``CHECKED_NAMES``) and those of ``check_limits``
    (``now_ns`` is the arrival time). For plain rows the samples are exactly those ``decode`` gives, made in
    one pass with no error text; None only means "not sure", and ``decode`` and ``check_limits`` decide (and
    name what is wrong, if anything is). ``_rows`` (in ``decode``) and the collector's ``Encoder.encode_rows``
    (ASCII tag values only) check this form inline, each in its own loop: a call per row would cost as much
    as the check.
    """
    if len(rows) > limits.max_rows:
        return None
    good = _GOOD_NAMES
    allowed = _ROW_KEYS["m"]
    max_tag, max_tags, max_fields = _MAX_TAG_VALUE, limits.max_tags, limits.max_fields
    oldest, newest = max(0, now_ns - limits.max_past_ns), now_ns + limits.max_future_ns
    int_min, int_max = _INT_MIN, _INT_MAX
    out: list[Sample] = []
    append = out.append
    for row in rows:
        if type(row) is not dict:
            return None
        name, ts, tags, fields = row.get("m"), row.get("ts"), row.get("tags"), row.get("fields")
        if tags is None or fields is None or len(row) != 4:  # else its four keys are the four read
            if not row.keys() <= allowed:
                return None
            if tags is None:
                tags = {}
            if fields is None:
                fields = {}
        if type(name) is not str or name not in good or type(ts) is not int or not oldest <= ts <= newest \
                or type(tags) is not dict or type(fields) is not dict or len(tags) > max_tags \
                or len(fields) > max_fields or not tags.keys() <= good or not fields.keys() <= good:
            return None
        for v in tags.values():
            if type(v) is not str or not v or len(v) > max_tag or not (v.isascii() or _is_text(v)):
                return None
        for v in fields.values():
            kind = type(v)
            if kind is int:
                if not int_min <= v <= int_max:
                    return None
            elif kind is float:
                if v - v != 0:  # NaN or an infinity
                    return None
            elif kind is not bool:
                return None
        append(Sample(name, tags, fields, ts))
    return tuple(out)


def _is_text(value: str) -> bool:
    """Return True if ``value`` is Unicode text, i.e. has no lone surrogate (JSON ``"\\ud800"`` decodes to one).

    Called only for strings that are not ASCII, so the common case costs one ``isascii``."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _remember(name: str) -> None:
    if len(_GOOD_NAMES) > 50_000:
        _GOOD_NAMES.clear()
    _GOOD_NAMES.add(name)


def _decode_row(row: Any, name_key: str, where: str) -> tuple[str, dict[str, str], dict[str, FieldValue], int]:
    if not isinstance(row, dict):
        raise WireError("bad_schema", f"{where} must be an object")
    unknown = sorted(set(row) - {name_key, "ts", "tags", "fields"})
    if unknown:
        raise WireError("bad_schema", f"{where}: unknown key {unknown[0]!r}")
    name, ts, tags, fields = row.get(name_key), row.get("ts"), row.get("tags"), row.get("fields")
    if tags is None:  # left out or null: none, as the fast check in _rows reads it (whatever names it knows)
        tags = {}
    if fields is None:
        fields = {}
    if not isinstance(name, str) or not _IDENT.match(name):
        raise WireError("bad_name", f"{where}.{name_key} {name!r} must match {_IDENT.pattern}")
    _remember(name)
    if type(ts) is not int or ts < 0:
        raise WireError("bad_time", f"{where}.ts {ts!r} must be a non-negative integer of nanoseconds")
    if not isinstance(tags, dict):
        raise WireError("bad_schema", f"{where}.tags must be an object")
    for k, v in tags.items():
        if not _IDENT.match(k):
            raise WireError("bad_name", f"{where}.tags: key {k!r} must match {_IDENT.pattern}")
        _remember(k)
        if not isinstance(v, str) or not v or len(v) > _MAX_TAG_VALUE:
            raise WireError("bad_tag", f"{where}.tags.{k} must be a non-empty string of at most {_MAX_TAG_VALUE}")
        if not (v.isascii() or _is_text(v)):
            raise WireError("bad_tag", f"{where}.tags.{k} is not Unicode text (it has a lone surrogate)")
    if not isinstance(fields, dict):
        raise WireError("bad_schema", f"{where}.fields must be an object")
    for k, v in fields.items():
        if not _IDENT.match(k):
            raise WireError("bad_name", f"{where}.fields: key {k!r} must match {_IDENT.pattern}")
        _remember(k)
        if not isinstance(v, (int, float)) or (isinstance(v, float) and not math.isfinite(v)):
            raise WireError("bad_field", f"{where}.fields.{k} is {type(v).__name__}; fields are numbers or booleans")
        if type(v) is int and not _INT_MIN <= v <= _INT_MAX:
            raise WireError("bad_field", f"{where}.fields.{k} = {v} is outside [-2**63, 2**64-1]")
    return name, tags, fields, ts
