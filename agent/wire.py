"""The MQTT contract between a probe and the collector.

This module is the only part of ``agent`` the collector may import. It uses the standard library only,
so that both sides (and any third-party consumer) can read it without pulling in the agent.

Topics::

    zw/v1/{zone}/{probe}/status   retained; b"online" on connect, last will b"offline"; b"stopping" before a
                                  stop on purpose (a restart, an upgrade)
    zw/v1/{zone}/{probe}/data     batches of samples, QoS 1
    zw/v1/{zone}/{probe}/events   batches of events (traps, link changes), QoS 1, sent ahead of data
    zw/v1/{zone}/{probe}/config   retained, collector to probe: its desired configuration (below)
    zw/v1/enrol/{zone}/{request}/request   a new probe asks to be admitted (see "Enrolment" below)
    zw/v1/enrol/{zone}/{request}/reply     retained, collector to that probe: sealed to its key

Payload (one JSON object per message, UTF-8)::

    {"v": 1, "zone": "dinh-vu", "probe": "p1", "seq": 42, "origin": 8811, "sent_ns": 1764290000000000000,
     "samples": [{"m": "cellular", "ts": 1764289990000000000,
                  "tags": {"carrier": "452-04", "modem": "viettel"},
                  "fields": {"rsrp_dbm": -95, "registered": true}}],
     "events": [{"name": "link_down", "ts": ..., "tags": {...}, "fields": {...}}]}

Over MQTT v5 the probe puts its own clock at the moment of sending (ns since the epoch, decimal) in data and events
PUBLISH packets (at least the first of each round it sends) as the user property ``SENT_PROPERTY``
(``zw-sent-ns``): the collector compares it with its own clock at arrival to measure the probe's clock offset,
never trusting a sample's time for that (a replayed backlog keeps the time it was measured). A message without it
(MQTT 3.1.1, an older agent) is simply not measured.

Rules every version keeps:

- ``seq`` increases by one for every message a probe spools, across restarts, and is at most ``MAX_SEQ``
  (2^63 - 1), as is ``origin``. The collector drops a repeated ``seq`` and counts the gaps. ``origin``
  (optional, default 0) is a random number the probe picks when it creates its spool: a probe whose spool
  was replaced starts a new ``seq`` count under a new origin, and the collector keys its sequence
  bookkeeping by (probe, origin).
- Every sample carries its own measurement time ``ts`` in nanoseconds since the epoch; replayed data keeps
  it.
- Field values are numbers or booleans, never strings (enumerations are tags). A value the device did not
  know is absent from ``fields``, never a sentinel number. A row's ``tags`` or ``fields`` left out (or
  ``null``) means none.
- The decoder accepts every released schema version (golden files in ``tests/golden``).

Desired configuration (``.../config``, retained, QoS 1, written by the collector, read by that probe only)::

    {"v": 1, "zone": "dinh-vu", "probe": "p1", "version": 3, "hash": "sha256:<64 hex>",
     "issued_ns": 1764290000000000000, "yaml": "<the agent configuration, YAML text>"}

- ``yaml`` is the whole agent configuration as text, so that the probe's strict loader names the line of a
  mistake; ``hash`` is ``config_hash(yaml)`` (the probe refuses a message whose text does not match it).
  ``version`` counts the configurations issued to this probe: it grows with every change, and when the same
  text is issued again; the probe tries each (hash, version) once.
- The payload is at most ``MAX_CONFIG_BYTES`` (1 MiB: what the broker's ``max_packet_size`` takes with the
  topic and header); the collector refuses to publish a larger one. An empty retained payload clears it: the
  probe goes back to its local configuration file.
- Secrets are never in the text: every key named in ``SECRET_KEYS`` holds ``{env: NAME}`` or ``{file: NAME}``
  (or a list of them), read on the probe from what its local configuration lets the centre use.

The probe's answer is an event on its ``events`` topic (spooled, at-least-once, sent ahead of data), made by
``config_report`` and read by ``read_config_report``: name ``config``; tags ``result`` (``applied``: running,
on trial until the dead-man time has passed; ``rejected``: refused, the previous configuration runs on;
``rolled_back``: applied, then undone by the dead-man rule), ``hash`` (the configuration the report is
about), ``running`` (the hash running now, or ``local`` for the probe's own file) and, unless applied,
``error`` (what was wrong, with key and line, cut to ``MAX_TAG_VALUE``); fields ``version``,
``running_version`` (0 for the local file) and ``seconds`` (how long the switch took). The status topic keeps
its three plain words, which ProbeDown reads; the event names no device or carrier, so every probe may send it.

Software updates ride on the desired configuration: its text may hold ``software: {version: V}`` (a version as
``valid_version`` takes it), the version the centre wants the probe to run. The probe's answers are events
``update`` (``update_report``, ``read_update_report``): tags ``result`` (``requested``: handed to the probe's
privileged updater; ``installed``: V runs and came up healthy; ``rolled_back``: V was installed and did not come
up healthy, the release before runs again; ``failed``: V could not be installed, nothing changed; ``refused``:
this probe takes no version from the centre), ``wanted`` (V), ``running`` (the version running now) and, unless
requested or installed, ``error``; field ``seconds`` (from the request to the result).

Exceptions::

    WireError           any payload or topic that does not follow this contract; ``reason`` is a short
                        stable token for counting (``not_json``, ``bad_field`` ...), ``str()`` says where
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple, TypeVar

__all__ = [
    "SCHEMA_VERSION",
    "SUPPORTED_VERSIONS",
    "TOPIC_ROOT",
    "KINDS",
    "STATUS_ONLINE",
    "STATUS_OFFLINE",
    "STATUS_STOPPING",
    "SENT_PROPERTY",
    "WireError",
    "Sample",
    "Event",
    "Batch",
    "Topic",
    "FieldValue",
    "topic",
    "parse_topic",
    "subscription",
    "encode",
    "decode",
    "decode_header",
    "Header",
    "valid_name",
    "Limits",
    "check_limits",
    "plain_samples",
    "CONFIG_SCHEMA_VERSION",
    "MAX_CONFIG_BYTES",
    "SECRET_KEYS",
    "CONFIG_EVENT",
    "CONFIG_RESULTS",
    "LOCAL_CONFIG",
    "DesiredConfig",
    "ConfigReport",
    "config_hash",
    "encode_config",
    "decode_config",
    "config_report",
    "read_config_report",
    "UPDATE_EVENT",
    "UPDATE_RESULTS",
    "UpdateReport",
    "valid_version",
    "update_report",
    "read_update_report",
    "CHECKED_NAMES",
    "MAX_TAG_VALUE",
    "FIELD_INT_MIN",
    "FIELD_INT_MAX",
    "MAX_SEQ",
    "COLLECTOR_MEASUREMENTS",
    "ENROL_ZONE",
    "ENROL_MAX_BYTES",
    "ENROL_MAX_MODEMS",
    "ModemIdentity",
    "EnrolRequest",
    "EnrolAnswer",
    "enrol_topic",
    "enrol_subscription",
    "parse_enrol_topic",
    "enrol_request_id",
    "enrol_fingerprint",
    "encode_enrol_request",
    "decode_enrol_request",
    "encode_enrol_answer",
    "decode_enrol_answer",
    "encode_enrol_reply",
    "decode_enrol_reply",
]

SCHEMA_VERSION: Final = 1
SUPPORTED_VERSIONS: Final = frozenset({1})
TOPIC_ROOT: Final = "zw/v1"
KINDS: Final = ("status", "data", "events", "config")
STATUS_ONLINE: Final = b"online"
STATUS_OFFLINE: Final = b"offline"
STATUS_STOPPING: Final = b"stopping"   # a stop on purpose (restart, upgrade): ProbeDown waits before paging
SENT_PROPERTY: Final = "zw-sent-ns"   # MQTT v5 user property: the probe's clock when it sent the message

# Sequence numbers and origins fit a signed 64-bit integer (SQLite's, on both sides); a probe makes about two
# messages a second, so this is never reached by counting.
MAX_SEQ: Final = 2**63 - 1
# Measurements only the collector writes (derived from what the probes send): a probe's sample or event named
# one of these is refused (``collector_only``). ``event`` is how the collector stores the events it receives.
COLLECTOR_MEASUREMENTS: Final = frozenset({"alert", "coverage", "redundancy", "event"})

Kind = Literal["status", "data", "events", "config"]
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


# ---------------------------------------------------------------------------------------------- configuration

CONFIG_SCHEMA_VERSION: Final = 1
MAX_CONFIG_BYTES: Final = 2**20   # a desired configuration's payload; the broker takes 1 MiB plus the header
# Keys of the agent configuration whose values are secrets: in a desired configuration each holds a reference
# ({env: NAME} or {file: NAME}, or a list of them), never the secret itself.
SECRET_KEYS: Final = frozenset({"password", "community", "communities", "auth_key", "priv_key"})
CONFIG_EVENT: Final = "config"
CONFIG_RESULTS: Final = ("applied", "rejected", "rolled_back")
LOCAL_CONFIG: Final = "local"     # the ``running`` tag of a probe that runs its own configuration file
_HASH = re.compile(r"^sha256:[0-9a-f]{64}\Z")
_CONFIG_KEYS: Final = frozenset({"v", "zone", "probe", "version", "hash", "issued_ns", "yaml"})


def config_hash(text: str) -> str:
    """Return the hash that names a configuration text: ``sha256:`` and the hex digest of its UTF-8 bytes."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class DesiredConfig:
    """What the collector wants one probe to run (the retained message on its ``config`` topic)."""

    zone: str
    probe: str
    version: int
    hash: str
    issued_ns: int
    yaml: str
    v: int = CONFIG_SCHEMA_VERSION


def encode_config(config: DesiredConfig) -> bytes:
    """Encode a desired configuration; raise WireError if it breaks the contract (``too_large`` past
    ``MAX_CONFIG_BYTES``, ``bad_hash`` if ``hash`` is not the text's)."""
    for what, value in (("zone", config.zone), ("probe", config.probe)):
        if not valid_name(value):
            raise WireError("bad_name", f"{what} {value!r} must match {_NAME.pattern}")
    if config.hash != config_hash(config.yaml):
        raise WireError("bad_hash", f"probe {config.zone}/{config.probe}: {config.hash} is not the hash of its text")
    if type(config.version) is not int or not 0 < config.version <= MAX_SEQ:
        raise WireError("bad_schema", f"version {config.version!r} must be a positive 63-bit integer")
    payload = json.dumps({"v": config.v, "zone": config.zone, "probe": config.probe, "version": config.version,
                          "hash": config.hash, "issued_ns": config.issued_ns, "yaml": config.yaml},
                         separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(payload) > MAX_CONFIG_BYTES:
        raise WireError("too_large", f"the desired configuration of probe {config.zone}/{config.probe} is "
                                     f"{len(payload)} bytes, at most {MAX_CONFIG_BYTES} (the broker's packet limit)")
    return payload


def decode_config(payload: bytes | bytearray | str) -> DesiredConfig:
    """Decode and check a desired configuration; raise WireError naming what is wrong."""
    if len(payload) > MAX_CONFIG_BYTES:
        raise WireError("too_large", f"{len(payload)} bytes, at most {MAX_CONFIG_BYTES}")
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise WireError("not_json", str(exc)) from None
    if not isinstance(doc, dict):
        raise WireError("bad_schema", f"payload is a JSON {type(doc).__name__}, expected an object")
    if type(doc.get("v")) is not int or doc["v"] != CONFIG_SCHEMA_VERSION:
        raise WireError("unsupported_version",
                        f"config schema version {doc.get('v')!r}; this side reads {CONFIG_SCHEMA_VERSION}")
    if doc.keys() != _CONFIG_KEYS:
        odd = sorted(set(doc) ^ _CONFIG_KEYS)
        raise WireError("bad_schema", f"key {odd[0]!r} is {'unknown' if odd[0] in doc else 'missing'}")
    zone, probe, text, hash_ = doc["zone"], doc["probe"], doc["yaml"], doc["hash"]
    for what, value in (("zone", zone), ("probe", probe)):
        if not isinstance(value, str) or not valid_name(value):
            raise WireError("bad_schema", f"'{what}' {value!r} must be a string matching {_NAME.pattern}")
    version, issued = doc["version"], doc["issued_ns"]
    if type(version) is not int or not 0 < version <= MAX_SEQ:
        raise WireError("bad_schema", f"'version' {version!r} must be a positive 63-bit integer")
    if type(issued) is not int or issued < 0:
        raise WireError("bad_schema", f"'issued_ns' {issued!r} must be a non-negative integer")
    if not isinstance(text, str) or not isinstance(hash_, str) or not _HASH.match(hash_):
        raise WireError("bad_schema", "'yaml' must be text and 'hash' sha256:<64 hex digits>")
    if config_hash(text) != hash_:
        raise WireError("bad_hash", f"the text does not match its hash {hash_}")
    return DesiredConfig(zone, probe, version, hash_, issued, text)


@dataclass(frozen=True, slots=True)
class ConfigReport:
    """What a probe said about a desired configuration (the ``config`` event)."""

    result: str              # one of CONFIG_RESULTS
    hash: str                # the configuration the report is about
    version: int
    running: str             # the hash running now, or LOCAL_CONFIG
    running_version: int     # 0 for the local file
    error: str = ""
    seconds: float = 0.0
    time_ns: int = 0


def config_report(report: ConfigReport) -> Event:
    """Return the ``config`` event that carries ``report`` (its error on one line, cut to ``MAX_TAG_VALUE``)."""
    if report.result not in CONFIG_RESULTS:
        raise WireError("bad_tag", f"config result {report.result!r} is not one of {', '.join(CONFIG_RESULTS)}")
    tags = {"result": report.result, "hash": report.hash, "running": report.running}
    error = " ".join(report.error.split())
    if error:
        tags["error"] = error if len(error) <= MAX_TAG_VALUE else error[: MAX_TAG_VALUE - 1] + "\u2026"
    fields: dict[str, FieldValue] = {"version": report.version, "running_version": report.running_version,
                                     "seconds": round(report.seconds, 3)}
    return Event(CONFIG_EVENT, tags, fields, report.time_ns)


def read_config_report(event: Event) -> ConfigReport | None:
    """Return the report a ``config`` event carries, or None if ``event`` is not one (or not a whole one)."""
    if event.name != CONFIG_EVENT:
        return None
    tags, fields = event.tags, event.fields
    result, hash_, running = tags.get("result"), tags.get("hash"), tags.get("running")
    version, running_version = fields.get("version"), fields.get("running_version", 0)
    seconds = fields.get("seconds", 0)
    if result not in CONFIG_RESULTS or hash_ is None or running is None or type(version) is not int \
            or type(running_version) is not int or isinstance(seconds, bool):
        return None
    return ConfigReport(result, hash_, version, running, running_version, tags.get("error", ""), float(seconds),
                        event.time_ns)


# ---------------------------------------------------------------------------------------------- software updates

UPDATE_EVENT: Final = "update"
UPDATE_RESULTS: Final = ("requested", "installed", "rolled_back", "failed", "refused")
# A release version as pip and install.sh take it (PEP 440, local labels included): it becomes a command-line
# argument of the privileged updater and a tag value, so nothing else passes.
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+!_-]{0,63}\Z")


def valid_version(version: str) -> bool:
    """Return True if ``version`` may be asked of a probe (``software: {version: ...}``)."""
    return bool(_VERSION.match(version))


@dataclass(frozen=True, slots=True)
class UpdateReport:
    """What a probe said about a software version the centre wants it to run (the ``update`` event)."""

    result: str              # one of UPDATE_RESULTS
    wanted: str              # the version asked for
    running: str             # the version running now
    error: str = ""
    seconds: float = 0.0
    time_ns: int = 0


def update_report(report: UpdateReport) -> Event:
    """Return the ``update`` event that carries ``report`` (its error on one line, cut to ``MAX_TAG_VALUE``)."""
    if report.result not in UPDATE_RESULTS:
        raise WireError("bad_tag", f"update result {report.result!r} is not one of {', '.join(UPDATE_RESULTS)}")
    tags = {"result": report.result, "wanted": report.wanted, "running": report.running}
    error = " ".join(report.error.split())
    if error:
        tags["error"] = error if len(error) <= MAX_TAG_VALUE else error[: MAX_TAG_VALUE - 1] + "\u2026"
    return Event(UPDATE_EVENT, tags, {"seconds": round(max(report.seconds, 0.0), 3)}, report.time_ns)


def read_update_report(event: Event) -> UpdateReport | None:
    """Return the report an ``update`` event carries, or None if ``event`` is not one (or not a whole one)."""
    if event.name != UPDATE_EVENT:
        return None
    tags = event.tags
    result, wanted, running = tags.get("result"), tags.get("wanted"), tags.get("running")
    seconds = event.fields.get("seconds", 0)
    if result not in UPDATE_RESULTS or wanted is None or running is None or isinstance(seconds, bool):
        return None
    return UpdateReport(result, wanted, running, tags.get("error", ""), float(seconds), event.time_ns)


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



# ---------------------------------------------------------------------------------------------- enrolment
#
# A new probe asks to be admitted with its zone's bootstrap credential, which may publish requests and read replies
# and nothing else (the broker's ACL, ``collector.mosquitto``). Its topics sit one level deeper than a probe's, so
# no filter of the collector's ingest (``zw/v1/+/+/<kind>``) can match one, and no zone may be called ``enrol``:
#
#     zw/v1/enrol/{zone}/{request}/request   the probe's request (JSON below), QoS 1; sent again until answered
#     zw/v1/enrol/{zone}/{request}/reply     retained, collector to probe: {"v", "request", "sealed"}
#
# ``request`` is the id of the probe's public key (``enrol_request_id``), so a request names the key it comes with,
# and sending it again is the same request. The request::
#
#     {"v": 1, "zone": "dinh-vu", "key": "<base64 of a 32-byte X25519 public key>", "probe": "p3",
#      "machine_id": "<32 hex digits>", "modems": [{"name": "viettel", "imei": "867962040012345",
#      "iccid": "89840480000012345678"}], "sent_ns": 1764290000000000000}
#
# ``probe`` is the id the probe asks for (the collector's operator may give another), ``machine_id`` and ``modems``
# are the hardware identity a field engineer can check (either may be null or empty), ``sent_ns`` is the probe's
# clock (shown, never trusted: a probe without a real-time clock may be years off before NTP). ``sealed`` is the
# answer (``EnrolAnswer`` as JSON) sealed to ``key`` (libsodium's sealed box): only the holder of the private key
# can open it, though every holder of the bootstrap credential may read the reply topics.

ENROL_ZONE: Final = "enrol"        # reserved: the first level of enrolment topics, never a zone id
ENROL_MAX_BYTES: Final = 4096      # a request, or a reply, as published
ENROL_MAX_MODEMS: Final = 8
_ENROL_KINDS: Final = ("request", "reply")
_REQUEST_ID = re.compile(r"^[0-9a-f]{32}\Z")
_MACHINE_ID = re.compile(r"^[0-9a-f]{32}\Z")
_IMEI = re.compile(r"^[0-9]{14,16}\Z")          # 15 digits; 14 without the check digit, 16 as IMEISV
_ICCID = re.compile(r"^[0-9]{18,22}F?\Z")       # ITU-T E.118: up to 22 digits, an F pads an odd count
_REQUEST_KEYS = frozenset({"v", "zone", "key", "probe", "machine_id", "modems", "sent_ns"})
_MODEM_KEYS = frozenset({"name", "imei", "iccid"})
EnrolKind = Literal["request", "reply"]


@dataclass(frozen=True, slots=True)
class ModemIdentity:
    """One modem of a probe asking to be enrolled: its name in the agent's configuration, IMEI and SIM ICCID."""

    name: str
    imei: str | None = None
    iccid: str | None = None


@dataclass(frozen=True, slots=True)
class EnrolRequest:
    """What a new probe sends: its zone, its public key, the id it asks for and its hardware identity."""

    zone: str
    key: bytes
    probe: str | None = None
    machine_id: str | None = None
    modems: tuple[ModemIdentity, ...] = ()
    sent_ns: int = 0
    version: int = SCHEMA_VERSION

    @property
    def request_id(self) -> str:
        """Return the id of this request: that of its key."""
        return enrol_request_id(self.key)


@dataclass(frozen=True, slots=True)
class EnrolAnswer:
    """What the sealed reply holds: approved (with the probe's id and MQTT credentials) or rejected (why)."""

    request: str
    status: Literal["approved", "rejected"]
    zone: str | None = None
    probe: str | None = None
    username: str | None = None
    password: str | None = None
    reason: str | None = None


def enrol_topic(zone: str, request: str, kind: EnrolKind) -> str:
    """Return the topic of ``kind`` for request ``request`` in ``zone``."""
    if not valid_name(zone) or zone == ENROL_ZONE:
        raise WireError("bad_name", f"zone {zone!r} must match {_NAME.pattern} and not be {ENROL_ZONE!r}")
    if not _REQUEST_ID.match(request):
        raise WireError("bad_name", f"request {request!r} must be 32 lowercase hex digits")
    if kind not in _ENROL_KINDS:
        raise WireError("bad_topic", f"kind {kind!r} is not one of {', '.join(_ENROL_KINDS)}")
    return f"{TOPIC_ROOT}/{ENROL_ZONE}/{zone}/{request}/{kind}"


def enrol_subscription(kind: EnrolKind, zone: str = "+") -> str:
    """Return the topic filter matching ``kind`` of every request (of one zone, or all)."""
    return f"{TOPIC_ROOT}/{ENROL_ZONE}/{zone}/+/{kind}"


def parse_enrol_topic(name: str) -> tuple[str, str, EnrolKind]:
    """Split an enrolment topic into zone, request id and kind."""
    parts = name.split("/")
    if len(parts) != 6 or "/".join(parts[:3]) != f"{TOPIC_ROOT}/{ENROL_ZONE}":
        raise WireError("bad_topic", f"{name[:200]!r} is not {TOPIC_ROOT}/{ENROL_ZONE}/<zone>/<request>/<kind>")
    zone, request, kind = parts[3], parts[4], parts[5]
    if not valid_name(zone) or zone == ENROL_ZONE or not _REQUEST_ID.match(request) or kind not in _ENROL_KINDS:
        raise WireError("bad_topic", f"{name[:200]!r}: expected a zone id, 32 hex digits and request or reply")
    return zone, request, "request" if kind == "request" else "reply"


def enrol_request_id(key: bytes) -> str:
    """Return the id of a public key: the first 16 bytes of its SHA-256, in hex."""
    return hashlib.sha256(key).hexdigest()[:32]


def enrol_fingerprint(key: bytes) -> str:
    """Return a public key's id as a field engineer reads it aloud: eight groups of four hex digits."""
    rid = enrol_request_id(key)
    return " ".join(rid[i:i + 4] for i in range(0, 32, 4))


def encode_enrol_request(request: EnrolRequest) -> bytes:
    """Return the JSON of a request (checked as the collector will check it)."""
    doc = {"v": request.version, "zone": request.zone, "key": base64.b64encode(request.key).decode("ascii"),
           "probe": request.probe, "machine_id": request.machine_id,
           "modems": [{"name": m.name, "imei": m.imei, "iccid": m.iccid} for m in request.modems],
           "sent_ns": request.sent_ns}
    payload = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    decode_enrol_request(payload)
    return payload


def decode_enrol_request(payload: bytes | bytearray | str, max_bytes: int = ENROL_MAX_BYTES) -> EnrolRequest:
    """Return the request a payload holds, or raise WireError naming what is wrong (every field is bounded)."""
    if len(payload) > max_bytes:
        raise WireError("too_large", f"{len(payload)} bytes, at most {max_bytes}")
    doc = _enrol_json(payload)
    extra = set(doc) - _REQUEST_KEYS
    if extra:
        known = ", ".join(sorted(_REQUEST_KEYS))
        raise WireError("bad_schema", f"unknown key {sorted(extra)[0][:40]!r} (known: {known})")
    version = doc.get("v")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        raise WireError("bad_version", f"v {str(version)[:20]!r} is not one of {sorted(SUPPORTED_VERSIONS)}")
    zone = doc.get("zone")
    if not isinstance(zone, str) or not valid_name(zone) or zone == ENROL_ZONE:
        raise WireError("bad_name", f"zone {str(zone)[:70]!r} must match {_NAME.pattern}")
    key = _b64(doc.get("key"), "key")
    if len(key) != 32:
        raise WireError("bad_key", f"key is {len(key)} bytes, expected a 32-byte X25519 public key")
    probe = doc.get("probe")
    if probe is not None and (not isinstance(probe, str) or not valid_name(probe)):
        raise WireError("bad_name", f"probe {str(probe)[:70]!r} must match {_NAME.pattern}")
    machine_id = doc.get("machine_id")
    if machine_id is not None and (not isinstance(machine_id, str) or not _MACHINE_ID.match(machine_id)):
        raise WireError("bad_identity", f"machine_id {str(machine_id)[:40]!r} must be 32 lowercase hex digits")
    modems = doc.get("modems", [])
    if not isinstance(modems, list) or len(modems) > ENROL_MAX_MODEMS:
        raise WireError("bad_identity", f"modems must be a list of at most {ENROL_MAX_MODEMS}")
    sent_ns = doc.get("sent_ns", 0)
    if type(sent_ns) is not int or not 0 <= sent_ns <= MAX_SEQ:
        raise WireError("bad_time", "sent_ns must be a non-negative integer of nanoseconds")
    return EnrolRequest(zone, key, probe, machine_id, tuple(_modem(m, i) for i, m in enumerate(modems)), sent_ns,
                        version)


def _modem(doc: Any, i: int) -> ModemIdentity:
    where = f"modems[{i}]"
    if not isinstance(doc, dict) or set(doc) - _MODEM_KEYS:
        raise WireError("bad_identity", f"{where} must be an object with {', '.join(sorted(_MODEM_KEYS))}")
    name, imei, iccid = doc.get("name"), doc.get("imei"), doc.get("iccid")
    if not isinstance(name, str) or not 0 < len(name) <= 64 or not name.isprintable():
        raise WireError("bad_identity", f"{where}.name must be printable text of 1 to 64 characters")
    if imei is not None and (not isinstance(imei, str) or not _IMEI.match(imei)):
        raise WireError("bad_identity", f"{where}.imei {str(imei)[:40]!r} must be 14 to 16 digits")
    if iccid is not None and (not isinstance(iccid, str) or not _ICCID.match(iccid)):
        raise WireError("bad_identity", f"{where}.iccid {str(iccid)[:40]!r} must be 18 to 22 digits (and an F)")
    return ModemIdentity(name, imei, iccid)


def encode_enrol_answer(answer: EnrolAnswer) -> bytes:
    """Return the JSON of an answer (the plaintext the collector seals), checked as the probe will check it."""
    doc = {"v": SCHEMA_VERSION, "request": answer.request, "status": answer.status, "zone": answer.zone,
           "probe": answer.probe, "username": answer.username, "password": answer.password, "reason": answer.reason}
    payload = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    decode_enrol_answer(payload)
    return payload


def decode_enrol_answer(plaintext: bytes) -> EnrolAnswer:
    """Return the answer an opened reply holds, or raise WireError naming what is wrong."""
    doc = _enrol_json(plaintext)
    request, status = doc.get("request"), doc.get("status")
    if not isinstance(request, str) or not _REQUEST_ID.match(request):
        raise WireError("bad_schema", "request must be 32 lowercase hex digits")
    if status == "rejected":
        reason = doc.get("reason")
        return EnrolAnswer(request, "rejected", reason=reason[:500] if isinstance(reason, str) else None)
    if status != "approved":
        raise WireError("bad_schema", f"status {str(status)[:20]!r} is not approved or rejected")
    zone, probe, username, password = (doc.get(k) for k in ("zone", "probe", "username", "password"))
    for what, value in (("zone", zone), ("probe", probe), ("username", username)):
        if not isinstance(value, str) or not valid_name(value):
            raise WireError("bad_name", f"{what} {str(value)[:70]!r} must match {_NAME.pattern}")
    if not isinstance(password, str) or not 16 <= len(password) <= 128 or not password.isprintable():
        raise WireError("bad_schema", "password must be 16 to 128 printable characters")
    return EnrolAnswer(request, "approved", zone, probe, username, password)


def encode_enrol_reply(request: str, sealed: bytes) -> bytes:
    """Return the reply the collector publishes: the request id and the sealed answer."""
    payload = json.dumps({"v": SCHEMA_VERSION, "request": request, "sealed": base64.b64encode(sealed).decode("ascii")},
                         separators=(",", ":")).encode("ascii")
    if len(payload) > ENROL_MAX_BYTES:
        raise WireError("too_large", f"reply of {len(payload)} bytes, at most {ENROL_MAX_BYTES}")
    return payload


def decode_enrol_reply(payload: bytes) -> tuple[str, bytes]:
    """Return (request id, sealed answer) of a reply, or raise WireError."""
    if len(payload) > ENROL_MAX_BYTES:
        raise WireError("too_large", f"{len(payload)} bytes, at most {ENROL_MAX_BYTES}")
    doc = _enrol_json(payload)
    request = doc.get("request")
    if not isinstance(request, str) or not _REQUEST_ID.match(request):
        raise WireError("bad_schema", "request must be 32 lowercase hex digits")
    return request, _b64(doc.get("sealed"), "sealed")


def _enrol_json(payload: bytes | bytearray | str) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise WireError("not_json", f"not JSON: {str(exc)[:80]}") from None
    if not isinstance(doc, dict):
        raise WireError("bad_schema", f"expected a JSON object, got {type(doc).__name__}")
    return doc


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or len(value) > 2 * ENROL_MAX_BYTES:
        raise WireError("bad_key", f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise WireError("bad_key", f"{what} is not valid base64") from None
