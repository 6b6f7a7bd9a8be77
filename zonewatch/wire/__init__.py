"""The MQTT contract between a probe and the collector.

Shared by both sides and standard library only, so that the probe, the collector and any third-party consumer
read it without pulling in either side. The package: ``core`` (topics, batches, encoding, limits), ``config``
(the desired configuration and its report), ``command`` (commands to one probe), ``update`` (software updates),
``enrol`` (enrolment); everything is importable from ``zonewatch.wire`` itself.

Topics::

    zw/v1/{zone}/{probe}/status   retained; b"online" on connect, last will b"offline"; b"stopping" before a
                                  stop on purpose (a restart, an upgrade)
    zw/v1/{zone}/{probe}/data     batches of samples, QoS 1
    zw/v1/{zone}/{probe}/events   batches of events (traps, link changes), QoS 1, sent ahead of data
    zw/v1/{zone}/{probe}/config   retained, collector to probe: its desired configuration (below)
    zw/v1/{zone}/{probe}/command  QoS 1, not retained, collector to probe: a command (below)
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

Commands (``.../command``, QoS 1, not retained, written by the collector only, read by that probe only; the
broker's ACL is what makes a message on it the collector's)::

    {"v": 1, "id": "9f2c...", "zone": "dinh-vu", "probe": "p1", "kind": "diagnostic_round",
     "issued_ns": 1764290000000000000, "expires_ns": 1764290600000000000,
     "args": {"carrier": "452-04", "modem": "viettel", "transfers": false, "reason": "DataAccessFailure"}}

- ``kind`` is one of ``COMMAND_KINDS``; ``diagnostic_round`` asks for one round of the active tests through the
  carrier's modem (``modem`` "": each of the carrier's), with the transfers if ``transfers`` (the probe's SIM
  budget still decides). A kind this side does not know is refused as ``unknown_kind``.
- ``id`` names the command: a probe acts on each id once (QoS 1 may bring it twice). Past ``expires_ns`` (by the
  probe's clock) the probe ignores it: a probe back from a long outage runs no stale round. At most
  ``MAX_COMMAND_BYTES``; ``encode_command`` and ``decode_command`` check the rest.

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

from zonewatch.wire.command import (
    COMMAND_KINDS,
    COMMAND_SCHEMA_VERSION,
    DIAGNOSTIC_ROUND,
    MAX_COMMAND_BYTES,
    Command,
    DiagnosticRound,
    decode_command,
    encode_command,
)
from zonewatch.wire.config import (
    CONFIG_EVENT,
    CONFIG_RESULTS,
    CONFIG_SCHEMA_VERSION,
    LOCAL_CONFIG,
    MAX_CONFIG_BYTES,
    SECRET_KEYS,
    ConfigReport,
    DesiredConfig,
    config_hash,
    config_report,
    decode_config,
    encode_config,
    read_config_report,
)
from zonewatch.wire.core import (
    CHECKED_NAMES,
    COLLECTOR_MEASUREMENTS,
    FIELD_INT_MAX,
    FIELD_INT_MIN,
    KINDS,
    MAX_SEQ,
    MAX_TAG_VALUE,
    SCHEMA_VERSION,
    SENT_PROPERTY,
    STATUS_OFFLINE,
    STATUS_ONLINE,
    STATUS_STOPPING,
    SUPPORTED_VERSIONS,
    TOPIC_ROOT,
    Batch,
    Event,
    FieldValue,
    Header,
    Kind,
    Limits,
    Sample,
    Topic,
    WireError,
    check_limits,
    decode,
    decode_header,
    encode,
    parse_topic,
    plain_samples,
    subscription,
    topic,
    valid_name,
)
from zonewatch.wire.enrol import (
    ENROL_MAX_BYTES,
    ENROL_MAX_MODEMS,
    ENROL_ZONE,
    EnrolAnswer,
    EnrolRequest,
    ModemIdentity,
    decode_enrol_answer,
    decode_enrol_reply,
    decode_enrol_request,
    encode_enrol_answer,
    encode_enrol_reply,
    encode_enrol_request,
    enrol_fingerprint,
    enrol_request_id,
    enrol_subscription,
    enrol_topic,
    parse_enrol_topic,
)
from zonewatch.wire.update import (
    UPDATE_EVENT,
    UPDATE_RESULTS,
    UpdateReport,
    read_update_report,
    update_report,
    valid_version,
)

__all__ = [
    "Kind",
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
    "CHECKED_NAMES",
    "MAX_TAG_VALUE",
    "FIELD_INT_MIN",
    "FIELD_INT_MAX",
    "MAX_SEQ",
    "COLLECTOR_MEASUREMENTS",
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
    "COMMAND_SCHEMA_VERSION",
    "COMMAND_KINDS",
    "DIAGNOSTIC_ROUND",
    "MAX_COMMAND_BYTES",
    "Command",
    "DiagnosticRound",
    "encode_command",
    "decode_command",
    "UPDATE_EVENT",
    "UPDATE_RESULTS",
    "UpdateReport",
    "valid_version",
    "update_report",
    "read_update_report",
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
