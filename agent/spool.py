"""The probe's on-disk outbox: every batch is durable here before it is sent.

A ``zonewatch.queue.DiskQueue`` (SQLite, WAL, ``synchronous=FULL``) whose entry ids are the batches' ``seq``:

- ``append`` takes the next ``seq`` (kept in the queue's meta table, so it never goes back, even after the
  outbox empties or the agent restarts), encodes the batch with it, and commits.
- With ``coalesce_s`` (the agent's ``spool.coalesce``), data appended within that many seconds of a data batch's
  making join it (up to ``COALESCE_ROWS`` samples and ``COALESCE_BYTES`` encoded): the batch is encoded again
  with the new samples and its entry rewritten, in one transaction, so every reading is on disk as soon as it
  was taken, as before. ``pending`` holds the open batch back until its time is up, and once it has handed it
  out nothing joins it any more. A probe polling 25 devices every 15 s sends one message every ``coalesce_s``
  instead of one a poll: the collector's cost is mostly per message (its sizing in the README), and so is the
  broker's. News never waits: events are never joined, and go first; and a poll that changes a state (a
  boolean field, such as a link's ``oper_up``, a device's ``up`` or a modem's ``registered``, other than it was
  at the same series' last poll) closes the batch it joins, which then goes at once with what waited in it.
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
from dataclasses import dataclass
from pathlib import Path

from zonewatch import wire
from zonewatch.queue import DiskQueue, Entry

log = logging.getLogger(__name__)

__all__ = ["Spool", "Entry"]

COALESCE_ROWS = 1000          # samples one joined data batch holds at most ...
COALESCE_BYTES = 256 * 2**10  # ... and bytes, encoded (the collector takes up to wire.Limits: 20,000 and 1 MiB)


class _States:
    """The last value of each boolean field of each series of the data joined: what tells a poll that changes a
    state (news, sent at once) from one that says again what was known. At most ``bound`` fields are kept
    (then forgotten all at once: the next poll of each is news to nobody)."""

    def __init__(self, bound: int = 200_000) -> None:
        self.bound = bound
        self._last: dict[tuple[str, tuple[tuple[str, str], ...], str], bool] = {}

    def changed(self, samples: Iterable[wire.Sample]) -> bool:
        """Remember the boolean fields of ``samples``; return whether one differs from its last value."""
        last = self._last
        if len(last) > self.bound:
            last.clear()
        news = False
        for sample in samples:
            series: tuple[tuple[str, str], ...] | None = None
            for field, value in sample.fields.items():
                if type(value) is not bool:
                    continue
                if series is None:
                    series = tuple(sorted(sample.tags.items()))
                key = (sample.measurement, series, field)
                before = last.get(key)
                last[key] = value
                news = news or (before is not None and before is not value)
        return news


@dataclass
class _Open:
    """The newest data batch, while more data may join it."""

    seq: int
    made_ns: int
    samples: list[wire.Sample]


class Spool:
    """Durable, bounded, ordered outbox of encoded batches."""

    def __init__(self, path: str | Path, zone: str, probe: str, max_bytes: int = 256 * 2**20,
                 max_age_s: float = 7 * 86400.0, live_s: float = 60.0, coalesce_s: float = 0.0) -> None:
        self.zone, self.probe = zone, probe
        self.coalesce_ns = int(coalesce_s * 1e9)
        self._open: _Open | None = None   # never one from before a restart: nothing joins a batch of then
        self._states = _States()
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
        ``appended_events`` counters are one transaction. Data within ``coalesce_s`` of the open data batch join
        it instead (the module's docstring), and its seq is returned.
        """
        joins = kind == "data" and bool(samples) and not events and self.coalesce_ns > 0
        news = joins and self._states.changed(samples)
        if joins and self._join(now_ns, samples):
            assert self._open is not None
            seq = self._open.seq
            if news:   # a state changed: the batch goes now, nothing more joins it
                self._open = None
            return seq
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
        if joins:
            fits = len(payloads) == 1 and len(samples) < COALESCE_ROWS and len(payloads[0][1]) < COALESCE_BYTES
            self._open = _Open(seq, now_ns, list(samples)) if fits and not news else None
        return seq

    def _join(self, now_ns: int, samples: tuple[wire.Sample, ...]) -> bool:
        """Add ``samples`` to the open data batch if they fit in it and its time is not up; return whether."""
        open_batch = self._open
        if open_batch is None or not open_batch.made_ns <= now_ns < open_batch.made_ns + self.coalesce_ns \
                or len(open_batch.samples) + len(samples) > COALESCE_ROWS:
            return False
        joined = [*open_batch.samples, *samples]
        payload = wire.encode(wire.Batch(self.zone, self.probe, open_batch.seq, open_batch.made_ns, tuple(joined),
                                         origin=self.origin))
        if len(payload) > COALESCE_BYTES:
            return False
        q = self.queue
        q.begin()
        try:
            if not q.replace_within(open_batch.seq, payload, now_ns):   # gone (the bounds dropped it)
                q.rollback()
                self._open = None
                return False
            q.set_meta("appended_samples", q.get_meta("appended_samples") + len(samples))
            q.commit()
        except BaseException:
            q.rollback()
            raise
        open_batch.samples = joined
        return True

    def seal(self) -> None:
        """Let nothing more join the open data batch: ``pending`` hands it out at once (the agent stopping)."""
        self._open = None

    def pending(self, limit: int, now_ns: int = 0, skip: set[int] | frozenset[int] = frozenset(),
                without: frozenset[str] = frozenset()) -> list[Entry]:
        """Return up to ``limit`` entries to publish, not in ``skip`` (already in flight) and of no kind in
        ``without`` (held back). The open data batch is left out until ``coalesce_s`` after its making (by
        ``now_ns``; at once with no ``now_ns``, or a clock that went back before it); once it is handed out,
        nothing joins it any more."""
        open_batch = self._open
        if open_batch is not None and open_batch.made_ns <= now_ns < open_batch.made_ns + self.coalesce_ns:
            skip = {*skip, open_batch.seq}
        entries = self.queue.pending(limit, now_ns, skip, without=without)
        if open_batch is not None and any(entry.id == open_batch.seq for entry in entries):
            self._open = None
        return entries

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
