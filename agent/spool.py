"""The probe's on-disk outbox: every batch is durable here before it is sent.

Layout (one SQLite file in WAL mode, ``synchronous=FULL`` so a committed batch survives power loss)::

    meta(key, value)                      "seq": the last sequence number handed out (never reused),
                                          "dropped": batches dropped by the bounds, ever
    outbox(seq, kind, created_ns, size, payload)
                                          one row per MQTT message, payload already encoded

Life of a batch: ``append`` encodes it with the next ``seq`` and commits; the uplink takes rows with
``pending`` (events first, then data, each oldest first), publishes them, and calls ``ack(seq)`` when the
broker acknowledged (QoS 1 PUBACK). A batch is deleted only then. A restart resends what was not
acknowledged, with its original ``seq``, so the collector can drop the duplicate.

Bounds: ``max_bytes`` and ``max_age``; when either is exceeded the oldest data batches are dropped first
(events last) and counted, so a long outage costs the oldest data, never the newest, and never silently.

One Spool object belongs to one thread (the agent's event loop); it is not shared.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent import wire

log = logging.getLogger(__name__)

Kind = Literal["data", "events"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One spooled message, ready to publish."""

    seq: int
    kind: Kind
    payload: bytes


class Spool:
    """Durable, bounded, ordered outbox of encoded batches."""

    def __init__(self, path: str | Path, zone: str, probe: str, max_bytes: int = 256 * 2**20,
                 max_age_s: float = 7 * 86400.0) -> None:
        self.path = Path(path)
        self.zone, self.probe = zone, probe
        self.max_bytes, self.max_age_ns = max_bytes, int(max_age_s * 1e9)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS outbox(
                seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, created_ns INTEGER NOT NULL,
                size INTEGER NOT NULL, payload BLOB NOT NULL);
            CREATE INDEX IF NOT EXISTS outbox_kind ON outbox(kind, seq);
            INSERT OR IGNORE INTO meta VALUES ('seq', 0), ('dropped', 0);
            """
        )
        self._bytes = int(self._db.execute("SELECT coalesce(sum(size), 0) FROM outbox").fetchone()[0])

    def append(self, kind: Kind, now_ns: int, samples: tuple[wire.Sample, ...] = (),
               events: tuple[wire.Event, ...] = ()) -> int:
        """Encode and store one batch with the next sequence number; return that number."""
        with self._tx():
            seq = int(self._db.execute("UPDATE meta SET value = value + 1 WHERE key = 'seq' RETURNING value")
                      .fetchone()[0])
            payload = wire.encode(wire.Batch(self.zone, self.probe, seq, now_ns, samples, events))
            self._db.execute("INSERT INTO outbox VALUES (?, ?, ?, ?, ?)", (seq, kind, now_ns, len(payload), payload))
            self._bytes += len(payload)
            self._enforce_bounds(now_ns)
        return seq

    def pending(self, limit: int, skip: set[int] | frozenset[int] = frozenset()) -> list[Entry]:
        """Return up to ``limit`` unacknowledged entries not in ``skip``: events first, each oldest first."""
        out: list[Entry] = []
        for kind in ("events", "data"):
            rows = self._db.execute("SELECT seq, payload FROM outbox WHERE kind = ? ORDER BY seq LIMIT ?",
                                    (kind, limit + len(skip)))
            for seq, payload in rows:
                if seq not in skip:
                    out.append(Entry(seq, kind, bytes(payload)))
                    if len(out) >= limit:
                        return out
        return out

    def ack(self, seq: int) -> None:
        """Forget a batch the broker has acknowledged."""
        with self._tx():
            row = self._db.execute("DELETE FROM outbox WHERE seq = ? RETURNING size", (seq,)).fetchone()
            if row:
                self._bytes -= int(row[0])

    def depth(self) -> int:
        """Return how many batches wait to be acknowledged."""
        return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def size_bytes(self) -> int:
        """Return the payload bytes waiting."""
        return self._bytes

    def dropped(self) -> int:
        """Return how many batches the bounds have dropped, ever."""
        return int(self._db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()[0])

    def last_seq(self) -> int:
        """Return the last sequence number handed out."""
        return int(self._db.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0])

    def close(self) -> None:
        """Close the database; the file keeps everything not acknowledged."""
        self._db.close()

    def _enforce_bounds(self, now_ns: int) -> None:
        dropped = 0
        cur = self._db.execute("DELETE FROM outbox WHERE created_ns < ? RETURNING size", (now_ns - self.max_age_ns,))
        for (size,) in cur.fetchall():
            self._bytes -= int(size)
            dropped += 1
        while self._bytes > self.max_bytes:
            row = self._db.execute(
                "DELETE FROM outbox WHERE seq = (SELECT seq FROM outbox ORDER BY kind = 'events', seq LIMIT 1) "
                "RETURNING size").fetchone()
            if row is None:
                break
            self._bytes -= int(row[0])
            dropped += 1
        if dropped:
            self._db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (dropped,))
            log.warning("spool %s over its bounds: dropped the %d oldest batches (%d dropped in all)",
                        self.path, dropped, self.dropped())

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
