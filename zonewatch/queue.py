"""A durable, bounded, ordered queue in one SQLite file: the store-and-forward part of both sides.

The agent's spool (``agent/spool.py``) and the collector's intake queue (``collector/ingest/``) are this
queue with different keys and kinds; one test suite (``tests/test_queue.py``) covers it, and each user is
tested for what it adds. Standard library only; imports neither ``agent`` nor ``collector``.

Layout (WAL mode; ``synchronous=FULL`` by default, so a committed ``put`` survives power loss)::

    meta(key TEXT PRIMARY KEY, value INTEGER)      counters that must survive restarts ("dropped", ...)
    entries(id INTEGER PRIMARY KEY, kind TEXT, created_ns INTEGER, size INTEGER, crc INTEGER, payload BLOB)
                                                   crc: CRC-32 of the payload, checked when salvaging

Rules:

- ``put``/``put_many`` commit before they return; an entry leaves only through ``ack`` or the bounds. Ids
  they choose (none given) are above every id in the file and every id put before by the same object.
- ``pending`` gives entries of the ``priority`` kinds first, then entries younger than ``live_ns`` (what
  is happening now), then the backlog oldest first: a long backlog drains without starving live data.
- Bounds: ``max_bytes`` and ``max_age_ns``; over either, the oldest entries of non-priority kinds go first,
  then priority ones (past ``max_bytes``, down to a 64th below it, so that the puts that follow find room:
  a put at the bound costs about what one below it does); every drop is counted in ``dropped()``, which
  survives restarts, and logged at most once a minute. Ids in ``protected``
  (the agent's in-flight batches, which may still arrive) are never dropped, so the count is exact; nor are
  the entries being put, so while everything older is in flight the queue may exceed ``max_bytes`` by
  what is in flight (at most the uplink's window) until acknowledgements make room.
- A damaged file (one that fails SQLite's ``quick_check``, e.g. cut short on a failing SD card) is moved
  aside (``<name>.damaged-<n>``); every meta value and entry that can still be read is copied into a new
  file, ``salvaged`` says how many, and the ``damaged_files`` counter goes up: a probe never stops because
  of its own spool, and keeps what is intact (the reading of such a file is ``zonewatch.queue_salvage``).

Space: a backlog grows the file, and SQLite keeps the freed pages once it drains. The file is in incremental
auto-vacuum mode (a file from before is converted when it is opened with few entries left), and ``reclaim``
gives freed pages back to the file system, a bounded number a call, so the caller can do it between its
own work; the write-ahead log is cut back to ``WAL_LIMIT`` at each checkpoint.

Pages: SQLite's default (4 KiB) unless ``page_size`` says otherwise, for a new file (a file from before keeps its
pages: SQLite changes them in write-ahead-log mode only by rewriting the file, which a queue with a backlog must not
wait for). The collector's intake, which commits hundreds of agent batches of about 5 KiB at a time, uses
``LARGE_PAGES``: each batch then fits one page instead of a chain of overflow pages, and a put costs about a third
less (``tests/benchmarks/bench_queue_pages.py``). A probe's spool, which commits a small batch at a time to an SD
card, keeps small pages: each commit writes whole pages.

One queue object is used from one thread at a time (callers serialise); the SQLite connection is
opened with ``check_same_thread=False`` so that thread may change over the queue's life. ``reader()``
opens a second, read-only connection for ``pending`` from another thread, which does not wait for writes.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from zonewatch.queue_salvage import healthy, move_aside, read_damaged

__all__ = ["DiskQueue", "Entry", "QueueReader"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS entries(
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, created_ns INTEGER NOT NULL,
    size INTEGER NOT NULL, crc INTEGER NOT NULL, payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS entries_kind ON entries(kind, id);
CREATE INDEX IF NOT EXISTS entries_created ON entries(created_ns);
INSERT OR IGNORE INTO meta VALUES ('dropped', 0), ('damaged_files', 0);
"""
WAL_LIMIT = 64 * 2**20          # bytes the write-ahead log is cut back to at a checkpoint
LARGE_PAGES = 16 * 1024         # bytes a page, for a queue of many 5 KiB batches a commit (see the module docstring)
CONVERT_BELOW = 10_000          # a file without auto-vacuum is converted on open when it holds fewer entries


class Entry(NamedTuple):
    """One queued payload (a named tuple: one is made for every entry read, three times as fast as a frozen
    dataclass; ``Entry._make`` takes a row as SQLite returns it)."""

    id: int
    kind: str
    created_ns: int
    payload: bytes


class DiskQueue:
    """Durable FIFO of payloads with priority kinds, a live lane, bounds and drop counting."""

    def __init__(self, path: str | Path, max_bytes: int, max_age_ns: int, priority: Sequence[str] = (),
                 live_ns: int = 0, synchronous: str = "FULL", page_size: int | None = None) -> None:
        self.path = Path(path)
        self.max_bytes, self.max_age_ns = max_bytes, max_age_ns
        self.priority = tuple(priority)
        self.live_ns = live_ns
        self.salvaged: tuple[int, Path] | None = None  # (entries kept, where the damaged file went)
        self.protected: set[int] = set()  # ids the bounds must not drop (e.g. in flight: they may still arrive)
        self._dropped_since_log, self._logged_at = 0, -1e9   # the drop warning: at most one a minute
        self.path.parent.mkdir(parents=True, exist_ok=True)
        damaged = self.path.exists() and not healthy(self.path)
        if damaged:
            aside = move_aside(self.path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if page_size is not None:
            self._db.execute(f"PRAGMA page_size={int(page_size)}")   # takes effect on a new file only
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")   # takes effect on a new file (and at a VACUUM)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
        self._db.executescript(_SCHEMA)
        self._recount()
        if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2 and self.depth() < CONVERT_BELOW:
            self._db.execute("VACUUM")   # a file made before: convert it while it is small
        if damaged:
            kept = self._salvage(aside)
            self.salvaged = (kept, aside)
            log.error("queue %s was damaged: kept the %d entries that could be read; the damaged file is %s",
                      self.path, kept, aside)
            self._recount()
        # The highest id in the file or put since: ids ``put`` chooses come after it (see ``pending``). This
        # object is the file's only writer, so it is read once here.
        self._last_id = int(self._db.execute("SELECT coalesce(max(id), 0) FROM entries").fetchone()[0])

    def _salvage(self, damaged: Path) -> int:
        """Copy every readable meta value and entry from a damaged file; return the entries kept."""
        found = read_damaged(damaged)
        if found is None:
            self.set_meta("damaged_files", self.get_meta("damaged_files") + 1)
            return 0
        meta, rows = found
        self._db.execute("BEGIN IMMEDIATE")
        for key, value in meta.items():
            self.set_meta(key, value)
        self._db.executemany("INSERT OR IGNORE INTO entries VALUES (?, ?, ?, ?, ?, ?)", rows)
        self.set_meta("damaged_files", self.get_meta("damaged_files") + 1)
        self._db.execute("COMMIT")
        return len(rows)

    # writing -------------------------------------------------------------------------------------------

    def put(self, kind: str, payload: bytes, now_ns: int, entry_id: int | None = None) -> int:
        """Commit one payload; return its id (``entry_id`` if given: it must be new)."""
        return self.put_many([(kind, payload)], now_ns, [entry_id] if entry_id is not None else None)[0]

    def put_many(self, items: Sequence[tuple[str, bytes]], now_ns: int,
                 ids: Sequence[int] | None = None) -> list[int]:
        """Commit several payloads in one transaction; return their ids in order."""
        self.begin()
        try:
            out = self.put_within(items, now_ns, ids)
            self.commit()
        except BaseException:
            self.rollback()   # also when the commit fails: the counts in memory are read again
            raise
        return out

    def put_within(self, items: Sequence[tuple[str, bytes]], now_ns: int,
                   ids: Sequence[int] | None = None) -> list[int]:
        """Add payloads inside the caller's open transaction (then apply the bounds); return their ids."""
        if ids is None:  # after the highest id in the file, and after every id given before (see ``pending``)
            ids = range(self._last_id + 1, self._last_id + 1 + len(items))
        rows = [(entry_id, kind, now_ns, len(payload), zlib.crc32(payload), payload)
                for entry_id, (kind, payload) in zip(ids, items, strict=True)]
        self._db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?)", rows)
        out = [row[0] for row in rows]
        self._count += len(rows)
        self._bytes += sum(row[3] for row in rows)
        if out:
            self._last_id = max(self._last_id, max(out))
        self._enforce_bounds(now_ns, keep=set(out))
        return out

    def replace_within(self, entry_id: int, payload: bytes, now_ns: int) -> bool:
        """Put ``payload`` in place of the payload of entry ``entry_id`` (its kind, id and time stay), inside the
        caller's open transaction, then apply the bounds (never dropping this entry); return False, changing
        nothing, if there is no such entry (acknowledged, or dropped by the bounds)."""
        row = self._db.execute("SELECT size FROM entries WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            return False
        self._db.execute("UPDATE entries SET size = ?, crc = ?, payload = ? WHERE id = ?",
                         (len(payload), zlib.crc32(payload), payload, entry_id))
        self._bytes += len(payload) - int(row[0])
        self._enforce_bounds(now_ns, keep={entry_id})
        return True

    def ack(self, ids: Iterable[int]) -> int:
        """Delete acknowledged entries in one transaction; return how many were there."""
        ids = list(ids)
        if not ids:
            return 0
        self.begin()
        try:
            removed = self.ack_within(ids)
            self.commit()
        except BaseException:
            self.rollback()
            raise
        return removed

    def ack_within(self, ids: Sequence[int]) -> int:
        """Delete acknowledged entries inside the caller's open transaction; return how many were there."""
        removed = 0
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for (size,) in self._db.execute(f"DELETE FROM entries WHERE id IN ({marks}) RETURNING size", chunk):
                self._bytes -= int(size)
                removed += 1
        self._count -= removed
        return removed

    # transactions that callers may widen (e.g. ack entries and save state atomically) -------------------

    def begin(self) -> None:
        """Start a write transaction (``commit``/``rollback`` end it)."""
        self._db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        """Commit the open transaction."""
        self._db.execute("COMMIT")

    def rollback(self) -> None:
        """Undo the open transaction and recount the bytes held."""
        if self._db.in_transaction:  # SQLite may have rolled back already (disk full, I/O error)
            self._db.execute("ROLLBACK")
        self._recount()

    def _recount(self) -> None:
        """Read how many entries and payload bytes the file holds (kept in memory from then on)."""
        count, size = self._db.execute("SELECT count(*), coalesce(sum(size), 0) FROM entries").fetchone()
        self._count, self._bytes = int(count), int(size)

    @property
    def db(self) -> sqlite3.Connection:
        """The connection, for callers that keep their own tables in the same file and transaction."""
        return self._db

    # reading -------------------------------------------------------------------------------------------

    def pending(self, limit: int, now_ns: int = 0, skip: set[int] | frozenset[int] = frozenset(),
                after: int = 0, without: frozenset[str] = frozenset()) -> list[Entry]:
        """Return up to ``limit`` entries not in ``skip``, of no kind in ``without``, and with an id above
        ``after``: priority kinds, then live, then oldest first. (A reader that takes entries in id order passes
        the last id it took as ``after``, rather than every id it took as ``skip``: ids that ``put`` chooses only
        grow while this object is open, even when the queue empties; SQLite alone would start again from 1.)"""
        return _pending(self._db, self.priority, self.live_ns, limit, now_ns, skip, after, without)

    def reader(self) -> QueueReader:
        """Return a second connection to this queue's file, for ``pending`` from another thread."""
        return QueueReader(self)

    def reclaim(self, max_bytes: int = 8 * 2**20, min_free: int = 2**20) -> int:
        """Give up to ``max_bytes`` of freed pages back to the file system, if more than ``min_free`` bytes are
        free; return how many bytes. Not inside a transaction of the caller's."""
        page = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        free = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
        if free * page <= min_free:
            return 0
        self._db.execute(f"PRAGMA incremental_vacuum({max(1, max_bytes // page)})").fetchall()
        return (free - int(self._db.execute("PRAGMA freelist_count").fetchone()[0])) * page

    def depth(self) -> int:
        """Return how many entries wait (counted in memory, as ``size_bytes``: ``count(*)`` reads the whole of
        an index, which behind a backlog cost the intake thread more than its puts)."""
        return self._count

    def size_bytes(self) -> int:
        """Return the payload bytes waiting."""
        return self._bytes

    def dropped(self) -> int:
        """Return how many entries the bounds have dropped, ever."""
        return self.get_meta("dropped")

    def get_meta(self, key: str, default: int = 0) -> int:
        """Return a persistent counter."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else default

    def set_meta(self, key: str, value: int) -> None:
        """Set a persistent counter (inside the caller's transaction if one is open)."""
        self._db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                         (key, value))

    def close(self) -> None:
        """Close the file; it keeps every entry not acknowledged."""
        self._db.close()

    # bounds --------------------------------------------------------------------------------------------

    def _enforce_bounds(self, now_ns: int, keep: set[int] | frozenset[int] = frozenset()) -> None:
        """Drop the oldest entries over the bounds, never those in ``protected`` or ``keep`` (the ones being
        put). When every older entry is protected (in flight), the queue stays over its bound until they are
        acknowledged, rather than drop the newest: a dropped newest entry that nothing follows (the last
        before a stop) would be a loss nobody downstream can see as a gap."""
        dropped = 0
        if self.max_age_ns:
            old = [int(r[0]) for r in self._db.execute("SELECT id FROM entries WHERE created_ns < ?",
                                                        (now_ns - self.max_age_ns,)) if r[0] not in self.protected]
            dropped += self.ack_within(old)
        if self._bytes > self.max_bytes:
            # Oldest first, other kinds before priority ones: each a walk in an index's order that stops as soon
            # as enough is found (no sort of the whole table: at its bound the queue drops at nearly every put).
            # Down to ``max_bytes`` less a 64th, so that the next puts find room without dropping again.
            excess = self._bytes - self.max_bytes + self.max_bytes // 64
            marks = ",".join("?" * len(self.priority)) or "''"
            doomed: list[int] = []
            for where in (f"kind NOT IN ({marks})", f"kind IN ({marks})"):
                cursor = self._db.execute(f"SELECT id, size FROM entries WHERE {where} ORDER BY id", self.priority)
                try:
                    while excess > 0 and (rows := cursor.fetchmany(256)):
                        for row_id, size in rows:
                            if row_id in self.protected or row_id in keep:
                                continue
                            doomed.append(int(row_id))
                            excess -= int(size)
                            if excess <= 0:
                                break
                finally:
                    cursor.close()
                if excess <= 0:
                    break
            dropped += self.ack_within(doomed)
        if dropped:
            total = self.dropped() + dropped
            self.set_meta("dropped", total)
            self._dropped_since_log += dropped
            if time.monotonic() - self._logged_at >= 60:   # at its bound it drops at every put: once a minute
                self._logged_at = time.monotonic()
                log.warning("queue %s over its bounds: dropped the %d oldest entries since the last warning (%d "
                            "in all)", self.path, self._dropped_since_log, total)
                self._dropped_since_log = 0


class QueueReader:
    """A read-only second connection to a queue's file: ``pending`` (same rules as ``DiskQueue.pending``)
    from one other thread while the queue's own connection writes. In WAL mode a reader neither waits for
    the writer nor blocks it, and sees what is committed. Close it before the queue."""

    def __init__(self, queue: DiskQueue) -> None:
        self.priority, self.live_ns = queue.priority, queue.live_ns
        self._db = sqlite3.connect(queue.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA query_only=1")

    def pending(self, limit: int, now_ns: int = 0, skip: set[int] | frozenset[int] = frozenset(),
                after: int = 0, without: frozenset[str] = frozenset()) -> list[Entry]:
        """Return what ``DiskQueue.pending`` would, as last committed."""
        return _pending(self._db, self.priority, self.live_ns, limit, now_ns, skip, after, without)

    def kinds(self) -> list[str]:
        """Return every kind with an entry, sorted: one index seek a kind (a skip-scan of ``entries_kind``),
        not a pass over the entries, so it costs the same behind a million entries as behind ten."""
        rows = self._db.execute(
            "WITH RECURSIVE k(kind) AS (SELECT min(kind) FROM entries UNION ALL "
            "SELECT (SELECT min(kind) FROM entries WHERE kind > k.kind) FROM k WHERE k.kind IS NOT NULL) "
            "SELECT kind FROM k WHERE kind IS NOT NULL").fetchall()
        return [str(r[0]) for r in rows]

    def heads(self, kind: str, after: int, limit: int, inline: int) -> list[tuple[int, int, int, bytes | None]]:
        """Return (id, created_ns, size, payload) of up to ``limit`` entries of ``kind`` with an id above ``after``,
        in id order: the payload of those of at most ``inline`` bytes, None for larger ones (SQLite then does not
        read them), so that a caller that may take only some of these entries reads their ids and sizes, and
        the small entries whole, in one query."""
        return self._db.execute(
            "SELECT id, created_ns, size, CASE WHEN size <= ? THEN payload END FROM entries "
            "WHERE kind = ? AND id > ? ORDER BY id LIMIT ?", (inline, kind, after, limit)).fetchall()

    def sizes_after(self, after: int, limit: int) -> list[tuple[int, int]]:
        """Return (id, size) of up to ``limit`` entries with an id above ``after``, in id order, without
        reading their payloads."""
        rows = self._db.execute("SELECT id, size FROM entries WHERE id > ? ORDER BY id LIMIT ?",
                                (after, limit)).fetchall()
        return [(int(r[0]), int(r[1])) for r in rows]

    def between(self, kind: str | None, after: int, last: int) -> list[Entry]:
        """Return the entries of ``kind`` (of every kind: None) with ``after`` < id <= ``last``, in id order."""
        cols = "SELECT id, kind, created_ns, payload FROM entries"
        rows = (self._db.execute(f"{cols} WHERE id > ? AND id <= ? ORDER BY id", (after, last)) if kind is None
                else self._db.execute(f"{cols} WHERE kind = ? AND id > ? AND id <= ? ORDER BY id",
                                      (kind, after, last))).fetchall()
        return list(map(Entry._make, rows))

    def close(self) -> None:
        """Close the connection."""
        self._db.close()


def _pending(db: sqlite3.Connection, priority: tuple[str, ...], live_ns: int, limit: int, now_ns: int,
             skip: set[int] | frozenset[int], after: int, without: frozenset[str] = frozenset()) -> list[Entry]:
    """Return up to ``limit`` entries not in ``skip``, of no kind in ``without``, id above ``after``: priority
    kinds, live, then oldest."""
    out: list[Entry] = []
    seen: set[int] = set(skip)
    left_out = tuple(sorted(without))
    not_these = f" AND kind NOT IN ({', '.join('?' * len(left_out))})" if left_out else ""

    def take(where: str, args: tuple[object, ...]) -> bool:
        # fetchall: a cursor left unfinished would keep its read transaction (and its old snapshot) open
        sql = f"SELECT id, kind, created_ns, payload FROM entries WHERE {where}id > ?{not_these} ORDER BY id LIMIT ?"
        for row in db.execute(sql, (*args, after, *left_out, limit + len(seen))).fetchall():
            if row[0] in seen:
                continue
            seen.add(row[0])
            out.append(Entry._make(row))
            if len(out) >= limit:
                return True
        return False

    for kind in priority:
        if kind not in without and take("kind = ? AND ", (kind,)):
            return out
    if live_ns and now_ns:
        if take("created_ns >= ? AND ", (now_ns - live_ns,)):
            return out
    take("", ())
    return out
