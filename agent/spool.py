"""The probe's on-disk outbox: every batch is durable here before it is sent.

A ``zonewatch.queue.DiskQueue`` (SQLite, WAL, ``synchronous=FULL``) whose entry ids are the batches' ``seq``:

- ``append`` takes the next ``seq`` (kept in the queue's meta table, so it never goes back, even after the
  outbox empties or the agent restarts), encodes the batch with it, and commits.
- The uplink takes entries with ``pending``: events first, then what was made in the last ``live``
  seconds, then the backlog oldest first, so after an outage the NOC sees now while the past fills in.
- ``ack`` deletes what the broker acknowledged (QoS 1 PUBACK), many in one transaction.
- Bounded by bytes and age: the oldest data go first, events last, and every drop is counted.

One Spool object belongs to one thread (the agent's event loop).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from pathlib import Path

from zonewatch import wire
from zonewatch.queue import DiskQueue, Entry

log = logging.getLogger(__name__)

__all__ = ["Spool", "Entry"]


class Spool:
    """Durable, bounded, ordered outbox of encoded batches."""

    def __init__(self, path: str | Path, zone: str, probe: str, max_bytes: int = 256 * 2**20,
                 max_age_s: float = 7 * 86400.0, live_s: float = 60.0) -> None:
        self.zone, self.probe = zone, probe
        self.limits = wire.Limits()   # what the collector takes in one message: bigger batches are split
        self.queue = DiskQueue(path, max_bytes, int(max_age_s * 1e9), priority=("events",), live_ns=int(live_s * 1e9))
        self.origin = self.queue.get_meta("origin")
        if not self.origin:  # a new spool: a new sequence space
            self.origin = secrets.randbits(62) or 1
            self.queue.set_meta("origin", self.origin)
        if self.queue.salvaged is not None:
            kept, aside = self.queue.salvaged
            # The seq counter may have been lost with the damage: never hand out a seq the collector has seen.
            last = max(self.queue.get_meta("seq"), max((e.id for e in self.queue.pending(1 << 30)), default=0))
            self.queue.set_meta("seq", last)
            log.error("spool was damaged (moved to %s); kept %d batches; the collector counts the rest as gaps",
                      aside, kept)

    @property
    def path(self) -> Path:
        return self.queue.path

    def append(self, kind: str, now_ns: int, samples: tuple[wire.Sample, ...] = (),
               events: tuple[wire.Event, ...] = ()) -> int:
        """Encode and commit one batch with the next sequence number; return that number.

        A batch the collector would refuse for its size or its row count (``wire.Limits``: 1 MiB, 20,000 rows;
        a big chassis's interface table can pass that) is split into as many batches as it takes, each with a
        seq of its own, and the last seq is returned. The seqs, the batches and the ``appended_samples``/
        ``appended_events`` counters are one transaction.
        """
        q = self.queue
        q.begin()
        try:
            seq = q.get_meta("seq")
            whole = (wire.encode(wire.Batch(self.zone, self.probe, seq + 1, now_ns, samples, events,
                                            origin=self.origin))
                     if len(samples) + len(events) <= self.limits.max_rows else b"")
            if whole and len(whole) <= self.limits.max_bytes:   # the common case: one batch, encoded once
                seq += 1
                payloads = [(kind, whole)]
            else:
                payloads = []
                for part_samples, part_events in _split(samples, events, self.limits):
                    seq += 1
                    payloads.append((kind, wire.encode(wire.Batch(self.zone, self.probe, seq, now_ns, part_samples,
                                                                  part_events, origin=self.origin))))
            if any(len(payload) > self.limits.max_bytes for _, payload in payloads):
                raise ValueError(f"one row alone is over the {self.limits.max_bytes}-byte message limit")
            q.set_meta("seq", seq)
            q.set_meta("appended_samples", q.get_meta("appended_samples") + len(samples))
            q.set_meta("appended_events", q.get_meta("appended_events") + len(events))
            q.put_within(payloads, now_ns, range(seq - len(payloads) + 1, seq + 1))
            q.commit()
        except BaseException:
            q.rollback()
            raise
        return seq

    def pending(self, limit: int, now_ns: int = 0, skip: set[int] | frozenset[int] = frozenset(),
                without: frozenset[str] = frozenset()) -> list[Entry]:
        """Return up to ``limit`` entries to publish, not in ``skip`` (already in flight) and of no kind in
        ``without`` (held back)."""
        return self.queue.pending(limit, now_ns, skip, without=without)

    def ack(self, seqs: int | Iterable[int]) -> None:
        """Forget batches the broker has acknowledged."""
        self.queue.ack([seqs] if isinstance(seqs, int) else seqs)

    def depth(self) -> int:
        """Return how many batches wait to be acknowledged."""
        return self.queue.depth()

    def size_bytes(self) -> int:
        """Return the payload bytes waiting."""
        return self.queue.size_bytes()

    def dropped(self) -> int:
        """Return how many batches the bounds have dropped, ever."""
        return self.queue.dropped()

    def damaged(self) -> int:
        """Return how many times the spool file was found damaged and salvaged, ever."""
        return self.queue.get_meta("damaged_files")

    def last_seq(self) -> int:
        """Return the last sequence number handed out."""
        return self.queue.get_meta("seq")

    def close(self) -> None:
        """Close the file; it keeps everything not acknowledged."""
        self.queue.close()


def _split(samples: tuple[wire.Sample, ...], events: tuple[wire.Event, ...],
           limits: wire.Limits) -> list[tuple[tuple[wire.Sample, ...], tuple[wire.Event, ...]]]:
    """Return the batch as parts the collector takes: halved until each is within ``limits.max_rows`` rows and
    ``limits.max_bytes`` encoded (the encoding is tried once a part is within the row limit: a plain batch
    encodes in about a microsecond a row)."""
    if len(samples) + len(events) <= limits.max_rows and (
            len(samples) + len(events) <= 1
            or len(wire.encode(wire.Batch("z", "p", wire.MAX_SEQ, 0, samples, events, origin=wire.MAX_SEQ)))
            <= limits.max_bytes - 256):   # room for the real zone and probe names
        return [(samples, events)]
    if events and samples:
        return _split((), events, limits) + _split(samples, (), limits)
    half_s, half_e = len(samples) // 2, len(events) // 2
    return _split(samples[:half_s], events[:half_e], limits) + _split(samples[half_s:], events[half_e:], limits)
