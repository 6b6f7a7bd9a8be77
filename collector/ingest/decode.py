"""One intake entry to a batch: the full decode (``read_entry``, every check, what the probe may not report
left out and counted) and the one-pass decode of the common message (``plain_message``, ``plain_batch``),
which gives exactly the same batch or None; and the collector's ticks.

Batches the collector makes itself enter the intake queue under ``DERIVED`` + topic: only they may hold the
measurements a probe may not write.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import orjson

from collector.clockskew import shifted
from collector.mosquitto import TICK_ROOT  # the collector's tick topics
from collector.scope import Refusals, Scope
from zonewatch import wire
from zonewatch.mqtt import MqttConfig
from zonewatch.queue import Entry

_loads: Callable[[Any], Any] = orjson.loads  # about twice as fast as the standard library's on our batches


DEFAULT_LIMITS = wire.Limits()
OPEN = Scope()  # no inventory: only what no probe may ever send is refused


DERIVED = "derived:"  # the kind of an intake entry the collector made itself: its topic after this prefix
TICK_EVERY = 1.0                # seconds between two ticks


def tick_topic(cfg: MqttConfig) -> str:
    """Return the topic of the collector's ticks (``render-mosquitto`` grants its user this one)."""
    return TICK_ROOT + (cfg.username or cfg.client_id or "zonewatch-collector")


def tick_time(payload: bytes) -> int | None:
    """Return the publish time (ns) a tick carries, or None if it is not one of ours."""
    text = payload.decode("ascii", "replace")
    return int(text) if text.isdigit() and len(text) < 20 else None


def parse_entry(entry: Entry, limits: wire.Limits = DEFAULT_LIMITS) -> wire.Batch:
    """Turn one queued message into a batch, or raise WireError naming what is wrong. Rows a probe may never
    send (``collector.scope``: measurements only the collector writes) are left out."""
    return read_entry(entry, OPEN, limits)[0]


def read_entry(entry: Entry, scope: Scope, limits: wire.Limits = DEFAULT_LIMITS,
               offset_ns: int = 0) -> tuple[wire.Batch, Refusals]:
    """Turn one queued message into a batch without the rows ``scope`` refuses, and say what it refused; raise
    WireError naming what is wrong with a message that cannot be read at all. ``offset_ns``: how far its probe's
    clock was ahead when it arrived (``collector.clockskew``): every time in it is moved back by that much
    before the time checks."""
    kind, trusted = (entry.kind[len(DERIVED):], True) if entry.kind.startswith(DERIVED) else (entry.kind, False)
    where = wire.parse_topic(kind)
    if where.kind == "status":
        state = entry.payload.strip()
        if state not in (wire.STATUS_ONLINE, wire.STATUS_OFFLINE, wire.STATUS_STOPPING):
            raise wire.WireError("bad_status", f"{kind}: status {entry.payload[:32]!r} is not "
                                 "online/offline/stopping")
        fields: dict[str, wire.FieldValue] = {"up": state == wire.STATUS_ONLINE}
        if state == wire.STATUS_STOPPING:
            fields["planned"] = True
        up = wire.Sample("probe", {}, fields, entry.created_ns)
        return wire.Batch(where.zone, where.probe, 0, entry.created_ns, (up,)), Refusals()
    if where.kind not in ("data", "events"):
        raise wire.WireError("bad_topic", f"{kind}: the collector does not take {where.kind!r} messages")
    if len(entry.payload) > limits.max_bytes:  # before parsing it
        raise wire.WireError("too_large", f"{kind}: {len(entry.payload)} bytes, at most {limits.max_bytes}")
    batch = wire.decode(entry.payload, _loads)
    if (batch.zone, batch.probe) != (where.zone, where.probe):
        raise wire.WireError("identity_mismatch", f"{kind}: payload says {batch.zone}/{batch.probe}")
    if offset_ns:
        batch = shifted(batch, -offset_ns)
    wire.check_limits(batch, limits, entry.created_ns)
    refused = Refusals()
    if not trusted:
        batch, refused = scope.check(batch)
    if batch.events:  # stored too, as the "event" measurement: the NOC sees every trap and link change
        stored = tuple(wire.Sample("event", {**e.tags, "event": e.name}, {**e.fields, "occurred": True}, e.time_ns)
                       for e in batch.events)
        batch = dataclasses.replace(batch, samples=batch.samples + stored)
    return batch, refused


def plain_message(entry: Entry, limits: wire.Limits = DEFAULT_LIMITS) -> tuple[wire.Header, list[Any]] | None:
    """Return the header and sample rows of a message the ingest fast path may take (a data message with
    samples only, which says it comes from where its topic says), or None: ``parse_entry`` then decides."""
    if not entry.kind.endswith("/data") or len(entry.payload) > limits.max_bytes:
        return None
    try:
        doc = _loads(entry.payload)
        head = wire.decode_header(doc)
    except (ValueError, RecursionError, wire.WireError):  # orjson's JSONDecodeError is a ValueError
        return None
    rows, events = doc.get("samples", []), doc.get("events", [])
    # The header's zone and probe are valid names, so this is parse_topic's answer and the identity check at once.
    if type(rows) is not list or type(events) is not list or events \
            or entry.kind.removeprefix(DERIVED) != f"{wire.TOPIC_ROOT}/{head.zone}/{head.probe}/data":
        return None
    return head, rows


def checked_batch(head: wire.Header, rows: list[Any]) -> wire.Batch:
    """Return the batch of a data message whose rows the ingest's fast path took (``plain_message``, and
    ``Encoder.encode_rows`` found every row plain): exactly the one ``read_entry`` returns, made without checking
    anything again (the fast path's checks are the decoder's or stricter: ``tests/fuzz``, target ``fastpath``).
    The alert engine takes it instead of decoding the message itself (``AlertEngine.prepared``)."""
    samples = tuple(wire.Sample(row["m"], row.get("tags") or {}, row.get("fields") or {}, row["ts"]) for row in rows)
    return wire.Batch(head.zone, head.probe, head.seq, head.sent_ns, samples, (), head.version, head.origin)


def plain_batch(entry: Entry, scope: Scope, limits: wire.Limits = DEFAULT_LIMITS) -> wire.Batch | None:
    """Return the batch of a message that ``read_entry`` would take whole, made in one pass; else None.

    The alert engine's fast path: a data message with samples only (``plain_message``), every row plain
    (``wire.plain_samples``) and one its probe may report (``Scope.plain``). Its batch is exactly the one
    ``read_entry`` returns, with nothing refused. None, having counted nothing, for anything else: then
    ``read_entry`` decodes it, leaves out and reports what the probe may not send, or names what is wrong."""
    plain = plain_message(entry, limits)
    if plain is None:
        return None
    head, rows = plain
    if not entry.kind.startswith(DERIVED) and not scope.plain(head.zone, head.probe, rows):
        return None
    samples = wire.plain_samples(rows, entry.created_ns, limits)
    if samples is None:
        return None
    return wire.Batch(head.zone, head.probe, head.seq, head.sent_ns, samples, (), head.version, head.origin)
