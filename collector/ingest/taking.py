"""Which intake entries the preparer takes next: in order while it keeps up, fairly by topic behind a backlog.

The intake queue holds every message in arrival order. Taken in that order, one probe's flood (thirty
seconds of 1 MiB messages, or tens of thousands of small ones) is stored before anything that arrived after
it: every other probe's readings wait behind it, for minutes. So:

- While everything pending fits one round (``round_entries``, and four ``quantum`` of bytes), the preparer
  takes it all, in id order: nothing waits behind anything, and this costs two small queries.
- Once a round comes back full (a backlog), rounds go by topic (a probe's data, its events, its status,
  each derived topic of the collector's own), in turn: each topic gives at most ``share`` entries and at most
  ``quantum`` bytes a round, but always its next entry, however large; its own entries stay in order. A
  flood waits behind itself: a probe sending 1 MiB messages gets one of them a round, while a probe sending
  5 KiB batches gets up to ``share`` of its own in the same round, right after it. The round is made up
  entry by entry across the topics (the first of each topic, then the second of each ...), so a small
  message never waits for more than one large message of each other topic.
- When nothing taken is still on its way to storage (``reset``), taking starts again in id order.

Per topic one query reads the ids and sizes of its next ``share`` entries, and the payloads of those no larger
than ``quantum / share`` (all of them fit the topic's quantum: an agent's batch is one); only when a larger
entry is chosen does a second query read the payloads of what was chosen. So a payload is read only when its
entry is taken (or, for a small one, at most a quantum's worth a topic a round, when a large entry or the
round's bytes cut the topic short). The topics with entries come from a skip-scan of the queue's kind index,
so a round costs one small query a topic (two with a large entry), whatever the depth. Rounds grow with the
number of topics (``share`` entries each) so that this stays small beside the decoding it feeds.

Nothing here changes what is stored, only when: a probe's entries are stored in its own order, which is
what the sequence bookkeeping relies on (``ingest.SeqTracker``: per probe and origin).
"""

from __future__ import annotations

from itertools import chain, zip_longest

from zonewatch.queue import Entry, QueueReader

ROUND_ENTRIES = 500        # a round while the preparer keeps up (and at least this under a backlog)
SHARE = 50                 # entries a topic may give in one round, under a backlog
MIN_SHARE = 8              # ... and at least this many, however many topics (rounds grow instead)
QUANTUM = 256 * 1024       # bytes a topic may give in one round beyond its first entry
ROUND_BYTES = 16 * 2**20   # bytes of one round beyond each topic's first entry


class FairTake:
    """The preparer's choice of entries (one thread); see the module docstring."""

    def __init__(self, reader: QueueReader, round_entries: int = ROUND_ENTRIES, share: int = SHARE,
                 quantum: int = QUANTUM, round_bytes: int = ROUND_BYTES) -> None:
        self.reader = reader
        self.round_entries, self.share, self.quantum, self.round_bytes = round_entries, share, quantum, round_bytes
        self.fair = False           # taking by topic (a backlog), not in id order
        self._after = 0             # in order: the last id taken
        self._floor = 0             # by topic: every entry up to this id was taken in order before
        self._cursor: dict[str, int] = {}   # by topic: the last id taken of each topic
        self._last_kind = ""        # by topic: the topic the last round ended with (the next starts after it)

    def reset(self) -> None:
        """Everything taken so far is committed (gone from the queue): start again from the oldest entry."""
        self.fair, self._after, self._floor, self._last_kind = False, 0, 0, ""
        self._cursor.clear()

    def take(self) -> list[Entry]:
        """Return the next entries to prepare (none: nothing new is pending)."""
        if not self.fair:
            pending = self.reader.sizes_after(self._after, self.round_entries)
            last, size = 0, 0
            for entry_id, entry_size in pending:
                if last and size + entry_size > self.quantum * 4:
                    break
                last, size = entry_id, size + entry_size
            if not last:
                return []
            entries = self.reader.between(None, self._after, last)
            self._after = last
            if len(pending) >= self.round_entries or last != pending[-1][0]:   # more waits: by topic from now on
                self.fair, self._floor = True, self._after
            return entries
        return self._fair_round()

    def _fair_round(self) -> list[Entry]:
        kinds = self.reader.kinds()
        if not kinds:
            return []
        share = max(MIN_SHARE, min(self.share, self.round_entries // len(kinds)))
        most = max(self.round_entries, share * len(kinds))
        start = next((i for i, kind in enumerate(kinds) if kind > self._last_kind), 0)
        per_kind: list[list[Entry]] = []
        count = size = 0
        inline = self.quantum // share   # a topic's next entries this small all fit its quantum: read them whole
        for kind in chain(kinds[start:], kinds[:start]):
            after = self._cursor.get(kind, self._floor)
            chosen: list[tuple[int, int, int, bytes | None]] = []
            got = 0
            for head in self.reader.heads(kind, after, share, inline):
                entry_size = head[2]
                if chosen and (got + entry_size > self.quantum or size + entry_size > self.round_bytes):
                    break
                chosen.append(head)
                got += entry_size
                size += entry_size
            if not chosen:
                continue
            entries = [Entry(entry_id, kind, created_ns, payload) for entry_id, created_ns, _, payload in chosen
                       if payload is not None]
            if len(entries) < len(chosen):   # a large entry among them: read the payloads now that they are chosen
                entries = self.reader.between(kind, after, chosen[-1][0])
            if entries:
                self._cursor[kind] = entries[-1].id
                per_kind.append(entries)
                count += len(entries)
            self._last_kind = kind
            if count >= most or size >= self.round_bytes:
                break
        return [e for row in zip_longest(*per_kind) for e in row if e is not None]
