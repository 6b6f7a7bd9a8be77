"""Ingest: MQTT in, durable intake queue, storage out (see ``collector.ingest.pipeline`` for how)."""

from collector.ingest.decode import (
    DEFAULT_LIMITS,
    DERIVED,
    OPEN,
    TICK_EVERY,
    checked_batch,
    parse_entry,
    plain_batch,
    plain_message,
    read_entry,
    tick_time,
    tick_topic,
)
from collector.ingest.pipeline import PART_SAMPLES, Ingest
from collector.ingest.seq import ProbeSeq, SeqRanges, SeqRow, SeqTracker

__all__ = ["DEFAULT_LIMITS", "DERIVED", "OPEN", "TICK_EVERY", "PART_SAMPLES", "Ingest", "ProbeSeq", "SeqRanges",
           "SeqRow", "SeqTracker", "checked_batch", "parse_entry", "plain_batch", "plain_message", "read_entry",
           "tick_time", "tick_topic"]
